/* Unit tests of the service core, called directly - no server, no
 * protobuf - on the fuzz targets' tiny model (fuzz_fixture.h: users
 * u0..u15, u bought items u, u+3, u+5; items i0..i23, i0 without a
 * category; categories toys, tools, food) and a real event store. */
#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core.h"
#include "fuzz_fixture.h"
#include "log.h"

static core *c;

/* Opens a core on a fresh copy of the tiny model, with an event store
 * unless events is 0. */
static void open_core(int events) {
    log_set_level(LOG_ERROR);
    char root[PATH_MAX], model_dir[PATH_MAX + 8], events_dir[PATH_MAX + 8];
    fuzz_scratch_dir("test-core", root);
    snprintf(model_dir, sizeof model_dir, "%s/model", root);
    snprintf(events_dir, sizeof events_dir, "%s/events", root);
    model_meta meta;
    fuzz_publish_model(model_dir, &meta);
    core_options o;
    core_options_init(&o);
    o.model_dir = model_dir;
    o.events_dir = events ? events_dir : NULL;
    o.reload_interval_s = 0;
    err_t e = {0};
    cr_assert_eq(core_open(&o, &c, &e), ERR_OK, "%s", e.msg);
}

static void with_events(void) {
    open_core(1);
}

static void without_events(void) {
    open_core(0);
}

static void close_core(void) {
    core_close(c);
}

static int has(const core_list *l, const char *id) {
    for (size_t i = 0; i < l->n_items; i++)
        if (!strcmp(l->items[i].id, id)) return 1;
    return 0;
}

static core_recommend_req member(const char *user, uint32_t k) {
    return (core_recommend_req){.user_id = user, .k = k, .category = ""};
}

TestSuite(core_rank, .init = with_events, .fini = close_core);

Test(core_rank, recommend_answers_a_member_best_first_without_what_they_bought) {
    core_recommend_req rq = member("u2", 24);
    core_list l;
    err_t e;
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(l.strategy, CORE_PERSONALIZED);
    cr_assert_eq(l.n_items, 21, "24 items less the 3 bought");
    cr_assert(!has(&l, "i2") && !has(&l, "i5") && !has(&l, "i7"));
    for (size_t i = 1; i < l.n_items; i++)
        cr_assert(l.items[i - 1].score >= l.items[i].score);
    cr_assert_str_eq(l.variant, "control");
    cr_assert(l.model_version[0] && l.request_id[0]);
    core_list_free(&l);
    rq.include_purchased = 1;
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_OK);
    cr_assert_eq(l.n_items, 24);
    core_list_free(&l);
}

Test(core_rank, recommend_checks_the_request) {
    core_list l;
    err_t e;
    core_recommend_req rq = member("u2", 0);
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_INVALID);
    cr_assert_str_eq(e.msg, "k must be between 1 and 1000, got 0");
    rq = member("", 5);
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_INVALID);
    cr_assert_str_eq(e.msg, "user_id is empty and there are no context_item_ids nor user_labels");
    rq = member("u2", 5);
    rq.diversity = 1.5f;
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_INVALID);
    rq = member("u2", 5);
    rq.category = "garden";
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_NOTFOUND);
    cr_assert(strstr(e.msg, "category 'garden' is not in model"), "%s", e.msg);
    char *bad[] = {"ok", ""};
    rq = member("u2", 5);
    rq.exclude_item_ids = bad;
    rq.n_exclude_item_ids = 2;
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_INVALID);
    cr_assert_str_eq(e.msg, "exclude_item_ids[1] is empty");
    cr_assert_null(l.items, "a failed call leaves an empty list");
}

