/* Unit tests of the util layer: the error table and messages, id maps, CSR
 * matrices, top-k selection, the scoring panels (every kernel copy this CPU
 * runs), the choice of kernel level, UTF-8 validation, the per-user temporal
 * ordering of events, the random generator, the clock, the Gram matrix and
 * SPD solve, and the fold-in and popularity blend that serving and
 * evaluation share. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "cpu.h"
#include "csr.h"
#include "err.h"
#include "events.h"
#include "idmap.h"
#include "linalg.h"
#include "mf.h"
#include "panel.h"
#include "rng.h"
#include "stats.h"
#include "text.h"
#include "topk.h"
#include "utf8.h"

Test(err, every_code_has_a_name_a_message_and_a_failing_status) {
    for (int code = 0; code < ERR_CODES; code++) {
        cr_assert_str_neq(err_name(code), "UNKNOWN", "code %d", code);
        cr_assert_str_neq(err_message(code), "unknown error", "code %d", code);
        int status = err_to_status(code);
        cr_assert(status >= 0 && status < ERR_STATUSES, "code %d: status %d", code, status);
        /* Only ERR_OK may answer OK: no failure is ever turned into success. */
        cr_assert_eq(status == ERR_STATUS_OK, code == ERR_OK, "code %s", err_name(code));
    }
    cr_assert_str_eq(err_name(ERR_NOTFOUND), "NOTFOUND");
    cr_assert_str_eq(err_message(ERR_NOMEM), "out of memory");
    cr_assert_str_eq(err_name(-1), "UNKNOWN");
    cr_assert_str_eq(err_name(ERR_CODES), "UNKNOWN");
    cr_assert_eq(err_to_status(-1), ERR_STATUS_INTERNAL);
    cr_assert_eq(err_to_status(ERR_CODES), ERR_STATUS_INTERNAL);
}

Test(err, statuses_the_service_promises) {
    /* Out of memory is RESOURCE_EXHAUSTED everywhere, and a limit is not
     * "out of memory" but is retried the same way. */
    cr_assert_eq(err_to_status(ERR_NOMEM), ERR_STATUS_RESOURCE_EXHAUSTED);
    cr_assert_eq(err_to_status(ERR_LIMIT), ERR_STATUS_RESOURCE_EXHAUSTED);
    cr_assert_str_neq(err_message(ERR_LIMIT), err_message(ERR_NOMEM));
    cr_assert_eq(err_to_status(ERR_INVALID), ERR_STATUS_INVALID_ARGUMENT);
    cr_assert_eq(err_to_status(ERR_NOTFOUND), ERR_STATUS_NOT_FOUND);
    cr_assert_eq(err_to_status(ERR_PRECONDITION), ERR_STATUS_FAILED_PRECONDITION);
    cr_assert_eq(err_to_status(ERR_IO), ERR_STATUS_UNAVAILABLE);
    cr_assert_eq(err_to_status(ERR_INTERNAL), ERR_STATUS_INTERNAL);
    cr_assert_eq(err_to_status(ERR_CANCELLED), ERR_STATUS_CANCELLED);
    cr_assert_eq(err_to_status(ERR_DEADLINE), ERR_STATUS_DEADLINE_EXCEEDED);
    cr_assert_eq(err_to_status(ERR_UNAUTHENTICATED), ERR_STATUS_UNAUTHENTICATED);
    cr_assert_eq(err_to_status(ERR_UNIMPLEMENTED), ERR_STATUS_UNIMPLEMENTED);
}

