/* Unit tests of the bus messages: what a replica publishes reads back the
 * same on every replica and in recd train --bus, and a message cut short
 * or of another version is refused, never read past its end. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "busmsg.h"

static busmsg_writer record_message(const evstore_event *ev) {
    busmsg_writer w = {0};
    busmsg_begin(&w, BUSMSG_EVENTS);
    busmsg_put_u(&w, 1, 4);
    busmsg_put_record(&w, ev);
    cr_assert(!w.failed);
    return w;
}

static const evstore_event milk = {"member-7", 8, "milk", 4, 3, 1700000000, 2, 1.25};

Test(busmsg, a_record_reads_back_as_written) {
    busmsg_writer w = record_message(&milk);
    busmsg_reader r;
    int op;
    err_t e;
    cr_assert_eq(busmsg_open(&r, w.p, w.n, 9, &op, &e), ERR_OK);
    cr_assert_eq(op, BUSMSG_EVENTS);
    cr_assert_eq(busmsg_get_u(&r, 4), 1);
    evstore_event ev;
    busmsg_get_record(&r, &ev);
    cr_assert(!r.bad);
    cr_assert_eq(r.at, w.n, "the whole message read");
    cr_assert(ev.user_len == 8 && !memcmp(ev.user_id, "member-7", 8));
    cr_assert(ev.item_len == 4 && !memcmp(ev.item_id, "milk", 4));
    cr_assert(ev.type == 3 && ev.ts == 1700000000 && ev.quantity == 2 && ev.price == 1.25);
    free(w.p);
}

Test(busmsg, a_message_cut_anywhere_is_bad_and_never_read_past) {
    busmsg_writer w = record_message(&milk);
    for (size_t cut = 2; cut < w.n; cut++) {
        /* A copy of exactly `cut` bytes, so that ASan sees a read past it. */
        unsigned char *p = malloc(cut);
        memcpy(p, w.p, cut);
        busmsg_reader r;
        int op;
        err_t e;
        cr_assert_eq(busmsg_open(&r, p, cut, 9, &op, &e), ERR_OK);
        busmsg_get_u(&r, 4);
        evstore_event ev;
        busmsg_get_record(&r, &ev);
        cr_assert(r.bad, "cut at %zu of %zu", cut, w.n);
        cr_assert_leq(r.at, cut);
        free(p);
    }
    free(w.p);
}

Test(busmsg, another_version_or_a_stub_is_refused_with_its_sequence) {
    unsigned char future[2] = {BUSMSG_VERSION + 1, BUSMSG_EVENTS}, stub[1] = {BUSMSG_VERSION};
    busmsg_reader r;
    int op;
    err_t e;
    cr_assert_eq(busmsg_open(&r, future, 2, 41, &op, &e), ERR_FORMAT);
    cr_assert_str_eq(e.msg, "bus message 41: unknown version");
    cr_assert_eq(busmsg_open(&r, stub, 1, 42, &op, &e), ERR_FORMAT);
}
