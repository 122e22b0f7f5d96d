/* Fuzz target: model_open on corrupted copies of a valid published model,
 * then every accessor over every index.
 *
 * At start the tiny model of fuzz_fixture is published and its data.mdb is
 * read into memory together with where each key's value lies in the file.
 * Input: byte 0 is the mode; when its bit 0 is set, the next 3 bytes
 * truncate the file to (b1 << 16 | b2 << 8 | b3) % its size bytes. Then
 * come patch records of 4 + n bytes [key][offset lo][offset hi][n][n bytes]
 * that overwrite the value of key (key % the number of keys) from offset
 * (% the value's size): counts, offsets, indexes, codes, strings, floats -
 * everything model_open must check or may trust.
 *
 * LMDB's own structures (meta pages, B-tree page and node headers) are not
 * patched: liblmdb trusts them, and corrupting them crashes liblmdb itself
 * (a page size of 0 in a meta page is a SIGFPE in mdb_env_open), which
 * model_open cannot prevent (docs/model-format.md, "What model_open
 * checks").
 *
 * When model_open accepts the file, every accessor is read over every index
 * and the run aborts if one hands out something a server would misuse: an
 * item index >= n_items, a category >= n_categories, a churn code that does
 * not match its probability, an id longer than any the table can hold.
 * Reads outside the map fault (ASan reports the SEGV/SIGBUS). */
#include <fcntl.h>
#include <lmdb.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_fixture.h"
#include "log.h"
#include "model.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_KEYS 64
#define MAX_ID 4096 /* no id of the fixture, or of a sane model, is longer */

typedef struct value_span {
    size_t offset, size; /* where a key's value lies in data.mdb */
} value_span;

static uint8_t *original, *work;
static size_t file_size;
static value_span spans[MAX_KEYS];
static size_t n_spans;
static char version_dir[PATH_MAX], data_path[PATH_MAX + 16];
static volatile float sink; /* keeps the reads of floats from being optimized away */

__attribute__((noreturn)) static void fail(const char *what) {
    fprintf(stderr, "fuzz_model: model_open accepted a model where %s\n", what);
    abort();
}

__attribute__((noreturn)) static void die(const char *what, const char *detail) {
    fprintf(stderr, "fuzz_model: %s: %s\n", what, detail);
    abort();
}

/* Where the file at path is mapped in this process (LMDB does not say:
 * mdb_env_info's me_mapaddr is only the MDB_FIXEDMAP address), from
 * /proc/self/maps. */
static const char *map_base(const char *path) {
    char real[PATH_MAX], line[PATH_MAX + 256];
    if (!realpath(path, real)) die("realpath", path);
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) die("open", "/proc/self/maps");
    unsigned long start = 0, offset;
    while (fgets(line, sizeof line, f)) {
        char *name = strchr(line, '/');
        if (!name) continue;
        name[strcspn(name, "\n")] = '\0';
        if (!strcmp(name, real) && sscanf(line, "%lx-%*x %*s %lx", &start, &offset) == 2 &&
            offset == 0)
            break;
        start = 0;
    }
    fclose(f);
    if (!start) die("no mapping of", real);
    return (const char *)start;
}

/* Reads the published file and the place of every value in it. */
static void load_original(const char *src_dir) {
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/data.mdb", src_dir);
    FILE *f = fopen(path, "rb");
    if (!f) die("open", path);
    fseek(f, 0, SEEK_END);
    file_size = (size_t)ftell(f);
    rewind(f);
    original = malloc(file_size);
    work = malloc(file_size);
    if (!original || !work || fread(original, 1, file_size, f) != file_size) die("read", path);
    fclose(f);

    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *cur;
    MDB_val k, v;
    if (mdb_env_create(&env) || mdb_env_open(env, src_dir, MDB_RDONLY | MDB_NOLOCK, 0) ||
        mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) || mdb_dbi_open(txn, NULL, 0, &dbi) ||
        mdb_cursor_open(txn, dbi, &cur))
        die("lmdb", src_dir);
    const char *base = map_base(path);
    int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    for (; rc == 0 && n_spans < MAX_KEYS; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        if (v.mv_size) {
            spans[n_spans] = (value_span){(size_t)((char *)v.mv_data - base), v.mv_size};
            if (spans[n_spans].offset + v.mv_size > file_size)
                die("lmdb", "a value outside the file");
            n_spans++;
        }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    if (n_spans < 20) die("lmdb", "the fixture model has too few keys");
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    log_set_level(LOG_QUIET);
    char root[PATH_MAX], model_dir[PATH_MAX + 8], src[PATH_MAX * 2];
    fuzz_scratch_dir("fuzz-model", root);
    snprintf(model_dir, sizeof model_dir, "%s/model", root);
    model_meta meta;
    fuzz_publish_model(model_dir, &meta);
    snprintf(src, sizeof src, "%s/versions/%s", model_dir, meta.version);
    load_original(src);
    snprintf(version_dir, sizeof version_dir, "%s/corrupt", root);
    snprintf(data_path, sizeof data_path, "%s/data.mdb", version_dir);
    if (mkdir(version_dir, 0700)) die("mkdir", version_dir);
    return 0;
}

