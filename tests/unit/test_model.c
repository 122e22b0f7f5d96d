/* Unit tests of model: real LMDB files in a fresh /tmp folder per test. */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <float.h>
#include <ftw.h>
#include <limits.h>
#include <lmdb.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"
#include "panel.h"
#include "mf.h"

static char root[] = "/tmp/recd-test-model-XXXXXX";

static void setup(void) {
    cr_assert_not_null(mkdtemp(root));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void teardown(void) {
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(model, .init = setup, .fini = teardown);

/* path under the test folder; static buffers rotate so that two can be used
 * in one call. */
static const char *at(const char *fmt, const char *arg) {
    static char buf[4][PATH_MAX];
    static int next;
    char *p = buf[next++ % 4];
    int n = snprintf(p, PATH_MAX, "%s/", root);
    snprintf(p + n, PATH_MAX - (size_t)n, fmt, arg);
    return p;
}

/* A small model; ids include bytes a C string would mishandle. */
static const char *const user_ids[] = {"alice", "", "u\0x", "\xff\xfe\x01", "bob"};
static const size_t user_len[] = {5, 0, 3, 3, 3};
static const char *const item_ids[] = {"apple", "pear", "a\0b", "\x80"};
static const size_t item_len[] = {5, 4, 3, 1};
#define NU 5
#define NI 4
#define K 3

typedef struct fixture {
    idmap *users, *items;
    float uf[NU * K], itf[NI * K], pop[NI];
    csr ui;
    model_input in;
} fixture;

/* Fills f with the small model; seed changes the factors (content). */
static void fixture_init(fixture *f, float seed) {
    f->users = idmap_new();
    f->items = idmap_new();
    uint32_t idx;
    for (int i = 0; i < NU; i++)
        cr_assert_eq(idmap_intern(f->users, user_ids[i], user_len[i], &idx), ERR_OK);
    for (int i = 0; i < NI; i++)
        cr_assert_eq(idmap_intern(f->items, item_ids[i], item_len[i], &idx), ERR_OK);
    for (int i = 0; i < NU * K; i++)
        f->uf[i] = seed + 0.5f * (float)i;
    for (int i = 0; i < NI * K; i++)
        f->itf[i] = seed - 0.25f * (float)i;
    float pop[NI] = {3, 7, 3, 9}; /* order 3, 1, 0, 2 (tie 0/2 by index) */
    memcpy(f->pop, pop, sizeof pop);
    uint32_t rows[] = {0, 0, 2, 4, 4, 4}, cols[] = {3, 1, 0, 0, 2, 3};
    cr_assert_eq(csr_from_triplets(NU, NI, rows, cols, NULL, 6, &f->ui, NULL), ERR_OK);
    memset(&f->in, 0, sizeof f->in);
    f->in.meta.factors = K;
    f->in.meta.n_users = NU;
    f->in.meta.n_items = NI;
    f->in.meta.interactions = 6;
    f->in.meta.iterations = 15;
    f->in.meta.regularization = 0.1f;
    f->in.meta.alpha = 40.0f;
    f->in.meta.loss = 1.25;
    f->in.meta.train_seconds = 2.5;
    strcpy(f->in.meta.source_fingerprint, "0123456789abcdef");
    f->in.users = f->users;
    f->in.items = f->items;
    f->in.user_factors = f->uf;
    f->in.item_factors = f->itf;
    f->in.user_items = &f->ui;
    f->in.item_popularity = f->pop;
    f->in.meta.data_until = 1323435000;
}

static void fixture_free(fixture *f) {
    idmap_free(f->users);
    idmap_free(f->items);
    csr_free(&f->ui);
}

/* Publishes a fixture with this seed into dir; returns its metadata. */
static model_meta publish(const char *dir, float seed) {
    fixture f;
    fixture_init(&f, seed);
    model_meta meta;
    err_t e = {0};
    int rc = model_publish(dir, &f.in, &meta, &e);
    cr_assert_eq(rc, ERR_OK, "publish: %s", e.msg);
    fixture_free(&f);
    return meta;
}

/* Opens dir expecting failure with code; returns the message. */
static const char *refuse(const char *dir, int code) {
    static err_t e;
    model *m = (model *)1;
    int rc = model_open(dir, &m, &e);
    cr_assert_eq(rc, code, "open %s: got %d (%s), expected %d", dir, rc, e.msg, code);
    cr_assert_null(m);
    return e.msg;
}

/* Writes key = val into the environment of a version folder, as a damaged
 * or foreign writer would; del removes the key instead. */
static void patch(const char *vdir, const char *key, const void *val, size_t len, int del) {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    cr_assert_eq(mdb_env_create(&env), 0);
    cr_assert_eq(mdb_env_set_mapsize(env, 64 << 20), 0);
    cr_assert_eq(mdb_env_open(env, vdir, MDB_NOLOCK, 0644), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
    MDB_val k = {strlen(key), (void *)key}, v = {len, (void *)val};
    cr_assert_eq(del ? mdb_del(txn, dbi, &k, NULL) : mdb_put(txn, dbi, &k, &v, 0), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static size_t count_versions(const char *dir) {
    char(*list)[MODEL_VERSION_MAX];
    size_t n;
    cr_assert_eq(model_versions(dir, &list, &n, NULL), ERR_OK);
    free(list);
    return n;
}

Test(model, round_trip) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/store", root);
    fixture f;
    fixture_init(&f, 1.0f);
    model_meta pub;
    err_t e = {0};
    cr_assert_eq(model_publish(dir, &f.in, &pub, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(pub.format_version, MODEL_FORMAT_VERSION);
    cr_assert(pub.trained_at > 1600000000);

    model *m;
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    const model_meta *mt = model_info(m);
    cr_assert_eq(mt->factors, K);
    cr_assert_eq(mt->n_users, NU);
    cr_assert_eq(mt->n_items, NI);
    cr_assert_eq(mt->interactions, 6);
    cr_assert_eq(mt->iterations, 15);
    cr_assert_eq(mt->regularization, 0.1f);
    cr_assert_eq(mt->alpha, 40.0f);
    cr_assert_eq(mt->loss, 1.25);
    cr_assert_eq(mt->train_seconds, 2.5);
    cr_assert_eq(mt->trained_at, pub.trained_at);
    cr_assert_str_eq(mt->version, pub.version);
    cr_assert_str_eq(mt->source_fingerprint, "0123456789abcdef");

    cr_assert_arr_eq(model_user_factors(m), f.uf, sizeof f.uf);
    cr_assert_arr_eq(model_item_factors(m), f.itf, sizeof f.itf);
    for (uint32_t i = 0; i < NI; i++) {
        const float *r = f.itf + i * K;
        float want = sqrtf(r[0] * r[0] + r[1] * r[1] + r[2] * r[2]);
        cr_assert_float_eq(model_item_norms(m)[i], want, 1e-5f * want);
    }
    for (uint32_t i = 0; i < NU; i++) {
        uint32_t idx = 99;
        size_t len;
        cr_assert_eq(model_user_index(m, user_ids[i], user_len[i], &idx), ERR_OK);
        cr_assert_eq(idx, i);
        const char *id = model_user_id(m, i, &len);
        cr_assert_eq(len, user_len[i]);
        cr_assert_eq(memcmp(id, user_ids[i], len), 0);
        uint32_t n;
        const uint32_t *items = model_user_items(m, i, &n);
        cr_assert_eq(n, f.ui.indptr[i + 1] - f.ui.indptr[i]);
        cr_assert_arr_eq(items, f.ui.indices + f.ui.indptr[i], n * sizeof *items);
        cr_assert_arr_eq(model_user_item_counts(m, i), f.ui.values + f.ui.indptr[i],
                         n * sizeof(float));
    }
    cr_assert_eq(model_info(m)->data_until, 1323435000);
    cr_assert_eq(model_n_categories(m), 0, "no categories were published");
    cr_assert_null(model_item_categories(m));
    for (uint32_t i = 0; i < NI; i++) {
        uint32_t idx = 99;
        size_t len;
        cr_assert_eq(model_item_index(m, item_ids[i], item_len[i], &idx), ERR_OK);
        cr_assert_eq(idx, i);
        const char *id = model_item_id(m, i, &len);
        cr_assert_eq(len, item_len[i]);
        cr_assert_eq(memcmp(id, item_ids[i], len), 0);
    }
    uint32_t idx;
    /* Prefixes, extensions and the other space's ids are absent. */
    cr_assert_eq(model_user_index(m, "u", 1, &idx), ERR_NOTFOUND);
    cr_assert_eq(model_user_index(m, "u\0xy", 4, &idx), ERR_NOTFOUND);
    cr_assert_eq(model_user_index(m, "alic", 4, &idx), ERR_NOTFOUND);
    cr_assert_eq(model_user_index(m, "apple", 5, &idx), ERR_NOTFOUND);
    cr_assert_eq(model_item_index(m, "", 0, &idx), ERR_NOTFOUND);
    cr_assert_eq(model_item_index(m, "a\0c", 3, &idx), ERR_NOTFOUND);
    uint32_t order[NI] = {3, 1, 0, 2};
    cr_assert_arr_eq(model_popular_items(m), order, sizeof order);
    cr_assert_arr_eq(model_item_popularity(m), f.pop, sizeof f.pop);
    /* Blobs are read in place and must be aligned for their element type. */
    cr_assert_eq((uintptr_t)model_user_factors(m) % 16, 0);
    cr_assert_eq((uintptr_t)model_popular_items(m) % 16, 0);
    model_close(m);

    /* The version folder itself opens too. */
    cr_assert_eq(model_open(at("store/versions/%s", pub.version), &m, &e), ERR_OK, "%s", e.msg);
    cr_assert_str_eq(model_info(m)->version, pub.version);
    model_close(m);
    fixture_free(&f);
}

Test(model, many_ids_lookup) {
    /* Enough ids that the index collides and blobs span many pages. */
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/big", root);
    enum { N = 5000 };
    fixture f;
    fixture_init(&f, 0);
    idmap *users = idmap_new(), *items = idmap_new();
    static float uf[N * K], itf[N * K], pop[N];
    uint32_t idx;
    for (uint32_t i = 0; i < N; i++) {
        char id[32];
        int len = snprintf(id, sizeof id, "user-%u", i);
        cr_assert_eq(idmap_intern(users, id, (size_t)len, &idx), ERR_OK);
        len = snprintf(id, sizeof id, "item-%u", i);
        cr_assert_eq(idmap_intern(items, id, (size_t)len, &idx), ERR_OK);
        pop[i] = (float)(i % 7);
    }
    for (uint32_t i = 0; i < N * K; i++)
        uf[i] = itf[i] = (float)i;
    csr ui;
    uint32_t rows[] = {0, N - 1}, cols[] = {N - 1, 0};
    cr_assert_eq(csr_from_triplets(N, N, rows, cols, NULL, 2, &ui, NULL), ERR_OK);
    model_input in = f.in;
    in.meta.n_users = in.meta.n_items = N;
    in.users = users;
    in.items = items;
    in.user_factors = uf;
    in.item_factors = itf;
    in.user_items = &ui;
    in.item_popularity = pop;
    err_t e;
    cr_assert_eq(model_publish(dir, &in, NULL, &e), ERR_OK, "%s", e.msg);
    model *m;
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    for (uint32_t i = 0; i < N; i++) {
        char id[32];
        int len = snprintf(id, sizeof id, "user-%u", i);
        cr_assert_eq(model_user_index(m, id, (size_t)len, &idx), ERR_OK);
        cr_assert_eq(idx, i);
        len = snprintf(id, sizeof id, "item-%u", i);
        cr_assert_eq(model_item_index(m, id, (size_t)len, &idx), ERR_OK);
        cr_assert_eq(idx, i);
        len = snprintf(id, sizeof id, "user-%u", i + N);
        cr_assert_eq(model_user_index(m, id, (size_t)len, &idx), ERR_NOTFOUND);
    }
    const uint32_t *popular = model_popular_items(m);
    for (uint32_t i = 1; i < N; i++) {
        float a = pop[popular[i - 1]], b = pop[popular[i]];
        cr_assert(a > b || (a == b && popular[i - 1] < popular[i]));
    }
    uint32_t n;
    cr_assert_eq(*model_user_items(m, N - 1, &n), 0);
    cr_assert_eq(n, 1);
    model_close(m);
    csr_free(&ui);
    idmap_free(users);
    idmap_free(items);
    fixture_free(&f);
}

Test(model, publish_twice_and_rollback) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/store", root);
    model_meta a = publish(dir, 1.0f);
    model_meta b = publish(dir, 1.0f); /* same content, most likely same second */
    model_meta c = publish(dir, 2.0f);
    cr_assert_str_neq(a.version, b.version);
    cr_assert_str_neq(b.version, c.version);
    cr_assert_str_neq(a.version, c.version);
    /* Same content gives the same fingerprint part after the time. */
    cr_assert_eq(strncmp(a.version + 17, b.version + 17, 8), 0);

    char cur[MODEL_VERSION_MAX];
    err_t e;
    cr_assert_eq(model_current_version(dir, cur, &e), ERR_OK, "%s", e.msg);
    cr_assert_str_eq(cur, c.version);
    model *m;
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    cr_assert_str_eq(model_info(m)->version, c.version);
    cr_assert_eq(model_user_factors(m)[0], 2.0f);
    model_close(m);

    char(*list)[MODEL_VERSION_MAX];
    size_t n;
    cr_assert_eq(model_versions(dir, &list, &n, &e), ERR_OK);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(list[0], a.version);
    cr_assert_str_eq(list[1], b.version);
    cr_assert_str_eq(list[2], c.version);
    free(list);

    cr_assert_eq(model_rollback(dir, cur, &e), ERR_OK, "%s", e.msg);
    cr_assert_str_eq(cur, b.version);
    cr_assert_eq(model_rollback(dir, cur, &e), ERR_OK, "%s", e.msg);
    cr_assert_str_eq(cur, a.version);
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    cr_assert_str_eq(model_info(m)->version, a.version);
    cr_assert_eq(model_user_factors(m)[0], 1.0f);
    model_close(m);
    cr_assert_eq(model_rollback(dir, cur, &e), ERR_NOTFOUND);
    cr_assert_eq(model_current_version(dir, cur, &e), ERR_OK);
    cr_assert_str_eq(cur, a.version);
}

Test(model, refuses_missing) {
    cr_assert_not_null(strstr(refuse(at("%s", "nope"), ERR_NOTFOUND), "nope"));
    mkdir(at("%s", "empty"), 0755);
    cr_assert_not_null(strstr(refuse(at("%s", "empty"), ERR_NOTFOUND), "empty/current"));
    char v[MODEL_VERSION_MAX];
    cr_assert_eq(model_current_version(at("%s", "empty"), v, NULL), ERR_NOTFOUND);
    cr_assert_eq(model_rollback(at("%s", "empty"), v, NULL), ERR_NOTFOUND);
    /* current pointing at a version that was deleted */
    model_meta a = publish(at("%s", "store"), 1.0f);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/store/versions/%s/data.mdb", root, a.version);
    cr_assert_eq(unlink(path), 0);
    cr_assert_not_null(strstr(refuse(at("%s", "store"), ERR_NOTFOUND), a.version));
}

Test(model, use_makes_a_checked_version_current) {
    const char *dir = at("%s", "use");
    model_meta a = publish(dir, 1.0f), b = publish(dir, 2.0f);
    char cur[MODEL_VERSION_MAX];
    err_t e;
    cr_assert_eq(model_use(dir, a.version, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(model_current_version(dir, cur, NULL), ERR_OK);
    cr_assert_str_eq(cur, a.version);
    cr_assert_eq(model_use(dir, a.version, &e), ERR_OK, "the current one again: nothing to do");
    cr_assert_eq(model_use(dir, "20991231T000000Z-00000000", &e), ERR_NOTFOUND, "not copied here");
    cr_assert_eq(model_use(dir, "../../etc", &e), ERR_INVALID);
    /* A broken (half-copied) version never becomes current. */
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/versions/%s/data.mdb", dir, b.version);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(truncate(path, st.st_size / 2), 0);
    cr_assert_eq(model_use(dir, b.version, &e), ERR_FORMAT);
    cr_assert_eq(model_current_version(dir, cur, NULL), ERR_OK);
    cr_assert_str_eq(cur, a.version);
}

/* Copies the data.mdb of dir's current version into a new version-like
 * folder named name; returns that folder. */
static const char *copy_current(const char *dir, const char *name) {
    char v[MODEL_VERSION_MAX], src[PATH_MAX];
    cr_assert_eq(model_current_version(dir, v, NULL), ERR_OK);
    snprintf(src, sizeof src, "%s/versions/%s/data.mdb", dir, v);
    const char *dst = at("%s", name);
    cr_assert_eq(mkdir(dst, 0755), 0);
    FILE *in = fopen(src, "rb"), *out = fopen(at("%s/data.mdb", name), "wb");
    cr_assert(in && out);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        cr_assert_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
    return dst;
}

Test(model, refuses_truncated) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/store", root);
    publish(dir, 1.0f);
    char copy[PATH_MAX];
    strcpy(copy, copy_current(dir, "copy"));
    model *m;
    err_t e;
    cr_assert_eq(model_open(copy, &m, &e), ERR_OK, "%s", e.msg); /* the copy is fine */
    model_close(m);
    struct stat st;
    cr_assert_eq(stat(at("%s/data.mdb", "copy"), &st), 0);
    cr_assert_eq(truncate(at("%s/data.mdb", "copy"), st.st_size / 2), 0);
    cr_assert_not_null(strstr(refuse(copy, ERR_FORMAT), "truncated"));
}

Test(model, refuses_garbage) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/junk", root);
    cr_assert_eq(mkdir(dir, 0755), 0);
    FILE *f = fopen(at("%s/data.mdb", "junk"), "wb");
    for (int i = 0; i < 16384; i++)
        fputc((i * 7919) & 0xff, f);
    fclose(f);
    cr_assert_not_null(strstr(refuse(dir, ERR_FORMAT), "not an LMDB file"));
    f = fopen(at("%s/data.mdb", "junk"), "wb");
    fputs("hello", f);
    fclose(f);
    cr_assert_not_null(strstr(refuse(dir, ERR_FORMAT), "not an LMDB file"));
    f = fopen(at("%s/data.mdb", "junk"), "wb");
    fclose(f);
    cr_assert_not_null(strstr(refuse(dir, ERR_FORMAT), "not an LMDB file"));
}

Test(model, refuses_wrong_format_version) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/store", root);
    model_meta a = publish(dir, 1.0f);
    unsigned char v99[4] = {99, 0, 0, 0};
    patch(at("store/versions/%s", a.version), "format_version", v99, 4, 0);
    const char *msg = refuse(dir, ERR_VERSION);
    cr_assert_not_null(strstr(msg, "format version 99"), "%s", msg);
    char reads[64];
    snprintf(reads, sizeof reads, "reads format version %d", MODEL_FORMAT_VERSION);
    cr_assert_not_null(strstr(msg, reads), "%s", msg);
}

Test(model, refuses_missing_or_inconsistent_keys) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/store", root);
    model_meta a = publish(dir, 1.0f);
    char vdir[PATH_MAX];
    snprintf(vdir, sizeof vdir, "%s/store/versions/%s", root, a.version);
    char copy[PATH_MAX];
    strcpy(copy, copy_current(dir, "copy"));
    patch(vdir, "item_norms", NULL, 0, 1);
    const char *msg = refuse(dir, ERR_FORMAT);
    cr_assert_not_null(strstr(msg, "missing key item_norms"), "%s", msg);
    patch(vdir, "format_version", NULL, 0, 1);
    msg = refuse(dir, ERR_FORMAT);
    cr_assert_not_null(strstr(msg, "missing key format_version"), "%s", msg);

    /* More items than the blobs hold: the first blob sized by n_items. */
    unsigned char many[4] = {0, 0, 1, 0};
    patch(copy, "n_items", many, 4, 0);
    msg = refuse(copy, ERR_FORMAT);
    cr_assert_not_null(strstr(msg, "item_factors"), "%s", msg);
    /* A metadata value of the wrong width. */
    patch(copy, "n_items", many, 2, 0);
    msg = refuse(copy, ERR_FORMAT);
    cr_assert_not_null(strstr(msg, "n_items"), "%s", msg);
    /* A blob too short for its count (it would also sit on a leaf page). */
    unsigned char four[4] = {4, 0, 0, 0};
    patch(copy, "n_items", four, 4, 0);
    patch(copy, "popular_items", four, 4, 0);
    msg = refuse(copy, ERR_FORMAT);
    cr_assert_not_null(strstr(msg, "popular_items has 4 bytes"), "%s", msg);
}

/* The bfloat16 item panels are stored packed from the item factors; a model
 * published before they existed gets them built at open; a panel blob of
 * the wrong size is refused. */
Test(model, item_panels_stored_built_or_refused) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/store", root);
    model_meta a = publish(dir, 1.0f);
    fixture f;
    fixture_init(&f, 1.0f);
    static uint16_t want[PANEL_WIDTH * 2 * ((K + 1) / 2)];
    panel_pack(f.itf, NI, K, want);
    err_t e;
    model *m;
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    cr_assert_arr_eq(model_item_panels(m), want, sizeof want);
    model_close(m);
    char vdir[PATH_MAX];
    snprintf(vdir, sizeof vdir, "%s/store/versions/%s", root, a.version);
    patch(vdir, "item_panels", NULL, 0, 1);
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    cr_assert_arr_eq(model_item_panels(m), want, sizeof want);
    model_close(m);
    patch(vdir, "item_panels", want, sizeof want - 4, 0);
    const char *msg = refuse(dir, ERR_FORMAT);
    cr_assert_not_null(strstr(msg, "item_panels"), "%s", msg);
    fixture_free(&f);
}

/* The popularity blend round-trips (finite and +inf), is absent from a
 * pure ALS model (read as 0, the format-2 models published before it), and
 * a NaN or negative one is refused at publication and at open. */
Test(model, popularity_blend_round_trip_and_refusals) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/store", root);
    model_meta a = publish(dir, 1.0f);
    model *m;
    err_t e = {0};
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    cr_expect_eq(model_info(m)->popularity_blend, 0.0f);
    model_close(m);
    fixture f;
    fixture_init(&f, 2.0f);
    const float blends[] = {0.25f, INFINITY};
    for (int i = 0; i < 2; i++) {
        f.in.meta.popularity_blend = blends[i];
        cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_OK, "%s", e.msg);
        cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
        cr_expect_eq(model_info(m)->popularity_blend, blends[i]);
        model_close(m);
    }
    const float bad[] = {-1.0f, NAN};
    for (int i = 0; i < 2; i++) {
        f.in.meta.popularity_blend = bad[i];
        cr_expect_eq(model_publish(dir, &f.in, NULL, &e), ERR_INVALID);
        cr_expect_not_null(strstr(e.msg, "popularity_blend"), "%s", e.msg);
    }
    fixture_free(&f);
    /* The first version, patched as a foreign writer would. */
    char vdir[PATH_MAX];
    snprintf(vdir, sizeof vdir, "%s/store/versions/%s", root, a.version);
    for (int i = 0; i < 2; i++) {
        patch(vdir, "popularity_blend", &bad[i], 4, 0);
        const char *msg = refuse(vdir, ERR_FORMAT);
        cr_expect_not_null(strstr(msg, "popularity_blend"), "%s", msg);
    }
}

