/* Unit tests of what a served model makes of upserted items
 * (server/core_upsert.c) on the fuzz fixture's model, whose label mappings
 * have a known answer (fuzz_fixture.c: item label l -> e_l, bias 0.1 on the
 * last factor; member label "taste:a" -> e_0; category column "colour"):
 * the vector of a new item from its labels, categories and title, the
 * categories and times of known ones, and a visitor's vector. */
#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core_int.h"
#include "fuzz_fixture.h"

static model *m;
static catalog *cat;

static void setup(void) {
    char root[PATH_MAX], dir[PATH_MAX + 8];
    fuzz_scratch_dir("test-upsert", root);
    snprintf(dir, sizeof dir, "%s/model", root);
    model_meta meta;
    fuzz_publish_model(dir, &meta);
    err_t e;
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(catalog_open(NULL, NULL, &cat, &e), ERR_OK, "%s", e.msg);
}

static void teardown(void) {
    catalog_close(cat);
    model_close(m);
}

TestSuite(upsert, .init = setup, .fini = teardown);

Test(upsert, a_new_item_gets_the_vector_of_its_labels) {
    char *labels[] = {"colour:red", "planet:mars"}, *cats[] = {"blue"};
    catalog_item items[] = {
        /* colour:red, colour:blue (its category), word:mug (its title);
         * planet:mars and "enamel" are unknown: passed over */
        {"n1", cats, 1, labels, 2, "An enamel MUG", 0, 1700000500},
        {"n2", NULL, 0, NULL, 0, "", 0, 0},          /* nothing known: the bias */
        {"i3", cats, 1, NULL, 0, "", 0, 1700000900}, /* known: keeps its factors */
    };
    err_t e;
    cr_assert_eq(catalog_upsert(cat, items, 3, 0, &e), ERR_OK, "%s", e.msg);
    core__upserts up;
    cr_assert_eq(core__upserts_build(cat, m, &up), ERR_OK);
    cr_assert_eq(up.n_new, 2);
    uint32_t n_items = model_info(m)->n_items, n1, n2, i3;
    cr_assert_eq(core__item_lookup(m, &up, "n1", &n1), ERR_OK);
    cr_assert_eq(core__item_lookup(m, &up, "n2", &n2), ERR_OK);
    cr_assert_eq(core__item_lookup(m, &up, "i3", &i3), ERR_OK);
    cr_assert_eq(i3, 3);
    cr_assert(n1 >= n_items && n2 >= n_items && n1 != n2);
    uint32_t none;
    cr_assert_eq(core__item_lookup(m, &up, "never", &none), ERR_NOTFOUND);
    const float *v1 = up.new_vectors + (size_t)(n1 - n_items) * FUZZ_FACTORS;
    const float *v2 = up.new_vectors + (size_t)(n2 - n_items) * FUZZ_FACTORS;
    float third = 1.0f / sqrtf(3.0f);
    float want1[FUZZ_FACTORS] = {third, third, third, 0.1f}, want2[FUZZ_FACTORS] = {0, 0, 0, 0.1f};
    for (int f = 0; f < FUZZ_FACTORS; f++) {
        cr_assert_float_eq(v1[f], want1[f], 1e-6, "factor %d", f);
        cr_assert_float_eq(v2[f], want2[f], 1e-6, "factor %d", f);
    }
    size_t len;
    cr_assert_str_eq(core__item_id(m, &up, n1, &len), "n1");
    /* Times and categories: the upsert's over the model's. */
    cr_assert_not_null(up.published);
    cr_assert_eq(up.published[n1], 1700000500);
    cr_assert_eq(up.published[i3], 1700000900);
    core__category blue = {UINT32_MAX, UINT32_MAX}, toys = {UINT32_MAX, UINT32_MAX};
    cr_assert_eq(idmap_find(up.cats, "blue", 4, &blue.upserted), ERR_OK);
    cr_assert_eq(model_category_index(m, "toys", 4, &toys.model), ERR_OK);
    cr_assert(core__in_category(m, &up, n1, &blue));
    cr_assert(core__in_category(m, &up, i3, &blue));
    cr_assert(!core__in_category(m, &up, i3, &toys), "i3's upsert replaced its category");
    cr_assert(!core__in_category(m, &up, n2, &blue));
    core__upserts_free(&up);
}

Test(upsert, a_visitor_gets_the_vector_of_their_labels) {
    float x[FUZZ_FACTORS] = {9, 9, 9, 9};
    char *none[] = {"planet:mars"}, *some[] = {"taste:a", "planet:mars"};
    cr_assert_eq(core__labels_vector(m, none, 1, x), 0);
    cr_assert_eq(x[0], 9.0f, "untouched when no label is known");
    cr_assert_eq(core__labels_vector(m, some, 2, x), 1);
    cr_assert_float_eq(x[0], 1.0f, 1e-6);
    cr_assert_float_eq(x[1], 0.0f, 1e-6);
}

/* Diversity over a pool that holds upserted items looks at their vectors:
 * of two new items with the same labels (cosine 1), the second loses to a
 * less relevant item unlike the first; with their vectors ignored it
 * would come second. */
Test(upsert, diversity_sees_the_vectors_of_new_items) {
    char *red[] = {"colour:red"};
    catalog_item items[] = {
        {"twin1", NULL, 0, red, 1, "", 0, 0},
        {"twin2", NULL, 0, red, 1, "", 0, 0},
        {"other", NULL, 0, NULL, 0, "mug", 0, 0},
    };
    err_t e;
    cr_assert_eq(catalog_upsert(cat, items, 3, 0, &e), ERR_OK, "%s", e.msg);
    core__upserts up;
    cr_assert_eq(core__upserts_build(cat, m, &up), ERR_OK);
    uint32_t t1, t2, other;
    cr_assert_eq(core__item_lookup(m, &up, "twin1", &t1), ERR_OK);
    cr_assert_eq(core__item_lookup(m, &up, "twin2", &t2), ERR_OK);
    cr_assert_eq(core__item_lookup(m, &up, "other", &other), ERR_OK);
    score_extra_items extra = {up.new_vectors, up.new_norms};
    for (int diverse = 0; diverse < 2; diverse++) {
        topk_entry pool[] = {{t1, 1.0f}, {t2, 0.99f}, {other, 0.5f}}, out[2];
        uint32_t n;
        cr_assert_eq(score_diversify(m, &extra, pool, 3, 2, diverse ? 0.9f : 0.0f, out, &n, &e),
                     ERR_OK);
        cr_assert_eq(n, 2);
        cr_assert_eq(out[0].index, t1);
        cr_assert_eq(out[1].index, diverse ? other : t2, "diversity %d", diverse);
        cr_assert_float_eq(out[1].score, diverse ? 0.5f : 0.99f, 1e-6, "scores are kept");
    }
    core__upserts_free(&up);
}
