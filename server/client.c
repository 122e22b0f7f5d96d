#include "client.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdlib.h>
#include <string.h>

struct client {
    grpc_channel *channel;
    grpc_completion_queue *cq;
};

int client_open(const char *target, client **out, err_t *e) {
    grpc_init();
    client *c = calloc(1, sizeof *c);
    if (!c) {
        grpc_shutdown();
        return err_set(e, ERR_NOMEM, "client: out of memory");
    }
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    c->channel = grpc_channel_create(target, creds, NULL);
    grpc_channel_credentials_release(creds);
    c->cq = grpc_completion_queue_create_for_pluck(NULL);
    *out = c;
    return ERR_OK;
}

void client_close(client *c) {
    if (!c) return;
    grpc_completion_queue_shutdown(c->cq);
    while (
        grpc_completion_queue_pluck(c->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
        GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(c->cq);
    grpc_channel_destroy(c->channel);
    free(c);
    grpc_shutdown();
}

int client_call(client *c, const char *method, const uint8_t *req, size_t len, double timeout_s,
                client_result *r, err_t *e) {
    memset(r, 0, sizeof *r);
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                     gpr_time_from_millis((int64_t)(timeout_s * 1000), GPR_TIMESPAN));
    grpc_slice method_slice = grpc_slice_from_copied_string(method);
    grpc_call *call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq,
                                               method_slice, NULL, deadline, NULL);
    grpc_slice_unref(method_slice);
    if (!call) return err_set(e, ERR_INTERNAL, "client: cannot create a call to %s", method);

    grpc_slice body = grpc_slice_from_copied_buffer((const char *)req, len);
    grpc_byte_buffer *request = grpc_raw_byte_buffer_create(&body, 1);
    grpc_slice_unref(body);
    grpc_byte_buffer *response = NULL;
    grpc_metadata_array initial, trailing;
    grpc_metadata_array_init(&initial);
    grpc_metadata_array_init(&trailing);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();

    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = request;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &response;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;

    int rc = ERR_OK;
    if (grpc_call_start_batch(call, ops, 6, call, NULL) != GRPC_CALL_OK) {
        rc = err_set(e, ERR_INTERNAL, "client: cannot start the call to %s", method);
    } else {
        grpc_completion_queue_pluck(c->cq, call, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        r->status = (int)status;
        size_t n = GRPC_SLICE_LENGTH(details);
        if (n >= sizeof r->details) n = sizeof r->details - 1;
        memcpy(r->details, GRPC_SLICE_START_PTR(details), n);
        r->details[n] = '\0';
        if (status == GRPC_STATUS_OK && response) {
            grpc_byte_buffer_reader reader;
            grpc_byte_buffer_reader_init(&reader, response);
            grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
            grpc_byte_buffer_reader_destroy(&reader);
            r->len = GRPC_SLICE_LENGTH(all);
            r->body = malloc(r->len ? r->len : 1);
            if (r->body)
                memcpy(r->body, GRPC_SLICE_START_PTR(all), r->len);
            else
                rc = err_set(e, ERR_NOMEM, "client: out of memory for the response");
            grpc_slice_unref(all);
        }
    }
    grpc_byte_buffer_destroy(request);
    if (response) grpc_byte_buffer_destroy(response);
    grpc_metadata_array_destroy(&initial);
    grpc_metadata_array_destroy(&trailing);
    grpc_slice_unref(details);
    grpc_call_unref(call);
    return rc;
}