/* Overwrites len bytes at offset of blob key (same size, so it stays on its
 * overflow pages), as a damaged file would hold them. */
static void damage(const char *vdir, const char *key, size_t offset, const void *bytes,
                   size_t len) {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    cr_assert_eq(mdb_env_create(&env), 0);
    cr_assert_eq(mdb_env_set_mapsize(env, 64 << 20), 0);
    cr_assert_eq(mdb_env_open(env, vdir, MDB_NOLOCK, 0644), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
    MDB_val k = {strlen(key), (void *)key}, v;
    cr_assert_eq(mdb_get(txn, dbi, &k, &v), 0);
    cr_assert(offset + len <= v.mv_size);
    char *copy = malloc(v.mv_size);
    memcpy(copy, v.mv_data, v.mv_size);
    memcpy(copy + offset, bytes, len);
    v.mv_data = copy;
    cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    free(copy);
}

/* Found by fuzz_model: sizes alone let through offsets and indexes that
 * point outside their blobs or past n_items, which servers then use to
 * index arrays. */
Test(model, refuses_offsets_and_indexes_outside_the_counts) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/store", root);
    publish(dir, 1.0f);
    uint64_t offset = 9; /* user 1's id would end before it starts */
    damage(copy_current(dir, "ids"), "user_ids", 1 * sizeof(uint64_t), &offset, sizeof offset);
    const char *msg = refuse(at("%s", "ids"), ERR_FORMAT);
    cr_assert_not_null(strstr(msg, "user_ids has offsets that do not ascend"), "%s", msg);
    uint32_t item = NI; /* user 0's first purchase */
    damage(copy_current(dir, "csr"), "user_items", (NU + 1) * sizeof(uint64_t), &item, sizeof item);
    msg = refuse(at("%s", "csr"), ERR_FORMAT);
    cr_assert_not_null(strstr(msg, "row 0 is not sorted distinct items"), "%s", msg);
    uint64_t indptr = 7; /* past nnz = 6, and above row 2's end */
    damage(copy_current(dir, "indptr"), "user_items", 2 * sizeof(uint64_t), &indptr, sizeof indptr);
    msg = refuse(at("%s", "indptr"), ERR_FORMAT);
    cr_assert_not_null(strstr(msg, "indptr that does not ascend"), "%s", msg);
    item = 99;
    damage(copy_current(dir, "popular"), "popular_items", 0, &item, sizeof item);
    msg = refuse(at("%s", "popular"), ERR_FORMAT);
    cr_assert_not_null(strstr(msg, "popular_items has an item index"), "%s", msg);
}

