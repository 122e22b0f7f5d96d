/* Unit tests of features/labels: label columns with '|' parts, text words
 * (lower-cased, stop words and rare words dropped), price bands and times,
 * the per-row limits, and bad rows counted by reason with their lines. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "labels.h"

static int has_label(const labels_table *t, const char *id, const char *label) {
    uint32_t r, l, n;
    if (idmap_find(t->ids, id, strlen(id), &r) != ERR_OK) return -1;
    if (idmap_find(t->labels, label, strlen(label), &l) != ERR_OK) return 0;
    const uint32_t *row = labels_row(t, r, &n);
    for (uint32_t k = 0; k < n; k++)
        if (row[k] == l) return 1;
    return 0;
}

static void read_ok(const char *csv, labels_options *o, labels_table *t, labels_stats *st) {
    err_t e;
    int rc = labels_read_buffer(csv, strlen(csv), o, t, st, &e);
    cr_assert_eq(rc, ERR_OK, "%s", e.msg);
}

Test(labels, columns_words_price_time) {
    const char *csv = "item_id,cat,genres,title,price,published\n"
                      "m1,film,Action|Comedy,The Red Mug of Doom,2.5,2020-01-02T00:00:00Z\n"
                      "m2,film, Comedy | Drama ,A RED Mug,0,\n"
                      "m3,book,,Doom and gloom,,1600000000\n";
    labels_options o;
    labels_options_init(&o);
    o.category_col = "cat";
    o.label_cols = "genres";
    o.text_col = "title";
    o.price_col = "price";
    o.time_col = "published";
    labels_table t;
    labels_stats st;
    read_ok(csv, &o, &t, &st);
    cr_assert_eq(labels_rows(&t), 3);
    cr_assert_eq(st.accepted, 3);
    cr_assert_eq(has_label(&t, "m1", "genres:Action"), 1);
    cr_assert_eq(has_label(&t, "m1", "genres:Comedy"), 1);
    cr_assert_eq(has_label(&t, "m2", "genres:Drama"), 1); /* trimmed */
    cr_assert_eq(has_label(&t, "m1", "cat:film"), 1);
    cr_assert_eq(has_label(&t, "m1", "word:red"), 1);
    cr_assert_eq(has_label(&t, "m2", "word:red"), 1); /* lower-cased */
    cr_assert_eq(has_label(&t, "m1", "word:mug"), 1);
    cr_assert_eq(has_label(&t, "m3", "word:doom"), 1);
    cr_assert_eq(has_label(&t, "m1", "word:the"), 0);   /* stop word */
    cr_assert_eq(has_label(&t, "m3", "word:gloom"), 0); /* in one row only */
    cr_assert_eq(has_label(&t, "m1", "price:2^1"), 1);
    cr_assert_eq(has_label(&t, "m2", "price:0"), 1);
    cr_assert_eq(st.words_rare, 1);
    uint32_t r;
    cr_assert_eq(idmap_find(t.ids, "m1", 2, &r), ERR_OK);
    cr_assert_float_eq(t.price[r], 2.5f, 1e-6);
    cr_assert_eq(t.published[r], 1577923200);
    cr_assert_eq(idmap_find(t.ids, "m3", 2, &r), ERR_OK);
    cr_assert(isnan(t.price[r]));
    cr_assert_eq(t.published[r], 1600000000);
    cr_assert_neq(t.category[r], UINT32_MAX);
    labels_table_free(&t);
}

Test(labels, bad_rows_counted_with_lines) {
    char big[LABELS_MAX_PER_ROW * 4 + 64];
    size_t n = (size_t)snprintf(big, sizeof big, "x9,");
    for (int k = 0; k < LABELS_MAX_PER_ROW + 1; k++)
        n += (size_t)snprintf(big + n, sizeof big - n, "%s%d", k ? "|" : "", k);
    char long_label[LABELS_MAX_LEN + 8];
    memset(long_label, 'a', sizeof long_label - 1);
    long_label[sizeof long_label - 1] = '\0';
    char csv[4096];
    snprintf(csv, sizeof csv,
             "item_id,tags\n"
             "ok1,a|b\n"   /* line 2 */
             ",a\n"        /* 3: missing id */
             "ok1,c\n"     /* 4: duplicate */
             "bad\xff,a\n" /* 5: not UTF-8 */
             "%s\n"        /* 6: too many labels */
             "x10,%s\n"    /* 7: label too long */
             "ok2,a\n",    /* 8 */
             big, long_label);
    labels_options o;
    labels_options_init(&o);
    o.label_cols = "tags";
    labels_table t;
    labels_stats st;
    read_ok(csv, &o, &t, &st);
    cr_assert_eq(st.rows, 7);
    cr_assert_eq(st.accepted, 2);
    cr_assert_eq(st.skipped[LABELS_SKIP_MISSING_ID], 1);
    cr_assert_eq(st.first_lines[LABELS_SKIP_MISSING_ID][0], 3);
    cr_assert_eq(st.skipped[LABELS_SKIP_DUPLICATE_ID], 1);
    cr_assert_eq(st.first_lines[LABELS_SKIP_DUPLICATE_ID][0], 4);
    cr_assert_eq(st.first_lines[LABELS_SKIP_BAD_UTF8][0], 5);
    cr_assert_eq(st.first_lines[LABELS_SKIP_TOO_MANY_LABELS][0], 6);
    cr_assert_eq(st.first_lines[LABELS_SKIP_LABEL_TOO_LONG][0], 7);
    cr_assert_eq(has_label(&t, "ok1", "tags:b"), 1);
    cr_assert_eq(has_label(&t, "ok1", "tags:c"), 0); /* the first row kept */
    cr_assert_eq(has_label(&t, "x9", "tags:1"), -1);
    labels_table_free(&t);
}

