#include "busmsg.h"

#include <stdlib.h>
#include <string.h>

void busmsg_put_bytes(busmsg_writer *w, const void *d, size_t n) {
    if (w->failed) return;
    if (w->n + n > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->n + n)
            cap *= 2;
        unsigned char *p = realloc(w->p, cap);
        if (!p) {
            w->failed = 1;
            return;
        }
        w->p = p;
        w->cap = cap;
    }
    memcpy(w->p + w->n, d, n);
    w->n += n;
}

void busmsg_put_u(busmsg_writer *w, uint64_t v, int bytes) {
    unsigned char b[8];
    for (int i = 0; i < bytes; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    busmsg_put_bytes(w, b, (size_t)bytes);
}

void busmsg_put_str(busmsg_writer *w, const char *s, size_t n) {
    busmsg_put_u(w, n, 2);
    busmsg_put_bytes(w, s, n);
}

void busmsg_put_f64(busmsg_writer *w, double d) {
    uint64_t v;
    memcpy(&v, &d, 8);
    busmsg_put_u(w, v, 8);
}

void busmsg_begin(busmsg_writer *w, int op) {
    busmsg_put_u(w, BUSMSG_VERSION, 1);
    busmsg_put_u(w, (uint64_t)op, 1);
}

void busmsg_put_record(busmsg_writer *w, const evstore_event *ev) {
    busmsg_put_str(w, ev->user_id, ev->user_len);
    busmsg_put_str(w, ev->item_id, ev->item_len);
    busmsg_put_u(w, ev->type, 1);
    busmsg_put_u(w, (uint64_t)ev->ts, 8);
    busmsg_put_u(w, ev->quantity, 4);
    busmsg_put_f64(w, ev->price);
}

uint64_t busmsg_get_u(busmsg_reader *r, int bytes) {
    if (r->bad || r->n - r->at < (size_t)bytes) {
        r->bad = 1;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)r->p[r->at + (size_t)i] << (8 * i);
    r->at += (size_t)bytes;
    return v;
}

const char *busmsg_get_str(busmsg_reader *r, size_t *len) {
    *len = (size_t)busmsg_get_u(r, 2);
    if (r->bad || r->n - r->at < *len) {
        r->bad = 1;
        *len = 0;
        return "";
    }
    const char *s = (const char *)r->p + r->at;
    r->at += *len;
    return s;
}

double busmsg_get_f64(busmsg_reader *r) {
    uint64_t v = busmsg_get_u(r, 8);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

void busmsg_get_record(busmsg_reader *r, evstore_event *ev) {
    ev->user_id = busmsg_get_str(r, &ev->user_len);
    ev->item_id = busmsg_get_str(r, &ev->item_len);
    ev->type = (uint32_t)busmsg_get_u(r, 1);
    ev->ts = (int64_t)busmsg_get_u(r, 8);
    ev->quantity = (uint32_t)busmsg_get_u(r, 4);
    ev->price = busmsg_get_f64(r);
}

int busmsg_bad(err_t *e, uint64_t seq, const char *why) {
    return err_set(e, ERR_FORMAT, "bus message %llu: %s", (unsigned long long)seq, why);
}

int busmsg_open(busmsg_reader *r, const void *data, size_t len, uint64_t seq, int *op, err_t *e) {
    *r = (busmsg_reader){data, len, 0, 0};
    unsigned version = (unsigned)busmsg_get_u(r, 1);
    *op = (int)busmsg_get_u(r, 1);
    if (r->bad || version != BUSMSG_VERSION) return busmsg_bad(e, seq, "unknown version");
    return ERR_OK;
}