/* Publication refuses non-finite factors, so a file holding one is damaged
 * or forged: served, an item factor blob of NaNs gave PERSONALIZED lists of
 * no items. Refused at open, in each float blob and in the panels. */
Test(model, refuses_non_finite_factors_norms_and_panels) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/store", root);
    publish(dir, 1.0f);
    static float nans[NI * K];
    for (size_t i = 0; i < NI * K; i++)
        nans[i] = NAN;
    damage(copy_current(dir, "allnan"), "item_factors", 0, nans, sizeof nans);
    const char *msg = refuse(at("%s", "allnan"), ERR_FORMAT);
    cr_assert_not_null(strstr(msg, "item_factors holds a value that is not finite"), "%s", msg);
    float inf = -INFINITY;
    damage(copy_current(dir, "uinf"), "user_factors", (NU * K - 1) * sizeof(float), &inf,
           sizeof inf);
    msg = refuse(at("%s", "uinf"), ERR_FORMAT);
    cr_assert_not_null(strstr(msg, "user_factors holds"), "%s", msg);
    float nan = NAN;
    damage(copy_current(dir, "norm"), "item_norms", sizeof(float), &nan, sizeof nan);
    msg = refuse(at("%s", "norm"), ERR_FORMAT);
    cr_assert_not_null(strstr(msg, "item_norms holds"), "%s", msg);
    uint16_t bf16_nan = 0x7fc0;
    damage(copy_current(dir, "panel"), "item_panels", 2 * sizeof(uint16_t), &bf16_nan,
           sizeof bf16_nan);
    msg = refuse(at("%s", "panel"), ERR_FORMAT);
    cr_assert_not_null(strstr(msg, "item_panels holds"), "%s", msg);
    /* The largest finite values are fine. */
    float big = FLT_MAX;
    damage(copy_current(dir, "big"), "item_factors", 0, &big, sizeof big);
    err_t e;
    model *m;
    cr_assert_eq(model_open(at("%s", "big"), &m, &e), ERR_OK, "%s", e.msg);
    model_close(m);
}