Test(labels, bad_price_and_time_and_missing_column) {
    const char *csv = "item_id,p,t\n"
                      "a,-1,1\n"
                      "b,nan,1\n"
                      "c,1,yesterday\n"
                      "d,1,1\n";
    labels_options o;
    labels_options_init(&o);
    o.price_col = "p";
    o.time_col = "t";
    labels_table t;
    labels_stats st;
    read_ok(csv, &o, &t, &st);
    cr_assert_eq(st.skipped[LABELS_SKIP_BAD_PRICE], 2);
    cr_assert_eq(st.skipped[LABELS_SKIP_BAD_TIME], 1);
    cr_assert_eq(st.accepted, 1);
    labels_table_free(&t);
    o.text_col = "description";
    err_t e;
    cr_assert_eq(labels_read_buffer(csv, strlen(csv), &o, &t, &st, &e), ERR_FORMAT);
    cr_assert(strstr(e.msg, "description"));
    labels_table_free(&t);
}

Test(labels, described_items_replace_and_append_rows) {
    const char *csv = "item_id,cat,title,price\n"
                      "m1,film,The red mug,2.5\n"
                      "m2,film,A red mug,3\n";
    labels_options o;
    labels_options_init(&o);
    o.category_col = "cat";
    o.text_col = "title";
    o.price_col = "price";
    labels_table t;
    labels_stats st;
    read_ok(csv, &o, &t, &st);
    cr_assert_str_eq(t.category_column, "cat");
    char *cats[] = {"book"}, *labels[] = {"brand:acme"};
    labels_item items[] = {
        /* m2 described again: its row is replaced, its price kept (0 = unknown) */
        {"m2", cats, 1, labels, 1, "A blue kettle", 0, 1700000000},
        /* new: "mug" is a word the file has; "kettle" is in two titles; "lonely" in one */
        {"n1", NULL, 0, NULL, 0, "Kettle and mug, lonely", 40, 0},
    };
    err_t e;
    cr_assert_eq(labels_table_upsert(&t, items, 2, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(labels_rows(&t), 3);
    cr_assert_eq(has_label(&t, "m2", "cat:book"), 1);
    cr_assert_eq(has_label(&t, "m2", "cat:film"), 0);
    cr_assert_eq(has_label(&t, "m2", "brand:acme"), 1);
    cr_assert_eq(has_label(&t, "m2", "word:kettle"), 1);
    cr_assert_eq(has_label(&t, "m2", "word:blue"), 0, "in one title only");
    cr_assert_eq(has_label(&t, "m1", "cat:film"), 1, "a row not described is kept");
    cr_assert_eq(has_label(&t, "n1", "word:mug"), 1);
    cr_assert_eq(has_label(&t, "n1", "word:kettle"), 1);
    cr_assert_eq(has_label(&t, "n1", "word:lonely"), 0);
    cr_assert_eq(has_label(&t, "n1", "price:2^5"), 1);
    uint32_t m2, n1;
    idmap_find(t.ids, "m2", 2, &m2);
    idmap_find(t.ids, "n1", 2, &n1);
    cr_assert_float_eq(t.price[m2], 3.0f, 1e-6);
    cr_assert(isnan(t.price[n1]) == 0 && t.price[n1] == 40.0f);
    size_t len;
    cr_assert_eq(strncmp(idmap_key(t.categories, t.category[m2], &len), "book", 4), 0);
    cr_assert_eq(t.category[n1], UINT32_MAX);
    labels_table_free(&t);
}

Test(labels, described_items_make_a_table) {
    labels_table t = {0};
    char *cats[] = {"tea"};
    labels_item it = {"x", cats, 1, NULL, 0, "", 0, 5};
    err_t e;
    cr_assert_eq(labels_table_upsert(&t, &it, 1, &e), ERR_OK, "%s", e.msg);
    cr_assert_str_eq(t.category_column, "category");
    cr_assert_eq(has_label(&t, "x", "category:tea"), 1);
    cr_assert_eq(t.published[0], 5);
    labels_table_free(&t);
}
