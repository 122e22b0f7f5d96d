/* model: publication and zero-copy reading of the LMDB model store.
 *
 * docs/model-format.md describes the on-disk layout; this file is its only
 * writer and reader (one file on purpose: each key's writing and its checks
 * on reading must agree, and side by side they do). Three rules shape the
 * code:
 *
 * 1. A version environment is written once, by one transaction, and never
 *    opened for writing again. That is what makes it safe to keep pointers
 *    into the map after the read transaction of model_open has ended, and to
 *    open it with MDB_NOLOCK (see model_open_env).
 * 2. Every blob is stored with at least one page of bytes, so that LMDB puts
 *    it on overflow pages: its first byte then sits right after the 16-byte
 *    page header of a page-aligned page, which makes it 16-byte aligned.
 *    Values small enough to stay on a leaf page are only 2-byte aligned and
 *    could not be read in place as floats or u64.
 * 3. Publishers serialize on an flock of DIR/.lock. Under that lock any
 *    temporary entry left in DIR belongs to a publisher that died, so it can
 *    be removed, and the choice of a unique version name cannot race. */
#include "model.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <lmdb.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "log.h"
#include "panel.h"

/* Blobs are read in place as native floats and integers and are defined as
 * little-endian; a big-endian port would need byte-swapping readers. */
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the model format is little-endian; this reader maps it in place"
#endif

#define MODEL_EMPTY UINT32_MAX
#define MODEL_TIME_LEN 16 /* YYYYmmddTHHMMSSZ */
#define MODEL_FP_LEN 8    /* hex digits of the content fingerprint in a version */
#define MODEL_MAX_SUFFIX 999

/* Keys of the small values of the optional parts and of the blobs (those of
 * the metadata are MODEL_META_MAP's). */
#define K_USER_FACTORS "user_factors"
#define K_ITEM_FACTORS "item_factors"
#define K_ITEM_NORMS "item_norms"
#define K_ITEM_PANELS "item_panels"
#define K_USER_IDS "user_ids"
#define K_ITEM_IDS "item_ids"
#define K_USER_INDEX "user_index"
#define K_ITEM_INDEX "item_index"
#define K_USER_ITEMS "user_items"
#define K_POPULAR "popular_items"
#define K_POPULARITY "item_popularity"
#define K_USER_ITEM_COUNTS "user_item_counts"
#define K_CATEGORIES "n_categories"
#define K_CATEGORY_IDS "category_ids"
#define K_CATEGORY_INDEX "category_index"
#define K_ITEM_CATEGORY "item_category"
#define K_ITEM_ROWS_DENSE "item_rows_dense"
#define K_ITEM_ROWS_INDPTR "item_rows_indptr"
#define K_ITEM_ROWS_INDEX "item_rows_index"
#define K_ITEM_ROWS_VALUE "item_rows_value"
#define K_TOGETHER_INDPTR "together_indptr"
#define K_TOGETHER_INDEX "together_index"
#define K_TOGETHER_VALUE "together_value"
#define K_REBUY_PARAMS "rebuy_params"
#define K_REBUY_ITEMS "rebuy_items"
#define K_REBUY_PAIRS "rebuy_pairs"
#define K_REBUY_CURVE "rebuy_curve"
#define K_N_ITEM_LABELS "n_item_labels"
#define K_ITEM_LABEL_IDS "item_label_ids"
#define K_ITEM_LABEL_INDEX "item_label_index"
#define K_ITEM_MAP "item_map"
#define K_N_USER_LABELS "n_user_labels"
#define K_USER_LABEL_IDS "user_label_ids"
#define K_USER_LABEL_INDEX "user_label_index"
#define K_USER_MAP "user_map"
#define K_ITEM_PUBLISHED "item_published"
#define K_ITEM_PRICE "item_price"
#define K_CHURN_N "churn_n_features"
#define K_CHURN_HORIZON "churn_horizon_days"
#define K_CHURN_SCORED_AT "churn_scored_at"
#define K_CHURN_INTERCEPT "churn_intercept"
#define K_CHURN_PLATT_A "churn_platt_a"
#define K_CHURN_PLATT_B "churn_platt_b"
#define K_CHURN_NAMES "churn_feature_names"
#define K_CHURN_COEF "churn_coef"
#define K_CHURN_MEAN "churn_mean"
#define K_CHURN_SCALE "churn_scale"
#define K_CHURN_BANDS "churn_bands"
#define K_CHURN_TIERS "churn_tiers"
#define K_CHURN_FEATURES "churn_features"
#define K_CHURN_PROB "churn_probability"
#define K_CHURN_BAND "churn_band"
#define K_CHURN_SEGMENT "churn_segment"
#define K_CHURN_TIER "churn_tier"
#define K_CHURN_RECENCY "churn_recency_days"
#define K_CHURN_FREQUENCY "churn_frequency"
#define K_CHURN_MONETARY "churn_monetary"
#define K_CLV_PARAMS "clv_params"
#define K_CLV_P_ALIVE "clv_p_alive"
#define K_CLV_ORDERS "clv_expected_orders"
#define K_CLV_VALUE "clv_expected_value"
#define K_CHURN_VALIDATION "churn_validation"

/* Each model_meta member has its row's kind. */
#define META_KIND_CHECK(member, key, kind, opt, pb, pb_name, show, label, fmt)                     \
    _Static_assert(_Generic(((model_meta *)0)->member, MODEL_META_TYPE_##kind : 1, default : 0),   \
                   "model_meta." #member " is not of kind " #kind);
MODEL_META_MAP(META_KIND_CHECK)
#undef META_KIND_CHECK

/* One id space as read from the map: the id table and its hash index. */
typedef struct model_ids {
    uint32_t n;
    const uint64_t *offsets; /* n + 1 byte offsets into bytes */
    const char *bytes;
    const uint32_t *slots; /* mask + 1 entries: an index < n or MODEL_EMPTY */
    uint64_t mask;
} model_ids;

struct model {
    MDB_env *env; /* owns the map every pointer below points into */
    model_meta meta;
    model_ids users, items;
    const float *user_factors, *item_factors, *item_norms;
    float item_norm_max;         /* the largest of item_norms */
    const uint16_t *item_panels; /* into the map, or built_panels for a model without them */
    uint16_t *built_panels;      /* owned; NULL when the model stores its panels */
    const uint64_t *user_indptr; /* n_users + 1 */
    const uint32_t *user_indices;
    const uint32_t *popular;
    const float *popularity;
    const float *user_item_counts; /* parallel to user_indices */
    model_ids categories;          /* n = 0 when the model has none */
    const uint32_t *item_category; /* NULL when the model has no categories */
    int has_churn;
    int has_rows;
    itemrows rows; /* arrays into the map when has_rows */
    int has_together;
    itemrows together; /* bought-together lists, into the map when has_together */
    int has_rebuy;
    rebuy_model rebuy;             /* into the map when has_rebuy */
    const float *rebuy_pairs;      /* parallel to user_indices, REBUY_PAIR_FLOATS each */
    model_ids side_labels[2];      /* per model_side; n = 0 without a mapping */
    model_label_map side_map[2];   /* map NULL without a mapping */
    const int64_t *item_published; /* NULL when none */
    const float *item_price;       /* NULL when none */
    model_churn churn;             /* arrays point into the map; names into churn_names */
    const char *churn_names[MODEL_CHURN_MAX_FEATURES];
};

/* --- small helpers ------------------------------------------------------- */

/* Maps an LMDB return code to a recd error naming what was being done. */
static int model_mdb_err(err_t *e, int rc, const char *what, const char *path) {
    return err_set(e, rc == MDB_MAP_FULL ? ERR_LIMIT : ERR_INTERNAL, "lmdb: %s %s: %s", what, path,
                   mdb_strerror(rc));
}

/* Formats into buf (size PATH_MAX); ERR_INVALID when the path does not fit,
 * so that no caller ever works on a silently truncated path. */
static int model_path(char *buf, err_t *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int model_path(char *buf, err_t *e, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, PATH_MAX, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= PATH_MAX) return err_set(e, ERR_INVALID, "model: path too long in %s", fmt);
    return ERR_OK;
}

/* fsyncs a directory so that the entries created or renamed in it survive a
 * crash (fsync of a file does not persist its name). */
static int model_fsync_dir(const char *path, err_t *e) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return err_set(e, ERR_IO, "model: open %s: %s", path, strerror(errno));
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    if (rc) return err_set(e, ERR_IO, "model: fsync %s: %s", path, strerror(saved));
    return ERR_OK;
}

/* nftw callback of model_rmtree: removes one file, link or (emptied) folder. */
static int model_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) ? -1 : 0;
}

/* Removes path and everything below it without following symlinks. Returns
 * 0 or -1 with errno set. */