Test(model, pruning_keeps_newest) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/store", root);
    enum { N = MODEL_KEEP_VERSIONS + 3 };
    model_meta pub[N];
    for (int i = 0; i < N; i++)
        pub[i] = publish(dir, (float)i);
    char(*list)[MODEL_VERSION_MAX];
    size_t n;
    cr_assert_eq(model_versions(dir, &list, &n, NULL), ERR_OK);
    cr_assert_eq(n, MODEL_KEEP_VERSIONS);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(list[i], pub[N - MODEL_KEEP_VERSIONS + i].version);
    free(list);
    struct stat st;
    cr_assert_neq(stat(at("store/versions/%s", pub[0].version), &st), 0);
    /* Every kept version can be rolled back to, then no further. */
    char cur[MODEL_VERSION_MAX];
    for (int i = MODEL_KEEP_VERSIONS - 2; i >= 0; i--) {
        cr_assert_eq(model_rollback(dir, cur, NULL), ERR_OK);
        cr_assert_str_eq(cur, pub[N - MODEL_KEEP_VERSIONS + i].version);
    }
    cr_assert_eq(model_rollback(dir, cur, NULL), ERR_NOTFOUND);
}

Test(model, leftover_tmp_is_ignored_then_cleaned) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/store", root);
    publish(dir, 1.0f);
    char tmp[PATH_MAX];
    strcpy(tmp, at("%s", "store/versions/.tmp-20200101T000000Z-deadbeef-999999"));
    cr_assert_eq(mkdir(tmp, 0755), 0);
    FILE *f =
        fopen(at("%s/data.mdb", "store/versions/.tmp-20200101T000000Z-deadbeef-999999"), "wb");
    fputs("half written", f);
    fclose(f);
    cr_assert_eq(symlink("versions/nothing", at("%s", "store/.current.tmp-999999")), 0);
    /* A foreign folder in versions/ is neither a version nor removed. */
    cr_assert_eq(mkdir(at("%s", "store/versions/notes"), 0755), 0);
    model *m;
    err_t e;
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    model_close(m);
    cr_assert_eq(count_versions(dir), 1);
    publish(dir, 2.0f);
    struct stat st;
    cr_assert_neq(lstat(tmp, &st), 0);
    cr_assert_neq(lstat(at("%s", "store/.current.tmp-999999"), &st), 0);
    cr_assert_eq(stat(at("%s", "store/versions/notes"), &st), 0);
    cr_assert_eq(count_versions(dir), 2);
}

