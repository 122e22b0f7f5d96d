/* Unit tests of the training pipeline: a history with recorded events and
 * forgotten members goes in, a model that says so comes out. Real LMDB
 * stores in a fresh scratch folder per test. */
#include <criterion/criterion.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "evstore.h"
#include "fuzz_fixture.h"
#include "idstate.h"
#include "model.h"
#include "pipeline.h"
#include "privacy.h"

static char events_dir[PATH_MAX + 8], model_dir[PATH_MAX + 8];

/* A fresh scratch folder per test (criterion runs each in its own process;
 * the fixture removes the folder when it exits). */
static void setup(void) {
    char root[PATH_MAX];
    fuzz_scratch_dir("test-pipeline", root);
    snprintf(events_dir, sizeof events_dir, "%s/events", root);
    snprintf(model_dir, sizeof model_dir, "%s/model", root);
}

TestSuite(pipeline, .init = setup);

static void add_row(ev_set *s, const char *user, const char *item, int64_t ts) {
    cr_assert_eq(ev_set_add(s, user, strlen(user), item, strlen(item), ts, 1, NAN, NULL), ERR_OK);
}

/* Records one event per (user, item, type) into the store of events_dir. */
static void record(const char *user, const char *item, uint32_t type, uint32_t quantity) {
    evstore *s;
    err_t e;
    cr_assert_eq(evstore_open(events_dir, NULL, &s, &e), ERR_OK, "%s", e.msg);
    evstore_event ev = {user, strlen(user), item, strlen(item), type, 100, quantity, 0};
    cr_assert_eq(evstore_append(s, &ev, 1, NULL, &e), ERR_OK, "%s", e.msg);
    evstore_close(s);
}

static void set_privacy(const char *user, privacy_state state) {
    char dir[sizeof events_dir + sizeof "/" PRIVACY_DIR];
    snprintf(dir, sizeof dir, "%s/" PRIVACY_DIR, events_dir);
    idstate *p;
    err_t e;
    cr_assert_eq(idstate_open(dir, 1, &p, &e), ERR_OK, "%s", e.msg);
    unsigned char v = (unsigned char)state;
    cr_assert_eq(idstate_put(p, user, strlen(user), &v, &e), ERR_OK, "%s", e.msg);
    idstate_close(p);
}

/* Recorded events arrive typed and weighted, after the purchase rows;
 * forgotten members leave no event, opted-out ones stay. */