static int model_rmtree(const char *path) {
    return nftw(path, model_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Explicit little-endian encoding of metadata values, whatever the host. */
static void model_put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void model_put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t model_get_u32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t model_get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Slot count of an id hash table: the smallest power of two >= 2n (1 for an
 * empty space), so the load factor stays <= 1/2 and probes stay short. */
static uint64_t model_slot_count(uint32_t n) {
    uint64_t s = 1;
    while (s < 2 * (uint64_t)n)
        s <<= 1;
    return s;
}

/* Bytes a blob of len logical bytes occupies in the store: at least one page,
 * so that it lands on overflow pages (rule 2 above). */
static uint64_t model_padded(uint64_t len, unsigned psize) {
    return len < psize ? psize : len;
}

/* a * b * c in *out; 0 on overflow. */
static int model_mul3(uint64_t a, uint64_t b, uint64_t c, uint64_t *out) {
    uint64_t ab;
    return !__builtin_mul_overflow(a, b, &ab) && !__builtin_mul_overflow(ab, c, out);
}

/* --- version names -------------------------------------------------------- */

/* True for names model_publish creates: <YYYYmmddTHHMMSSZ>-<8 hex>[-<n>].
 * Everything else in versions/ (temporaries, foreign files) is ignored by
 * listing, rollback and pruning, so pruning can never delete it. */
static int model_version_valid(const char *s) {
    static const char shape[] = "dddddddd"
                                "Tdddddd"
                                "Z-"
                                "xxxxxxxx";
    size_t i = 0;
    for (; shape[i]; i++) {
        char c = s[i];
        if (shape[i] == 'd' && !(c >= '0' && c <= '9')) return 0;
        if (shape[i] == 'x' && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return 0;
        if (shape[i] != 'd' && shape[i] != 'x' && c != shape[i]) return 0;
    }
    if (s[i] == '\0') return 1;
    if (s[i] != '-' || !(s[i + 1] >= '1' && s[i + 1] <= '9')) return 0;
    for (i++; s[i]; i++)
        if (!(s[i] >= '0' && s[i] <= '9') || i > MODEL_TIME_LEN + 1 + MODEL_FP_LEN + 3) return 0;
    return 1;
}

/* The -<n> suffix of a valid version name, 0 when there is none. */
static unsigned model_version_suffix(const char *s) {
    const char *p = s + MODEL_TIME_LEN + 1 + MODEL_FP_LEN;
    return *p == '-' ? (unsigned)strtoul(p + 1, NULL, 10) : 0;
}

/* Publication order of two valid version names: by time, then by suffix
 * (model_publish gives the k-th version of one second the suffix k-1), then
 * by name so the order is total. Plain strcmp would order versions of the
 * same second by fingerprint instead. */
static int model_version_cmp(const char *a, const char *b) {
    int c = strncmp(a, b, MODEL_TIME_LEN);
    if (c) return c;
    unsigned sa = model_version_suffix(a), sb = model_version_suffix(b);
    if (sa != sb) return sa < sb ? -1 : 1;
    return strcmp(a, b);
}

/* qsort adapter of model_version_cmp over char[MODEL_VERSION_MAX] rows. */
static int model_version_qcmp(const void *a, const void *b) {
    return model_version_cmp(a, b);
}

/* Fills *out (malloc'ed; caller frees) with the complete versions in
 * DIR/versions, oldest first, and *n with their count. A missing versions
 * folder is an empty list. A version counts once its folder has data.mdb,
 * which is only ever true after the rename that publishes it. */
static int model_list(const char *dir, char (**out)[MODEL_VERSION_MAX], size_t *n, err_t *e) {
    char path[PATH_MAX];
    *out = NULL;
    *n = 0;
    int rc = model_path(path, e, "%s/versions", dir);
    if (rc) return rc;
    DIR *d = opendir(path);
    if (!d) {
        if (errno == ENOENT) return ERR_OK;
        return err_set(e, ERR_IO, "model: open %s: %s", path, strerror(errno));
    }
    char(*list)[MODEL_VERSION_MAX] = NULL;
    size_t len = 0, cap = 0;
    struct dirent *de;
    rc = ERR_OK;
    while ((de = readdir(d))) {
        if (strlen(de->d_name) >= MODEL_VERSION_MAX || !model_version_valid(de->d_name)) continue;
        char data[PATH_MAX];
        struct stat st;
        if (model_path(data, NULL, "%s/%s/data.mdb", path, de->d_name) || stat(data, &st)) continue;
        if (len == cap) {
            cap = cap ? cap * 2 : 16;
            char(*grown)[MODEL_VERSION_MAX] = realloc(list, cap * sizeof *list);
            if (!grown) {
                rc = err_set(e, ERR_NOMEM, "model: out of memory listing %s", path);
                break;
            }
            list = grown;
        }
        strcpy(list[len++], de->d_name);
    }
    closedir(d);
    if (rc) {
        free(list);
        return rc;
    }
    if (len) qsort(list, len, sizeof *list, model_version_qcmp);
    *out = list;
    *n = len;
    return ERR_OK;
}

int model_versions(const char *dir, char (**versions)[MODEL_VERSION_MAX], size_t *n, err_t *e) {
    return model_list(dir, versions, n, e);
}

int model_current_version(const char *dir, char version[MODEL_VERSION_MAX], err_t *e) {
    char path[PATH_MAX], target[PATH_MAX];
    int rc = model_path(path, e, "%s/current", dir);
    if (rc) return rc;
    ssize_t len = readlink(path, target, sizeof target - 1);
    if (len < 0) {
        if (errno == ENOENT)
            return err_set(e, ERR_NOTFOUND, "model: no model published in %s (%s is missing)", dir,
                           path);
        return err_set(e, ERR_IO, "model: readlink %s: %s", path, strerror(errno));
    }
    target[len] = '\0';
    const char *name = target + strlen("versions/");
    if (strncmp(target, "versions/", strlen("versions/")) || strlen(name) >= MODEL_VERSION_MAX ||
        !model_version_valid(name))
        return err_set(e, ERR_FORMAT, "model: %s points to %s, not to a version in versions/", path,
                       target);
    strcpy(version, name);
    return ERR_OK;
}

/* Points DIR/current at versions/<version>: a symlink under a temporary name
 * renamed over current, so readers resolve either the old or the new target
 * and never a missing link; then fsync DIR so the switch survives a crash. */
static int model_switch_current(const char *dir, const char *version, err_t *e) {
    char tmp[PATH_MAX], cur[PATH_MAX], target[PATH_MAX];
    int rc = model_path(tmp, e, "%s/.current.tmp-%ld", dir, (long)getpid());
    if (!rc) rc = model_path(cur, e, "%s/current", dir);
    if (!rc) rc = model_path(target, e, "versions/%s", version);
    if (rc) return rc;
    unlink(tmp); /* a leftover of an earlier failure of this same pid */
    if (symlink(target, tmp))
        return err_set(e, ERR_IO, "model: symlink %s: %s", tmp, strerror(errno));
    if (rename(tmp, cur)) {
        rc = err_set(e, ERR_IO, "model: rename %s to %s: %s", tmp, cur, strerror(errno));
        unlink(tmp);
        return rc;
    }
    return model_fsync_dir(dir, e);
}

/* Takes the publisher lock of dir (rule 3): blocks until no other publisher
 * or rollback runs. Returns the descriptor to close (which unlocks) in *fd. */
static int model_lock(const char *dir, int *fd, err_t *e) {
    char path[PATH_MAX];
    int rc = model_path(path, e, "%s/.lock", dir);
    if (rc) return rc;
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (*fd < 0) return err_set(e, ERR_IO, "model: open %s: %s", path, strerror(errno));
    while (flock(*fd, LOCK_EX)) {
        if (errno == EINTR) continue;
        rc = err_set(e, ERR_IO, "model: lock %s: %s", path, strerror(errno));
        close(*fd);
        return rc;
    }
    return ERR_OK;
}

int model_rollback(const char *dir, char version[MODEL_VERSION_MAX], err_t *e) {
    int lock;
    int rc = model_lock(dir, &lock, e);
    if (rc) return rc;
    char cur[MODEL_VERSION_MAX];
    char(*list)[MODEL_VERSION_MAX] = NULL;
    size_t n = 0;
    rc = model_current_version(dir, cur, e);
    if (!rc) rc = model_list(dir, &list, &n, e);
    if (!rc) {
        /* The newest version older than the current one, even if current
         * itself has gone missing from versions/. */
        size_t i = n;
        while (i > 0 && model_version_cmp(list[i - 1], cur) >= 0)
            i--;
        if (i == 0)
            rc = err_set(e, ERR_NOTFOUND, "model: no version older than %s in %s/versions", cur,
                         dir);
        else if (!(rc = model_switch_current(dir, list[i - 1], e)))
            strcpy(version, list[i - 1]);
    }
    free(list);
    close(lock);
    return rc;
}

int model_use(const char *dir, const char *version, err_t *e) {
    if (strlen(version) >= MODEL_VERSION_MAX || !model_version_valid(version))
        return err_set(e, ERR_INVALID, "model: '%s' is not a version name", version);
    char folder[PATH_MAX], cur[MODEL_VERSION_MAX];
    int rc = model_path(folder, e, "%s/versions/%s", dir, version);
    if (rc) return rc;
    if (model_current_version(dir, cur, NULL) == ERR_OK && !strcmp(cur, version)) return ERR_OK;
    /* Opened before the switch: a version that would be refused never
     * becomes current. */
    model *m;
    if ((rc = model_open(folder, &m, e))) return rc;
    model_close(m);
    int lock;
    if ((rc = model_lock(dir, &lock, e))) return rc;
    rc = model_switch_current(dir, version, e);
    close(lock);
    return rc;
}

/* --- publication ---------------------------------------------------------- */

/* 1 when user u's CLV is NaN exactly where the churn probability is, and
 * otherwise P(alive) in [0, 1] and finite non-negative expectations. */
static int model_clv_ok(const model_churn *c, uint32_t u) {
    if (isnan(c->probability[u]))
        return isnan(c->p_alive[u]) && isnan(c->expected_orders[u]) && isnan(c->expected_value[u]);
    return c->p_alive[u] >= 0 && c->p_alive[u] <= 1 && c->expected_orders[u] >= 0 &&
           isfinite(c->expected_orders[u]) && c->expected_value[u] >= 0 &&
           isfinite(c->expected_value[u]);
}

/* 1 when x is NaN or in [lo, hi]. */
static int nan_or_in(double x, double lo, double hi) {
    return isnan(x) || (x >= lo && x <= hi);
}

/* Checks churn validation figures (at publication, and when read back: a
 * server hands them out as they are). where names the step in the message. */
static int model_check_validation(const model_churn_validation *v, int code, const char *where,
                                  err_t *e) {
    int ok = isfinite(v->validated_at) && v->members >= 0 && v->members <= UINT32_MAX &&
             v->churned >= 0 && v->churned <= v->members && nan_or_in(v->roc_auc, 0, 1) &&
             nan_or_in(v->pr_auc, 0, 1) && nan_or_in(v->brier, 0, 1) &&
             nan_or_in(v->recency_roc_auc, 0, 1) && nan_or_in(v->base_brier, 0, 1);
    double members = 0;
    for (int b = 0; ok && b < MODEL_CHURN_CALIB_BINS; b++) {
        members += v->calib_n[b];
        ok = v->calib_n[b] >= 0 && v->calib_n[b] <= v->members &&
             nan_or_in(v->calib_predicted[b], 0, 1) && nan_or_in(v->calib_observed[b], 0, 1);
    }
    if (ok && members > v->members) ok = 0;
    return ok ? ERR_OK
              : err_set(e, code,
                        "model: %s: churn validation figures out of range (counts, or an AUC, "
                        "Brier score or calibration share outside [0, 1])",
                        where);
}

/* Checks the optional churn part of an input (model_check_input). Per-user
 * codes and probabilities are checked here, once, so that a server can index
 * name tables with them without distrusting the file's writer. */
static int model_check_churn(const model_churn *c, uint32_t n_users, err_t *e) {
    if (c->n_features < 1 || c->n_features > MODEL_CHURN_MAX_FEATURES)
        return err_set(e, ERR_INVALID, "model: publish: churn has %u features, not 1..%d",
                       c->n_features, MODEL_CHURN_MAX_FEATURES);
    if (!c->feature_names || !c->coef || !c->mean || !c->scale ||
        (n_users && (!c->features || !c->probability || !c->band || !c->segment || !c->tier ||
                     !c->recency_days || !c->frequency || !c->monetary)))
        return err_set(e, ERR_INVALID, "model: publish: missing array in churn input");
    for (uint32_t j = 0; j < c->n_features; j++) {
        size_t len = c->feature_names[j] ? strlen(c->feature_names[j]) : 0;
        if (len == 0 || len >= MODEL_CHURN_NAME_MAX)
            return err_set(e, ERR_INVALID,
                           "model: publish: churn feature %u needs a name of 1..%d bytes", j,
                           MODEL_CHURN_NAME_MAX - 1);
        if (!isfinite(c->coef[j]) || !isfinite(c->mean[j]) || !isfinite(c->scale[j]) ||
            !(c->scale[j] > 0))
            return err_set(e, ERR_INVALID,
                           "model: publish: churn feature %s: coefficient, mean or scale not "
                           "finite (or scale <= 0)",
                           c->feature_names[j]);
    }
    if (!isfinite(c->intercept) || !isfinite(c->platt_a) || !isfinite(c->platt_b) ||
        c->horizon_days == 0)
        return err_set(e, ERR_INVALID,
                       "model: publish: churn intercept / calibration not finite or horizon 0");
    for (int b = 0; b < MODEL_CHURN_BANDS; b++)
        if (!(c->bands[b] > 0 && c->bands[b] < 1) || (b && !(c->bands[b] > c->bands[b - 1])))
            return err_set(e, ERR_INVALID,
                           "model: publish: churn band thresholds must ascend inside (0, 1)");
    for (int t = 0; t < MODEL_CHURN_TIERS; t++)
        if (!(c->tiers[t] >= 0) || !isfinite(c->tiers[t]) ||
            (t && !(c->tiers[t] > c->tiers[t - 1])))
            return err_set(e, ERR_INVALID,
                           "model: publish: churn tier thresholds must ascend from 0");
    for (uint32_t u = 0; u < n_users; u++) {
        float p = c->probability[u];
        int none = isnan(p);
        if (none ? c->band[u] != MODEL_CHURN_NONE || c->segment[u] != MODEL_CHURN_NONE ||
                       c->tier[u] != MODEL_CHURN_NONE
                 : !(p >= 0 && p <= 1) || c->band[u] >= MODEL_CHURN_N_BANDS ||
                       c->segment[u] >= MODEL_CHURN_N_SEGMENTS || c->tier[u] >= MODEL_CHURN_N_TIERS)
            return err_set(e, ERR_INVALID,
                           "model: publish: churn scores of user %u are inconsistent (probability "
                           "%g, band %u, segment %u, tier %u)",
                           u, (double)p, c->band[u], c->segment[u], c->tier[u]);
        for (uint32_t j = 0; j < c->n_features; j++)
            if (!isfinite(c->features[(size_t)u * c->n_features + j]))
                return err_set(e, ERR_INVALID,
                               "model: publish: churn feature %s of user %u is not finite",
                               c->feature_names[j], u);
    }
    if (!c->p_alive != !c->expected_orders || !c->p_alive != !c->expected_value)
        return err_set(e, ERR_INVALID, "model: publish: CLV needs all three per-user arrays");
    for (uint32_t u = 0; c->p_alive && u < n_users; u++)
        if (!model_clv_ok(c, u))
            return err_set(e, ERR_INVALID,
                           "model: publish: CLV of user %u is inconsistent (P(alive) %g, orders "
                           "%g, value %g)",
                           u, (double)c->p_alive[u], c->expected_orders[u], c->expected_value[u]);
    return c->has_validation ? model_check_validation(&c->validation, ERR_INVALID, "publish", e)
                             : ERR_OK;
}

/* Checks item rows for publication: n_items of them, indexes in range, an
 * ascending indptr, finite weights. */
static int model_check_rows(const itemrows *r, uint32_t n_items, err_t *e) {
    if (r->n_items != n_items)
        return err_set(e, ERR_INVALID, "model: publish: %u item rows for %u items", r->n_items,
                       n_items);
    uint64_t n = r->dense ? (uint64_t)n_items * n_items : 0;
    const float *v = r->dense;
    if (!r->dense) {
        if (!r->indptr || !r->index || !r->value || r->indptr[0] != 0)
            return err_set(e, ERR_INVALID, "model: publish: item rows without their arrays");
        for (uint32_t i = 0; i < n_items; i++)
            if (r->indptr[i + 1] < r->indptr[i])
                return err_set(e, ERR_INVALID, "model: publish: item rows' indptr descends");
        n = r->indptr[n_items];
        v = r->value;
        for (uint64_t k = 0; k < n; k++)
            if (r->index[k] >= n_items)
                return err_set(e, ERR_INVALID, "model: publish: item row entry %llu is item %u",
                               (unsigned long long)k, r->index[k]);
    }
    for (uint64_t k = 0; k < n; k++)
        if (!isfinite(v[k]))
            return err_set(e, ERR_INVALID, "model: publish: item row weight %llu is not finite",
                           (unsigned long long)k);
    return ERR_OK;
}

/* Checks that in describes one consistent model (ERR_INVALID otherwise), so
 * that a reader never has to distrust sizes that model_open verified. */
static int model_check_input(const model_input *in, err_t *e) {
    const model_meta *m = &in->meta;
    if (!in->users || !in->items || !in->user_items || !in->item_popularity ||
        (m->n_users && !in->user_factors) || (m->n_items && !in->item_factors))
        return err_set(e, ERR_INVALID, "model: publish: missing array in input");
    if (m->factors == 0) return err_set(e, ERR_INVALID, "model: publish: factors is 0");
    if (idmap_size(in->users) != m->n_users || idmap_size(in->items) != m->n_items)
        return err_set(e, ERR_INVALID,
                       "model: publish: id maps have %u users, %u items; meta says %u, %u",
                       idmap_size(in->users), idmap_size(in->items), m->n_users, m->n_items);
    const csr *ui = in->user_items;
    if (ui->n_rows != m->n_users || ui->n_cols != m->n_items)
        return err_set(e, ERR_INVALID, "model: publish: user_items is %u x %u, expected %u x %u",
                       ui->n_rows, ui->n_cols, m->n_users, m->n_items);
    if (ui->indptr[0] != 0)
        return err_set(e, ERR_INVALID, "model: publish: user_items indptr[0] is not 0");
    for (uint32_t u = 0; u < ui->n_rows; u++) {
        if (ui->indptr[u + 1] < ui->indptr[u])
            return err_set(e, ERR_INVALID, "model: publish: user_items row %u is negative", u);
        for (uint64_t k = ui->indptr[u]; k < ui->indptr[u + 1]; k++)
            if (ui->indices[k] >= m->n_items ||
                (k > ui->indptr[u] && ui->indices[k] <= ui->indices[k - 1]))
                return err_set(e, ERR_INVALID,
                               "model: publish: user_items row %u is not sorted distinct items "
                               "< %u",
                               u, m->n_items);
    }
    if (!in->categories != !in->item_category)
        return err_set(e, ERR_INVALID, "model: publish: categories without item_category");
    for (uint32_t i = 0; in->categories && i < m->n_items; i++)
        if (in->item_category[i] != UINT32_MAX &&
            in->item_category[i] >= idmap_size(in->categories))
            return err_set(e, ERR_INVALID, "model: publish: item %u has category %u of %u", i,
                           in->item_category[i], idmap_size(in->categories));
    for (uint32_t i = 0; i < m->n_items; i++)
        if (isnan(in->item_popularity[i]))
            return err_set(e, ERR_INVALID, "model: publish: item_popularity[%u] is NaN", i);
    /* A diverged training run yields non-finite factors; serving them would
     * rank garbage, so refuse here where the cause is still visible. */
    const float *f[2] = {in->user_factors, in->item_factors};
    uint64_t rows[2] = {m->n_users, m->n_items};
    for (int s = 0; s < 2; s++)
        for (uint64_t k = 0; k < rows[s] * m->factors; k++)
            if (!isfinite(f[s][k]))
                return err_set(e, ERR_INVALID, "model: publish: %s factor %llu is not finite",
                               s ? "item" : "user", (unsigned long long)k);
    size_t src = strnlen(m->source_fingerprint, sizeof m->source_fingerprint);
    if (src == sizeof m->source_fingerprint)
        return err_set(e, ERR_INVALID, "model: publish: source_fingerprint is not terminated");
    if (!(m->popularity_blend >= 0.0f))
        return err_set(e, ERR_INVALID, "model: publish: popularity_blend %g is not >= 0",
                       (double)m->popularity_blend);
    int rc;
    if (in->item_rows && (rc = model_check_rows(in->item_rows, m->n_items, e))) return rc;
    if (in->together && (in->together->dense || !in->together->indptr))
        return err_set(e, ERR_INVALID, "model: publish: bought-together lists are not sparse");
    if (in->together && (rc = model_check_rows(in->together, m->n_items, e))) return rc;
    if (in->rebuy &&
        (!in->rebuy->params || !in->rebuy->items || !in->rebuy->curve || !in->rebuy->pairs))
        return err_set(e, ERR_INVALID, "model: publish: the repurchase model is incomplete");
    if ((in->item_labels && !in->item_map) || (in->user_labels && !in->user_map))
        return err_set(e, ERR_INVALID, "model: publish: labels without their mapping");
    return in->churn ? model_check_churn(in->churn, m->n_users, e) : ERR_OK;
}

/* Chooses the version name for a model with this content fingerprint
 * published at time now, given the existing versions (sorted). A second
 * publication in the same second gets the suffix -<k>, one above the highest
 * suffix of that second, so that names stay unique and model_version_cmp
 * orders them as they were published. */
static int model_name(char version[MODEL_VERSION_MAX], time_t now, uint64_t fp,
                      char (*list)[MODEL_VERSION_MAX], size_t n, err_t *e) {
    struct tm tm;
    char stamp[MODEL_TIME_LEN + 1];
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    int same = 0;
    unsigned top = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(list[i], stamp, MODEL_TIME_LEN)) continue;
        same = 1;
        unsigned s = model_version_suffix(list[i]);
        if (s > top) top = s;
    }
    unsigned hi = (unsigned)(fp >> 32);
    if (!same) {
        snprintf(version, MODEL_VERSION_MAX, "%s-%08x", stamp, hi);
        return ERR_OK;
    }
    if (top >= MODEL_MAX_SUFFIX)
        return err_set(e, ERR_LIMIT, "model: publish: %u versions in second %s", top + 1, stamp);
    snprintf(version, MODEL_VERSION_MAX, "%s-%08x-%u", stamp, hi, top + 1);
    return ERR_OK;
}

/* xxh3 of the factor matrices: the model content that names a version. */
static uint64_t model_fingerprint(const model_input *in) {
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    if (in->meta.n_users)
        XXH3_64bits_update(&st, in->user_factors,
                           (size_t)in->meta.n_users * in->meta.factors * sizeof(float));
    if (in->meta.n_items)
        XXH3_64bits_update(&st, in->item_factors,
                           (size_t)in->meta.n_items * in->meta.factors * sizeof(float));
    const itemrows *ir = in->item_rows;
    if (ir && ir->dense)
        XXH3_64bits_update(&st, ir->dense, (size_t)ir->n_items * ir->n_items * sizeof(float));
    else if (ir)
        XXH3_64bits_update(&st, ir->value, (size_t)ir->indptr[ir->n_items] * sizeof(float));
    return XXH3_64bits_digest(&st);
}

/* State of one write transaction: where errors are reported from. */
typedef struct model_writer {
    MDB_txn *txn;
    MDB_dbi dbi;
    unsigned psize;
    const char *path;
} model_writer;

/* The recd error of a failed put: a full map means model_publish's size
 * estimate (model_map_size) missed something, which is a limit of this
 * publication and says so, not an anonymous internal error. */
static int model_put_err(model_writer *w, int rc, const char *key, uint64_t len, err_t *e) {
    if (rc == MDB_MAP_FULL) {
        MDB_envinfo info;
        mdb_env_info(mdb_txn_env(w->txn), &info);
        return err_set(e, ERR_LIMIT,
                       "lmdb: put %s (%llu bytes) in %s: the map of %zu bytes, estimated from "
                       "the model's size, is full (a bug: the estimate must count every key)",
                       key, (unsigned long long)len, w->path, info.me_mapsize);
    }
    return err_set(e, ERR_INTERNAL, "lmdb: put %s (%llu bytes) in %s: %s", key,
                   (unsigned long long)len, w->path, mdb_strerror(rc));
}

/* Puts one small value (copied by LMDB). */
static int model_put(model_writer *w, const char *key, const void *val, size_t len, err_t *e) {
    MDB_val k = {strlen(key), (void *)key}, v = {len, (void *)val};
    int rc = mdb_put(w->txn, w->dbi, &k, &v, 0);
    return rc ? model_put_err(w, rc, key, len, e) : ERR_OK;
}

/* Puts a metadata value encoded little-endian (floats by their bit pattern). */
static int model_put_u32v(model_writer *w, const char *key, uint32_t v, err_t *e) {
    unsigned char b[4];
    model_put_u32(b, v);
    return model_put(w, key, b, sizeof b, e);
}

static int model_put_u64v(model_writer *w, const char *key, uint64_t v, err_t *e) {
    unsigned char b[8];
    model_put_u64(b, v);
    return model_put(w, key, b, sizeof b, e);
}

static int model_put_f32(model_writer *w, const char *key, float f, err_t *e) {
    uint32_t v;
    memcpy(&v, &f, sizeof v);
    return model_put_u32v(w, key, v, e);
}

static int model_put_f64(model_writer *w, const char *key, double f, err_t *e) {
    uint64_t v;
    memcpy(&v, &f, sizeof v);
    return model_put_u64v(w, key, v, e);
}

/* Reserves a blob of len logical bytes (padded, zero-filled beyond len) and
 * returns where to write it in *p: LMDB's dirty page memory, valid only
 * until the next put, so the caller fills it at once. *p is NULL on error. */
static int model_reserve(model_writer *w, const char *key, uint64_t len, void **p, err_t *e) {
    *p = NULL;
    uint64_t padded = model_padded(len, w->psize);
    MDB_val k = {strlen(key), (void *)key}, v = {(size_t)padded, NULL};
    int rc = mdb_put(w->txn, w->dbi, &k, &v, MDB_RESERVE);
    if (rc) return model_put_err(w, rc, key, padded, e);
    memset((char *)v.mv_data + len, 0, (size_t)(padded - len));
    *p = v.mv_data;
    return ERR_OK;
}

/* Bytes of the id table of m: offsets u64[n+1] then the concatenated ids. */
static uint64_t model_ids_size(const idmap *m) {
    uint64_t bytes = 0;
    size_t len;
    for (uint32_t i = 0; i < idmap_size(m); i++) {
        idmap_key(m, i, &len);
        bytes += len;
    }
    return ((uint64_t)idmap_size(m) + 1) * sizeof(uint64_t) + bytes;
}

/* --- the blobs of a model --------------------------------------------------- */

/* One blob (a value on overflow pages) of a model: its key, its logical
 * length, and where its bytes come from: copied from src, or made by
 * fill(in, arg, p) into len bytes at p. model_blobs lists them once, and
 * both the map-size estimate and the writer go through that list, so the
 * estimate cannot leave out a blob that is written. */
typedef struct model_blob {
    const char *key;
    uint64_t len;
    const void *src;
    void (*fill)(const model_input *in, const void *arg, void *p);
    const void *arg;
} model_blob;

/* Most blobs of one model: 11 always, 3 of categories, 15 of churn, 4 of CLV,
 * 3 of item rows, 3 of bought-together lists, 4 of the repurchase model, 3
 * per label mapping (2), 2 of catalogue values. */
#define MODEL_MAX_BLOBS 52

static void model_fill_panels(const model_input *in, const void *arg, void *p) {
    (void)arg;
    panel_pack(in->item_factors, in->meta.n_items, in->meta.factors, p);
}

static void model_fill_norms(const model_input *in, const void *arg, void *p) {
    (void)arg;
    float *norms = p;
    uint32_t k = in->meta.factors;
    for (uint32_t i = 0; i < in->meta.n_items; i++) {
        const float *row = in->item_factors + (size_t)i * k;
        double sum = 0;
        for (uint32_t j = 0; j < k; j++)
            sum += (double)row[j] * row[j];
        norms[i] = (float)sqrt(sum);
    }
}

/* The id table of the idmap arg (model_ids_size bytes). */
static void model_fill_id_table(const model_input *in, const void *arg, void *p) {
    (void)in;
    const idmap *m = arg;
    uint32_t n = idmap_size(m);
    uint64_t *off = p;
    char *bytes = (char *)(off + (size_t)n + 1);
    off[0] = 0;
    for (uint32_t i = 0; i < n; i++) {
        size_t len;
        const char *id = idmap_key(m, i, &len);
        memcpy(bytes + off[i], id, len);
        off[i + 1] = off[i] + len;
    }
}

/* The hash index of the idmap arg (model_slot_count slots). */
static void model_fill_id_index(const model_input *in, const void *arg, void *p) {
    (void)in;
    const idmap *m = arg;
    uint32_t n = idmap_size(m);
    uint64_t n_slots = model_slot_count(n);
    uint32_t *slots = p;
    memset(slots, 0xff, (size_t)n_slots * sizeof *slots);
    for (uint32_t i = 0; i < n; i++) {
        size_t len;
        const char *id = idmap_key(m, i, &len);
        uint64_t s = XXH3_64bits(id, len) & (n_slots - 1);
        while (slots[s] != MODEL_EMPTY)
            s = (s + 1) & (n_slots - 1);
        slots[s] = i;
    }
}

/* user_items: the CSR's indptr, then its indices. */
static void model_fill_user_items(const model_input *in, const void *arg, void *p) {
    (void)arg;
    const csr *ui = in->user_items;
    size_t indptr = ((size_t)in->meta.n_users + 1) * sizeof(uint64_t);
    memcpy(p, ui->indptr, indptr);
    if (csr_nnz(ui)) memcpy((char *)p + indptr, ui->indices, csr_nnz(ui) * sizeof(uint32_t));
}

/* qsort_r order of popular_items: popularity (ctx) descending, then index. */
static int model_pop_cmp(const void *a, const void *b, void *ctx) {
    const float *pop = ctx;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    if (pop[x] != pop[y]) return pop[x] > pop[y] ? -1 : 1;
    return (x > y) - (x < y);
}

static void model_fill_popular(const model_input *in, const void *arg, void *p) {
    (void)arg;
    uint32_t *order = p, ni = in->meta.n_items;
    for (uint32_t i = 0; i < ni; i++)
        order[i] = i;
    qsort_r(order, ni, sizeof *order, model_pop_cmp, (void *)in->item_popularity);
}

/* Bytes of the churn feature names: offsets u64[n+1], then each name with
 * its NUL, so that a reader can hand out C strings that point into the map. */
static uint64_t model_churn_names_size(const model_churn *c) {
    uint64_t names = ((uint64_t)c->n_features + 1) * sizeof(uint64_t);
    for (uint32_t j = 0; j < c->n_features; j++)
        names += strlen(c->feature_names[j]) + 1;
    return names;
}

static void model_fill_churn_names(const model_input *in, const void *arg, void *p) {
    (void)arg;
    const model_churn *c = in->churn;
    uint64_t *off = p;
    char *bytes = (char *)(off + (size_t)c->n_features + 1);
    off[0] = 0;
    for (uint32_t j = 0; j < c->n_features; j++) {
        size_t len = strlen(c->feature_names[j]) + 1;
        memcpy(bytes + off[j], c->feature_names[j], len);
        off[j + 1] = off[j] + len;
    }
}

/* Lists every blob of the checked input in into out (MODEL_MAX_BLOBS
 * entries) in the order they are written; returns how many. */
static size_t model_blobs(const model_input *in, model_blob *out) {
    const model_meta *mt = &in->meta;
    uint64_t nu = mt->n_users, ni = mt->n_items, k = mt->factors, nnz = csr_nnz(in->user_items);
    size_t n = 0;
#define BLOB_COPY(key_, len_, src_) out[n++] = (model_blob){key_, len_, src_, NULL, NULL}
#define BLOB_FILL(key_, len_, fill_, arg_)                                                         \
    out[n++] = (model_blob) {                                                                      \
        key_, len_, NULL, fill_, arg_                                                              \
    }
    BLOB_COPY(K_USER_FACTORS, nu * k * sizeof(float), in->user_factors);
    BLOB_COPY(K_ITEM_FACTORS, ni * k * sizeof(float), in->item_factors);
    /* Stored beside the rows, not instead of them: fold-ins and similar
     * items read single rows; only scoring wants panels. */
    BLOB_FILL(K_ITEM_PANELS,
              (uint64_t)panel_padded(mt->n_items) * panel_pairs(mt->factors) * 2 * sizeof(uint16_t),
              model_fill_panels, NULL);
    BLOB_FILL(K_ITEM_NORMS, ni * sizeof(float), model_fill_norms, NULL);
    BLOB_FILL(K_USER_IDS, model_ids_size(in->users), model_fill_id_table, in->users);
    BLOB_FILL(K_USER_INDEX, model_slot_count(mt->n_users) * sizeof(uint32_t), model_fill_id_index,
              in->users);
    BLOB_FILL(K_ITEM_IDS, model_ids_size(in->items), model_fill_id_table, in->items);
    BLOB_FILL(K_ITEM_INDEX, model_slot_count(mt->n_items) * sizeof(uint32_t), model_fill_id_index,
              in->items);
    BLOB_FILL(K_USER_ITEMS, (nu + 1) * sizeof(uint64_t) + nnz * sizeof(uint32_t),
              model_fill_user_items, NULL);
    BLOB_COPY(K_USER_ITEM_COUNTS, nnz * sizeof(float), in->user_items->values);
    if (in->categories) {
        BLOB_FILL(K_CATEGORY_IDS, model_ids_size(in->categories), model_fill_id_table,
                  in->categories);
        BLOB_FILL(K_CATEGORY_INDEX, model_slot_count(idmap_size(in->categories)) * sizeof(uint32_t),
                  model_fill_id_index, in->categories);
        BLOB_COPY(K_ITEM_CATEGORY, ni * sizeof(uint32_t), in->item_category);
    }
    const model_churn *c = in->churn;
    if (c) {
        uint64_t f64 = (uint64_t)c->n_features * sizeof(double), per = nu * sizeof(float);
        BLOB_FILL(K_CHURN_NAMES, model_churn_names_size(c), model_fill_churn_names, NULL);
        BLOB_COPY(K_CHURN_COEF, f64, c->coef);
        BLOB_COPY(K_CHURN_MEAN, f64, c->mean);
        BLOB_COPY(K_CHURN_SCALE, f64, c->scale);
        BLOB_COPY(K_CHURN_BANDS, sizeof c->bands, c->bands);
        BLOB_COPY(K_CHURN_TIERS, sizeof c->tiers, c->tiers);
        BLOB_COPY(K_CHURN_FEATURES, per * c->n_features, c->features);
        BLOB_COPY(K_CHURN_PROB, per, c->probability);
        BLOB_COPY(K_CHURN_BAND, nu, c->band);
        BLOB_COPY(K_CHURN_SEGMENT, nu, c->segment);
        BLOB_COPY(K_CHURN_TIER, nu, c->tier);
        BLOB_COPY(K_CHURN_RECENCY, per, c->recency_days);
        BLOB_COPY(K_CHURN_FREQUENCY, per, c->frequency);
        BLOB_COPY(K_CHURN_MONETARY, per, c->monetary);
        if (c->has_validation) BLOB_COPY(K_CHURN_VALIDATION, sizeof c->validation, &c->validation);
        if (c->p_alive) {
            BLOB_COPY(K_CLV_PARAMS, sizeof c->clv, c->clv);
            BLOB_COPY(K_CLV_P_ALIVE, per, c->p_alive);
            BLOB_COPY(K_CLV_ORDERS, nu * sizeof(double), c->expected_orders);
            BLOB_COPY(K_CLV_VALUE, nu * sizeof(double), c->expected_value);
        }
    }
    const itemrows *ir = in->item_rows;
    if (ir && ir->dense) {
        BLOB_COPY(K_ITEM_ROWS_DENSE, ni * ni * sizeof(float), ir->dense);
    } else if (ir) {
        BLOB_COPY(K_ITEM_ROWS_INDPTR, (ni + 1) * sizeof(uint64_t), ir->indptr);
        BLOB_COPY(K_ITEM_ROWS_INDEX, ir->indptr[ni] * sizeof(uint32_t), ir->index);
        BLOB_COPY(K_ITEM_ROWS_VALUE, ir->indptr[ni] * sizeof(float), ir->value);
    }
    const itemrows *tg = in->together;
    if (tg) {
        BLOB_COPY(K_TOGETHER_INDPTR, (ni + 1) * sizeof(uint64_t), tg->indptr);
        BLOB_COPY(K_TOGETHER_INDEX, tg->indptr[ni] * sizeof(uint32_t), tg->index);
        BLOB_COPY(K_TOGETHER_VALUE, tg->indptr[ni] * sizeof(float), tg->value);
    }
    const model_rebuy_input *rb = in->rebuy;
    if (rb) {
        BLOB_COPY(K_REBUY_PARAMS, REBUY_N_PARAMS * sizeof(float), rb->params);
        BLOB_COPY(K_REBUY_ITEMS, ni * REBUY_ITEM_FLOATS * sizeof(float), rb->items);
        BLOB_COPY(K_REBUY_PAIRS, csr_nnz(in->user_items) * REBUY_PAIR_FLOATS * sizeof(float),
                  rb->pairs);
        BLOB_COPY(K_REBUY_CURVE, REBUY_CURVE * sizeof(float), rb->curve);
    }
    if (in->item_labels) {
        BLOB_FILL(K_ITEM_LABEL_IDS, model_ids_size(in->item_labels), model_fill_id_table,
                  in->item_labels);
        BLOB_FILL(K_ITEM_LABEL_INDEX,
                  model_slot_count(idmap_size(in->item_labels)) * sizeof(uint32_t),
                  model_fill_id_index, in->item_labels);
        BLOB_COPY(K_ITEM_MAP, (idmap_size(in->item_labels) + 1ull) * k * sizeof(float),
                  in->item_map);
    }
    if (in->user_labels) {
        BLOB_FILL(K_USER_LABEL_IDS, model_ids_size(in->user_labels), model_fill_id_table,
                  in->user_labels);
        BLOB_FILL(K_USER_LABEL_INDEX,
                  model_slot_count(idmap_size(in->user_labels)) * sizeof(uint32_t),
                  model_fill_id_index, in->user_labels);
        BLOB_COPY(K_USER_MAP, (idmap_size(in->user_labels) + 1ull) * k * sizeof(float),
                  in->user_map);
    }
    if (in->item_published) BLOB_COPY(K_ITEM_PUBLISHED, ni * sizeof(int64_t), in->item_published);
    if (in->item_price) BLOB_COPY(K_ITEM_PRICE, ni * sizeof(float), in->item_price);
    BLOB_COPY(K_POPULARITY, ni * sizeof(float), in->item_popularity);
    BLOB_FILL(K_POPULAR, ni * sizeof(uint32_t), model_fill_popular, NULL);
#undef BLOB_COPY
#undef BLOB_FILL
    return n;
}

/* The map size for writing in: every blob padded to a page, on overflow
 * pages with their header (a page more each), twice over for LMDB's
 * copy-on-write branch and free pages, plus 64 MiB for the small values
 * and the tree. Rounded up to a MiB. */
static uint64_t model_map_size(const model_input *in) {
    model_blob blobs[MODEL_MAX_BLOBS];
    size_t n = model_blobs(in, blobs);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += blobs[i].len + 4096;
    return (2 * total + (64u << 20) + (1u << 20) - 1) & ~(uint64_t)((1u << 20) - 1);
}

/* Writes the small values of the model: its metadata, and the counts and
 * scalars of its optional parts. */
static int model_write_values(model_writer *w, const model_input *in, const model_meta *meta,
                              err_t *e) {
    int rc;
#define META_PUT_U32(key, v) model_put_u32v(w, key, v, e)
#define META_PUT_U64(key, v) model_put_u64v(w, key, v, e)
#define META_PUT_I64(key, v) model_put_u64v(w, key, (uint64_t)(v), e)
#define META_PUT_TIME META_PUT_I64
#define META_PUT_F32(key, v) model_put_f32(w, key, v, e)
#define META_PUT_F64(key, v) model_put_f64(w, key, v, e)
#define META_PUT_STR(key, v) model_put(w, key, v, strlen(v), e)
#define META_WANT_REQ(kind, v) 1
#define META_WANT_FMT(kind, v) 1
#define META_SET_U32(v) ((v) != 0)
#define META_SET_U64 META_SET_U32
#define META_SET_I64 META_SET_U32
#define META_SET_TIME META_SET_U32
#define META_SET_F32 META_SET_U32
#define META_SET_F64 META_SET_U32
#define META_SET_STR(v) ((v)[0] != '\0')
#define META_WANT_OPT(kind, v) META_SET_##kind(v)
#define META_WRITE(member, key, kind, opt, pb, pb_name, show, label, fmt)                          \
    if (META_WANT_##opt(kind, meta->member) && (rc = META_PUT_##kind(key, meta->member))) return rc;
    MODEL_META_MAP(META_WRITE)
#undef META_WRITE
#undef META_WANT_OPT
#undef META_SET_STR
#undef META_SET_F64
#undef META_SET_F32
#undef META_SET_TIME
#undef META_SET_I64
#undef META_SET_U64
#undef META_SET_U32
#undef META_WANT_FMT
#undef META_WANT_REQ
#undef META_PUT_STR
#undef META_PUT_F64
#undef META_PUT_F32
#undef META_PUT_TIME
#undef META_PUT_I64
#undef META_PUT_U64
#undef META_PUT_U32
    if (in->categories && (rc = model_put_u32v(w, K_CATEGORIES, idmap_size(in->categories), e)))
        return rc;
    if (in->item_labels &&
        (rc = model_put_u32v(w, K_N_ITEM_LABELS, idmap_size(in->item_labels), e)))
        return rc;
    if (in->user_labels &&
        (rc = model_put_u32v(w, K_N_USER_LABELS, idmap_size(in->user_labels), e)))
        return rc;
    const model_churn *c = in->churn;
    if (c && ((rc = model_put_u32v(w, K_CHURN_N, c->n_features, e)) ||
              (rc = model_put_u32v(w, K_CHURN_HORIZON, c->horizon_days, e)) ||
              (rc = model_put_u64v(w, K_CHURN_SCORED_AT, (uint64_t)c->scored_at, e)) ||
              (rc = model_put_f64(w, K_CHURN_INTERCEPT, c->intercept, e)) ||
              (rc = model_put_f64(w, K_CHURN_PLATT_A, c->platt_a, e)) ||
              (rc = model_put_f64(w, K_CHURN_PLATT_B, c->platt_b, e))))
        return rc;
    return ERR_OK;
}

/* Writes every key of the model in one transaction of env: the small
 * values, then each blob of model_blobs. */
static int model_write(MDB_env *env, const char *path, const model_input *in,
                       const model_meta *meta, err_t *e) {
    MDB_stat st;
    mdb_env_stat(env, &st);
    model_writer w = {NULL, 0, st.ms_psize, path};
    int rc = mdb_txn_begin(env, NULL, 0, &w.txn);
    if (rc) return model_mdb_err(e, rc, "begin write transaction in", path);
    rc = mdb_dbi_open(w.txn, NULL, 0, &w.dbi);
    if (rc) {
        mdb_txn_abort(w.txn);
        return model_mdb_err(e, rc, "open main database of", path);
    }
    if ((rc = model_write_values(&w, in, meta, e))) goto fail;
    model_blob blobs[MODEL_MAX_BLOBS];
    size_t n = model_blobs(in, blobs);
    for (size_t i = 0; i < n; i++) {
        void *p;
        if ((rc = model_reserve(&w, blobs[i].key, blobs[i].len, &p, e))) goto fail;
        if (blobs[i].fill)
            blobs[i].fill(in, blobs[i].arg, p);
        else if (blobs[i].len)
            memcpy(p, blobs[i].src, (size_t)blobs[i].len);
    }
    rc = mdb_txn_commit(w.txn);
    if (rc) return model_mdb_err(e, rc, "commit", path);
    return ERR_OK;
fail:
    mdb_txn_abort(w.txn);
    return rc;
}

/* Creates the environment in the empty folder path, writes the model and
 * makes it durable. The writer uses MDB_NOLOCK (nobody else knows the
 * temporary folder, so there is nothing to coordinate and no lock.mdb is left
 * in the version) and MDB_NOSYNC: the one forced sync after commit replaces
 * LMDB's two per-commit syncs, which only order data before the meta page -
 * unnecessary here, as the folder becomes visible only after the sync. */
static int model_build(const char *path, const model_input *in, const model_meta *meta,
                       uint64_t mapsize, err_t *e) {
    MDB_env *env;
    int rc = mdb_env_create(&env);
    if (rc) return model_mdb_err(e, rc, "create environment for", path);
    if ((rc = mdb_env_set_mapsize(env, (size_t)mapsize))) {
        mdb_env_close(env);
        return model_mdb_err(e, rc, "set map size of", path);
    }
    if ((rc = mdb_env_open(env, path, MDB_NOLOCK | MDB_NOSYNC, 0644))) {
        mdb_env_close(env);
        return model_mdb_err(e, rc, "open", path);
    }
    rc = model_write(env, path, in, meta, e);
    if (!rc && (rc = mdb_env_sync(env, 1))) rc = model_mdb_err(e, rc, "sync", path);
    mdb_env_close(env);
    if (rc) return rc;
    return model_fsync_dir(path, e);
}

/* Removes what dead publishers left in dir: versions/.tmp-* folders and
 * .current.tmp-* links. Only called under the publisher lock, where no live
 * publisher can own them. Failures are logged, not returned: they waste
 * space but do not affect the model. */
static void model_clean_tmp(const char *dir) {
    const char *where[2] = {"versions", "."};
    const char *prefix[2] = {".tmp-", ".current.tmp-"};
    for (int i = 0; i < 2; i++) {
        char path[PATH_MAX], entry[PATH_MAX];
        if (model_path(path, NULL, "%s/%s", dir, where[i])) continue;
        DIR *d = opendir(path);
        if (!d) continue;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (strncmp(de->d_name, prefix[i], strlen(prefix[i]))) continue;
            if (model_path(entry, NULL, "%s/%s", path, de->d_name)) continue;
            if (model_rmtree(entry))
                log_warn(
                    "msg=\"cannot remove leftover of a dead publisher\" path=\"%s\" error=\"%s\"",
                    entry, strerror(errno));
        }
        closedir(d);
    }
}

/* Deletes the oldest versions beyond MODEL_KEEP_VERSIONS, never the current
 * one. Runs after the switch; failures are logged like in model_clean_tmp. */
static void model_prune(const char *dir) {
    char(*list)[MODEL_VERSION_MAX];
    size_t n;
    char cur[MODEL_VERSION_MAX];
    err_t err;
    if (model_list(dir, &list, &n, &err) || model_current_version(dir, cur, &err)) {
        log_warn("msg=\"cannot prune old model versions\" dir=\"%s\" error=\"%s\"", dir, err.msg);
        return;
    }
    for (size_t i = 0; i + MODEL_KEEP_VERSIONS < n; i++) {
        char path[PATH_MAX];
        if (!strcmp(list[i], cur) || model_path(path, NULL, "%s/versions/%s", dir, list[i]))
            continue;
        if (model_rmtree(path))
            log_warn("msg=\"cannot remove old model version\" path=\"%s\" error=\"%s\"", path,
                     strerror(errno));
    }
    free(list);
}

int model_publish(const char *dir, const model_input *in, model_meta *meta_out, err_t *e) {
    int rc = model_check_input(in, e);
    if (rc) return rc;
    char vdir[PATH_MAX], tmp[PATH_MAX], final[PATH_MAX];
    if ((rc = model_path(vdir, e, "%s/versions", dir))) return rc;
    if (mkdir(dir, 0755) && errno != EEXIST)
        return err_set(e, ERR_IO, "model: mkdir %s: %s", dir, strerror(errno));
    if (mkdir(vdir, 0755) && errno != EEXIST)
        return err_set(e, ERR_IO, "model: mkdir %s: %s", vdir, strerror(errno));
    int lock;
    if ((rc = model_lock(dir, &lock, e))) return rc;
    model_clean_tmp(dir);

    model_meta meta = in->meta;
    meta.format_version = MODEL_FORMAT_VERSION;
    meta.trained_at = (int64_t)time(NULL);
    char(*list)[MODEL_VERSION_MAX];
    size_t n;
    if ((rc = model_list(dir, &list, &n, e))) goto out;
    rc = model_name(meta.version, (time_t)meta.trained_at, model_fingerprint(in), list, n, e);
    free(list);
    if (rc) goto out;
    if ((rc = model_path(tmp, e, "%s/.tmp-%s-%ld", vdir, meta.version, (long)getpid())) ||
        (rc = model_path(final, e, "%s/%s", vdir, meta.version)))
        goto out;
    if (mkdir(tmp, 0755)) {
        rc = err_set(e, ERR_IO, "model: mkdir %s: %s", tmp, strerror(errno));
        goto out;
    }
    if ((rc = model_build(tmp, in, &meta, model_map_size(in), e))) {
        model_rmtree(tmp);
        goto out;
    }
    /* The version becomes visible complete or not at all; fsync versions/
     * before switching current so that after a crash current can never name
     * a version whose directory entry was lost. */
    if (rename(tmp, final)) {
        rc = err_set(e, ERR_IO, "model: rename %s to %s: %s", tmp, final, strerror(errno));
        model_rmtree(tmp);
        goto out;
    }
    if ((rc = model_fsync_dir(vdir, e)) || (rc = model_switch_current(dir, meta.version, e)))
        goto out;
    model_prune(dir);
    if (meta_out) *meta_out = meta;
out:
    close(lock);
    return rc;
}

/* --- opening and reading -------------------------------------------------- */

/* State of the read transaction of model_open. */
typedef struct model_reader {
    MDB_txn *txn;
    MDB_dbi dbi;
    unsigned psize;
    const char *path;
} model_reader;

/* Finds key; a missing key is ERR_FORMAT naming it. v points into the map. */
static int model_get(model_reader *r, const char *key, MDB_val *v, err_t *e) {
    MDB_val k = {strlen(key), (void *)key};
    int rc = mdb_get(r->txn, r->dbi, &k, v);
    if (rc == MDB_NOTFOUND)
        return err_set(e, ERR_FORMAT, "model: %s: missing key %s", r->path, key);
    if (rc) return err_set(e, ERR_FORMAT, "lmdb: get %s in %s: %s", key, r->path, mdb_strerror(rc));
    return ERR_OK;
}

/* Reads a small fixed-size little-endian value into out (size bytes). The
 * bytes are copied, never dereferenced in place: leaf values are only
 * 2-byte aligned. *out is 0 on error. */
static int model_get_fixed(model_reader *r, const char *key, size_t size, uint64_t *out, err_t *e) {
    *out = 0;
    MDB_val v;
    int rc = model_get(r, key, &v, e);
    if (rc) return rc;
    if (v.mv_size != size)
        return err_set(e, ERR_FORMAT, "model: %s: key %s has %zu bytes, expected %zu", r->path, key,
                       v.mv_size, size);
    *out = size == 4 ? model_get_u32(v.mv_data) : model_get_u64(v.mv_data);
    return ERR_OK;
}

/* Reads a small fixed-size metadata value of size 4 or 8 bytes into out (an
 * object of that size: an integer, or a float by its bits). */
static int model_get_num(model_reader *r, const char *key, void *out, size_t size, err_t *e) {
    uint64_t v;
    int rc = model_get_fixed(r, key, size, &v, e);
    if (rc) return rc;
    if (size == 4) {
        uint32_t x = (uint32_t)v;
        memcpy(out, &x, 4);
    } else {
        memcpy(out, &v, 8);
    }
    return ERR_OK;
}

/* Copies a string value (stored without NUL) into out of cap bytes. */
static int model_get_str(model_reader *r, const char *key, char *out, size_t cap, err_t *e) {
    MDB_val v;
    int rc = model_get(r, key, &v, e);
    if (rc) return rc;
    if (v.mv_size >= cap || memchr(v.mv_data, '\0', v.mv_size))
        return err_set(e, ERR_FORMAT, "model: %s: key %s is not a string of < %zu bytes", r->path,
                       key, cap);
    memcpy(out, v.mv_data, v.mv_size);
    out[v.mv_size] = '\0';
    return ERR_OK;
}

/* Finds blob key, checks that it is aligned to align and, when len is not
 * NULL, holds exactly *len logical bytes (padded as written); with len NULL
 * only at least min bytes. Fills *p with a pointer into the map (NULL on
 * error). */
static int model_get_blob(model_reader *r, const char *key, const uint64_t *len, uint64_t min,
                          unsigned align, const void **p, err_t *e) {
    *p = NULL;
    MDB_val v;
    int rc = model_get(r, key, &v, e);
    if (rc) return rc;
    if (len ? v.mv_size != model_padded(*len, r->psize) : v.mv_size < min)
        return err_set(e, ERR_FORMAT,
                       "model: %s: key %s has %zu bytes, inconsistent with the counts "
                       "(expected %llu)",
                       r->path, key, v.mv_size,
                       (unsigned long long)model_padded(len ? *len : min, r->psize));
    /* Overflow-page values are 16-byte aligned; anything else means the
     * file was not written by model_publish, and reading it as float or u64
     * would be undefined behaviour. */
    if ((uintptr_t)v.mv_data % align)
        return err_set(e, ERR_FORMAT, "model: %s: key %s is not %u-byte aligned", r->path, key,
                       align);
    *p = v.mv_data;
    return ERR_OK;
}

/* True when v[0..n] never decreases. */
static int model_ascending(const uint64_t *v, uint32_t n) {
    for (uint32_t i = 0; i < n; i++)
        if (v[i + 1] < v[i]) return 0;
    return 1;
}

/* True when every entry of v[0..n) is below limit. */
static int model_below(const uint32_t *v, uint64_t n, uint32_t limit) {
    for (uint64_t i = 0; i < n; i++)
        if (v[i] >= limit) return 0;
    return 1;
}

/* True when none of the n words at p, IEEE floats of width 32 (exp the
 * exponent mask 0x7f800000) or bfloat16 (0x7f80), is an infinity or a NaN,
 * i.e. has every exponent bit set. One pass without branches, which the
 * compiler vectorizes: model_open reads every factor with it. */
static int model_finite32(const void *p, uint64_t n) {
    const uint32_t *w = p;
    uint32_t bad = 0;
    for (uint64_t i = 0; i < n; i++)
        bad |= (w[i] & 0x7f800000u) == 0x7f800000u;
    return !bad;
}

static int model_finite16(const void *p, uint64_t n) {
    const uint16_t *w = p;
    unsigned bad = 0;
    for (uint64_t i = 0; i < n; i++)
        bad |= (w[i] & 0x7f80u) == 0x7f80u;
    return !bad;
}

/* Reads one id space (table and hash index) of n ids. */
static int model_get_ids(model_reader *r, const char *table_key, const char *index_key, uint32_t n,
                         model_ids *ids, err_t *e) {
    const void *p;
    uint64_t head = ((uint64_t)n + 1) * sizeof(uint64_t);
    int rc = model_get_blob(r, table_key, NULL, head, 8, &p, e);
    if (rc) return rc;
    ids->n = n;
    ids->offsets = p;
    ids->bytes = (const char *)(ids->offsets + (size_t)n + 1);
    if (ids->offsets[0] != 0 || ids->offsets[n] > UINT64_MAX - head)
        return err_set(e, ERR_FORMAT, "model: %s: key %s has bad offsets", r->path, table_key);
    uint64_t len = head + ids->offsets[n];
    if ((rc = model_get_blob(r, table_key, &len, 0, 8, &p, e))) return rc;
    /* With offsets[n] inside the blob, ascending offsets keep every id
     * inside it too (one pass over n + 1 numbers, no id bytes). */
    if (!model_ascending(ids->offsets, n))
        return err_set(e, ERR_FORMAT, "model: %s: key %s has offsets that do not ascend", r->path,
                       table_key);
    uint64_t slots = model_slot_count(n);
    len = slots * sizeof(uint32_t);
    if ((rc = model_get_blob(r, index_key, &len, 0, 4, &p, e))) return rc;
    ids->slots = p;
    ids->mask = slots - 1;
    return ERR_OK;
}

/* True when key is present (an optional part of the model). */
static int model_has(model_reader *r, const char *key) {
    MDB_val probe, k = {strlen(key), (void *)key};
    return mdb_get(r->txn, r->dbi, &k, &probe) != MDB_NOTFOUND;
}

/* Reads a fixed-size 8-byte metadata value as a double / int64. */
static int model_get_f64(model_reader *r, const char *key, void *out, err_t *e) {
    uint64_t v;
    int rc = model_get_fixed(r, key, 8, &v, e);
    if (!rc) memcpy(out, &v, 8);
    return rc;
}

/* Reads the optional churn keys once K_CHURN_N is known to exist: every one
 * of them must then be present with the size the counts imply. The names'
 * offsets and NULs are checked too (at most MODEL_CHURN_MAX_FEATURES of
 * them), so feature_names are safe C strings, and so are the per-user codes
 * against the probabilities, as model_check_churn did at publication. */
static int model_read_churn(model_reader *r, model *m, err_t *e) {
    model_churn *c = &m->churn;
    uint64_t v;
    int rc;
    if ((rc = model_get_fixed(r, K_CHURN_N, 4, &v, e))) return rc;
    if (v < 1 || v > MODEL_CHURN_MAX_FEATURES)
        return err_set(e, ERR_FORMAT, "model: %s: key %s is %llu, not 1..%d", r->path, K_CHURN_N,
                       (unsigned long long)v, MODEL_CHURN_MAX_FEATURES);
    uint32_t nf = (uint32_t)v, nu = m->meta.n_users;
    c->n_features = nf;
    if ((rc = model_get_fixed(r, K_CHURN_HORIZON, 4, &v, e))) return rc;
    c->horizon_days = (uint32_t)v;
    if ((rc = model_get_f64(r, K_CHURN_SCORED_AT, &c->scored_at, e)) ||
        (rc = model_get_f64(r, K_CHURN_INTERCEPT, &c->intercept, e)) ||
        (rc = model_get_f64(r, K_CHURN_PLATT_A, &c->platt_a, e)) ||
        (rc = model_get_f64(r, K_CHURN_PLATT_B, &c->platt_b, e)))
        return rc;
    const void *p;
    uint64_t head = ((uint64_t)nf + 1) * sizeof(uint64_t);
    if ((rc = model_get_blob(r, K_CHURN_NAMES, NULL, head, 8, &p, e))) return rc;
    const uint64_t *off = p;
    const char *bytes = (const char *)(off + (size_t)nf + 1);
    if (off[0] != 0 || off[nf] > (uint64_t)nf * MODEL_CHURN_NAME_MAX)
        return err_set(e, ERR_FORMAT, "model: %s: key %s has bad offsets", r->path, K_CHURN_NAMES);
    uint64_t len = head + off[nf];
    if ((rc = model_get_blob(r, K_CHURN_NAMES, &len, 0, 8, &p, e))) return rc;
    for (uint32_t j = 0; j < nf; j++) {
        uint64_t n = off[j + 1] - off[j]; /* with the NUL */
        if (off[j + 1] <= off[j] + 1 || off[j + 1] > off[nf] || n > MODEL_CHURN_NAME_MAX ||
            bytes[off[j + 1] - 1] != '\0' || memchr(bytes + off[j], '\0', (size_t)n - 1))
            return err_set(e, ERR_FORMAT,
                           "model: %s: key %s: name %u is not a C string of 1..%d bytes", r->path,
                           K_CHURN_NAMES, j, MODEL_CHURN_NAME_MAX - 1);
        m->churn_names[j] = bytes + off[j];
    }
    c->feature_names = m->churn_names;
    uint64_t f64 = (uint64_t)nf * sizeof(double), per = (uint64_t)nu * sizeof(float),
             feats = per * nf, bands = sizeof c->bands, tiers = sizeof c->tiers, u8 = nu;
    struct {
        const char *key;
        const uint64_t *len;
        unsigned align;
        const void **out;
    } blobs[] = {
        {K_CHURN_COEF, &f64, 8, (const void **)&c->coef},
        {K_CHURN_MEAN, &f64, 8, (const void **)&c->mean},
        {K_CHURN_SCALE, &f64, 8, (const void **)&c->scale},
        {K_CHURN_FEATURES, &feats, 4, (const void **)&c->features},
        {K_CHURN_PROB, &per, 4, (const void **)&c->probability},
        {K_CHURN_BAND, &u8, 1, (const void **)&c->band},
        {K_CHURN_SEGMENT, &u8, 1, (const void **)&c->segment},
        {K_CHURN_TIER, &u8, 1, (const void **)&c->tier},
        {K_CHURN_RECENCY, &per, 4, (const void **)&c->recency_days},
        {K_CHURN_FREQUENCY, &per, 4, (const void **)&c->frequency},
        {K_CHURN_MONETARY, &per, 4, (const void **)&c->monetary},
    };
    for (size_t i = 0; i < sizeof blobs / sizeof blobs[0]; i++)
        if ((rc =
                 model_get_blob(r, blobs[i].key, blobs[i].len, 0, blobs[i].align, blobs[i].out, e)))
            return rc;
    /* Thresholds are copied: the struct hands them out by value. */
    if ((rc = model_get_blob(r, K_CHURN_BANDS, &bands, 0, 4, &p, e))) return rc;
    memcpy(c->bands, p, sizeof c->bands);
    if ((rc = model_get_blob(r, K_CHURN_TIERS, &tiers, 0, 4, &p, e))) return rc;
    memcpy(c->tiers, p, sizeof c->tiers);
    /* Servers index name tables and shift bit masks by these codes. */
    for (uint32_t u = 0; u < nu; u++) {
        float prob = c->probability[u];
        if (isnan(prob)
                ? c->band[u] != MODEL_CHURN_NONE || c->segment[u] != MODEL_CHURN_NONE ||
                      c->tier[u] != MODEL_CHURN_NONE
                : !(prob >= 0 && prob <= 1) || c->band[u] >= MODEL_CHURN_N_BANDS ||
                      c->segment[u] >= MODEL_CHURN_N_SEGMENTS || c->tier[u] >= MODEL_CHURN_N_TIERS)
            return err_set(e, ERR_FORMAT, "model: %s: churn scores of user %u are inconsistent",
                           r->path, u);
    }
    if (model_has(r, K_CLV_P_ALIVE)) {
        uint64_t clv = sizeof c->clv, f64u = (uint64_t)nu * sizeof(double);
        if ((rc = model_get_blob(r, K_CLV_PARAMS, &clv, 0, 8, &p, e)) ||
            (rc = model_get_blob(r, K_CLV_P_ALIVE, &per, 0, 4, (const void **)&c->p_alive, e)) ||
            (rc = model_get_blob(r, K_CLV_ORDERS, &f64u, 0, 8, (const void **)&c->expected_orders,
                                 e)) ||
            (rc =
                 model_get_blob(r, K_CLV_VALUE, &f64u, 0, 8, (const void **)&c->expected_value, e)))
            return rc;
        memcpy(c->clv, p, sizeof c->clv);
        for (uint32_t u = 0; u < nu; u++)
            if (!model_clv_ok(c, u))
                return err_set(e, ERR_FORMAT, "model: %s: CLV of user %u is inconsistent", r->path,
                               u);
    }
    if (model_has(r, K_CHURN_VALIDATION)) {
        uint64_t size = sizeof c->validation;
        if ((rc = model_get_blob(r, K_CHURN_VALIDATION, &size, 0, 8, &p, e))) return rc;
        memcpy(&c->validation, p, sizeof c->validation);
        if ((rc = model_check_validation(&c->validation, ERR_FORMAT, r->path, e))) return rc;
        c->has_validation = 1;
    }
    m->has_churn = 1;
    return ERR_OK;
}

/* Reads the sparse item rows under keys indptr, index and value into *out
 * (whose n_items is set), the indexes checked to stay inside the
 * catalogue, since servers index score arrays with them. */
static int model_read_sparse(model_reader *r, const char *k_indptr, const char *k_index,
                             const char *k_value, itemrows *out, err_t *e) {
    uint64_t n = out->n_items, len = (n + 1) * sizeof(uint64_t);
    const void *p;
    int rc;
    if ((rc = model_get_blob(r, k_indptr, &len, 0, 8, &p, e))) return rc;
    out->indptr = p;
    uint64_t nnz = out->indptr[n];
    if (out->indptr[0] != 0 || !model_ascending(out->indptr, out->n_items) || nnz > UINT64_MAX / 8)
        return err_set(e, ERR_FORMAT, "model: %s: key %s has a bad indptr", r->path, k_indptr);
    len = nnz * sizeof(uint32_t);
    if ((rc = model_get_blob(r, k_index, &len, 0, 4, &p, e))) return rc;
    out->index = p;
    if (!model_below(out->index, nnz, out->n_items))
        return err_set(e, ERR_FORMAT, "model: %s: key %s has an item index >= %u", r->path, k_index,
                       out->n_items);
    len = nnz * sizeof(float);
    if ((rc = model_get_blob(r, k_value, &len, 0, 4, &p, e))) return rc;
    out->value = p;
    return ERR_OK;
}

/* Reads the optional label mappings and catalogue values. */
static int model_read_labels(model_reader *r, model *m, err_t *e) {
    static const char *const keys[2][4] = {
        {K_N_ITEM_LABELS, K_ITEM_LABEL_IDS, K_ITEM_LABEL_INDEX, K_ITEM_MAP},
        {K_N_USER_LABELS, K_USER_LABEL_IDS, K_USER_LABEL_INDEX, K_USER_MAP}};
    const model_meta *mt = &m->meta;
    const void *p;
    uint64_t v, len;
    int rc;
    for (int side = 0; side < 2; side++) {
        if (!model_has(r, keys[side][0])) continue;
        if ((rc = model_get_fixed(r, keys[side][0], 4, &v, e)) ||
            (rc = model_get_ids(r, keys[side][1], keys[side][2], (uint32_t)v, &m->side_labels[side],
                                e)))
            return rc;
        len = (v + 1) * mt->factors * sizeof(float);
        if ((rc = model_get_blob(r, keys[side][3], &len, 0, 4, &p, e))) return rc;
        if (!model_finite32(p, (v + 1) * mt->factors))
            return err_set(e, ERR_FORMAT, "model: %s: key %s holds a NaN or an infinity", r->path,
                           keys[side][3]);
        m->side_map[side] = (model_label_map){(uint32_t)v, mt->factors, p};
    }
    if (model_has(r, K_ITEM_PUBLISHED)) {
        len = (uint64_t)mt->n_items * sizeof(int64_t);
        if ((rc = model_get_blob(r, K_ITEM_PUBLISHED, &len, 0, 8, &p, e))) return rc;
        m->item_published = p;
    }
    if (model_has(r, K_ITEM_PRICE)) {
        len = (uint64_t)mt->n_items * sizeof(float);
        if ((rc = model_get_blob(r, K_ITEM_PRICE, &len, 0, 4, &p, e))) return rc;
        m->item_price = p;
    }
    return ERR_OK;
}

/* Reads the item rows of an item-item model, if any: dense (n^2 floats) or
 * sparse, its indexes checked to stay inside the catalogue, since servers
 * index score arrays with them. */
static int model_read_rows(model_reader *r, model *m, err_t *e) {
    const model_meta *mt = &m->meta;
    uint64_t n = mt->n_items, len;
    const void *p;
    int rc;
    m->rows = (itemrows){.n_items = mt->n_items};
    if (model_has(r, K_ITEM_ROWS_DENSE)) {
        len = n * n * sizeof(float);
        if ((rc = model_get_blob(r, K_ITEM_ROWS_DENSE, &len, 0, 4, &p, e))) return rc;
        m->rows.dense = p;
        m->has_rows = 1;
        return ERR_OK;
    }
    if (!model_has(r, K_ITEM_ROWS_INDPTR)) return ERR_OK;
    if ((rc = model_read_sparse(r, K_ITEM_ROWS_INDPTR, K_ITEM_ROWS_INDEX, K_ITEM_ROWS_VALUE,
                                &m->rows, e)))
        return rc;
    m->has_rows = 1;
    return ERR_OK;
}

/* Reads and checks every key; the environment has passed the size check. */
static int model_read(model_reader *r, model *m, err_t *e) {
    model_meta *mt = &m->meta;
    int rc;
    /* The FMT row first, alone: another format may have other keys. Then
     * every other row; an OPT one that is missing reads as 0. */
#define META_GET_STR(key, member) model_get_str(r, key, mt->member, sizeof mt->member, e)
#define META_GET_NUM(key, member) model_get_num(r, key, &mt->member, sizeof mt->member, e)
#define META_GET_U32 META_GET_NUM
#define META_GET_U64 META_GET_NUM
#define META_GET_I64 META_GET_NUM
#define META_GET_TIME META_GET_NUM
#define META_GET_F32 META_GET_NUM
#define META_GET_F64 META_GET_NUM
#define META_FIRST_REQ(member, key, kind)
#define META_FIRST_OPT(member, key, kind)
#define META_FIRST_FMT(member, key, kind)                                                          \
    if ((rc = META_GET_##kind(key, member))) return rc;                                            \
    if (mt->member != MODEL_FORMAT_VERSION)                                                        \
        return err_set(e, ERR_VERSION,                                                             \
                       "model: %s has format version %llu, this recd reads format version %d",     \
                       r->path, (unsigned long long)mt->member, MODEL_FORMAT_VERSION);
#define META_REST_FMT(member, key, kind)
#define META_REST_REQ(member, key, kind)                                                           \
    if ((rc = META_GET_##kind(key, member))) return rc;
#define META_ZERO_NUM(member) mt->member = 0
#define META_ZERO_U32 META_ZERO_NUM
#define META_ZERO_U64 META_ZERO_NUM
#define META_ZERO_I64 META_ZERO_NUM
#define META_ZERO_TIME META_ZERO_NUM
#define META_ZERO_F32 META_ZERO_NUM
#define META_ZERO_F64 META_ZERO_NUM
#define META_ZERO_STR(member) mt->member[0] = '\0'
#define META_REST_OPT(member, key, kind)                                                           \
    if (!model_has(r, key))                                                                        \
        META_ZERO_##kind(member);                                                                  \
    else if ((rc = META_GET_##kind(key, member)))                                                  \
        return rc;
#define META_FIRST(member, key, kind, opt, pb, pb_name, show, label, fmt)                          \
    META_FIRST_##opt(member, key, kind)
#define META_REST(member, key, kind, opt, pb, pb_name, show, label, fmt)                           \
    META_REST_##opt(member, key, kind)
    MODEL_META_MAP(META_FIRST)
    MODEL_META_MAP(META_REST)
#undef META_REST
#undef META_FIRST
#undef META_REST_OPT
#undef META_ZERO_STR
#undef META_ZERO_F64
#undef META_ZERO_F32
#undef META_ZERO_TIME
#undef META_ZERO_I64
#undef META_ZERO_U64
#undef META_ZERO_U32
#undef META_ZERO_NUM
#undef META_REST_REQ
#undef META_REST_FMT
#undef META_FIRST_FMT
#undef META_FIRST_OPT
#undef META_FIRST_REQ
#undef META_GET_F64
#undef META_GET_F32
#undef META_GET_TIME
#undef META_GET_I64
#undef META_GET_U64
#undef META_GET_U32
#undef META_GET_NUM
#undef META_GET_STR
    if (mt->factors == 0) return err_set(e, ERR_FORMAT, "model: %s: factors is 0", r->path);
    if (!mt->algorithm[0]) snprintf(mt->algorithm, sizeof mt->algorithm, "als");
    /* A NaN or negative popularity blend would turn the served scores into
     * garbage, so it is refused (a missing one is pure ALS: 0). */
    if (!(mt->popularity_blend >= 0.0f))
        return err_set(e, ERR_FORMAT, "model: %s: key popularity_blend is %g, not >= 0", r->path,
                       (double)mt->popularity_blend);
    uint64_t uf, itf;
    if (!model_mul3(mt->n_users, mt->factors, sizeof(float), &uf) ||
        !model_mul3(mt->n_items, mt->factors, sizeof(float), &itf))
        return err_set(e, ERR_FORMAT, "model: %s: counts overflow", r->path);
    uint64_t norms = (uint64_t)mt->n_items * sizeof(float), pop = norms;
    const void *p;
    if ((rc = model_get_blob(r, K_USER_FACTORS, &uf, 0, 4, &p, e))) return rc;
    m->user_factors = p;
    if ((rc = model_get_blob(r, K_ITEM_FACTORS, &itf, 0, 4, &p, e))) return rc;
    m->item_factors = p;
    if ((rc = model_get_blob(r, K_ITEM_NORMS, &norms, 0, 4, &p, e))) return rc;
    m->item_norms = p;
    /* Publication refuses non-finite factors, so one here is a damaged or
     * forged file; served, a NaN compares false with everything and the
     * lists come out empty while still saying PERSONALIZED. */
    const struct {
        const char *key;
        const void *p;
        uint64_t bytes;
    } floats[] = {{K_USER_FACTORS, m->user_factors, uf},
                  {K_ITEM_FACTORS, m->item_factors, itf},
                  {K_ITEM_NORMS, m->item_norms, norms}};
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++)
        if (!model_finite32(floats[i].p, floats[i].bytes / sizeof(float)))
            return err_set(e, ERR_FORMAT, "model: %s: key %s holds a value that is not finite",
                           r->path, floats[i].key);
    for (uint32_t i = 0; i < mt->n_items; i++)
        if (m->item_norms[i] > m->item_norm_max) m->item_norm_max = m->item_norms[i];
    /* Models published before the panels existed get them built here. */
    uint64_t panels;
    if (!model_mul3(panel_padded(mt->n_items), panel_pairs(mt->factors), 2 * sizeof(uint16_t),
                    &panels))
        return err_set(e, ERR_FORMAT, "model: %s: counts overflow", r->path);
    if (model_has(r, K_ITEM_PANELS)) {
        if ((rc = model_get_blob(r, K_ITEM_PANELS, &panels, 0, 4, &p, e))) return rc;
        if (!model_finite16(p, panels / sizeof(uint16_t)))
            return err_set(e, ERR_FORMAT, "model: %s: key %s holds a value that is not finite",
                           r->path, K_ITEM_PANELS);
        m->item_panels = p;
    } else {
        if (!(m->built_panels = malloc(panels ? panels : 1)))
            return err_set(e, ERR_NOMEM, "model: %s: out of memory for the item panels", r->path);
        panel_pack(m->item_factors, mt->n_items, mt->factors, m->built_panels);
        m->item_panels = m->built_panels;
    }
    if ((rc = model_get_blob(r, K_POPULAR, &pop, 0, 4, &p, e))) return rc;
    m->popular = p;
    if (!model_below(m->popular, mt->n_items, mt->n_items))
        return err_set(e, ERR_FORMAT, "model: %s: key %s has an item index >= %u", r->path,
                       K_POPULAR, mt->n_items);
    if ((rc = model_get_blob(r, K_POPULARITY, &pop, 0, 4, &p, e))) return rc;
    m->popularity = p;
    if ((rc = model_get_ids(r, K_USER_IDS, K_USER_INDEX, mt->n_users, &m->users, e)) ||
        (rc = model_get_ids(r, K_ITEM_IDS, K_ITEM_INDEX, mt->n_items, &m->items, e)))
        return rc;
    uint64_t head = ((uint64_t)mt->n_users + 1) * sizeof(uint64_t);
    if ((rc = model_get_blob(r, K_USER_ITEMS, NULL, head, 8, &p, e))) return rc;
    m->user_indptr = p;
    uint64_t nnz = m->user_indptr[mt->n_users], len = head + nnz * sizeof(uint32_t);
    if (m->user_indptr[0] != 0 || nnz > (UINT64_MAX - head) / sizeof(uint32_t))
        return err_set(e, ERR_FORMAT, "model: %s: key %s has a bad indptr", r->path, K_USER_ITEMS);
    if ((rc = model_get_blob(r, K_USER_ITEMS, &len, 0, 8, &p, e))) return rc;
    m->user_indices = (const uint32_t *)(m->user_indptr + (size_t)mt->n_users + 1);
    /* Servers index score arrays with these: rows must stay inside indices
     * and hold sorted distinct items < n_items. */
    if (!model_ascending(m->user_indptr, mt->n_users))
        return err_set(e, ERR_FORMAT, "model: %s: key %s has an indptr that does not ascend",
                       r->path, K_USER_ITEMS);
    for (uint32_t u = 0; u < mt->n_users; u++)
        for (uint64_t k = m->user_indptr[u]; k < m->user_indptr[u + 1]; k++)
            if (m->user_indices[k] >= mt->n_items ||
                (k > m->user_indptr[u] && m->user_indices[k] <= m->user_indices[k - 1]))
                return err_set(e, ERR_FORMAT,
                               "model: %s: key %s: row %u is not sorted distinct items < %u",
                               r->path, K_USER_ITEMS, u, mt->n_items);
    len = nnz * sizeof(float);
    if ((rc = model_get_blob(r, K_USER_ITEM_COUNTS, &len, 0, 4, &p, e))) return rc;
    m->user_item_counts = p;
    if (model_has(r, K_CHURN_N) && (rc = model_read_churn(r, m, e))) return rc;
    if ((rc = model_read_rows(r, m, e))) return rc;
    m->together = (itemrows){.n_items = mt->n_items};
    if (model_has(r, K_TOGETHER_INDPTR)) {
        if ((rc = model_read_sparse(r, K_TOGETHER_INDPTR, K_TOGETHER_INDEX, K_TOGETHER_VALUE,
                                    &m->together, e)))
            return rc;
        m->has_together = 1;
    }
    if (model_has(r, K_REBUY_PARAMS)) {
        /* All four or none; floats are served as they are (wrong answers,
         * not wrong reads), sizes decide every index. */
        uint64_t lens[4] = {REBUY_N_PARAMS * sizeof(float),
                            (uint64_t)mt->n_items * REBUY_ITEM_FLOATS * sizeof(float),
                            nnz * REBUY_PAIR_FLOATS * sizeof(float), REBUY_CURVE * sizeof(float)};
        const char *keys[4] = {K_REBUY_PARAMS, K_REBUY_ITEMS, K_REBUY_PAIRS, K_REBUY_CURVE};
        const void *q[4];
        for (int k = 0; k < 4; k++)
            if ((rc = model_get_blob(r, keys[k], &lens[k], 0, 4, &q[k], e))) return rc;
        m->rebuy = (rebuy_model){.params = q[0], .items = q[1], .curve = q[3]};
        m->rebuy_pairs = q[2];
        m->has_rebuy = 1;
    }
    if ((rc = model_read_labels(r, m, e))) return rc;
    /* Categories are optional: a history without a category column has none. */
    if (!model_has(r, K_CATEGORIES)) return ERR_OK;
    uint64_t v;
    if ((rc = model_get_fixed(r, K_CATEGORIES, 4, &v, e)) ||
        (rc = model_get_ids(r, K_CATEGORY_IDS, K_CATEGORY_INDEX, (uint32_t)v, &m->categories, e)))
        return rc;
    len = (uint64_t)mt->n_items * sizeof(uint32_t);
    if ((rc = model_get_blob(r, K_ITEM_CATEGORY, &len, 0, 4, &p, e))) return rc;
    m->item_category = p;
    for (uint32_t i = 0; i < mt->n_items; i++)
        if (m->item_category[i] != MODEL_EMPTY && m->item_category[i] >= m->categories.n)
            return err_set(e, ERR_FORMAT, "model: %s: key %s: item %u has category %u of %u",
                           r->path, K_ITEM_CATEGORY, i, m->item_category[i], m->categories.n);
    return ERR_OK;
}

/* Opens the version folder path into m. MDB_RDONLY | MDB_NOLOCK is right
 * because a published environment is immutable: the reader table exists to
 * keep a writer from reusing pages a reader still sees, and no writer ever
 * opens a published version again. Without it, nothing is written (the model
 * can live on a read-only mount), and opening the same version twice in one
 * process is safe, which LMDB's fcntl locks would not allow (closing one
 * handle drops the locks of the other) - a server reloading or rolling back
 * does exactly that. */
static int model_open_env(const char *path, model *m, err_t *e) {
    char data[PATH_MAX];
    struct stat st;
    int rc = model_path(data, e, "%s/data.mdb", path);
    if (rc) return rc;
    if (stat(data, &st)) {
        if (errno == ENOENT || errno == ENOTDIR)
            return err_set(e, ERR_NOTFOUND, "model: %s does not exist", data);
        return err_set(e, ERR_IO, "model: stat %s: %s", data, strerror(errno));
    }
    if (!S_ISREG(st.st_mode) || st.st_size == 0)
        return err_set(e, ERR_FORMAT, "model: %s is not an LMDB file (empty or not a file)", data);
    if ((rc = mdb_env_create(&m->env))) return model_mdb_err(e, rc, "create environment for", path);
    rc = mdb_env_open(m->env, path, MDB_RDONLY | MDB_NOLOCK, 0);
    if (rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH)
        return err_set(e, ERR_FORMAT, "model: %s is not an LMDB file: %s", data, mdb_strerror(rc));
    if (rc) return err_set(e, ERR_IO, "lmdb: open %s: %s", path, mdb_strerror(rc));
    /* A short file maps fine but SIGBUSes when a missing page is touched, so
     * compare its size with the pages the last commit used before any get. */
    MDB_envinfo info;
    MDB_stat ms;
    mdb_env_info(m->env, &info);
    mdb_env_stat(m->env, &ms);
    mdb_filehandle_t fd;
    if ((rc = mdb_env_get_fd(m->env, &fd)) || fstat(fd, &st))
        return err_set(e, ERR_IO, "model: stat %s: %s", data,
                       rc ? mdb_strerror(rc) : strerror(errno));
    uint64_t need = ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
    if ((uint64_t)st.st_size < need)
        return err_set(e, ERR_FORMAT,
                       "model: %s is truncated: %lld bytes, its last page ends at %llu", data,
                       (long long)st.st_size, (unsigned long long)need);
    model_reader r = {NULL, 0, ms.ms_psize, path};
    if ((rc = mdb_txn_begin(m->env, NULL, MDB_RDONLY, &r.txn)))
        return model_mdb_err(e, rc, "begin read transaction in", path);
    if ((rc = mdb_dbi_open(r.txn, NULL, 0, &r.dbi)))
        rc = err_set(e, ERR_FORMAT, "lmdb: open main database of %s: %s", path, mdb_strerror(rc));
    else
        rc = model_read(&r, m, e);
    /* The pointers taken stay valid after the transaction: the map of a
     * read-only environment is never remapped and its pages never change. */
    mdb_txn_abort(r.txn);
    return rc;
}

int model_open(const char *dir, model **out, err_t *e) {
    *out = NULL;
    char path[PATH_MAX];
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode))
        return err_set(e, ERR_NOTFOUND, "model: directory %s does not exist", dir);
    int rc = model_path(path, e, "%s/data.mdb", dir);
    if (rc) return rc;
    if (stat(path, &st) == 0) {
        rc = model_path(path, e, "%s", dir);
    } else {
        /* Resolve current once: using DIR/current for each step would race
         * with a publisher switching it in between. */
        char version[MODEL_VERSION_MAX];
        if ((rc = model_current_version(dir, version, e))) return rc;
        rc = model_path(path, e, "%s/versions/%s", dir, version);
    }
    if (rc) return rc;
    model *m = calloc(1, sizeof *m);
    if (!m) return err_set(e, ERR_NOMEM, "model: out of memory");
    if ((rc = model_open_env(path, m, e))) {
        model_close(m);
        return rc;
    }
    *out = m;
    return ERR_OK;
}

void model_close(model *m) {
    if (!m) return;
    if (m->env) mdb_env_close(m->env);
    free(m->built_panels);
    free(m);
}

const model_meta *model_info(const model *m) {
    return &m->meta;
}

/* Linear probing from the id's xxh3, comparing bytes through the id table.
 * Slot values are checked against n and probing is bounded so that a
 * damaged index yields "not found" rather than a read outside the map. */
static int model_lookup(const model_ids *t, const char *id, size_t len, uint32_t *index) {
    uint64_t s = XXH3_64bits(id, len) & t->mask;
    for (uint64_t probe = 0; probe <= t->mask; probe++, s = (s + 1) & t->mask) {
        uint32_t i = t->slots[s];
        if (i == MODEL_EMPTY || i >= t->n) return ERR_NOTFOUND;
        if (t->offsets[i + 1] - t->offsets[i] == len &&
            memcmp(t->bytes + t->offsets[i], id, len) == 0) {
            *index = i;
            return ERR_OK;
        }
    }
    return ERR_NOTFOUND;
}

int model_user_index(const model *m, const char *id, size_t len, uint32_t *index) {
    return model_lookup(&m->users, id, len, index);
}

int model_item_index(const model *m, const char *id, size_t len, uint32_t *index) {
    return model_lookup(&m->items, id, len, index);
}

const char *model_user_id(const model *m, uint32_t index, size_t *len) {
    *len = (size_t)(m->users.offsets[index + 1] - m->users.offsets[index]);
    return m->users.bytes + m->users.offsets[index];
}

const char *model_item_id(const model *m, uint32_t index, size_t *len) {
    *len = (size_t)(m->items.offsets[index + 1] - m->items.offsets[index]);
    return m->items.bytes + m->items.offsets[index];
}

const itemrows *model_item_rows(const model *m) {
    return m->has_rows ? &m->rows : NULL;
}

const rebuy_model *model_rebuy(const model *m) {
    return m->has_rebuy ? &m->rebuy : NULL;
}

const float *model_rebuy_pairs(const model *m, uint32_t u) {
    return m->has_rebuy ? m->rebuy_pairs + m->user_indptr[u] * REBUY_PAIR_FLOATS : NULL;
}

const itemrows *model_together(const model *m) {
    return m->has_together ? &m->together : NULL;
}

const model_label_map *model_label_map_of(const model *m, model_side side) {
    return m->side_map[side].map ? &m->side_map[side] : NULL;
}

int model_label_index(const model *m, model_side side, const char *label, size_t len,
                      uint32_t *index) {
    if (!m->side_map[side].map) return ERR_NOTFOUND;
    return model_lookup(&m->side_labels[side], label, len, index);
}

const char *model_label_id(const model *m, model_side side, uint32_t index, size_t *len) {
    const model_ids *t = &m->side_labels[side];
    *len = (size_t)(t->offsets[index + 1] - t->offsets[index]);
    return t->bytes + t->offsets[index];
}

const int64_t *model_item_published(const model *m) {
    return m->item_published;
}

const float *model_item_price(const model *m) {
    return m->item_price;
}

const float *model_user_factors(const model *m) {
    return m->user_factors;
}

const float *model_item_factors(const model *m) {
    return m->item_factors;
}

const uint16_t *model_item_panels(const model *m) {
    return m->item_panels;
}

float model_item_norm_max(const model *m) {
    return m->item_norm_max;
}

const float *model_item_norms(const model *m) {
    return m->item_norms;
}

const uint32_t *model_user_items(const model *m, uint32_t u, uint32_t *n) {
    *n = (uint32_t)(m->user_indptr[u + 1] - m->user_indptr[u]);
    return m->user_indices + m->user_indptr[u];
}

const uint32_t *model_popular_items(const model *m) {
    return m->popular;
}

const float *model_item_popularity(const model *m) {
    return m->popularity;
}

const float *model_user_item_counts(const model *m, uint32_t u) {
    return m->user_item_counts + m->user_indptr[u];
}

uint32_t model_n_categories(const model *m) {
    return m->categories.n;
}

int model_category_index(const model *m, const char *id, size_t len, uint32_t *index) {
    if (!m->categories.n) return ERR_NOTFOUND;
    return model_lookup(&m->categories, id, len, index);
}

const char *model_category_id(const model *m, uint32_t index, size_t *len) {
    *len = (size_t)(m->categories.offsets[index + 1] - m->categories.offsets[index]);
    return m->categories.bytes + m->categories.offsets[index];
}

const uint32_t *model_item_categories(const model *m) {
    return m->item_category;
}

const model_churn *model_churn_info(const model *m) {
    return m->has_churn ? &m->churn : NULL;
}

int model_churn_user_scores(const model *m, uint32_t u, model_churn_user *out) {
    if (!m->has_churn) return ERR_NOTFOUND;
    const model_churn *c = &m->churn;
    out->probability = c->probability[u];
    out->band = c->band[u];
    out->segment = c->segment[u];
    out->tier = c->tier[u];
    out->recency_days = c->recency_days[u];
    out->frequency = c->frequency[u];
    out->monetary = c->monetary[u];
    out->features = c->features + (size_t)u * c->n_features;
    out->p_alive = c->p_alive ? c->p_alive[u] : NAN;
    out->expected_orders = c->p_alive ? c->expected_orders[u] : NAN;
    out->expected_value = c->p_alive ? c->expected_value[u] : NAN;
    return ERR_OK;
}

int model_churn_contributions(const model *m, uint32_t u, double *out) {
    if (!m->has_churn) return ERR_NOTFOUND;
    const model_churn *c = &m->churn;
    const float *x = c->features + (size_t)u * c->n_features;
    for (uint32_t j = 0; j < c->n_features; j++)
        out[j] = c->coef[j] * ((x[j] - c->mean[j]) / c->scale[j]);
    return ERR_OK;
}

/* ---- churn codes ------------------------------------------------------- */

#define CHURN_CODE_NAME(name, code, str) [code] = str,
static const char *const band_names[MODEL_CHURN_N_BANDS] = {MODEL_CHURN_BAND_MAP(CHURN_CODE_NAME)};
static const char *const segment_names[MODEL_CHURN_N_SEGMENTS] = {
    MODEL_CHURN_SEGMENT_MAP(CHURN_CODE_NAME)};
static const char *const tier_names[MODEL_CHURN_N_TIERS] = {MODEL_CHURN_TIER_MAP(CHURN_CODE_NAME)};
#undef CHURN_CODE_NAME

const char *model_churn_band_name(uint32_t code) {
    return code < MODEL_CHURN_N_BANDS ? band_names[code] : "";
}

const char *model_churn_segment_name(uint32_t code) {
    return code < MODEL_CHURN_N_SEGMENTS ? segment_names[code] : "";
}

const char *model_churn_tier_name(uint32_t code) {
    return code < MODEL_CHURN_N_TIERS ? tier_names[code] : "";
}

static int code_of(const char *const *names, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(name, names[i])) return i;
    return -1;
}

int model_churn_segment_code(const char *name) {
    return code_of(segment_names, MODEL_CHURN_N_SEGMENTS, name);
}

int model_churn_tier_code(const char *name) {
    return code_of(tier_names, MODEL_CHURN_N_TIERS, name);
}