Test(core_rank, recommend_checks_and_serves_the_mode) {
    core_list l;
    err_t e;
    core_recommend_req rq = member("u2", 5);
    rq.mode = 99;
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_INVALID);
    cr_assert(strstr(e.msg, "mode 99 is not a RecommendMode"), "%s", e.msg);
    /* Nothing in this model has a publication time: no new arrivals. */
    rq.mode = CORE_MODE_NEW_ARRIVALS;
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(l.strategy, CORE_NEW_ARRIVALS);
    cr_assert_eq(l.n_items, 0);
    core_list_free(&l);
    /* Nothing recorded yet: nothing trends. */
    rq.mode = CORE_MODE_TRENDING;
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(l.strategy, CORE_TRENDING);
    cr_assert_eq(l.n_items, 0);
    core_list_free(&l);
    /* Only what the member bought, most due first. */
    rq.mode = CORE_MODE_BUY_AGAIN;
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(l.strategy, CORE_BUY_AGAIN);
    cr_assert(l.n_items <= 3);
    for (size_t i = 0; i < l.n_items; i++) {
        cr_assert(has(&l, "i2") || has(&l, "i5") || has(&l, "i7"));
        cr_assert(!strcmp(l.items[i].id, "i2") || !strcmp(l.items[i].id, "i5") ||
                  !strcmp(l.items[i].id, "i7"));
        cr_assert(l.items[i].score >= 0 && l.items[i].score <= 1);
        if (i) cr_assert(l.items[i - 1].score >= l.items[i].score);
    }
    core_list_free(&l);
    /* Explained: an item is due again because of its own purchases. */
    rq.explain = 1;
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_OK, "%s", e.msg);
    for (size_t i = 0; i < l.n_items; i++) {
        cr_assert_eq(l.items[i].n_because, 1);
        cr_assert_str_eq(l.items[i].because[0], l.items[i].id);
    }
    core_list_free(&l);
    /* The strategy mix counts BUY_AGAIN answers too: the plain and the explained one. */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    core_write_metrics(c, f);
    fclose(f);
    cr_assert(strstr(text, "recd_recommend_strategy_total{strategy=\"BUY_AGAIN\"} 2\n"), "%s",
              text);
    free(text);
    rq = member("nobody", 5);
    rq.mode = CORE_MODE_BUY_AGAIN;
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(l.n_items, 0);
    core_list_free(&l);
    rq = member("", 5);
    char *cart[] = {"i1"};
    rq.context_item_ids = cart;
    rq.n_context_item_ids = 1;
    rq.mode = CORE_MODE_BUY_AGAIN;
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_INVALID);
    cr_assert(strstr(e.msg, "needs a user_id"), "%s", e.msg);
    /* include_purchased: bought and new items in one list. */
    rq = member("u2", 24);
    rq.include_purchased = 1;
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(l.n_items, 24);
    cr_assert(has(&l, "i2"));
    for (size_t i = 1; i < l.n_items; i++)
        cr_assert(l.items[i - 1].score >= l.items[i].score);
    core_list_free(&l);
    cr_assert_str_eq(core_mode_word(CORE_MODE_BUY_AGAIN), "buy-again");
    cr_assert_eq(core_mode_of_word("trending"), CORE_MODE_TRENDING);
    cr_assert_eq(core_mode_of_word("weekly"), -1);
    cr_assert_null(core_mode_name(4));
}

Test(core_rank, recommend_filters_excludes_and_serves_visitors) {
    core_list l;
    err_t e;
    core_recommend_req rq = member("u4", 24);
    rq.category = "toys"; /* items i3, i6, ... (index % 3 == 0, not i0) */
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_OK, "%s", e.msg);
    cr_assert_gt(l.n_items, 0);
    for (size_t i = 0; i < l.n_items; i++) {
        int n = atoi(l.items[i].id + 1);
        cr_assert(n != 0 && n % 3 == 0, "%s is no toy", l.items[i].id);
    }
    core_list_free(&l);
    char *context[] = {"i10", "i11"}, *exclude[] = {"i12", "nope"};
    rq = (core_recommend_req){.user_id = "",
                              .k = 24,
                              .context_item_ids = context,
                              .n_context_item_ids = 2,
                              .exclude_item_ids = exclude,
                              .n_exclude_item_ids = 2,
                              .category = ""};
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(l.strategy, CORE_SESSION);
    cr_assert_eq(l.n_items, 21);
    cr_assert(!has(&l, "i10") && !has(&l, "i11") && !has(&l, "i12"));
    core_list_free(&l);
    rq = member("stranger", 3); /* nothing known: the best sellers */
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_OK);
    cr_assert_eq(l.strategy, CORE_POPULAR);
    cr_assert_eq(l.n_items, 3);
    core_list_free(&l);
}