Test(model, zero_users_one_item) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/store", root);
    idmap *users = idmap_new(), *items = idmap_new();
    uint32_t idx;
    cr_assert_eq(idmap_intern(items, "only", 4, &idx), ERR_OK);
    float itf[K] = {3, 4, 0}, pop[1] = {1};
    csr ui;
    cr_assert_eq(csr_from_triplets(0, 1, NULL, NULL, NULL, 0, &ui, NULL), ERR_OK);
    model_input in = {0};
    in.meta.factors = K;
    in.meta.n_items = 1;
    in.users = users;
    in.items = items;
    in.item_factors = itf;
    in.user_items = &ui;
    in.item_popularity = pop;
    err_t e;
    cr_assert_eq(model_publish(dir, &in, NULL, &e), ERR_OK, "%s", e.msg);
    model *m;
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(model_info(m)->n_users, 0);
    cr_assert_eq(model_user_index(m, "", 0, &idx), ERR_NOTFOUND);
    cr_assert_eq(model_user_index(m, "only", 4, &idx), ERR_NOTFOUND);
    cr_assert_eq(model_item_index(m, "only", 4, &idx), ERR_OK);
    cr_assert_eq(idx, 0);
    cr_assert_eq(model_popular_items(m)[0], 0);
    cr_assert_float_eq(model_item_norms(m)[0], 5.0f, 1e-6f);
    cr_assert_str_empty(model_info(m)->source_fingerprint);
    model_close(m);
    csr_free(&ui);
    idmap_free(users);
    idmap_free(items);
}

Test(model, publish_refuses_inconsistent_input) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/store", root);
    fixture f;
    fixture_init(&f, 1.0f);
    err_t e;
    f.in.meta.n_items = NI + 1;
    cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_INVALID);
    f.in.meta.n_items = NI;
    f.itf[2] = NAN;
    cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "not finite"), "%s", e.msg);
    f.itf[2] = 0;
    f.pop[1] = NAN;
    cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_INVALID);
    f.pop[1] = 1;
    f.in.meta.factors = 0;
    cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_INVALID);
    f.in.meta.factors = K;
    char v[MODEL_VERSION_MAX];
    cr_assert_eq(model_current_version(dir, v, NULL), ERR_NOTFOUND); /* nothing published */
    fixture_free(&f);
}

Test(model, item_categories_round_trip) {
    fixture f;
    fixture_init(&f, 1.0f);
    idmap *cats = idmap_new();
    uint32_t tools, toys;
    cr_assert_eq(idmap_intern(cats, "tools", 5, &tools), ERR_OK);
    cr_assert_eq(idmap_intern(cats, "toys", 4, &toys), ERR_OK);
    uint32_t item_category[NI];
    for (uint32_t i = 0; i < NI; i++)
        item_category[i] = i == 0 ? UINT32_MAX : (i % 2 ? tools : toys);
    f.in.categories = cats;
    f.in.item_category = item_category;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/cats", root);
    err_t e = {0};
    cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_OK, "%s", e.msg);
    model *m;
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(model_n_categories(m), 2);
    cr_assert_arr_eq(model_item_categories(m), item_category, sizeof item_category);
    uint32_t idx;
    cr_assert_eq(model_category_index(m, "toys", 4, &idx), ERR_OK);
    cr_assert_eq(idx, toys);
    cr_assert_eq(model_category_index(m, "food", 4, &idx), ERR_NOTFOUND);
    size_t len;
    const char *id = model_category_id(m, tools, &len);
    cr_assert(len == 5 && memcmp(id, "tools", 5) == 0);
    model_close(m);
    item_category[1] = 7; /* no such category */
    cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_INVALID);
    idmap_free(cats);
    fixture_free(&f);
}

/* A churn part for the fixture: 2 inputs, user 1 not scored. */
typedef struct churn_fixture {
    const char *names[2];
    double coef[2], mean[2], scale[2];
    float features[NU * 2], prob[NU], rec[NU], freq[NU], money[NU];
    uint8_t band[NU], segment[NU], tier[NU];
    model_churn c;
} churn_fixture;

static void churn_fixture_init(churn_fixture *cf) {
    memset(cf, 0, sizeof *cf);
    cf->names[0] = "log_recency_days";
    cf->names[1] = "one_day_buyer";
    cf->coef[0] = 0.75, cf->coef[1] = -0.5;
    cf->mean[0] = 2, cf->mean[1] = 0.25;
    cf->scale[0] = 0.5, cf->scale[1] = 4;
    for (int u = 0; u < NU; u++) {
        cf->features[2 * u] = 1.0f + (float)u;
        cf->features[2 * u + 1] = (float)(u % 2);
        cf->prob[u] = 0.1f + 0.2f * (float)u;
        cf->band[u] = (uint8_t)(u % 3);
        cf->segment[u] = (uint8_t)u;
        cf->tier[u] = (uint8_t)(4 - u);
        cf->rec[u] = 10.5f * (float)u;
        cf->freq[u] = (float)(u + 1);
        cf->money[u] = 100.25f * (float)u;
    }
    cf->prob[1] = NAN;
    cf->band[1] = cf->segment[1] = cf->tier[1] = MODEL_CHURN_NONE;
    model_churn c = {.n_features = 2,
                     .feature_names = cf->names,
                     .coef = cf->coef,
                     .mean = cf->mean,
                     .scale = cf->scale,
                     .intercept = -0.125,
                     .platt_a = 0.9,
                     .platt_b = -0.3,
                     .horizon_days = 90,
                     .scored_at = 1323435001,
                     .bands = {0.4f, 0.7f},
                     .tiers = {3000, 8000, 20000, 50000},
                     .features = cf->features,
                     .probability = cf->prob,
                     .band = cf->band,
                     .segment = cf->segment,
                     .tier = cf->tier,
                     .recency_days = cf->rec,
                     .frequency = cf->freq,
                     .monetary = cf->money};
    cf->c = c;
}

Test(model, churn_round_trip) {
    fixture f;
    fixture_init(&f, 1.0f);
    churn_fixture cf;
    churn_fixture_init(&cf);
    f.in.churn = &cf.c;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/churn", root);
    err_t e = {0};
    cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_OK, "%s", e.msg);
    model *m;
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    const model_churn *c = model_churn_info(m);
    cr_assert_not_null(c);
    cr_assert_eq(c->n_features, 2);
    cr_assert_str_eq(c->feature_names[0], "log_recency_days");
    cr_assert_str_eq(c->feature_names[1], "one_day_buyer");
    cr_assert_arr_eq(c->coef, cf.coef, sizeof cf.coef);
    cr_assert_arr_eq(c->mean, cf.mean, sizeof cf.mean);
    cr_assert_arr_eq(c->scale, cf.scale, sizeof cf.scale);
    cr_assert(c->intercept == -0.125 && c->platt_a == 0.9 && c->platt_b == -0.3);
    cr_assert_eq(c->horizon_days, 90);
    cr_assert_eq(c->scored_at, 1323435001);
    cr_assert(c->bands[0] == 0.4f && c->bands[1] == 0.7f);
    cr_assert(c->tiers[0] == 3000 && c->tiers[3] == 50000);
    cr_assert_arr_eq(c->features, cf.features, sizeof cf.features);
    cr_assert_arr_eq(c->band, cf.band, NU);
    cr_assert_arr_eq(c->segment, cf.segment, NU);
    cr_assert_arr_eq(c->tier, cf.tier, NU);
    cr_assert_arr_eq(c->monetary, cf.money, sizeof cf.money);
    model_churn_user s;
    cr_assert_eq(model_churn_user_scores(m, 3, &s), ERR_OK);
    cr_assert(s.probability == cf.prob[3] && s.band == 0 && s.segment == 3 && s.tier == 1);
    cr_assert(s.recency_days == 31.5f && s.frequency == 4 && s.monetary == 300.75f);
    cr_assert(s.features[0] == 4 && s.features[1] == 1);
    cr_assert_eq(model_churn_user_scores(m, 1, &s), ERR_OK);
    cr_assert(isnan(s.probability) && s.band == MODEL_CHURN_NONE);
    /* User 3: (4 - 2) / 0.5 * 0.75 = 3 and (1 - 0.25) / 4 * -0.5 = -0.09375. */
    double contrib[2];
    cr_assert_eq(model_churn_contributions(m, 3, contrib), ERR_OK);
    cr_assert_float_eq(contrib[0], 3.0, 1e-12);
    cr_assert_float_eq(contrib[1], -0.09375, 1e-12);
    model_close(m);

    /* The same model without churn: NULL and ERR_NOTFOUND, not an error. */
    f.in.churn = NULL;
    cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    cr_assert_null(model_churn_info(m));
    cr_assert_eq(model_churn_user_scores(m, 0, &s), ERR_NOTFOUND);
    cr_assert_eq(model_churn_contributions(m, 0, contrib), ERR_NOTFOUND);
    model_close(m);
    fixture_free(&f);
}

