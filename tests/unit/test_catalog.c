/* Unit tests of server/catalog's descriptions (UpsertItems) and the store
 * of values of any size under them (model/idstate): checks of a bad item,
 * one durable write of many, a replacement, and everything read back after
 * a reopen, as a restarted server reads it. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"

static char dir[64];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/recd-catalog-XXXXXX");
    cr_assert(mkdtemp(dir));
}

static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(catalog, .init = setup, .fini = teardown);

Test(catalog, bad_items_are_named) {
    char buf[CATALOG_REASON];
    char *many[CATALOG_MAX_LABELS + 1], *empty[] = {""}, *bad[] = {"a\xff"};
    for (size_t i = 0; i <= CATALOG_MAX_LABELS; i++)
        many[i] = "x:y";
    catalog_item ok = {"i1", NULL, 0, NULL, 0, "", 0, 0};
    cr_assert_null(catalog_item_problem(&ok, buf));
    catalog_item it = ok;
    it.id = "";
    cr_assert_str_eq(catalog_item_problem(&it, buf), "item_id is empty");
    it = ok;
    it.labels = many, it.n_labels = CATALOG_MAX_LABELS + 1;
    cr_assert(strstr(catalog_item_problem(&it, buf), "65 labels, more than 64"));
    it = ok;
    it.categories = empty, it.n_categories = 1;
    cr_assert(strstr(catalog_item_problem(&it, buf), "categories[0] is empty"));
    it = ok;
    it.labels = bad, it.n_labels = 1;
    cr_assert(strstr(catalog_item_problem(&it, buf), "labels[0] is not valid UTF-8"));
    it = ok;
    it.price = NAN;
    cr_assert(strstr(catalog_item_problem(&it, buf), "price"));
    it = ok;
    it.price = -1;
    cr_assert(strstr(catalog_item_problem(&it, buf), "price"));
    it = ok;
    it.published = -5;
    cr_assert(strstr(catalog_item_problem(&it, buf), "negative"));
}

typedef struct seen {
    int n;
    catalog_item last;
    char title[64], label[64], category[64];
} seen;

static void note(void *ctx, const catalog_item *it) {
    seen *s = ctx;
    s->n++;
    if (strcmp(it->id, "i2")) return;
    s->last = *it;
    snprintf(s->title, sizeof s->title, "%s", it->title);
    snprintf(s->label, sizeof s->label, "%s", it->n_labels ? it->labels[0] : "");
    snprintf(s->category, sizeof s->category, "%s", it->n_categories ? it->categories[1] : "");
}

Test(catalog, descriptions_outlive_a_reopen) {
    char rules[128], items[128];
    snprintf(rules, sizeof rules, "%s/rules", dir);
    snprintf(items, sizeof items, "%s/items", dir);
    catalog *c;
    err_t e;
    cr_assert_eq(catalog_open(rules, items, &c, &e), ERR_OK, "%s", e.msg);
    unsigned long g = catalog_generation(c);
    char *cats[] = {"tea", "green tea"}, *labels[] = {"origin:japan"};
    catalog_item batch[] = {
        {"i1", NULL, 0, NULL, 0, "Old title", 0, 0},
        {"i2", cats, 2, labels, 1, "Sencha, first flush", 12.5, 1700000000},
    };
    cr_assert_eq(catalog_upsert(c, batch, 2, 0, &e), ERR_OK, "%s", e.msg);
    cr_assert_neq(catalog_generation(c), g);
    catalog_item again = {"i1", NULL, 0, NULL, 0, "New title", 0, 0};
    cr_assert_eq(catalog_upsert(c, &again, 1, 42, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(catalog_items_applied(c), 42);
    /* An unchecked bad item is refused before anything is written. */
    catalog_item bad = {"", NULL, 0, NULL, 0, "", 0, 0};
    cr_assert_eq(catalog_upsert(c, &bad, 1, 0, &e), ERR_INVALID);
    catalog_close(c);
    cr_assert_eq(catalog_open(rules, items, &c, &e), ERR_OK, "%s", e.msg);
    seen s = {0};
    catalog_each_item(c, note, &s);
    cr_assert_eq(s.n, 2);
    cr_assert_str_eq(s.title, "Sencha, first flush");
    cr_assert_str_eq(s.label, "origin:japan");
    cr_assert_str_eq(s.category, "green tea");
    cr_assert_eq(s.last.n_categories, 2);
    cr_assert_float_eq(s.last.price, 12.5, 1e-9);
    cr_assert_eq(s.last.published, 1700000000);
    cr_assert_eq(catalog_items_applied(c), 42);
    /* Rules by id cover described items too. */
    cr_assert_eq(catalog_set_available(c, "i2", 2, false, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(catalog_multiplier(c, "i2", 2), 0.0f);
    cr_assert_eq(catalog_multiplier(c, "i1", 2), 1.0f);
    catalog_close(c);
}