Test(core_rank, a_batch_answers_as_calls_one_by_one) {
    const char *users[] = {"u0", "u3", "u9", "u3", "nobody"};
    enum { N = sizeof users / sizeof users[0] };
    core_recommend_req rq[N];
    const core_recommend_req *ptrs[N];
    for (int i = 0; i < N; i++) {
        rq[i] = member(users[i], 6);
        rq[i].explain = i != 1;
        ptrs[i] = &rq[i];
    }
    rq[2].k = 0; /* one bad call fails alone */
    rq[3].diversity = 0.5f;
    core_list batch[N], one;
    err_t errs[N], e;
    core_recommend_batch(c, ptrs, N, batch, errs);
    for (int i = 0; i < N; i++) {
        int rc = core_recommend(c, &rq[i], &one, &e);
        cr_assert_eq(errs[i].code, rc, "call %d", i);
        cr_assert_eq(batch[i].n_items, one.n_items, "call %d", i);
        cr_assert_eq(batch[i].strategy, one.strategy);
        for (size_t j = 0; j < one.n_items; j++) {
            const core_item *b = &batch[i].items[j];
            cr_assert_str_eq(b->id, one.items[j].id, "call %d item %zu", i, j);
            cr_assert_float_eq(b->score, one.items[j].score, 1e-5);
            cr_assert_eq(b->n_because, one.items[j].n_because, "call %d item %zu", i, j);
            for (uint32_t k = 0; k < b->n_because; k++) {
                cr_assert_str_eq(b->because[k], one.items[j].because[k]);
                /* A member's own items (user u bought u, u+3, u+5). */
                int u = atoi(users[i] + 1), n = atoi(b->because[k] + 1);
                cr_assert(n == u || n == u + 3 || n == u + 5, "%s: %s", users[i], b->because[k]);
            }
            /* Without explain, or for POPULAR ("nobody"), nothing. */
            if (!rq[i].explain || one.strategy == CORE_POPULAR) cr_assert_eq(b->n_because, 0);
        }
        if (rq[i].explain && one.strategy == CORE_PERSONALIZED)
            cr_assert(one.n_items && one.items[0].n_because > 0, "call %d", i);
        core_list_free(&one);
        core_list_free(&batch[i]);
    }
    cr_assert_eq(errs[2].code, ERR_INVALID);
}