Test(model, churn_validation_round_trip) {
    fixture f;
    fixture_init(&f, 1.0f);
    churn_fixture cf;
    churn_fixture_init(&cf);
    f.in.churn = &cf.c;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/churn-valid", root);
    err_t e = {0};
    /* None given: none read back (a model of an older trainer). */
    cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_OK, "%s", e.msg);
    model *m;
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(model_churn_info(m)->has_validation, 0);
    model_close(m);
    model_churn_validation v = {.validated_at = 1315659001,
                                .members = 40,
                                .churned = 12,
                                .roc_auc = 0.8125,
                                .pr_auc = 0.6,
                                .brier = 0.15,
                                .recency_roc_auc = 0.7,
                                .base_brier = 0.21};
    for (int b = 0; b < MODEL_CHURN_CALIB_BINS; b++) {
        v.calib_n[b] = b < 5 ? 8 : 0;
        v.calib_predicted[b] = b < 5 ? 0.1 * b + 0.05 : NAN;
        v.calib_observed[b] = b < 5 ? 0.125 * b : NAN;
    }
    cf.c.has_validation = 1;
    cf.c.validation = v;
    cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    const model_churn *c = model_churn_info(m);
    cr_assert_eq(c->has_validation, 1);
    cr_assert_arr_eq(&c->validation, &v, sizeof v, "every figure as given, NaN included");
    model_close(m);
    /* Out of range: refused at publication. */
    cf.c.validation.roc_auc = 1.5;
    cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "validation"), "%s", e.msg);
    cf.c.validation = v;
    cf.c.validation.calib_n[0] = 41; /* more than the members */
    cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_INVALID);
    fixture_free(&f);
}

Test(model, churn_refuses_inconsistent_input_and_keys) {
    fixture f;
    fixture_init(&f, 1.0f);
    churn_fixture cf;
    churn_fixture_init(&cf);
    f.in.churn = &cf.c;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/churn", root);
    err_t e;
    cf.band[2] = 3; /* no such band */
    cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "user 2"), "%s", e.msg);
    cf.band[2] = 2;
    cf.band[1] = 0; /* unscored user with a band */
    cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_INVALID);
    cf.band[1] = MODEL_CHURN_NONE;
    cf.c.bands[1] = 0.3f; /* not ascending */
    cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_INVALID);
    cf.c.bands[1] = 0.7f;
    cf.scale[1] = 0;
    cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_INVALID);
    cf.scale[1] = 4;
    cf.features[3] = INFINITY;
    cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_INVALID);
    cf.features[3] = 0;
    cf.c.n_features = 0;
    cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_INVALID);
    cf.c.n_features = 2;
    char v[MODEL_VERSION_MAX];
    cr_assert_eq(model_current_version(dir, v, NULL), ERR_NOTFOUND); /* nothing published */

    model_meta pub;
    cr_assert_eq(model_publish(dir, &f.in, &pub, &e), ERR_OK, "%s", e.msg);
    char vdir[PATH_MAX];
    snprintf(vdir, sizeof vdir, "%s/churn/versions/%s", root, pub.version);
    /* More features than the per-user blob holds. */
    unsigned char three[4] = {3, 0, 0, 0};
    patch(vdir, "churn_n_features", three, 4, 0);
    const char *msg = refuse(dir, ERR_FORMAT);
    cr_assert_not_null(strstr(msg, "churn_"), "%s", msg);
    unsigned char two[4] = {2, 0, 0, 0};
    patch(vdir, "churn_n_features", two, 4, 0);
    /* Present marker, missing part. */
    patch(vdir, "churn_tier", NULL, 0, 1);
    msg = refuse(dir, ERR_FORMAT);
    cr_assert_not_null(strstr(msg, "missing key churn_tier"), "%s", msg);
    fixture_free(&f);
}

/* The churn code tables: every code has its name and back, the public
 * spellings are the ones the API has always sent, and anything else has
 * no name or code. */
Test(model, churn_code_names) {
    cr_expect_str_eq(model_churn_band_name(0), "light");
    cr_expect_str_eq(model_churn_band_name(MODEL_CHURN_N_BANDS - 1), "heavy");
    cr_expect_str_eq(model_churn_segment_name(4), "at-risk");
    cr_expect_str_eq(model_churn_tier_name(MODEL_CHURN_N_TIERS - 1), "diamond");
    cr_expect_str_eq(model_churn_band_name(MODEL_CHURN_NONE), "");
    cr_expect_str_eq(model_churn_segment_name(MODEL_CHURN_N_SEGMENTS), "");
    cr_expect_str_eq(model_churn_tier_name(MODEL_CHURN_N_TIERS), "");
    for (uint32_t c = 0; c < MODEL_CHURN_N_SEGMENTS; c++)
        cr_expect_eq(model_churn_segment_code(model_churn_segment_name(c)), (int)c);
    for (uint32_t c = 0; c < MODEL_CHURN_N_TIERS; c++)
        cr_expect_eq(model_churn_tier_code(model_churn_tier_name(c)), (int)c);
    cr_expect_eq(model_churn_segment_code("Dormant"), -1);
    cr_expect_eq(model_churn_tier_code("platinum"), -1);
    cr_expect_eq(model_churn_tier_code(""), -1);
    cr_expect_eq(MODEL_CHURN_BANDS, 2);
    cr_expect_eq(MODEL_CHURN_TIERS, 4);
}

/* A shop whose churn inputs outweigh everything else: 100k members, one
 * factor, 256 churn inputs each. The map-size estimate once counted only the
 * factor, id and purchase blobs (2 x 4.4 MB + 64 MiB = 73 MB here) and not
 * the churn arrays (102 MB of inputs alone): such a publication failed with
 * MDB_MAP_FULL, reported as an internal error. */