Test(err, http_statuses_for_the_front_end) {
    static const struct {
        int status, http;
        const char *name;
    } want[] = {
        {ERR_STATUS_OK, 200, "OK"},
        {ERR_STATUS_INVALID_ARGUMENT, 400, "INVALID_ARGUMENT"},
        {ERR_STATUS_FAILED_PRECONDITION, 400, "FAILED_PRECONDITION"},
        {ERR_STATUS_UNAUTHENTICATED, 401, "UNAUTHENTICATED"},
        {ERR_STATUS_PERMISSION_DENIED, 403, "PERMISSION_DENIED"},
        {ERR_STATUS_NOT_FOUND, 404, "NOT_FOUND"},
        {ERR_STATUS_RESOURCE_EXHAUSTED, 429, "RESOURCE_EXHAUSTED"},
        {ERR_STATUS_INTERNAL, 500, "INTERNAL"},
        {ERR_STATUS_UNIMPLEMENTED, 501, "UNIMPLEMENTED"},
        {ERR_STATUS_UNAVAILABLE, 503, "UNAVAILABLE"},
        {ERR_STATUS_DEADLINE_EXCEEDED, 504, "DEADLINE_EXCEEDED"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        cr_assert_eq(err_status_http(want[i].status), want[i].http, "%s", want[i].name);
        cr_assert_str_eq(err_status_name(want[i].status), want[i].name);
    }
    /* The table has every status once (UNKNOWN is status 2). */
    for (int status = 0; status < ERR_STATUSES; status++)
        for (int other = 0; other < status; other++)
            cr_assert_str_neq(err_status_name(status), err_status_name(other));
    cr_assert_str_eq(err_status_name(ERR_STATUSES), "UNKNOWN");
    cr_assert_eq(err_status_http(-1), 500);
}

Test(err, a_cut_message_ends_with_an_ellipsis) {
    err_t e;
    char long_text[700];
    memset(long_text, 'x', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    cr_assert_eq(err_set(&e, ERR_IO, "%s", long_text), ERR_IO);
    cr_assert_eq(e.code, ERR_IO);
    cr_assert_eq(strlen(e.msg), sizeof e.msg - 1);
    cr_assert_str_eq(e.msg + sizeof e.msg - 4, "...");
    /* Exactly full is not cut. */
    long_text[sizeof e.msg - 1] = '\0';
    err_set(&e, ERR_IO, "%s", long_text);
    cr_assert_eq(strlen(e.msg), sizeof e.msg - 1);
    cr_assert_eq(e.msg[sizeof e.msg - 2], 'x');
    /* A short message is left alone. */
    err_set(&e, ERR_NOTFOUND, "no %s", "such item");
    cr_assert_str_eq(e.msg, "no such item");
    err_set(NULL, ERR_IO, "nowhere to go");
}

Test(err, wrap_keeps_the_code_and_marks_what_it_cut) {
    err_t e;
    err_set(&e, ERR_LIMIT, "map full");
    err_wrap(&e, "store %s", "events");
    cr_assert_eq(e.code, ERR_LIMIT);
    cr_assert_str_eq(e.msg, "store events: map full");
    char old[400];
    memset(old, 'o', sizeof old - 1);
    old[sizeof old - 1] = '\0';
    err_set(&e, ERR_IO, "%s", old);
    err_wrap(&e, "%s", old); /* 399 + 2 + 399 bytes do not fit in 511 */
    cr_assert_eq(strlen(e.msg), sizeof e.msg - 1);
    cr_assert(!strncmp(e.msg + 399, ": o", 3));
    cr_assert_str_eq(e.msg + sizeof e.msg - 4, "...");
    /* A context that alone fills the message is cut too. */
    char context[600];
    memset(context, 'c', sizeof context - 1);
    context[sizeof context - 1] = '\0';
    err_wrap(&e, "%s", context);
    cr_assert_str_eq(e.msg + sizeof e.msg - 4, "...");
    cr_assert_eq(e.msg[0], 'c');
}

Test(idmap, interns_in_first_seen_order_and_finds_again) {
    idmap *m = idmap_new();
    cr_assert_not_null(m);
    char key[32];
    for (uint32_t i = 0; i < 100000; i++) {
        uint32_t idx;
        int n = snprintf(key, sizeof key, "user-%u", i * 7919u);
        cr_assert_eq(idmap_intern(m, key, (size_t)n, &idx), ERR_OK);
        cr_assert_eq(idx, i);
    }
    cr_assert_eq(idmap_size(m), 100000);
    for (uint32_t i = 0; i < 100000; i += 997) {
        uint32_t idx;
        int n = snprintf(key, sizeof key, "user-%u", i * 7919u);
        cr_assert_eq(idmap_find(m, key, (size_t)n, &idx), ERR_OK);
        cr_assert_eq(idx, i);
        cr_assert_eq(idmap_intern(m, key, (size_t)n, &idx), ERR_OK);
        cr_assert_eq(idx, i, "interning again must not add");
        size_t len;
        const char *k = idmap_key(m, i, &len);
        cr_assert_eq(len, (size_t)n);
        cr_assert(memcmp(k, key, len) == 0);
    }
    uint32_t idx;
    cr_assert_eq(idmap_find(m, "user-1", 6, &idx), ERR_NOTFOUND);
    idmap_free(m);
}

Test(idmap, ids_are_bytes_not_c_strings) {
    idmap *m = idmap_new();
    uint32_t a, b, c;
    cr_assert_eq(idmap_intern(m, "a\0b", 3, &a), ERR_OK);
    cr_assert_eq(idmap_intern(m, "a\0c", 3, &b), ERR_OK);
    cr_assert_eq(idmap_intern(m, "", 0, &c), ERR_OK);
    cr_assert_neq(a, b);
    cr_assert_eq(idmap_find(m, "a", 1, &a), ERR_NOTFOUND);
    size_t len;
    idmap_key(m, c, &len);
    cr_assert_eq(len, 0);
    idmap_free(m);
}

Test(csr, from_triplets_sums_duplicates_and_sorts_rows) {
    uint32_t rows[] = {2, 0, 2, 0, 2, 1};
    uint32_t cols[] = {3, 1, 0, 1, 3, 2};
    float vals[] = {1, 2, 3, 4, 5, 6};
    csr m;
    cr_assert_eq(csr_from_triplets(3, 4, rows, cols, vals, 6, &m, NULL), ERR_OK);
    cr_assert_eq(csr_nnz(&m), 4);
    uint64_t indptr[] = {0, 1, 2, 4};
    uint32_t indices[] = {1, 2, 0, 3};
    float values[] = {6, 6, 3, 6};
    cr_assert_arr_eq(m.indptr, indptr, sizeof indptr);
    cr_assert_arr_eq(m.indices, indices, sizeof indices);
    cr_assert_arr_eq(m.values, values, sizeof values);
    cr_assert(csr_has(&m, 2, 3));
    cr_assert_not(csr_has(&m, 2, 2));
    csr t;
    cr_assert_eq(csr_transpose(&m, &t, NULL), ERR_OK);
    cr_assert_eq(t.n_rows, 4);
    cr_assert_eq(t.n_cols, 3);
    uint64_t tptr[] = {0, 1, 2, 3, 4};
    uint32_t tind[] = {2, 0, 1, 2};
    cr_assert_arr_eq(t.indptr, tptr, sizeof tptr);
    cr_assert_arr_eq(t.indices, tind, sizeof tind);
    csr_free(&m);
    csr_free(&t);
}

Test(csr, out_of_range_triplet_is_refused) {
    uint32_t rows[] = {0}, cols[] = {5};
    csr m;
    err_t e;
    cr_assert_eq(csr_from_triplets(1, 5, rows, cols, NULL, 1, &m, &e), ERR_INVALID);
    cr_assert(strstr(e.msg, "outside"));
}

Test(topk, selects_best_first_with_ties_to_lower_index) {
    float s[] = {0.5f, 2.0f, -INFINITY, 2.0f, 1.0f, NAN, 3.0f, 0.1f};
    topk_entry out[4];
    uint32_t n = topk_select(s, 8, 4, out);
    cr_assert_eq(n, 4);
    uint32_t want[] = {6, 1, 3, 4};
    for (uint32_t i = 0; i < n; i++)
        cr_assert_eq(out[i].index, want[i], "rank %u", i);
    cr_assert_float_eq(out[0].score, 3.0f, 0);
}

Test(topk, fewer_selectable_than_k) {
    float s[] = {-INFINITY, 1.0f, -INFINITY};
    topk_entry out[10];
    cr_assert_eq(topk_select(s, 3, 10, out), 1);
    cr_assert_eq(out[0].index, 1);
    cr_assert_eq(topk_select(s, 3, 0, out), 0);
}

Test(topk, agrees_with_a_full_sort) {
    enum { N = 20000, K = 50 };
    static float s[N];
    static topk_entry all[N];
    uint64_t x = 88172645463325252ull;
    for (uint32_t i = 0; i < N; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        s[i] = (float)(x % 1000) / 10.0f; /* many ties */
        all[i] = (topk_entry){i, s[i]};
    }
    topk_sort(all, N);
    topk_entry out[K];
    cr_assert_eq(topk_select(s, N, K, out), K);
    for (uint32_t i = 0; i < K; i++)
        cr_assert_eq(out[i].index, all[i].index);
}

Test(topk, runs_passed_over_in_blocks_still_see_every_winner) {
    /* Rising scores (every block has a new winner), holes of excluded items
     * and NaN, and a length that is no multiple of the block of 16. */
    enum { N = 1013, K = 7 };
    static float s[N];
    for (uint32_t i = 0; i < N; i++)
        s[i] = i % 5 == 0 ? -INFINITY : i % 11 == 0 ? NAN : (float)(i % 97) + (float)i * 1e-3f;
    topk_entry out[K];
    cr_assert_eq(topk_select(s, N, K, out), K);
    for (uint32_t r = 0; r < K; r++) {
        uint32_t better = 0;
        for (uint32_t i = 0; i < N; i++)
            better += s[i] > out[r].score;
        cr_assert_eq(better, r, "rank %u: %u scores beat %g", r, better, out[r].score);
    }
}

/* Checks panel_scores against dot products in double for items [first,
 * first + len) of an n x f matrix and nq queries, with the kernel copy of
 * every cpu level this CPU runs: each score within the error bound
 * panel_error promises (and the bound not loose by more than 50x, so that a
 * wrong bound cannot pass for a safe one), and within twice the bound of
 * the baseline copy's score. */
static void check_panels(uint32_t n, uint32_t f, uint32_t first, uint32_t len, uint32_t nq) {
    uint32_t pairs = panel_pairs(f);
    float *rows = malloc((size_t)n * f * sizeof *rows);
    uint16_t *panels = malloc((size_t)panel_padded(n) * pairs * 2 * sizeof *panels);
    float *xs = malloc((size_t)nq * f * sizeof *xs);
    uint32_t *queries = malloc((size_t)nq * pairs * sizeof *queries);
    size_t stride = panel_padded(len) + 16; /* wider than needed: rows must not overlap */
    float *scores = malloc(nq * stride * sizeof *scores);
    float *baseline = malloc(nq * stride * sizeof *baseline);
    cr_assert(rows && panels && xs && queries && scores && baseline);
    uint64_t x = 0x9e3779b97f4a7c15ull ^ (n * 31u + f);
    for (size_t i = 0; i < (size_t)n * f; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        rows[i] = (float)(x % 2001) / 1000.0f - 1.0f;
    }
    for (size_t i = 0; i < (size_t)nq * f; i++)
        xs[i] = (float)((i * 7919) % 201) / 100.0f - 1.0f;
    panel_pack(rows, n, f, panels);
    for (uint32_t q = 0; q < nq; q++)
        panel_query(xs + (size_t)q * f, f, queries + (size_t)q * pairs);
    for (int level = CPU_BASELINE; level <= (int)cpu_best(); level++) {
        err_t e;
        cr_assert_eq(cpu_use((cpu_level)level, &e), ERR_OK, "%s", e.msg);
        cr_assert_str_eq(panel_scores_kernel(), cpu_level_name((cpu_level)level));
        panel_scores(panels, f, first, len, queries, nq, scores, stride);
        if (level == CPU_BASELINE) memcpy(baseline, scores, nq * stride * sizeof *scores);
        double worst = 0;
        for (uint32_t q = 0; q < nq; q++) {
            for (uint32_t i = 0; i < panel_padded(len); i++) {
                double want = 0, xx = 0, yy = 0;
                for (uint32_t d = 0; d < f && first + i < n; d++) {
                    double a = xs[q * f + d], b = rows[(size_t)(first + i) * f + d];
                    want += a * b, xx += a * a, yy += b * b;
                }
                double bound = panel_error(f) * sqrt(xx) * sqrt(yy) + PANEL_ERROR_ABS;
                float got = scores[q * stride + i], base = baseline[q * stride + i];
                double err = fabs(got - want);
                cr_assert(err <= bound, "%s: n %u f %u query %u item %u: %g from %g, bound %g",
                          panel_scores_kernel(), n, f, q, first + i, got, want, bound);
                cr_assert(fabs(got - base) <= 2 * bound,
                          "%s: n %u f %u query %u item %u: %g, baseline %g, bound %g",
                          panel_scores_kernel(), n, f, q, first + i, got, base, bound);
                if (bound > 0 && err / bound > worst) worst = err / bound;
            }
        }
        cr_assert(worst > 0.02, "%s: n %u f %u: the error bound is 50x looser than any error",
                  panel_scores_kernel(), n, f);
    }
    free(rows);
    free(panels);
    free(xs);
    free(queries);
    free(scores);
    free(baseline);
}

Test(panel, scores_within_the_error_bound_for_any_shape) {
    uint32_t queries[] = {1, 2, 3, 4, 5, 7, 8, 9, 32};
    for (size_t q = 0; q < sizeof queries / sizeof *queries; q++) {
        check_panels(37, 5, 0, 37, queries[q]);     /* an odd factor count */
        check_panels(200, 64, 16, 150, queries[q]); /* a block inside, 4-panel chunks and a rest */
        check_panels(131, 65, 128, 3, queries[q]);  /* the padded last panel */
    }
}

Test(panel, bfloat16_rounds_to_nearest_even) {
    /* 1 + 2^-8 is halfway between two bfloat16 values: to even (1); just
     * above it rounds up; 3.0 is exact. */
    float v[] = {1.0f + 0x1p-8f, 1.0f + 0x1p-8f + 0x1p-16f, 3.0f, -2.5f};
    float want[] = {1.0f, 1.0f + 0x1p-7f, 3.0f, -2.5f};
    for (int i = 0; i < 4; i++) {
        float row[2] = {v[i], 0.0f}, x[2] = {1.0f, 0.0f}, got[PANEL_WIDTH];
        uint16_t panel[PANEL_WIDTH * 2];
        uint32_t query;
        panel_pack(row, 1, 2, panel);
        panel_query(x, 2, &query);
        panel_scores(panel, 2, 0, 1, &query, 1, got, PANEL_WIDTH);
        cr_assert_eq(got[0], want[i], "%a became %a, want %a", v[i], got[0], want[i]);
    }
}

/* The level cpuid gives, from the flags the kernel reports in
 * /proc/cpuinfo: 0 baseline .. 3 avx512bf16, -1 when not known here. */
static int cpuinfo_level(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return -1;
    char line[8192];
    int level = -1;
    while (level < 0 && fgets(line, sizeof line, f))
        if (strncmp(line, "flags", 5) == 0) {
            int has[8] = {0};
            static const char *const names[8] = {" avx2 ",     " fma ",        " avx512f ",
                                                 " avx512cd ", " avx512bw ",   " avx512dq ",
                                                 " avx512vl ", " avx512_bf16 "};
            line[strcspn(line, "\n")] = ' ';
            for (int i = 0; i < 8; i++)
                has[i] = strstr(line, names[i]) != NULL;
            level = !(has[0] && has[1])                                 ? CPU_BASELINE
                    : !(has[2] && has[3] && has[4] && has[5] && has[6]) ? CPU_AVX2
                    : !has[7]                                           ? CPU_AVX512
                                                                        : CPU_AVX512BF16;
        }
    fclose(f);
    return level;
}

/* Never a level the CPU lacks (that would be SIGILL), and AVX2 whenever the
 * CPU has it (valgrind's emulated CPU has AVX2 but no AVX-512). */
Test(cpu, detects_what_the_kernel_reports) {
    int want = cpuinfo_level();
#if defined(__x86_64__)
    cr_assert_geq(want, 0, "no flags line in /proc/cpuinfo");
    cr_assert_leq((int)cpu_best(), want, "cpu_best %s, cpuinfo %s", cpu_level_name(cpu_best()),
                  cpu_level_name((cpu_level)want));
    cr_assert_geq((int)cpu_best(), want < CPU_AVX2 ? want : CPU_AVX2, "cpu_best %s, cpuinfo %s",
                  cpu_level_name(cpu_best()), cpu_level_name((cpu_level)want));
#else
    (void)want;
    cr_assert_eq(cpu_best(), CPU_BASELINE);
#endif
    cr_assert(cpu_supports(CPU_BASELINE));
}

Test(cpu, parses_levels_and_refuses_what_the_cpu_lacks) {
    for (int level = CPU_BASELINE; level < CPU_LEVELS; level++) {
        cpu_level got = CPU_LEVELS;
        err_t e = {0};
        int rc = cpu_parse(cpu_level_name((cpu_level)level), &got, &e);
        if (cpu_supports((cpu_level)level)) {
            cr_assert_eq(rc, ERR_OK, "%s", e.msg);
            cr_assert_eq((int)got, level);
            cr_assert_eq(cpu_use((cpu_level)level, &e), ERR_OK);
            cr_assert_eq((int)cpu_level_in_use(), level);
        } else {
            cr_assert_eq(rc, ERR_INVALID);
            cr_assert_not_null(strstr(e.msg, "cannot run"), "%s", e.msg);
            cr_assert_eq(cpu_use((cpu_level)level, &e), ERR_INVALID);
            cr_assert_neq((int)cpu_level_in_use(), level);
        }
    }
    cpu_level got;
    err_t e;
    cr_assert_eq(cpu_parse("avx1024", &got, &e), ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "unknown"), "%s", e.msg);
    cr_assert_not_null(strstr(e.msg, "baseline"), "%s", e.msg);
}

Test(utf8, accepts_valid_and_refuses_malformed) {
    cr_assert(utf8_valid("plain", 5));
    cr_assert(utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9b\x92", 14));
    cr_assert_not(utf8_valid("\xff", 1));
    cr_assert_not(utf8_valid("\xc0\xaf", 2), "overlong");
    cr_assert_not(utf8_valid("\xed\xa0\x80", 3), "surrogate");
    cr_assert_not(utf8_valid("\xf4\x90\x80\x80", 4), "above U+10FFFF");
    cr_assert_not(utf8_valid("\xe2\x82", 2), "truncated");
    cr_assert_not(utf8_valid("a\xc3", 2), "truncated at the end");
}

Test(events, sorted_per_user_by_time_then_numeric_item_id) {
    ev_set s;
    cr_assert_eq(ev_set_init(&s, NULL), ERR_OK);
    /* user b first seen, so it gets index 0 */
    ev_set_add(&s, "b", 1, "10", 2, 100, 1, NAN, NULL);
    ev_set_add(&s, "a", 1, "10", 2, 50, 1, NAN, NULL);
    ev_set_add(&s, "b", 1, "9", 1, 100, 1, NAN, NULL);
    ev_set_add(&s, "b", 1, "x", 1, 10, 1, NAN, NULL);
    uint64_t *start;
    cr_assert_eq(ev_set_sort_by_user_time(&s, EV_TIES_ASCENDING, &start, NULL), ERR_OK);
    cr_assert_eq(start[0], 0);
    cr_assert_eq(start[1], 3);
    cr_assert_eq(start[2], 4);
    size_t len;
    const char *first = idmap_key(s.items, s.events[0].item, &len);
    cr_assert(len == 1 && first[0] == 'x', "earliest first");
    const char *second = idmap_key(s.items, s.events[1].item, &len);
    cr_assert(len == 1 && second[0] == '9', "9 before 10 at the same time");
    free(start);
    ev_set_free(&s);
}

Test(stats, two_proportion_test_against_a_known_result) {
    /* 200/1000 vs 250/1000: pooled 0.225, se 0.018675, z -2.6773, p 0.00742
     * (the textbook pooled z-test, as computed by R's prop.test without
     * continuity correction: X-squared 7.168, p 0.00742). */
    double z, p;
    stats_two_proportion(200, 1000, 250, 1000, &z, &p);
    cr_assert_float_eq(z, -2.6773, 1e-3);
    cr_assert_float_eq(p, 0.00742, 1e-4);
    stats_two_proportion(5, 0, 1, 10, &z, &p);
    cr_assert(z == 0 && p == 1, "no trials: nothing to test");
    stats_two_proportion(0, 10, 0, 10, &z, &p);
    cr_assert(p == 1, "no successes anywhere");
}

Test(stats, wilson_interval_and_quantile) {
    double lo, hi;
    stats_wilson(10, 100, 1.959964, &lo, &hi); /* 0.0552 .. 0.1744 */
    cr_assert_float_eq(lo, 0.0552, 1e-4);
    cr_assert_float_eq(hi, 0.1744, 1e-4);
    stats_wilson(0, 0, 1.96, &lo, &hi);
    cr_assert(lo == 0 && hi == 1);
    cr_assert_float_eq(stats_z_for_alpha(0.05), 1.959964, 1e-5);
    cr_assert_float_eq(stats_z_for_alpha(0.01), 2.575829, 1e-5);
}

/* The published splitmix64 stream for seed 0 (Vigna's reference code): the
 * initial factors and tuning samples of every model depend on it. */
Test(rng, splitmix64_reference_stream) {
    uint64_t state = 0;
    cr_assert_eq(rng_next(&state), 0xE220A8397B1DCDAFull);
    cr_assert_eq(rng_next(&state), 0x6E789E6AA1B965F4ull);
    cr_assert_eq(rng_next(&state), 0x06C45D188009454Full);
    state = 42;
    for (int i = 0; i < 1000; i++) {
        double u = rng_unit(&state);
        cr_assert(u >= 0.0 && u < 1.0);
    }
}

Test(clock, monotonic_seconds_do_not_go_back) {
    double a = clock_seconds(), b = clock_seconds();
    cr_assert(a > 0.0);
    cr_assert(b >= a);
}

/* The event-type table: one row gives the value, both spellings, the
 * default weight, and the word list of messages. */
Test(events, type_table) {
    cr_assert_eq(ev_type_of_word("cart", 4), EV_TYPE_ADD_TO_CART);
    cr_assert_eq(ev_type_of_word("add_to_cart", 11), 0, "the export name is not a word");
    cr_assert_eq(ev_type_of_word("viewed", 4), EV_TYPE_VIEW, "length-bounded");
    cr_assert_str_eq(ev_type_name(EV_TYPE_ADD_TO_CART), "add_to_cart");
    cr_assert_str_eq(ev_type_word(EV_TYPE_FAVORITE), "favorite");
    cr_assert(!ev_type_known(0) && !ev_type_known(EV_TYPE_END) && ev_type_known(EV_TYPE_VIEW));
    cr_assert_null(ev_type_name(EV_TYPE_END));
    char words[64];
    ev_type_words(words, sizeof words);
    cr_assert_str_eq(words, "view, cart, purchase or favorite");
    ev_type_words(words, 8);
    cr_assert_str_eq(words, "view, c", "truncated, terminated");
    float w[EV_TYPE_END];
    ev_type_default_weights(w);
    cr_assert(w[0] == 0.0f && w[EV_TYPE_VIEW] == 0.1f && w[EV_TYPE_ADD_TO_CART] == 0.3f &&
              w[EV_TYPE_PURCHASE] == 1.0f && w[EV_TYPE_FAVORITE] == 0.5f);
}

Test(linalg, gram_matches_naive_product) {
    enum { F = 7, N = 13 };
    float y[N * F], g[F * F];
    for (int i = 0; i < N * F; i++)
        y[i] = (float)((i * 37) % 11) - 5.0f;
    linalg_gram(y, N, F, F, g, F);
    for (int j = 0; j < F; j++)
        for (int l = 0; l < F; l++) {
            float s = 0.0f;
            for (int i = 0; i < N; i++)
                s += y[i * F + j] * y[i * F + l];
            cr_expect_float_eq(g[j * F + l], s, 1e-3, "YtY[%d][%d]", j, l);
        }
}

/* Training keeps rows padded: the strides must be honoured, the padding
 * columns of g left alone, and no rows mean a zero matrix. */
Test(linalg, gram_with_strides_and_no_rows) {
    enum { F = 3, LD = 8, N = 4 };
    float y[N * LD], g[F * LD];
    for (int i = 0; i < N * LD; i++)
        y[i] = (i % LD) < F ? (float)(i % 5) - 2.0f : NAN;
    for (int i = 0; i < F * LD; i++)
        g[i] = -7.0f;
    linalg_gram(y, N, F, LD, g, LD);
    for (int j = 0; j < F; j++) {
        for (int l = 0; l < F; l++) {
            float s = 0.0f;
            for (int i = 0; i < N; i++)
                s += y[i * LD + j] * y[i * LD + l];
            cr_expect_float_eq(g[j * LD + l], s, 1e-5, "YtY[%d][%d]", j, l);
        }
        for (int l = F; l < LD; l++)
            cr_expect_eq(g[j * LD + l], -7.0f, "padding [%d][%d] written", j, l);
    }
    linalg_gram(y, 0, F, LD, g, LD);
    for (int j = 0; j < F; j++)
        for (int l = 0; l < F; l++)
            cr_expect_eq(g[j * LD + l], 0.0f);
}

/* A known system, given by its lower triangle only (the upper one holds
 * garbage that must not be read), and one that is not positive definite. */
Test(linalg, solves_spd_system_and_refuses_indefinite) {
    /* A = [4 2 0; 2 5 3; 0 3 6], x = (1, -1, 2): b = A x. */
    double a[9] = {4, NAN, NAN, 2, 5, NAN, 0, 3, 6}, b[3] = {2, 3, 9};
    cr_assert_eq(linalg_solve_spd(a, b, 3), 0);
    cr_expect(fabs(b[0] - 1) < 1e-12 && fabs(b[1] + 1) < 1e-12 && fabs(b[2] - 2) < 1e-12,
              "x = %g %g %g", b[0], b[1], b[2]);
    /* The factor: L L^T = A with L[0][0] = 2, L[1][0] = 1, L[1][1] = 2. */
    cr_expect(fabs(a[0] - 2) < 1e-12 && fabs(a[3] - 1) < 1e-12 && fabs(a[4] - 2) < 1e-12);
    double s[4] = {1, NAN, 2, 1}, c[2] = {1, 1}; /* eigenvalues 1 +- 2 */
    cr_expect_eq(linalg_solve_spd(s, c, 2), -1);
}

/* The fold-in solves (YtY + Yt(C - I)Y + lambda I) x = Yt C p exactly:
 * check the residual of that system, built densely here. */
Test(mf, fold_in_solves_normal_equations) {
    enum { F = 6, N = 9 };
    float y[N * F], yty[F * F], x[F];
    srand(3);
    for (int i = 0; i < N * F; i++)
        y[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    linalg_gram(y, N, F, F, yty, F);
    uint32_t items[3] = {1, 4, 7};
    float counts[3] = {1.0f, 3.0f, 2.0f};
    const float lambda = 0.1f, alpha = 2.0f;
    err_t e;
    cr_assert_eq(mf_fold_in(y, F, yty, items, counts, 3, lambda, alpha, x, &e), ERR_OK, "%s",
                 e.msg);
    for (int j = 0; j < F; j++) {
        double ax = 0.0, b = 0.0;
        for (int l = 0; l < F; l++) {
            double a = lambda * (j == l);
            for (int i = 0; i < N; i++)
                a += (double)y[i * F + j] * y[i * F + l];
            for (int k = 0; k < 3; k++)
                a += alpha * counts[k] * y[items[k] * F + j] * y[items[k] * F + l];
            ax += a * x[l];
        }
        for (int k = 0; k < 3; k++)
            b += (1.0 + alpha * counts[k]) * y[items[k] * F + j];
        cr_expect(fabs(ax - b) < 1e-4, "row %d: Ax %g, b %g", j, ax, b);
    }
}

Test(mf, fold_in_refuses_bad_arguments_and_singular_systems) {
    /* Without regularization a user of one item leaves A singular: the
     * Cholesky must report it rather than return garbage. */
    float y[2 * 2] = {1, 0, 0, 0}, yty[4], x[2] = {5, 5};
    uint32_t item = 0;
    float count = 1, negative = -1;
    err_t e;
    linalg_gram(y, 2, 2, 2, yty, 2);
    cr_expect_eq(mf_fold_in(y, 2, yty, &item, &count, 1, 0.0f, 1.0f, x, &e), ERR_INVALID);
    cr_expect(x[0] == 5 && x[1] == 5, "x written on failure");
    cr_expect_eq(mf_fold_in(y, 2, yty, &item, &negative, 1, 0.1f, 1.0f, x, &e), ERR_INVALID);
    cr_expect_eq(mf_fold_in(y, 2, yty, &item, &count, 1, 0.1f, NAN, x, &e), ERR_INVALID);
    cr_expect_eq(mf_fold_in(y, 0, yty, &item, &count, 1, 0.1f, 1.0f, x, &e), ERR_INVALID);
}

/* The blend adds w * popularity / max to each score: item i with
 * popularity p gets w * p / max more, the most popular exactly w; items at
 * -INFINITY stay there; w 0 or no positive maximum changes nothing. */
Test(mf, blend_adds_scaled_popularity) {
    const float pop[4] = {0, 2, 8, 4};
    float s[4] = {1.0f, -0.5f, 0.25f, -INFINITY};
    mf_blend_popularity(s, pop, 4, 8.0f, 0.5f);
    cr_expect_float_eq(s[0], 1.0f, 1e-7);
    cr_expect_float_eq(s[1], -0.5f + 0.125f, 1e-7);
    cr_expect_float_eq(s[2], 0.25f + 0.5f, 1e-7);
    cr_expect(isinf(s[3]) && s[3] < 0, "an excluded item stays excluded");
    /* A block of the same row (the server scores items in blocks) gets
     * bit-identical values. */
    float whole[4] = {0.3f, 0.7f, 0.1f, 0.9f}, part[4];
    memcpy(part, whole, sizeof whole);
    mf_blend_popularity(whole, pop, 4, 8.0f, 3.0f);
    mf_blend_popularity(part, pop, 2, 8.0f, 3.0f);
    mf_blend_popularity(part + 2, pop + 2, 2, 8.0f, 3.0f);
    cr_expect(memcmp(whole, part, sizeof whole) == 0, "blocks and rows agree");
    float t[2] = {1.0f, 2.0f};
    mf_blend_popularity(t, pop, 2, 8.0f, 0.0f);
    mf_blend_popularity(t, pop, 2, 0.0f, 5.0f);
    cr_expect(t[0] == 1.0f && t[1] == 2.0f, "w 0 or no popularity: unchanged");
}

Test(text, words_join_as_a_sentence) {
    char buf[32];
    const char *const two[] = {"on", "off"}, *const one[] = {"only"};
    text_join_words(buf, sizeof buf, two, 2);
    cr_assert_str_eq(buf, "on or off");
    text_join_words(buf, sizeof buf, one, 1);
    cr_assert_str_eq(buf, "only");
    text_join_words(buf, sizeof buf, one, 0);
    cr_assert_str_eq(buf, "");
    text_join_words(buf, 4, two, 2);
    cr_assert_str_eq(buf, "on ", "truncated to size - 1, terminated");
}
