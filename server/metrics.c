#include "metrics.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

struct metrics_http {
    struct MHD_Daemon *daemon;
    metrics_writer writers[METRICS_MAX_WRITERS];
    void *ctxs[METRICS_MAX_WRITERS];
    size_t n;
    int port;
};

static enum MHD_Result metrics_answer(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_size,
                                      void **con_cls) {
    (void)version, (void)upload_data, (void)upload_size, (void)con_cls;
    metrics_http *m = cls;
    struct MHD_Response *r;
    unsigned status;
    char *body = NULL;
    size_t len = 0;
    if (strcmp(method, "GET") || strcmp(url, "/metrics")) {
        static const char missing[] = "recd serves only GET /metrics here\n";
        r = MHD_create_response_from_buffer(sizeof missing - 1, (void *)missing,
                                            MHD_RESPMEM_PERSISTENT);
        status = MHD_HTTP_NOT_FOUND;
    } else {
        FILE *f = open_memstream(&body, &len);
        if (!f) return MHD_NO;
        for (size_t i = 0; i < m->n; i++)
            m->writers[i](m->ctxs[i], f);
        fclose(f);
        r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
        MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
        status = MHD_HTTP_OK;
    }
    if (!r) {
        free(body);
        return MHD_NO;
    }
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

int metrics_http_start(const char *listen, const metrics_writer *writers, void *const *ctxs,
                       size_t n, metrics_http **out, err_t *e) {
    if (n > METRICS_MAX_WRITERS) return err_set(e, ERR_INVALID, "metrics: too many writers");
    const char *colon = strrchr(listen, ':');
    char host[64];
    struct sockaddr_in addr = {.sin_family = AF_INET};
    size_t host_len = colon ? (size_t)(colon - listen) : 0;
    char *end;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (!colon || host_len >= sizeof host || *end || port < 0 || port > 65535)
        return err_set(e, ERR_INVALID, "metrics: '%s' is not HOST:PORT", listen);
    memcpy(host, listen, host_len);
    host[host_len] = '\0';
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        return err_set(e, ERR_INVALID, "metrics: '%s' is not an IPv4 address", host);
    addr.sin_port = htons((uint16_t)port);
    metrics_http *m = calloc(1, sizeof *m);
    if (!m) return err_set(e, ERR_NOMEM, "metrics: out of memory");
    memcpy(m->writers, writers, n * sizeof *writers);
    memcpy(m->ctxs, ctxs, n * sizeof *ctxs);
    m->n = n;
    /* epoll, not select(): the gRPC side holds one descriptor per client,
     * and select() cannot watch one above FD_SETSIZE (1024), so every
     * scrape failed once the server had that many. The timeout drops
     * half-sent requests; the limits keep one address (or many) from
     * holding every slot, the per-address one leaving room for the
     * scraper beside a client that opens connections and sends nothing. */
    m->daemon = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD, 0, NULL, NULL, metrics_answer, m, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_TIMEOUT_S,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_MAX_CONNECTIONS,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)METRICS_MAX_PER_ADDRESS, MHD_OPTION_END);
    if (!m->daemon) {
        free(m);
        return err_set(e, ERR_INVALID, "metrics: cannot listen on %s", listen);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->daemon, MHD_DAEMON_INFO_BIND_PORT);
    m->port = info ? info->port : (int)port;
    *out = m;
    return ERR_OK;
}

int metrics_http_port(const metrics_http *m) {
    return m->port;
}

void metrics_http_stop(metrics_http *m) {
    if (!m) return;
    MHD_stop_daemon(m->daemon);
    free(m);
}