Test(model, publishes_a_model_whose_churn_outweighs_its_factors) {
    enum { USERS = 100000, FEATURES = MODEL_CHURN_MAX_FEATURES };
    idmap *users = idmap_new(), *items = idmap_new();
    cr_assert(users && items);
    char id[16];
    uint32_t idx;
    for (int u = 0; u < USERS; u++)
        cr_assert_eq(idmap_intern(users, id, (size_t)snprintf(id, sizeof id, "u%06d", u), &idx),
                     ERR_OK);
    cr_assert_eq(idmap_intern(items, "i0", 2, &idx), ERR_OK);
    cr_assert_eq(idmap_intern(items, "i1", 2, &idx), ERR_OK);
    uint32_t *rows = malloc(USERS * sizeof *rows), *cols = calloc(USERS, sizeof *cols);
    float *uf = malloc(USERS * sizeof *uf), itf[2] = {1, 0.5f}, pop[2] = {USERS, 0};
    float *features = malloc((size_t)USERS * FEATURES * sizeof *features);
    float *per_user = malloc(USERS * sizeof *per_user);
    uint8_t *codes = calloc(USERS, 1);
    cr_assert(rows && cols && uf && features && per_user && codes);
    for (uint32_t u = 0; u < USERS; u++) {
        rows[u] = u;
        uf[u] = (float)u / USERS;
        per_user[u] = 0.5f;
    }
    for (size_t i = 0; i < (size_t)USERS * FEATURES; i++)
        features[i] = (float)(i % 7);
    csr ui;
    cr_assert_eq(csr_from_triplets(USERS, 2, rows, cols, NULL, USERS, &ui, NULL), ERR_OK);
    static char names[FEATURES][8];
    const char *name_ptrs[FEATURES];
    static double coef[FEATURES], mean[FEATURES], scale[FEATURES];
    for (int j = 0; j < FEATURES; j++) {
        snprintf(names[j], sizeof names[j], "f%d", j);
        name_ptrs[j] = names[j];
        scale[j] = 1;
    }
    model_churn c = {.n_features = FEATURES,
                     .feature_names = name_ptrs,
                     .coef = coef,
                     .mean = mean,
                     .scale = scale,
                     .horizon_days = 90,
                     .scored_at = 1323435001,
                     .bands = {0.4f, 0.7f},
                     .tiers = {3000, 8000, 20000, 50000},
                     .features = features,
                     .probability = per_user,
                     .band = codes,
                     .segment = codes,
                     .tier = codes,
                     .recency_days = per_user,
                     .frequency = per_user,
                     .monetary = per_user};
    model_input in = {.meta = {.factors = 1, .n_users = USERS, .n_items = 2, .interactions = USERS},
                      .users = users,
                      .items = items,
                      .user_factors = uf,
                      .item_factors = itf,
                      .user_items = &ui,
                      .item_popularity = pop,
                      .churn = &c};
    strcpy(in.meta.source_fingerprint, "0123456789abcdef");
    /* What the old estimate counted, to show the case is the one it missed. */
    uint64_t slots = 1;
    while (slots < 2 * (uint64_t)USERS)
        slots <<= 1;
    uint64_t counted = (uint64_t)USERS * 4 * 2 + (USERS + 1) * 8 * 2 + USERS * 7 + slots * 4 +
                       USERS * 4 + 14 * 4096;
    cr_assert_gt((uint64_t)USERS * FEATURES * sizeof(float), 2 * counted + (64u << 20));
    err_t e = {0};
    const char *dir = at("%s", "big-churn");
    cr_assert_eq(model_publish(dir, &in, NULL, &e), ERR_OK, "%s", e.msg);
    model *m;
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    const model_churn *got = model_churn_info(m);
    cr_assert_not_null(got);
    cr_assert_eq(got->n_features, FEATURES);
    size_t last = (size_t)USERS * FEATURES - 1;
    cr_assert_float_eq(got->features[last], (float)(last % 7), 0);
    cr_assert_str_eq(got->feature_names[FEATURES - 1], "f255");
    model_close(m);
    csr_free(&ui);
    idmap_free(users);
    idmap_free(items);
    free(rows);
    free(cols);
    free(uf);
    free(features);
    free(per_user);
    free(codes);
}

/* Item rows of an item-item model: dense and sparse round trips (read in
 * place), the algorithm key (absent reads as "als"), and refusals of rows
 * that would index past the catalogue. */
Test(model, item_rows_round_trip_and_refusals) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/store", root);
    publish(dir, 1.0f);
    model *m;
    err_t e = {0};
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    cr_expect_str_eq(model_info(m)->algorithm, "als");
    cr_expect_null(model_item_rows(m));
    model_close(m);
    fixture f;
    fixture_init(&f, 2.0f);
    float dense[NI * NI];
    for (int i = 0; i < NI * NI; i++)
        dense[i] = (i % (NI + 1)) ? 0.125f * (float)i : 0.0f;
    itemrows rows = {.n_items = NI, .dense = dense};
    f.in.item_rows = &rows;
    strcpy(f.in.meta.algorithm, "ease");
    f.in.meta.lambda = 12.5f;
    cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    cr_expect_str_eq(model_info(m)->algorithm, "ease");
    cr_expect_eq(model_info(m)->lambda, 12.5f);
    const itemrows *r = model_item_rows(m);
    cr_assert_not_null(r);
    cr_assert_not_null(r->dense);
    cr_expect_eq(memcmp(r->dense, dense, sizeof dense), 0);
    model_close(m);
    uint64_t indptr[NI + 1] = {0, 2, 2, 3, 4};
    uint32_t index[] = {1, 3, 0, 2};
    float value[] = {0.5f, -0.25f, 1.0f, 2.0f};
    rows = (itemrows){.n_items = NI, .indptr = indptr, .index = index, .value = value};
    strcpy(f.in.meta.algorithm, "knn");
    f.in.meta.lambda = 0;
    f.in.meta.neighbors = 2;
    cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    r = model_item_rows(m);
    cr_assert_not_null(r);
    cr_expect_null(r->dense);
    cr_expect_eq(model_info(m)->neighbors, 2);
    cr_expect_float_eq(itemrows_get(r, 0, 3), -0.25f, 0);
    cr_expect_float_eq(itemrows_get(r, 3, 2), 2.0f, 0);
    cr_expect_float_eq(itemrows_get(r, 1, 0), 0.0f, 0);
    model_close(m);
    /* Publication refuses what a reader could not use. */
    index[2] = NI;
    cr_expect_eq(model_publish(dir, &f.in, NULL, &e), ERR_INVALID);
    index[2] = 0;
    value[1] = NAN;
    cr_expect_eq(model_publish(dir, &f.in, NULL, &e), ERR_INVALID);
    value[1] = -0.25f;
    rows.n_items = NI - 1;
    cr_expect_eq(model_publish(dir, &f.in, NULL, &e), ERR_INVALID);
    fixture_free(&f);
    /* A damaged copy of the current (sparse) version: an index past
     * n_items, an indptr that descends. */
    uint32_t item = NI;
    damage(copy_current(dir, "rows-index"), "item_rows_index", 0, &item, sizeof item);
    const char *msg = refuse(at("%s", "rows-index"), ERR_FORMAT);
    cr_expect_not_null(strstr(msg, "item_rows_index"), "%s", msg);
    uint64_t back = 1;
    damage(copy_current(dir, "rows-indptr"), "item_rows_indptr", 2 * sizeof(uint64_t), &back,
           sizeof back);
    msg = refuse(at("%s", "rows-indptr"), ERR_FORMAT);
    cr_expect_not_null(strstr(msg, "item_rows_indptr"), "%s", msg);
}

/* Bought-together lists: absent from a model published without them, a
 * sparse round trip read in place beside ALS factors, refusals at
 * publication (dense, an index past the catalogue) and at open (a damaged
 * index). */