/* Writes the corrupted file. */
static void corrupt(const uint8_t *data, size_t size) {
    memcpy(work, original, file_size);
    size_t len = file_size, at = 1;
    if (data[0] & 1 && size >= 4) {
        len = ((size_t)data[1] << 16 | (size_t)data[2] << 8 | data[3]) % file_size;
        at = 4;
    }
    while (at + 4 <= size) {
        const value_span *s = &spans[data[at] % n_spans];
        size_t off = ((size_t)data[at + 1] | (size_t)data[at + 2] << 8) % s->size;
        size_t n = data[at + 3];
        at += 4;
        if (n > size - at) n = size - at;
        memcpy(work + s->offset + off, data + at, n < s->size - off ? n : s->size - off);
        at += n;
    }
    int fd = open(data_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, work, len) != (ssize_t)len || close(fd)) die("write", data_path);
}

/* Reads every byte of an id of at most MAX_ID bytes. */
static void read_id(const char *id, size_t len) {
    if (len > MAX_ID) fail("an id is longer than any id the table can hold");
    char copy[MAX_ID];
    memcpy(copy, id, len);
    sink += len ? (float)copy[len - 1] : 0.0f;
}

static void read_floats(const float *v, size_t n) {
    float s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    sink += s;
}

static void read_model(const model *m) {
    const model_meta *mt = model_info(m);
    uint32_t nu = mt->n_users, ni = mt->n_items, k = mt->factors, nc = model_n_categories(m);
    size_t len;
    uint32_t index;
    for (uint32_t u = 0; u < nu; u++) {
        const char *id = model_user_id(m, u, &len);
        read_id(id, len);
        if (model_user_index(m, id, len, &index) == ERR_OK && index >= nu)
            fail("a user lookup returns an index >= n_users");
        uint32_t n;
        const uint32_t *items = model_user_items(m, u, &n);
        const float *counts = model_user_item_counts(m, u);
        if (n > ni) fail("a user bought more items than there are");
        for (uint32_t j = 0; j < n; j++)
            if (items[j] >= ni) fail("a purchased item index is >= n_items");
        read_floats(counts, n);
    }
    for (uint32_t i = 0; i < ni; i++) {
        const char *id = model_item_id(m, i, &len);
        read_id(id, len);
        if (model_item_index(m, id, len, &index) == ERR_OK && index >= ni)
            fail("an item lookup returns an index >= n_items");
        if (model_popular_items(m)[i] >= ni) fail("a popular item index is >= n_items");
    }
    read_floats(model_user_factors(m), (size_t)nu * k);
    read_floats(model_item_factors(m), (size_t)ni * k);
    read_floats(model_item_norms(m), ni);
    read_floats(model_item_popularity(m), ni);
    for (uint32_t c = 0; c < nc; c++) {
        const char *id = model_category_id(m, c, &len);
        read_id(id, len);
        if (model_category_index(m, id, len, &index) == ERR_OK && index >= nc)
            fail("a category lookup returns an index >= n_categories");
    }
    const uint32_t *cat = model_item_categories(m);
    for (uint32_t i = 0; cat && i < ni; i++)
        if (cat[i] != UINT32_MAX && cat[i] >= nc) fail("an item's category is >= n_categories");
    const model_churn *churn = model_churn_info(m);
    if (!churn) return;
    for (uint32_t j = 0; j < churn->n_features; j++)
        sink += (float)(strlen(churn->feature_names[j]) + churn->coef[j] + churn->mean[j] +
                        churn->scale[j]);
    double *contrib = malloc(churn->n_features * sizeof *contrib);
    if (!contrib) die("malloc", "contributions");
    for (uint32_t u = 0; u < nu; u++) {
        model_churn_user cu;
        if (model_churn_user_scores(m, u, &cu) || model_churn_contributions(m, u, contrib))
            fail("a model with churn has no churn scores");
        read_floats(cu.features, churn->n_features);
        int none = isnan(cu.probability);
        if (none ? cu.band != MODEL_CHURN_NONE || cu.segment != MODEL_CHURN_NONE ||
                       cu.tier != MODEL_CHURN_NONE
                 : !(cu.probability >= 0 && cu.probability <= 1) || cu.band >= 3 ||
                       cu.segment >= 6 || cu.tier >= 5)
            fail("a user's churn codes do not match the probability");
        sink += cu.recency_days + cu.frequency + cu.monetary;
    }
    free(contrib);
    /* Validation figures a server hands out as they are (GetChurnModelInfo
     * casts the counts to uint32). */
    const model_churn_validation *v = &churn->validation;
    double in_bins = 0;
    for (int b = 0; churn->has_validation && b < MODEL_CHURN_CALIB_BINS; b++) {
        in_bins += v->calib_n[b];
        if (!(v->calib_n[b] >= 0) || v->calib_predicted[b] > 1 || v->calib_observed[b] < 0)
            fail("a calibration bin is out of range");
    }
    if (churn->has_validation && (!(v->members >= 0 && v->members <= UINT32_MAX) ||
                                  in_bins > v->members || v->roc_auc > 1 || v->roc_auc < 0))
        fail("churn validation figures are out of range");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return -1;
    corrupt(data, size);
    model *m;
    err_t e = {0};
    int rc = model_open(version_dir, &m, &e);
    if (rc == ERR_OK) {
        read_model(m);
        model_close(m);
    } else if (!e.msg[0]) {
        die("model_open", "refused a model without a message");
    }
    return 0;
}
