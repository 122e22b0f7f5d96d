#include "client.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct client {
    grpc_channel *channel;
    grpc_completion_queue *cq;
    /* Sent with every call: the bearer token and x-recd-user, when set. */
    grpc_metadata md[2];
    size_t n_md;
};

int client_open(const char *target, const client_options *o, client **out, err_t *e) {
    grpc_init();
    client *c = calloc(1, sizeof *c);
    if (!c) {
        grpc_shutdown();
        return err_set(e, ERR_NOMEM, "client: out of memory");
    }
    grpc_channel_credentials *creds;
    if (o && o->ca) {
        grpc_ssl_pem_key_cert_pair pair = {o->key, o->cert};
        creds = grpc_ssl_credentials_create(o->ca, o->cert ? &pair : NULL, NULL, NULL);
    } else {
        creds = grpc_insecure_credentials_create();
    }
    if (o && o->token) {
        char *value;
        if (asprintf(&value, "Bearer %s", o->token) < 0) value = NULL;
        c->md[c->n_md].key = grpc_slice_from_static_string("authorization");
        c->md[c->n_md++].value = grpc_slice_from_copied_string(value ? value : "");
        free(value);
    }
    if (o && o->user && o->user[0]) {
        c->md[c->n_md].key = grpc_slice_from_static_string("x-recd-user");
        c->md[c->n_md++].value = grpc_slice_from_copied_string(o->user);
    }
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
    for (size_t i = 0; i < c->n_md; i++)
        grpc_slice_unref(c->md[i].value);
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
    ops[0].data.send_initial_metadata.count = c->n_md;
    ops[0].data.send_initial_metadata.metadata = c->n_md ? c->md : NULL;
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

struct client_stream {
    client *c;
    grpc_call *call;
    grpc_metadata_array initial, trailing;
    int ended; /* the server sent its last message */
};

/* Runs one batch on the stream's call and waits for it. */
static int client_stream_batch(client_stream *st, grpc_op *ops, size_t n) {
    if (grpc_call_start_batch(st->call, ops, n, st, NULL) != GRPC_CALL_OK) return 0;
    return grpc_completion_queue_pluck(st->c->cq, st, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
        .success;
}

int client_stream_open(client *c, const char *method, const uint8_t *req, size_t len,
                       double timeout_s, client_stream **out, err_t *e) {
    client_stream *st = calloc(1, sizeof *st);
    if (!st) return err_set(e, ERR_NOMEM, "client: out of memory");
    st->c = c;
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                     gpr_time_from_millis((int64_t)(timeout_s * 1000), GPR_TIMESPAN));
    grpc_slice method_slice = grpc_slice_from_copied_string(method);
    st->call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq,
                                        method_slice, NULL, deadline, NULL);
    grpc_slice_unref(method_slice);
    grpc_metadata_array_init(&st->initial);
    grpc_metadata_array_init(&st->trailing);
    if (!st->call) {
        free(st);
        return err_set(e, ERR_INTERNAL, "client: cannot create a call to %s", method);
    }
    grpc_slice body = grpc_slice_from_copied_buffer((const char *)req, len);
    grpc_byte_buffer *request = grpc_raw_byte_buffer_create(&body, 1);
    grpc_slice_unref(body);
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = c->n_md;
    ops[0].data.send_initial_metadata.metadata = c->n_md ? c->md : NULL;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = request;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &st->initial;
    /* A failed start (server gone) shows up as the stream's final status. */
    if (!client_stream_batch(st, ops, 4)) st->ended = 1;
    grpc_byte_buffer_destroy(request);
    *out = st;
    return ERR_OK;
}

int client_stream_next(client_stream *st, uint8_t **body, size_t *len) {
    if (st->ended) return 0;
    grpc_byte_buffer *msg = NULL;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &msg;
    if (!client_stream_batch(st, &op, 1) || !msg) {
        st->ended = 1;
        return 0;
    }
    grpc_byte_buffer_reader reader;
    grpc_byte_buffer_reader_init(&reader, msg);
    grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    grpc_byte_buffer_destroy(msg);
    *len = GRPC_SLICE_LENGTH(all);
    *body = malloc(*len ? *len : 1);
    if (*body) memcpy(*body, GRPC_SLICE_START_PTR(all), *len);
    grpc_slice_unref(all);
    if (!*body) {
        st->ended = 1;
        return 0;
    }
    return 1;
}

void client_stream_close(client_stream *st, client_result *r) {
    memset(r, 0, sizeof *r);
    if (!st->ended) grpc_call_cancel(st->call, NULL);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.trailing_metadata = &st->trailing;
    op.data.recv_status_on_client.status = &status;
    op.data.recv_status_on_client.status_details = &details;
    client_stream_batch(st, &op, 1);
    r->status = (int)status;
    size_t n = GRPC_SLICE_LENGTH(details);
    if (n >= sizeof r->details) n = sizeof r->details - 1;
    memcpy(r->details, GRPC_SLICE_START_PTR(details), n);
    r->details[n] = '\0';
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&st->initial);
    grpc_metadata_array_destroy(&st->trailing);
    grpc_call_unref(st->call);
    free(st);
}