Test(model, together_round_trip_and_refusals) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/store", root);
    publish(dir, 1.0f);
    model *m;
    err_t e = {0};
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    cr_expect_null(model_together(m));
    model_close(m);
    fixture f;
    fixture_init(&f, 2.0f);
    uint64_t indptr[NI + 1] = {0, 2, 3, 3, 4};
    uint32_t index[] = {2, 1, 0, 0};
    float value[] = {0.75f, 0.5f, 0.25f, 0.125f};
    itemrows tg = {.n_items = NI, .indptr = indptr, .index = index, .value = value};
    f.in.together = &tg;
    cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    const itemrows *r = model_together(m);
    cr_assert_not_null(r);
    cr_expect_null(model_item_rows(m), "the lists are not an item-item model's rows");
    cr_expect_eq(r->indptr[NI], 4);
    cr_expect_eq(memcmp(r->index, index, sizeof index), 0);
    cr_expect_eq(memcmp(r->value, value, sizeof value), 0);
    model_close(m);
    index[1] = NI;
    cr_expect_eq(model_publish(dir, &f.in, NULL, &e), ERR_INVALID);
    index[1] = 1;
    float dense[NI * NI] = {0};
    itemrows bad = {.n_items = NI, .dense = dense};
    f.in.together = &bad;
    cr_expect_eq(model_publish(dir, &f.in, NULL, &e), ERR_INVALID);
    cr_expect_not_null(strstr(e.msg, "not sparse"), "%s", e.msg);
    fixture_free(&f);
    uint32_t item = NI;
    damage(copy_current(dir, "together-index"), "together_index", 0, &item, sizeof item);
    const char *msg = refuse(at("%s", "together-index"), ERR_FORMAT);
    cr_expect_not_null(strstr(msg, "together_index"), "%s", msg);
}

/* The repurchase model: absent from a model published without it, a round
 * trip read in place (the member-item numbers by user row), an incomplete
 * one refused at publication. */
Test(model, rebuy_round_trip_and_refusals) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/store", root);
    publish(dir, 1.0f);
    model *m;
    err_t e = {0};
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    cr_expect_null(model_rebuy(m));
    cr_expect_null(model_rebuy_pairs(m, 0));
    model_close(m);
    fixture f;
    fixture_init(&f, 2.0f);
    uint64_t nnz = csr_nnz(f.in.user_items);
    float params[REBUY_N_PARAMS] = {2, 2, 30, 1, 0, 0.5f, 0.4f, 2, 0.25f};
    float items[NI * REBUY_ITEM_FLOATS], curve[REBUY_CURVE];
    float *pairs = malloc(nnz * REBUY_PAIR_FLOATS * sizeof *pairs);
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++)
        items[i] = (float)i;
    for (int r = 0; r < REBUY_CURVE; r++)
        curve[r] = 1.0f / (float)(r + 1);
    for (uint64_t k = 0; k < nnz * REBUY_PAIR_FLOATS; k++)
        pairs[k] = (float)k;
    model_rebuy_input rb = {.params = params, .items = items, .curve = curve, .pairs = pairs};
    f.in.rebuy = &rb;
    cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    const rebuy_model *r = model_rebuy(m);
    cr_assert_not_null(r);
    cr_expect_eq(memcmp(r->params, params, sizeof params), 0);
    cr_expect_eq(memcmp(r->items, items, sizeof items), 0);
    cr_expect_eq(memcmp(r->curve, curve, sizeof curve), 0);
    uint32_t n_users = model_info(m)->n_users;
    const float *last = model_rebuy_pairs(m, n_users - 1);
    uint32_t n_last;
    model_user_items(m, n_users - 1, &n_last);
    /* The last user's row ends where the pairs do. */
    cr_expect_eq(last + (size_t)n_last * REBUY_PAIR_FLOATS, model_rebuy_pairs(m, 0) + nnz * 3);
    cr_expect_eq(memcmp(model_rebuy_pairs(m, 0), pairs, nnz * REBUY_PAIR_FLOATS * sizeof *pairs),
                 0);
    model_close(m);
    rb.pairs = NULL;
    cr_expect_eq(model_publish(dir, &f.in, NULL, &e), ERR_INVALID);
    cr_expect_not_null(strstr(e.msg, "repurchase"), "%s", e.msg);
    free(pairs);
    fixture_free(&f);
}

/* Label mappings and catalogue values: absent from a model published
 * without them; a round trip of both sides' labels and maps read in place,
 * the vector of labels through mf_label_vector, publication times and
 * prices; refusals of a map with a NaN at open and of labels without a map
 * at publication. */
Test(model, label_maps_round_trip_and_refusals) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/store", root);
    publish(dir, 1.0f);
    model *m;
    err_t e = {0};
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    cr_expect_null(model_label_map_of(m, MODEL_SIDE_ITEM));
    cr_expect_null(model_label_map_of(m, MODEL_SIDE_USER));
    cr_expect_null(model_item_published(m));
    uint32_t l;
    cr_expect_eq(model_label_index(m, MODEL_SIDE_ITEM, "genre:x", 7, &l), ERR_NOTFOUND);
    model_close(m);
    fixture f;
    fixture_init(&f, 2.0f);
    idmap *il = idmap_new(), *ul = idmap_new();
    cr_assert_eq(idmap_intern(il, "genre:Comedy", 12, &l), ERR_OK);
    cr_assert_eq(idmap_intern(il, "word:mug", 8, &l), ERR_OK);
    cr_assert_eq(idmap_intern(ul, "age:20-29", 9, &l), ERR_OK);
    /* (L + 1) x K: two labels and the bias; one label and the bias. */
    float imap[3 * K] = {1, 0, 0, 0, 1, 0, 0.5f, 0.5f, 0.5f}, umap[2 * K] = {2, 2, 2, -1, 0, 1};
    int64_t published[NI] = {0, 1700000000, 0, 5};
    float price[NI] = {1.5f, NAN, 0, 2};
    f.in.item_labels = il;
    f.in.item_map = imap;
    f.in.user_labels = ul;
    f.in.user_map = umap;
    f.in.item_published = published;
    f.in.item_price = price;
    f.in.meta.item_map_lambda = 0.5f;
    cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    const model_label_map *im = model_label_map_of(m, MODEL_SIDE_ITEM);
    cr_assert_not_null(im);
    cr_expect_eq(im->n_labels, 2);
    cr_expect_eq(im->factors, K);
    cr_expect_float_eq(model_info(m)->item_map_lambda, 0.5f, 1e-9);
    cr_assert_eq(model_label_index(m, MODEL_SIDE_ITEM, "word:mug", 8, &l), ERR_OK);
    cr_expect_eq(l, 1);
    cr_expect_eq(model_label_index(m, MODEL_SIDE_USER, "word:mug", 8, &l), ERR_NOTFOUND);
    size_t len;
    const char *s = model_label_id(m, MODEL_SIDE_ITEM, 0, &len);
    cr_expect(len == 12 && memcmp(s, "genre:Comedy", 12) == 0);
    uint32_t both[2] = {0, 1};
    float x[K];
    mf_label_vector(im->map, im->n_labels, K, both, 2, x);
    cr_expect_float_eq(x[0], 0.5f + 1 / sqrtf(2), 1e-6);
    cr_expect_float_eq(x[2], 0.5f, 1e-6);
    const model_label_map *um = model_label_map_of(m, MODEL_SIDE_USER);
    cr_assert_not_null(um);
    mf_label_vector(um->map, um->n_labels, K, both, 1, x);
    cr_expect_float_eq(x[0], 1.0f, 1e-6);
    cr_expect_eq(model_item_published(m)[1], 1700000000);
    cr_expect(isnan(model_item_price(m)[1]));
    cr_expect_float_eq(model_item_price(m)[3], 2.0f, 1e-9);
    model_close(m);
    f.in.item_map = NULL;
    cr_expect_eq(model_publish(dir, &f.in, NULL, &e), ERR_INVALID);
    f.in.item_map = imap;
    imap[4] = NAN;
    cr_assert_eq(model_publish(dir, &f.in, NULL, &e), ERR_OK, "%s", e.msg);
    cr_expect_eq(model_open(dir, &m, &e), ERR_FORMAT);
    cr_expect_not_null(strstr(e.msg, "item_map"), "%s", e.msg);
    idmap_free(il);
    idmap_free(ul);
    fixture_free(&f);
}