Test(core_rank, similar_items_never_returns_a_seed) {
    char *more[] = {"i5", "new-item"};
    core_similar_req rq = {"i4", more, 2, 30, CORE_RELATION_SIMILAR, NULL, 0, ""};
    core_list l;
    err_t e;
    cr_assert_eq(core_similar(c, &rq, &l, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(l.n_items, 22);
    cr_assert(!has(&l, "i4") && !has(&l, "i5"));
    cr_assert(l.model_version[0]);
    core_list_free(&l);
    core_similar_req unknown = {"zz", NULL, 0, 3, CORE_RELATION_SIMILAR, NULL, 0, ""};
    cr_assert_eq(core_similar(c, &unknown, &l, &e), ERR_NOTFOUND);
    cr_assert(strstr(e.msg, "item 'zz' is not in model"), "%s", e.msg);
}

Test(core_rank, rerank_ranks_every_candidate_once) {
    char *cands[] = {"i1", "zz", "i8", "i1", "yy", "i9"};
    core_rerank_req rq = {"u0", cands, 6, NULL, 0};
    core_list l;
    err_t e;
    cr_assert_eq(core_rerank(c, &rq, &l, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(l.strategy, CORE_PERSONALIZED);
    cr_assert_eq(l.n_items, 5, "i1 once, two unknown ones");
    cr_assert_str_eq(l.items[3].id, "zz");
    cr_assert_str_eq(l.items[4].id, "yy");
    cr_assert_eq(l.items[4].score, 0.0f);
    cr_assert(l.items[0].score >= l.items[1].score && l.items[1].score >= l.items[2].score);
    core_list_free(&l);
    core_rerank_req empty = {"u0", NULL, 0, NULL, 0};
    cr_assert_eq(core_rerank(c, &empty, &l, &e), ERR_INVALID);
    cr_assert_str_eq(e.msg, "candidate_item_ids is empty");
}

TestSuite(core_write, .init = with_events, .fini = close_core);

Test(core_write, events_are_checked_one_by_one_and_fold_in) {
    core_event evs[] = {
        {"newcomer", "i7", EV_TYPE_PURCHASE, 0, 1, 9.5},
        {"newcomer", "i8", EV_TYPE_VIEW, 0, 0, 0},
        {"", "i8", EV_TYPE_VIEW, 0, 0, 0},
        {"newcomer", "i8", 99, 0, 0, 0},
        {"newcomer", "i8", EV_TYPE_VIEW, 0, CORE_MAX_QUANTITY + 1, 0},
    };
    core_write_reply w;
    err_t e;
    cr_assert_eq(core_record_events(c, evs, 5, &w, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(w.accepted, 2);
    cr_assert_eq(w.n_rejected, 3);
    cr_assert_eq(w.rejected[0].index, 2);
    cr_assert_str_eq(w.rejected[0].reason, "user_id is empty");
    cr_assert_str_eq(w.rejected[1].reason, "unknown event type 99");
    cr_assert_str_eq(w.rejected[2].reason, "quantity 10001 is absurd (more than 10000)");
    core_write_reply_free(&w);
    /* A member the model does not know is personalized from their events,
     * and what they bought since is not offered again. */
    core_recommend_req rq = member("newcomer", 24);
    core_list l;
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(l.strategy, CORE_PERSONALIZED);
    cr_assert(!has(&l, "i7"));
    core_list_free(&l);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    core_write_metrics(c, f);
    fclose(f);
    cr_assert(strstr(text, "recd_fold_ins_total 1\n"), "%s", text);
    cr_assert(strstr(text, "recd_events_ingested_total 2\n"));
    free(text);
}

Test(core_write, recorded_events_trend_at_once_with_the_rules_of_every_list) {
    int64_t now = (int64_t)time(NULL);
    /* i9: three purchases now; i4: a purchase and two views now; i6: three
     * purchases two days ago (a quarter at a half-life of a day); i11: one
     * view; the unknown item counts but cannot be listed. */
    core_event evs[] = {
        {"a", "i9", EV_TYPE_PURCHASE, 0, 1, 0},
        {"b", "i9", EV_TYPE_PURCHASE, 0, 1, 0},
        {"c", "i9", EV_TYPE_PURCHASE, 0, 1, 0},
        {"a", "i4", EV_TYPE_PURCHASE, 0, 1, 0},
        {"b", "i4", EV_TYPE_VIEW, 0, 1, 0},
        {"c", "i4", EV_TYPE_VIEW, 0, 1, 0},
        {"a", "i6", EV_TYPE_PURCHASE, now - 172800, 1, 0},
        {"b", "i6", EV_TYPE_PURCHASE, now - 172800, 1, 0},
        {"c", "i6", EV_TYPE_PURCHASE, now - 172800, 1, 0},
        {"d", "i11", EV_TYPE_VIEW, 0, 1, 0},
        {"d", "new-item", EV_TYPE_PURCHASE, 0, 1, 0},
    };
    core_write_reply w;
    err_t e;
    cr_assert_eq(core_record_events(c, evs, 11, &w, &e), ERR_OK, "%s", e.msg);
    core_write_reply_free(&w);
    core_recommend_req rq = {
        .user_id = "stranger", .k = 10, .category = "", .mode = CORE_MODE_TRENDING};
    core_list l;
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(l.strategy, CORE_TRENDING);
    cr_assert_eq(l.n_items, 4);
    const char *order[] = {"i9", "i4", "i6", "i11"};
    float want[] = {1.0f, 1.2f / 3, 0.25f, 0.1f / 3};
    for (size_t i = 0; i < 4; i++) {
        cr_assert_str_eq(l.items[i].id, order[i]);
        cr_assert_float_eq(l.items[i].score, want[i], 1e-3, "%s %g", order[i], l.items[i].score);
    }
    core_list_free(&l);
    /* Exclusions, availability and boosts apply as for every list: i9
     * excluded, i4 out of stock, a boost of 10 lifts i11 over i6. */
    char *exclude[] = {"i9"};
    rq.exclude_item_ids = exclude;
    rq.n_exclude_item_ids = 1;
    core_availability out_of_stock = {"i4", 0};
    cr_assert_eq(core_set_availability(c, &out_of_stock, 1, &e), ERR_OK, "%s", e.msg);
    core_boost boost = {"i11", 10.0f};
    cr_assert_eq(core_set_boosts(c, &boost, 1, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(l.n_items, 2);
    cr_assert_str_eq(l.items[0].id, "i11");
    cr_assert_str_eq(l.items[1].id, "i6");
    core_list_free(&l);
    rq.category = "food"; /* item i is of category i % 3: i11 of the four */
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(l.n_items, 1);
    cr_assert_str_eq(l.items[0].id, "i11");
    core_list_free(&l);
    /* A member's own purchases are not offered again, and an unblended
     * trending list names no reasons. */
    rq = (core_recommend_req){
        .user_id = "c", .k = 10, .category = "", .explain = 1, .mode = CORE_MODE_TRENDING};
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_OK, "%s", e.msg);
    cr_assert(!has(&l, "i9") && !has(&l, "i6") && has(&l, "i11"));
    for (size_t i = 0; i < l.n_items; i++)
        cr_assert_eq(l.items[i].n_because, 0);
    core_list_free(&l);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    core_write_metrics(c, f);
    fclose(f);
    cr_assert(strstr(text, "recd_trending_items 5\n"), "%s", text); /* new-item too */
    cr_assert(strstr(text, "recd_trending_dropped_events_total 0\n"));
    free(text);
}

Test(core_write, item_rules_change_what_is_recommended) {
    core_recommend_req rq = member("stranger", 1); /* POPULAR: the best seller */
    core_list l;
    err_t e;
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_OK);
    char best[32];
    snprintf(best, sizeof best, "%s", l.items[0].id);
    core_list_free(&l);
    core_availability gone = {best, 0};
    cr_assert_eq(core_set_availability(c, &gone, 1, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_OK);
    cr_assert_str_neq(l.items[0].id, best);
    core_list_free(&l);
    core_boost boosts[] = {{"i1", 100.0f}, {"i2", 0.0f}};
    cr_assert_eq(core_set_boosts(c, boosts, 2, &e), ERR_INVALID, "all or nothing");
    cr_assert_str_eq(e.msg, "boosts[1].multiplier must be in (0, 100], got 0");
    cr_assert_eq(core_set_boosts(c, boosts, 1, &e), ERR_OK);
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_OK);
    cr_assert_str_eq(l.items[0].id, "i1");
    core_list_free(&l);
}

Test(core_write, item_stats_count_what_recommend_served_and_list_the_rules) {
    err_t e;
    core_item_stats_reply st;
    core_item_stats_req rq = {.k = 3, .variant = ""};
    cr_assert_eq(core_item_stats(c, &rq, &st, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(st.answers, 0);
    cr_assert_eq(st.n_top, 0, "nothing served yet");
    cr_assert_eq(st.unavailable_total + st.boosted_total, 0);
    cr_assert_str_eq(st.variant, "control");
    core_item_stats_reply_free(&st);
    /* Two answers of 2 items and one of 1: the first item of each counts. */
    core_recommend_req a = member("stranger", 2), b = member("stranger", 1);
    core_list l;
    cr_assert_eq(core_recommend(c, &a, &l, &e), ERR_OK);
    char first[32], second[32];
    snprintf(first, sizeof first, "%s", l.items[0].id);
    snprintf(second, sizeof second, "%s", l.items[1].id);
    core_list_free(&l);
    cr_assert_eq(core_recommend(c, &a, &l, &e), ERR_OK);
    core_list_free(&l);
    cr_assert_eq(core_recommend(c, &b, &l, &e), ERR_OK);
    core_list_free(&l);
    core_availability gone[] = {{"i9", 0}, {"i4", 0}, {"i4", 0}};
    cr_assert_eq(core_set_availability(c, gone, 3, &e), ERR_OK, "%s", e.msg);
    core_boost boosts[] = {{"i7", 2.0f}, {"i3", 0.5f}, {"i9", 3.0f}, {"i5", 1.0f}};
    cr_assert_eq(core_set_boosts(c, boosts, 4, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(core_item_stats(c, &rq, &st, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(st.answers, 3);
    cr_assert_eq(st.n_top, 2);
    cr_assert_str_eq(st.top[0].id, first);
    cr_assert_eq(st.top[0].count, 3);
    cr_assert_str_eq(st.top[1].id, second);
    cr_assert_eq(st.top[1].count, 2);
    /* i9 was boosted after it went out of stock: still unavailable (a boost
     * sets no availability back); i5's boost of 1 is no rule. */
    cr_assert_eq(st.unavailable_total, 2);
    cr_assert_eq(st.n_unavailable, 2);
    cr_assert_str_eq(st.rules[0].id, "i4");
    cr_assert_str_eq(st.rules[1].id, "i9");
    cr_assert_eq(st.boosted_total, 2);
    cr_assert_str_eq(st.rules[2].id, "i3");
    cr_assert_float_eq(st.rules[2].boost, 0.5f, 0);
    cr_assert_str_eq(st.rules[3].id, "i7");
    core_item_stats_reply_free(&st);
    core_item_stats_req few = {.k = 1, .variant = "", .max_rules = 1};
    cr_assert_eq(core_item_stats(c, &few, &st, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(st.n_top, 1);
    cr_assert_eq(st.n_unavailable, 1);
    cr_assert_eq(st.n_boosted, 1);
    cr_assert_eq(st.unavailable_total, 2);
    core_item_stats_reply_free(&st);
    core_item_stats_req bad[] = {{.k = CORE_MAX_K + 1, .variant = ""},
                                 {.variant = "", .max_rules = CORE_MAX_LIST + 1},
                                 {.variant = "no such"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(core_item_stats(c, &bad[i], &st, &e), ERR_INVALID, "case %zu", i);
    core_item_stats_req other = {.variant = "b"};
    cr_assert_eq(core_item_stats(c, &other, &st, &e), ERR_NOTFOUND);
    core_item_stats_reply_free(&st);
}

Test(core_write, privacy_choices_are_kept) {
    core_recommend_req rq = member("u2", 5);
    core_list l;
    err_t e;
    cr_assert_eq(core_set_personalization(c, "u2", 1, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_OK);
    cr_assert_eq(l.strategy, CORE_POPULAR);
    core_list_free(&l);
    core_churn_reply cs;
    cr_assert_eq(core_churn_score(c, "u2", &cs, &e), ERR_NOTFOUND);
    cr_assert(strstr(e.msg, "opted out of personalization"), "%s", e.msg);
    core_event ev = {"u3", "i1", EV_TYPE_VIEW, 0, 0, 0};
    core_write_reply w;
    cr_assert_eq(core_record_events(c, &ev, 1, &w, &e), ERR_OK);
    core_write_reply_free(&w);
    uint64_t deleted;
    cr_assert_eq(core_forget_user(c, "u3", &deleted, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(deleted, 1);
    cr_assert_eq(core_record_events(c, &ev, 1, &w, &e), ERR_OK);
    cr_assert_eq(w.accepted, 0);
    cr_assert(strstr(w.rejected[0].reason, "forgotten"));
    core_write_reply_free(&w);
    cr_assert_eq(core_set_personalization(c, "u3", 0, &e), ERR_PRECONDITION);
}

Test(core_write, feedback_needs_a_request_id_of_the_experiment) {
    core_recommend_req rq = member("u5", 3);
    core_list l;
    err_t e;
    cr_assert_eq(core_recommend(c, &rq, &l, &e), ERR_OK);
    core_feedback fb[] = {
        {l.request_id, "u5", "", EXP_FEEDBACK_IMPRESSION, 0},
        {l.request_id, "u5", "", EXP_FEEDBACK_CLICK, 0},
        {"made-up", "u5", "i1", EXP_FEEDBACK_CLICK, 0},
    };
    core_write_reply w;
    cr_assert_eq(core_record_feedback(c, fb, 3, &w, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(w.accepted, 1);
    cr_assert_eq(w.n_rejected, 2);
    cr_assert_str_eq(w.rejected[0].reason,
                     "item_id is empty (only an impression may be of the whole list)");
    cr_assert_str_eq(w.rejected[1].reason,
                     "request_id was not issued by this experiment's variants");
    core_write_reply_free(&w);
    core_list_free(&l);
    core_share bad = {"treatment", 1.0};
    cr_assert_eq(core_set_experiment(c, "", &bad, 1, &e), ERR_INVALID);
    cr_assert(strstr(e.msg, "no variant named 'treatment'"), "%s", e.msg);
    core_share all = {"control", 1.0};
    cr_assert_eq(core_set_experiment(c, "new-salt", &all, 1, &e), ERR_OK, "%s", e.msg);
}

TestSuite(core_bare, .init = without_events, .fini = close_core);

Test(core_bare, writes_need_an_event_store) {
    core_event ev = {"u1", "i1", EV_TYPE_VIEW, 0, 0, 0};
    core_write_reply w;
    err_t e;
    cr_assert_eq(core_record_events(c, &ev, 1, &w, &e), ERR_PRECONDITION);
    cr_assert(strstr(e.msg, "--events DIR"));
    core_feedback fb = {"x", "", "", EXP_FEEDBACK_IMPRESSION, 0};
    cr_assert_eq(core_record_feedback(c, &fb, 1, &w, &e), ERR_PRECONDITION);
    /* A write a restart would lose is refused, privacy choices first. */
    uint64_t deleted;
    cr_assert_eq(core_forget_user(c, "u1", &deleted, &e), ERR_PRECONDITION);
    cr_assert(strstr(e.msg, "ForgetUser needs --events for durability"), "%s", e.msg);
    cr_assert_eq(core_set_personalization(c, "u1", 1, &e), ERR_PRECONDITION);
    cr_assert(strstr(e.msg, "needs --events for durability"), "%s", e.msg);
    core_availability a = {"i1", 0};
    cr_assert_eq(core_set_availability(c, &a, 1, &e), ERR_PRECONDITION);
    core_boost b = {"i1", 2.0f};
    cr_assert_eq(core_set_boosts(c, &b, 1, &e), ERR_PRECONDITION);
    core_share all = {"control", 1.0};
    cr_assert_eq(core_set_experiment(c, "", &all, 1, &e), ERR_PRECONDITION);
    core_recommend_req rec = {.user_id = "u1", .k = 3, .category = ""};
    core_list l;
    cr_assert_eq(core_recommend(c, &rec, &l, &e), ERR_OK, "reads still served: %s", e.msg);
    core_list_free(&l);
    rec.mode = CORE_MODE_TRENDING; /* nothing to count from */
    cr_assert_eq(core_recommend(c, &rec, &l, &e), ERR_PRECONDITION);
    cr_assert(strstr(e.msg, "--events DIR"), "%s", e.msg);
    core_targets_req rq = {.item_id = "", .category = "", .viewed_not_bought_days = 7};
    cr_assert_eq(core_campaign_targets(c, &rq, NULL, NULL, &e), ERR_PRECONDITION);
}

Test(core_bare, model_info_is_the_control_model) {
    model_meta meta;
    core_model_info(c, &meta);
    cr_assert_eq(meta.n_users, FUZZ_USERS);
    cr_assert_eq(meta.n_items, FUZZ_ITEMS);
    cr_assert_eq(meta.factors, FUZZ_FACTORS);
}

TestSuite(core_churn, .init = with_events, .fini = close_core);

Test(core_churn, the_churn_model_comes_with_its_validation_figures) {
    core_churn_model_reply cm;
    err_t e;
    cr_assert_eq(core_churn_model(c, &cm, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(cm.horizon_days, 90);
    cr_assert_eq(cm.scored_at, 1700000001);
    cr_assert_eq(cm.has_validation, 1);
    cr_assert_eq(cm.validation.members, 14);
    cr_assert_float_eq(cm.validation.roc_auc, 0.75, 0);
    cr_assert(isnan(cm.validation.calib_observed[9]), "an empty bin stays NaN");
    model_meta meta;
    core_model_info(c, &meta);
    cr_assert_str_eq(cm.model_version, meta.version);
}

Test(core_churn, scores_members_with_their_factors) {
    core_churn_reply cs;
    err_t e;
    cr_assert_eq(core_churn_score(c, "u8", &cs, &e), ERR_OK, "%s", e.msg);
    cr_assert_float_eq(cs.probability, 0.5f, 1e-6);
    cr_assert_gt(cs.n_factors, 0);
    cr_assert(!strcmp(cs.feature[0], "log_recency_days") || !strcmp(cs.feature[0], "orders_90d"));
    cr_assert(cs.model_version && cs.model_version[0]);
    core_churn_reply_free(&cs);
    cr_assert_eq(core_churn_score(c, "u1", &cs, &e), ERR_NOTFOUND, "u1 has no churn score");
    cr_assert_eq(core_churn_score(c, "nobody", &cs, &e), ERR_NOTFOUND);
    cr_assert_eq(core_churn_score(c, "", &cs, &e), ERR_INVALID);
    cr_assert_str_eq(e.msg, "user_id is empty");
}

typedef struct seen {
    size_t n, stop_after;
    float last;
    int ordered;
    int saw_u6;
} seen;

static int collect(void *ctx, const core_target *t) {
    seen *s = ctx;
    if (s->n && t->churn_probability > s->last) s->ordered = 0;
    s->last = t->churn_probability;
    s->saw_u6 |= !strcmp(t->user_id, "u6");
    return ++s->n == s->stop_after;
}

Test(core_churn, campaign_targets_leave_out_private_members_and_can_stop) {
    err_t e;
    cr_assert_eq(core_set_personalization(c, "u6", 1, &e), ERR_OK);
    core_targets_req rq = {.item_id = "", .category = ""};
    seen s = {.ordered = 1};
    cr_assert_eq(core_campaign_targets(c, &rq, collect, &s, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(s.n, FUZZ_USERS - 2, "all scored members but u1 (none) and u6 (opted out)");
    cr_assert(s.ordered, "highest churn probability first");
    cr_assert_not(s.saw_u6);
    seen stop = {.ordered = 1, .stop_after = 3};
    cr_assert_eq(core_campaign_targets(c, &rq, collect, &stop, &e), ERR_OK);
    cr_assert_eq(stop.n, 3);
    char *segments[] = {"no-such-segment"};
    rq.segments = segments;
    rq.n_segments = 1;
    cr_assert_eq(core_campaign_targets(c, &rq, collect, &s, &e), ERR_INVALID);
}

TestSuite(core_streams, .init = without_events, .fini = close_core);

Test(core_streams, admission_holds_four_slots_and_gives_them_back) {
    err_t e = {0};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(core_stream_begin(c, &e), ERR_OK, "slot %d: %s", i, e.msg);
    cr_expect_eq(core_stream_begin(c, &e), ERR_LIMIT, "a fifth stream while four run");
    cr_expect(strstr(e.msg, "4 streaming calls") != NULL, "%s", e.msg);
    core_stream_end(c);
    cr_expect_eq(core_stream_begin(c, &e), ERR_OK, "a slot given back is taken again");
    for (int i = 0; i < 4; i++)
        core_stream_end(c);
}