Test(pipeline, recorded_events_are_typed_and_forgotten_members_left_out) {
    ev_set s;
    cr_assert_eq(ev_set_init(&s, NULL), ERR_OK);
    add_row(&s, "u1", "a", 10);
    add_row(&s, "gone", "a", 11);
    add_row(&s, "u2", "b", 12);
    record("u1", "b", EV_TYPE_ADD_TO_CART, 2);
    record("gone", "c", EV_TYPE_PURCHASE, 1);
    record("quiet", "c", EV_TYPE_VIEW, 1);
    record("u2", "a", EV_TYPE_FAVORITE, 1);
    set_privacy("gone", PRIVACY_FORGOTTEN);
    set_privacy("quiet", PRIVACY_OPTED_OUT);
    float w[EV_TYPE_END];
    ev_type_default_weights(w);
    w[EV_TYPE_FAVORITE] = 0; /* skipped */
    size_t added;
    uint32_t forgotten;
    err_t e;
    cr_assert_eq(pipeline_add_recorded(&s, events_dir, w, &added, NULL, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(added, 3);
    cr_assert_eq(pipeline_leave_out_forgotten(&s, events_dir, &forgotten, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(forgotten, 1);
    cr_assert_eq(s.n, 4);
    uint32_t u;
    cr_assert_eq(idmap_find(s.users, "gone", 4, &u), ERR_NOTFOUND, "no trace of the id");
    /* u1's row, u2's row, u1's cart, quiet's view: order kept. */
    cr_assert(!s.events[0].recorded && !s.events[1].recorded);
    cr_assert_eq(s.events[0].weight, 1.0f);
    cr_assert_eq(s.events[0].type, EV_TYPE_PURCHASE);
    cr_assert(s.events[2].recorded && s.events[3].recorded);
    cr_assert_eq(s.events[2].type, EV_TYPE_ADD_TO_CART);
    cr_assert_float_eq(s.events[2].weight, 0.3f, 1e-7);
    cr_assert_eq(s.events[2].quantity, 2.0f, "the recorded quantity, not the weight");
    cr_assert_eq(s.events[3].type, EV_TYPE_VIEW);
    ev_set_free(&s);
}

/* The matrix sums the events' weights; the metadata tells what was trained;
 * the same history gives the same fingerprint. */
Test(pipeline, publishes_what_it_trained) {
    ev_set s;
    cr_assert_eq(ev_set_init(&s, NULL), ERR_OK);
    const char *users[] = {"u1", "u2", "u3", "u4"}, *items[] = {"a", "b", "c"};
    for (int u = 0; u < 4; u++)
        for (int i = 0; i < 3; i++)
            if ((u + i) % 2 == 0) add_row(&s, users[u], items[i], 1000 + u * 10 + i);
    add_row(&s, "u1", "a", 2000); /* a repeat purchase counts again */
    record("u1", "b", EV_TYPE_ADD_TO_CART, 1);
    float w[EV_TYPE_END];
    ev_type_default_weights(w);
    size_t added;
    err_t e;
    cr_assert_eq(pipeline_add_recorded(&s, events_dir, w, &added, NULL, &e), ERR_OK, "%s", e.msg);
    pipeline_params p;
    pipeline_params_init(&p);
    p.als.factors = 4;
    p.als.iterations = 3;
    p.als.threads = 1;
    p.popularity_blend = 0.5f;
    model_meta first, second;
    cr_assert_eq(pipeline_train(&s, &p, model_dir, &first, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(first.n_users, 4);
    cr_assert_eq(first.n_items, 3);
    cr_assert_eq(first.interactions, s.n);
    cr_assert_eq(first.factors, 4);
    cr_assert_eq(first.popularity_blend, 0.5f);
    cr_assert_eq(strlen(first.source_fingerprint), 16);
    model *m;
    cr_assert_eq(model_open(model_dir, &m, &e), ERR_OK, "%s", e.msg);
    uint32_t u1, n;
    cr_assert_eq(model_user_index(m, "u1", 2, &u1), ERR_OK);
    const uint32_t *bought = model_user_items(m, u1, &n);
    const float *r = model_user_item_counts(m, u1);
    cr_assert_eq(n, 3, "a and c bought, b carted");
    for (uint32_t k = 0; k < n; k++) {
        size_t len;
        const char *id = model_item_id(m, bought[k], &len);
        float want = id[0] == 'a' ? 2.0f : id[0] == 'b' ? 0.3f : 1.0f;
        cr_assert_float_eq(r[k], want, 1e-6, "item %c", id[0]);
    }
    model_close(m);
    cr_assert_eq(pipeline_train(&s, &p, model_dir, &second, &e), ERR_OK, "%s", e.msg);
    cr_assert_str_eq(first.source_fingerprint, second.source_fingerprint);
    ev_set_free(&s);
}

Test(pipeline, refuses_an_empty_history) {
    ev_set s;
    cr_assert_eq(ev_set_init(&s, NULL), ERR_OK);
    pipeline_params p;
    pipeline_params_init(&p);
    model_meta meta;
    err_t e;
    cr_assert_eq(pipeline_train(&s, &p, model_dir, &meta, &e), ERR_INVALID);
    cr_assert(strstr(e.msg, "no model published"), "%s", e.msg);
    struct stat st;
    cr_assert_neq(stat(model_dir, &st), 0, "nothing written");
    ev_set_free(&s);
}
