/* Unit tests of features/synth: determinism, requested sizes, output that
 * ingest reads back cleanly, and the structure a recommender should find
 * (popularity skew, category tastes, repeats, churners). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest.h"
#include "synth.h"

/* Generates p's CSV into memory; the caller frees *csv. */
static uint64_t gen(const synth_params *p, char **csv, size_t *len) {
    FILE *f = open_memstream(csv, len);
    cr_assert(f);
    uint64_t written = 0;
    err_t e;
    cr_assert_eq(synth_write_csv(p, f, &written, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(fclose(f), 0);
    return written;
}

/* Reads the CSV back through ingest, which must accept every row. */
static void read_back(const char *csv, size_t len, ev_set *s) {
    ingest_options o;
    ingest_stats st;
    err_t e;
    ingest_options_init(&o);
    cr_assert_eq(ev_set_init(s, &e), ERR_OK);
    cr_assert_eq(ingest_csv_buffer(csv, len, &o, s, &st, &e), ERR_OK, "%s", e.msg);
    for (int r = 0; r < SKIP_REASONS; r++)
        cr_assert_eq(st.skipped[r], 0, "%s: %llu", ingest_skip_name(r),
                     (unsigned long long)st.skipped[r]);
    cr_assert_eq(st.accepted, st.rows);
}

Test(synth, same_seed_same_bytes) {
    synth_params p;
    synth_params_init(&p);
    char *a, *b, *c;
    size_t la, lb, lc;
    gen(&p, &a, &la);
    gen(&p, &b, &lb);
    p.seed = 43;
    gen(&p, &c, &lc);
    cr_assert(la == lb && memcmp(a, b, la) == 0, "same seed, different output");
    cr_assert(la != lc || memcmp(a, c, la) != 0, "different seeds, same output");
    free(a);
    free(b);
    free(c);
}

Test(synth, sizes_and_format) {
    synth_params p;
    synth_params_init(&p);
    char *csv;
    size_t len;
    uint64_t written = gen(&p, &csv, &len);
    cr_assert_eq(written, p.events);
    const char header[] = "user_id,item_id,timestamp,quantity,price,category\n";
    cr_assert_eq(strncmp(csv, header, sizeof header - 1), 0);
    uint64_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += csv[i] == '\n';
    cr_assert_eq(lines, written + 1);

    ev_set s;
    read_back(csv, len, &s);
    cr_assert_eq(s.n, written);
    /* With more events than users, every user buys at least once. */
    cr_assert_eq(idmap_size(s.users), p.users);
    cr_assert(idmap_size(s.items) > p.items * 8 / 10 && idmap_size(s.items) <= p.items,
              "%u items bought", idmap_size(s.items));
    int64_t lo = p.end_unix - (int64_t)p.days * 86400;
    for (size_t i = 0; i < s.n; i++) {
        ev_event *ev = &s.events[i];
        cr_assert(ev->ts >= lo && ev->ts <= p.end_unix);
        cr_assert(ev->quantity >= 1 && ev->price >= 1 && ev->price <= 200);
        /* Written user by user in time order. */
        if (i > 0 && ev[-1].user == ev->user) cr_assert(ev[-1].ts <= ev->ts);
    }
    ev_set_free(&s);
    free(csv);
}

Test(synth, fewer_events_than_users) {
    synth_params p;
    synth_params_init(&p);
    p.users = 1000;
    p.events = 300;
    char *csv;
    size_t len;
    cr_assert_eq(gen(&p, &csv, &len), 300);
    ev_set s;
    read_back(csv, len, &s);
    cr_assert(idmap_size(s.users) < 300);
    ev_set_free(&s);
    free(csv);
}

Test(synth, invalid_parameters) {
    synth_params p;
    uint64_t written;
    err_t e;
    synth_params_init(&p);
    p.users = 0;
    cr_assert_eq(synth_write_csv(&p, stdout, &written, &e), ERR_INVALID);
    synth_params_init(&p);
    p.categories = p.items + 1;
    cr_assert_eq(synth_write_csv(&p, stdout, &written, &e), ERR_INVALID);
    synth_params_init(&p);
    p.churn_share = 1.5;
    cr_assert_eq(synth_write_csv(&p, stdout, &written, &e), ERR_INVALID);
}

static int cmp_desc(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x < y) - (x > y);
}

Test(synth, popularity_is_skewed) {
    synth_params p;
    synth_params_init(&p);
    char *csv;
    size_t len;
    gen(&p, &csv, &len);
    ev_set s;
    read_back(csv, len, &s);
    uint64_t *count = calloc(p.items, sizeof *count);
    for (size_t i = 0; i < s.n; i++)
        count[s.events[i].item]++;
    qsort(count, p.items, sizeof *count, cmp_desc);
    uint64_t top = 0;
    for (uint32_t i = 0; i < p.items / 10; i++)
        top += count[i];
    double share = (double)top / (double)s.n;
    cr_assert(share > 0.4, "top 10%% of items have only %.2f of the purchases", share);
    free(count);
    ev_set_free(&s);
    free(csv);
}

/* Share of events of users (>= 10 events) that fall in their most bought
 * category: high when tastes drive purchases. Reads the CSV directly because
 * ev_set has no category. */
static double taste_concentration(const char *csv, uint32_t categories) {
    const char *p = strchr(csv, '\n') + 1;
    char user[32] = "";
    uint64_t *per_cat = calloc(categories, sizeof *per_cat), n = 0, in_top = 0, total = 0;
    for (;;) {
        const char *end = strchr(p, '\n');
        if (!end || strncmp(p, user, strlen(user)) != 0 || p[strlen(user)] != ',') {
            if (n >= 10) {
                uint64_t best = 0;
                for (uint32_t c = 0; c < categories; c++)
                    if (per_cat[c] > best) best = per_cat[c];
                in_top += best;
                total += n;
            }
            if (!end) break;
            size_t ul = (size_t)(strchr(p, ',') - p);
            memcpy(user, p, ul);
            user[ul] = '\0';
            memset(per_cat, 0, categories * sizeof *per_cat);
            n = 0;
        }
        const char *cat = end;
        while (cat[-1] != 'c')
            cat--;
        per_cat[strtoul(cat, NULL, 10)]++;
        n++;
        p = end + 1;
    }
    free(per_cat);
    return (double)in_top / (double)total;
}

Test(synth, tastes_drive_purchases) {
    synth_params p;
    synth_params_init(&p);
    char *csv;
    size_t len;
    gen(&p, &csv, &len);
    double c = taste_concentration(csv, p.categories);
    /* Buying by global popularity alone would put about a quarter of a
     * user's purchases in one category (the largest of 20). */
    cr_assert(c > 0.5, "only %.2f of purchases in the user's main category", c);
    free(csv);
}

/* Share of users whose last purchase is more than 30 days before the end. */
static double gone_share(const synth_params *p) {
    char *csv;
    size_t len;
    gen(p, &csv, &len);
    ev_set s;
    read_back(csv, len, &s);
    int64_t *last = calloc(p->users, sizeof *last);
    for (size_t i = 0; i < s.n; i++)
        if (s.events[i].ts > last[s.events[i].user]) last[s.events[i].user] = s.events[i].ts;
    uint32_t gone = 0;
    for (uint32_t u = 0; u < idmap_size(s.users); u++)
        gone += last[u] < p->end_unix - 30 * 86400;
    double share = (double)gone / idmap_size(s.users);
    free(last);
    ev_set_free(&s);
    free(csv);
    return share;
}

Test(synth, churners_stop_early) {
    synth_params p;
    synth_params_init(&p);
    double with = gone_share(&p);
    p.churn_share = 0;
    double without = gone_share(&p);
    cr_assert(with > 0.15 && with < 0.35, "%.2f of users gone with churn share 0.25", with);
    cr_assert(without < 0.01, "%.2f of users gone without churners", without);
}

/* Share of events that re-buy an item the user bought before. */
static double repeat_share(const synth_params *p) {
    char *csv;
    size_t len;
    gen(p, &csv, &len);
    ev_set s;
    read_back(csv, len, &s);
    uint64_t *start;
    err_t e;
    cr_assert_eq(ev_set_sort_by_user_time(&s, EV_TIES_ASCENDING, &start, &e), ERR_OK);
    uint64_t repeats = 0;
    for (uint32_t u = 0; u < idmap_size(s.users); u++)
        for (uint64_t i = start[u]; i < start[u + 1]; i++)
            for (uint64_t j = start[u]; j < i; j++)
                if (s.events[j].item == s.events[i].item) {
                    repeats++;
                    break;
                }
    double share = (double)repeats / (double)s.n;
    free(start);
    ev_set_free(&s);
    free(csv);
    return share;
}

Test(synth, repeat_buyers) {
    synth_params p;
    synth_params_init(&p);
    p.repeat_share = 0;
    double base = repeat_share(&p);
    p.repeat_share = 0.4;
    double more = repeat_share(&p);
    cr_assert(more > base + 0.15, "repeat share 0.4: %.2f re-buys, 0: %.2f", more, base);
}
