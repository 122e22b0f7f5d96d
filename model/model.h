/* model: the published recommendation model, an LMDB environment that the
 * server memory-maps read-only and reads in place (zero-copy).
 *
 * On disk (docs/model-format.md has the full layout):
 *   DIR/versions/<version>/data.mdb   one immutable LMDB environment per version
 *   DIR/current -> versions/<version> symlink, replaced atomically by rename(2)
 * A publication writes a complete new environment under a temporary name,
 * syncs it, renames it into versions/ and then swaps the symlink, so a reader
 * that opens DIR/current sees the old model or the new one, never a mix. A
 * killed publisher leaves only a temporary folder that the next publish
 * removes. The newest MODEL_KEEP_VERSIONS versions are kept (rollback).
 *
 * Every large array (factor matrices, id tables, purchased items, popularity)
 * is one LMDB value, contiguous on overflow pages, so the pointers returned
 * below point into the map and are valid until model_close. Id lookups use a
 * hash table stored in the model, so they need no transaction either: a
 * model handle is safe to read from many threads at once. */
#ifndef RECD_MODEL_H
#define RECD_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "csr.h"
#include "err.h"
#include "idmap.h"
#include "itemrows.h"
#include "rebuy.h"

#define MODEL_FORMAT_VERSION 2
#define MODEL_VERSION_MAX 64 /* bytes of a version string, with NUL */
#define MODEL_KEEP_VERSIONS 5

typedef struct model_meta {
    uint32_t format_version; /* MODEL_FORMAT_VERSION when written */
    uint32_t factors, n_users, n_items;
    uint64_t interactions; /* events the model was trained on */
    uint32_t iterations;
    float regularization, alpha;
    double loss, train_seconds;
    int64_t trained_at;              /* unix seconds, set by model_publish */
    int64_t data_until;              /* latest event time in the training data (unix s): events
                                        after it are what a server folds in */
    char version[MODEL_VERSION_MAX]; /* set by model_publish: <UTC time>-<fingerprint> */
    char source_fingerprint[17];     /* hex xxh64 of the input data, set by the caller */
    /* Popularity blend w: a personalized score is x_u . y_i + w * p_i with
     * p_i the item's popularity scaled to [0, 1] (mf_blend_popularity in
     * util/mf.h, the arithmetic offline evaluation measures). 0 = pure
     * ALS (also what a model published without it reads as); +INFINITY = the
     * most-popular list for everyone. Never NaN or negative. */
    float popularity_blend;
    /* The model family (training/itemsim.h's names): "als", or an item-item
     * family - "ease", "knn", "rp3beta", or two of them blended as
     * "<a>+<b>" - whose item rows (model_item_rows) score instead of the
     * factors. Read as "als" from a model without the key. */
    char algorithm[32];
    float lambda;       /* EASE's lambda (0 when not EASE) */
    uint32_t neighbors; /* entries kept per item by a sparse item-item model (0: dense or ALS) */
    /* An item-item model's served score is rows . v_u + als_blend * x_u . y_i
     * (+ the popularity blend): a blend with the factors; 0 = rows alone. */
    float als_blend;
    /* ALS's frequency-scaled regularization (als_params): a fold-in of n
     * distinct items is regularized by regularization + this x n; 0 = plain. */
    float frequency_regularization;
    /* The ridge lambdas of the label-to-factor mappings (training/attrmap.h),
     * 0 when the model has no such mapping. */
    float item_map_lambda, user_map_lambda;
    /* The catalogue's category column: an item of category c has the label
     * "<column>:c" (features/labels.h), so an upserted item's categories
     * count in its vector; "" = none. */
    char item_category_column[128];
} model_meta;

/* The metadata fields, one row each, in the order recd inspect and recd query
 * info print them: X(member, key, kind, opt, pb, pb_name, show, label, fmt).
 *   member   the model_meta member
 *   key      its LMDB key (docs/model-format.md): part of the format
 *   kind     U32, U64, I64, F32, F64 (stored little-endian, floats by their
 *            bits), STR (stored without NUL; a char array here) or TIME
 *            (an int64 of unix seconds, stored like I64, printed as a UTC date
 *            with the number beside it in JSON as <label>_unix)
 *   opt      REQ: always written, a model without it is refused; FMT: REQ,
 *            and read and checked (== MODEL_FORMAT_VERSION) before any other
 *            key, since another format may have other keys; OPT: written
 *            only when not 0 (a STR: not empty), so a model without the feature stays exactly
 *            what it was before the key existed, and read as 0 when missing
 *   pb       PB: served as field pb_name of ModelInfo (the generated
 *            Recd__V1__ModelInfo must have it with the kind's C type: the
 *            server checks at compile time); NO: not served (pb_name _)
 *   show     SHOW: printed from this table by recd inspect, and by recd
 *            query info when PB; HIDE: printed by neither; HAND: printed by
 *            hand after the others (popularity_blend: JSON has no infinity,
 *            so inf is the string "inf", and the text says popularity only)
 *   label    its name in text and JSON output
 *   fmt      the printf conversion of its value in text output */
#define MODEL_META_MAP(X)                                                                          \
    X(version, "version", STR, REQ, PB, model_version, SHOW, "model_version", "%s")                \
    X(format_version, "format_version", U32, FMT, PB, format_version, SHOW, "format_version",      \
      "%u")                                                                                        \
    X(factors, "factors", U32, REQ, PB, factors, SHOW, "factors", "%u")                            \
    X(n_users, "n_users", U32, REQ, PB, users, SHOW, "users", "%u")                                \
    X(n_items, "n_items", U32, REQ, PB, items, SHOW, "items", "%u")                                \
    X(interactions, "interactions", U64, REQ, PB, interactions, SHOW, "interactions", "%llu")      \
    X(iterations, "iterations", U32, REQ, PB, iterations, SHOW, "iterations", "%u")                \
    X(regularization, "regularization", F32, REQ, PB, regularization, SHOW, "regularization",      \
      "%g")                                                                                        \
    X(alpha, "alpha", F32, REQ, PB, alpha, SHOW, "alpha", "%g")                                    \
    X(loss, "loss", F64, REQ, NO, _, SHOW, "loss", "%g")                                           \
    X(train_seconds, "train_seconds", F64, REQ, NO, _, SHOW, "train_seconds", "%.3f")              \
    X(trained_at, "trained_at", TIME, REQ, PB, trained_at_unix, SHOW, "trained_at", "%s")          \
    X(data_until, "data_until", I64, REQ, NO, _, HIDE, "data_until", "%lld")                       \
    X(source_fingerprint, "source_fingerprint", STR, REQ, PB, source_fingerprint, SHOW,            \
      "source_fingerprint", "%s")                                                                  \
    X(popularity_blend, "popularity_blend", F32, OPT, PB, popularity_blend, HAND,                  \
      "popularity_blend", "%g")                                                                    \
    X(algorithm, "algorithm", STR, OPT, PB, algorithm, SHOW, "algorithm", "%s")                    \
    X(lambda, "lambda", F32, OPT, NO, _, SHOW, "lambda", "%g")                                     \
    X(neighbors, "neighbors", U32, OPT, NO, _, SHOW, "neighbors", "%u")                            \
    X(als_blend, "als_blend", F32, OPT, NO, _, SHOW, "als_blend", "%g")                            \
    X(frequency_regularization, "frequency_regularization", F32, OPT, NO, _, SHOW,                 \
      "frequency_regularization", "%g")                                                            \
    X(item_map_lambda, "item_map_lambda", F32, OPT, NO, _, SHOW, "item_map_lambda", "%g")          \
    X(user_map_lambda, "user_map_lambda", F32, OPT, NO, _, SHOW, "user_map_lambda", "%g")          \
    X(item_category_column, "item_category_column", STR, OPT, NO, _, SHOW, "item_category_column", \
      "%s")

/* The C type of each kind (a STR member's array decays to char *), for the
 * compile-time checks of the table's users. */
#define MODEL_META_TYPE_U32 uint32_t
#define MODEL_META_TYPE_U64 uint64_t
#define MODEL_META_TYPE_I64 int64_t
#define MODEL_META_TYPE_TIME int64_t
#define MODEL_META_TYPE_F32 float
#define MODEL_META_TYPE_F64 double
#define MODEL_META_TYPE_STR char *

/* Optional churn model and per-user churn scores at one scoring time
 * (training/churn.h computes them; the serving side reads them back). A
 * user's churn probability is
 *     p = 1 / (1 + exp(-(platt_a * s + platt_b))),
 *     s = intercept + sum_j coef[j] * (features[j] - mean[j]) / scale[j]
 * and coef[j] * (features[j] - mean[j]) / scale[j] is how much input j
 * pushes the score (positive = towards churn): the explanation.
 * Codes: those of the tables below (a band by p < bands[0], < bands[1],
 * else; a tier by spend in the 365 days before scored_at >= tiers[t-1]);
 * MODEL_CHURN_NONE with probability NaN for a user who had not bought before
 * scored_at. In model_input every pointer is borrowed for the call; from
 * model_churn_info every pointer points into the map (valid until
 * model_close). */
#define MODEL_CHURN_MAX_FEATURES 256
#define MODEL_CHURN_NAME_MAX 64 /* bytes of a feature name, with NUL */

/* The churn codes, one table each: XX(NAME, code, name).
 *   code  the byte stored per user (model_churn.band, .segment, .tier), and
 *         the value of training/churn.h's CHURN_BAND_NAME, CHURN_SEG_NAME,
 *         CHURN_TIER_NAME
 *   name  the spelling of the public API (the strings risk_band, segment
 *         and tier of the proto, which has no enum for them; the segments
 *         and tiers of a campaign filter) and of the training report
 * Rows ascend by code from 0; a row added here is a code everywhere. */
#define MODEL_CHURN_BAND_MAP(XX)                                                                   \
    XX(LIGHT, 0, "light")                                                                          \
    XX(MEDIUM, 1, "medium")                                                                        \
    XX(HEAVY, 2, "heavy")
#define MODEL_CHURN_SEGMENT_MAP(XX)                                                                \
    XX(HIGH_VALUE_ACTIVE, 0, "high-value active")                                                  \
    XX(MID_VALUE_ACTIVE, 1, "mid-value active")                                                    \
    XX(LOW_VALUE_ACTIVE, 2, "low-value active")                                                    \
    XX(PROMISING, 3, "promising")                                                                  \
    XX(AT_RISK, 4, "at-risk")                                                                      \
    XX(DORMANT, 5, "dormant")
#define MODEL_CHURN_TIER_MAP(XX)                                                                   \
    XX(ORDINARY, 0, "ordinary")                                                                    \
    XX(BRONZE, 1, "bronze")                                                                        \
    XX(SILVER, 2, "silver")                                                                        \
    XX(GOLD, 3, "gold")                                                                            \
    XX(DIAMOND, 4, "diamond")

enum {
#define MODEL_CHURN_COUNT(name, code, str) +1
    MODEL_CHURN_N_BANDS = 0 MODEL_CHURN_BAND_MAP(MODEL_CHURN_COUNT),
    MODEL_CHURN_N_SEGMENTS = 0 MODEL_CHURN_SEGMENT_MAP(MODEL_CHURN_COUNT),
    MODEL_CHURN_N_TIERS = 0 MODEL_CHURN_TIER_MAP(MODEL_CHURN_COUNT),
#undef MODEL_CHURN_COUNT
    MODEL_CHURN_BANDS = MODEL_CHURN_N_BANDS - 1, /* band thresholds: medium, heavy */
    MODEL_CHURN_TIERS = MODEL_CHURN_N_TIERS - 1  /* tier thresholds: bronze, ..., diamond */
};
#define MODEL_CHURN_NONE 255

/* The name of a band / segment / tier code, "" when code is none of the
 * table's (MODEL_CHURN_NONE included). Static strings; thread-safe. */
const char *model_churn_band_name(uint32_t code);
const char *model_churn_segment_name(uint32_t code);
const char *model_churn_tier_name(uint32_t code);

/* The code of a segment / tier name (exact, case-sensitive), or -1 when
 * none has that name. Thread-safe. */
int model_churn_segment_code(const char *name);
int model_churn_tier_code(const char *name);

/* The churn model's validation (training/churn.h's churn_eval): a model
 * trained at c1 = T - 2H scored the members active at c2 = T - H against
 * what they did in [c2, T). All binary64 (key churn_validation stores the
 * struct as it is: no padding); NaN for a figure a class left empty. */
#define MODEL_CHURN_CALIB_BINS 10 /* p in [k/10, (k+1)/10), the last with 1 */
typedef struct model_churn_validation {
    double validated_at;     /* unix seconds: c2 */
    double members, churned; /* active at c2; of them, no purchase within H */
    double roc_auc, pr_auc;  /* of the model's probability */
    double brier;            /* mean (p - y)^2 */
    double recency_roc_auc;  /* baseline: days since the last purchase as the score */
    double base_brier;       /* baseline: c1's churn rate for everyone */
    double calib_n[MODEL_CHURN_CALIB_BINS];         /* members in the bin */
    double calib_predicted[MODEL_CHURN_CALIB_BINS]; /* their mean p; NaN when none */
    double calib_observed[MODEL_CHURN_CALIB_BINS];  /* the share that churned; NaN likewise */
} model_churn_validation;

typedef struct model_churn {
    uint32_t n_features;               /* model inputs per user, 1..MODEL_CHURN_MAX_FEATURES */
    const char *const *feature_names;  /* n_features NUL-terminated names */
    const double *coef, *mean, *scale; /* n_features each; scale > 0 */
    double intercept, platt_a, platt_b;
    uint32_t horizon_days;          /* H: churned = no purchase within H days */
    int64_t scored_at;              /* unix seconds: the features' cutoff (latest event + 1) */
    float bands[MODEL_CHURN_BANDS]; /* ascending, in (0, 1) */
    float tiers[MODEL_CHURN_TIERS]; /* ascending, >= 0, in the data's currency */
    /* Per user, n_users entries indexed like the model's users: */
    const float *features;    /* n_users x n_features, model inputs before standardization */
    const float *probability; /* calibrated, in [0, 1]; NaN = not scored */
    const uint8_t *band, *segment, *tier;             /* codes above */
    const float *recency_days, *frequency, *monetary; /* days since last purchase, orders, spend */
    /* Optional CLV (training/clv.h): all three NULL, or per user P(alive at
     * scored_at) under BG/NBD, the expected purchase days within the horizon
     * and the expected spend within it (x Gamma-Gamma's value per purchase);
     * NaN exactly where probability is NaN. clv holds BG/NBD's r, alpha (per
     * day), a, b and Gamma-Gamma's p, q, gamma. */
    const float *p_alive;
    const double *expected_orders, *expected_value;
    double clv[7];
    /* Optional: has_validation 0 for a model trained before recd kept the
     * figures (or given none). */
    int has_validation;
    model_churn_validation validation;
} model_churn;

/* The repurchase model ("buy it again", util/rebuy.h, trained by
 * training/repeat.h): its scalars, items and curve, and pairs, the
 * member-item numbers parallel to model_input.user_items (nnz x
 * REBUY_PAIR_FLOATS: occasions, days before data_until of the last, span
 * in days; occasions 0 for an entry that was never a purchase). */
typedef struct model_rebuy_input {
    const float *params; /* REBUY_N_PARAMS */
    const float *items;  /* n_items x REBUY_ITEM_FLOATS */
    const float *curve;  /* REBUY_CURVE */
    const float *pairs;
} model_rebuy_input;

/* What model_publish writes; every pointer is borrowed for the call. */
typedef struct model_input {
    model_meta meta;              /* version, trained_at, format_version are filled in */
    const idmap *users, *items;   /* index i of each map = row i of the factor matrix */
    const float *user_factors;    /* n_users x factors, row-major */
    const float *item_factors;    /* n_items x factors, row-major */
    const csr *user_items;        /* n_users x n_items: what each user bought (values = counts) */
    const float *item_popularity; /* n_items: popularity score (e.g. distinct buyers) */
    /* Optional item categories: both NULL, or categories interned and
     * item_category[i] the category index of item i (UINT32_MAX = none). */
    const idmap *categories;
    const uint32_t *item_category;
    const model_churn *churn; /* optional churn model and scores; NULL = none */
    /* The item rows of an item-item model (n_items of them), NULL for ALS. */
    const itemrows *item_rows;
    /* Optional "bought together" lists (training/together.h), sparse rows
     * best first, n_items of them; NULL = none. */
    const itemrows *together;
    /* Optional repurchase model; NULL = none (Recommend mode BUY_AGAIN is
     * then refused, include_purchased scores bought items as any). */
    const model_rebuy_input *rebuy;
    /* Optional label-to-factor mappings (training/attrmap.h, served through
     * mf_label_vector): labels NULL = none; else map holds
     * (idmap_size(labels) + 1) x factors floats, row l label l's weights,
     * the last row the bias. Items and members have one each. */
    const idmap *item_labels, *user_labels;
    const float *item_map, *user_map;
    /* Optional catalogue values per item: publication time (unix s, 0 =
     * unknown) and price (NAN = unknown); NULL = none. */
    const int64_t *item_published;
    const float *item_price;
} model_input;

/* Writes in as a new version under dir (created if missing) and makes it
 * current. Fills meta_out (may be NULL) with the published metadata
 * (version, trained_at). Returns ERR_OK, ERR_INVALID (inconsistent sizes),
 * ERR_IO, ERR_LIMIT (LMDB's map is full: the size estimate missed a key,
 * never expected), ERR_INTERNAL (LMDB). */
int model_publish(const char *dir, const model_input *in, model_meta *meta_out, err_t *e);

typedef struct model model;

/* Opens the current version of dir read-only (follows DIR/current; dir may
 * also be a version folder itself). Refuses a missing, truncated, corrupted
 * or wrong-version model with ERR_NOTFOUND / ERR_FORMAT / ERR_VERSION and a
 * message saying which. *out is owned by the caller: model_close. */
int model_open(const char *dir, model **out, err_t *e);
void model_close(model *m);

/* Name of the version DIR/current points to now (cheap: one readlink), so a
 * server can notice a new publication. Returns ERR_OK or ERR_NOTFOUND. */
int model_current_version(const char *dir, char version[MODEL_VERSION_MAX], err_t *e);

/* Makes the version published before the current one current again. Returns
 * ERR_OK, or ERR_NOTFOUND when there is no earlier version. Fills version
 * with the version now current. */
int model_rollback(const char *dir, char version[MODEL_VERSION_MAX], err_t *e);

/* Makes versions/<version> of dir current (a replica told by its cluster
 * to serve a version that was copied there). A version that is current
 * already is left as it is. The version is opened and checked first, so
 * one that model_open refuses never becomes current. Returns ERR_OK,
 * ERR_INVALID (not a version name), ERR_NOTFOUND (not in versions/, e.g.
 * not copied yet), model_open's errors for a broken one, ERR_IO. */
int model_use(const char *dir, const char *version, err_t *e);

/* Fills *versions (malloc'ed array, caller frees) with the complete versions
 * in dir, oldest first in the order model_rollback uses, and *n with their
 * count (0 when nothing was published). Returns ERR_OK, ERR_IO, ERR_NOMEM. */
int model_versions(const char *dir, char (**versions)[MODEL_VERSION_MAX], size_t *n, err_t *e);

/* --- reading (thread-safe, zero-copy) --- */
const model_meta *model_info(const model *m);

/* Index of a user/item id: ERR_OK or ERR_NOTFOUND. */
int model_user_index(const model *m, const char *id, size_t len, uint32_t *index);
int model_item_index(const model *m, const char *id, size_t len, uint32_t *index);

/* Id bytes (not NUL-terminated) of an index < n_users / n_items. */
const char *model_user_id(const model *m, uint32_t index, size_t *len);
const char *model_item_id(const model *m, uint32_t index, size_t *len);

/* Factor matrices (row-major, factors floats per row) and the item factor
 * L2 norms (n_items floats, for cosine similarity). */
const float *model_user_factors(const model *m);
const float *model_item_factors(const model *m);
const float *model_item_norms(const model *m);
/* The largest item norm (0 without items). */
float model_item_norm_max(const model *m);
/* The item factors packed for scoring (panel.h): bfloat16 panels of
 * panel_padded(n_items) x panel_pairs(factors) x 2 values, owned by the
 * model. */
const uint16_t *model_item_panels(const model *m);

/* Sorted item indexes user u bought; *n gets the count. */
const uint32_t *model_user_items(const model *m, uint32_t u, uint32_t *n);

/* Purchase counts r_ui matching model_user_items(m, u) entry by entry. */
const float *model_user_item_counts(const model *m, uint32_t u);

/* Item categories: the number of categories (0 when the training data had
 * none), a category's index by id (ERR_OK / ERR_NOTFOUND), its id bytes, and
 * the category index of every item (n_items entries, UINT32_MAX = none; NULL
 * when there are no categories). */
uint32_t model_n_categories(const model *m);
int model_category_index(const model *m, const char *id, size_t len, uint32_t *index);
const char *model_category_id(const model *m, uint32_t index, size_t *len);
const uint32_t *model_item_categories(const model *m);

/* The churn model and scores of the publication, NULL when it has none. */
const model_churn *model_churn_info(const model *m);

/* One user's churn scores, copied out of the map. */
typedef struct model_churn_user {
    float probability; /* NaN = not scored */
    uint8_t band, segment, tier;
    float recency_days, frequency, monetary;
    const float *features; /* n_features model inputs, into the map */
    /* CLV: NaN when the model has none (model_churn.p_alive NULL). */
    float p_alive;
    double expected_orders, expected_value;
} model_churn_user;

/* Fills *out for user index u < n_users. Returns ERR_OK, or ERR_NOTFOUND
 * when the model has no churn scores. */
int model_churn_user_scores(const model *m, uint32_t u, model_churn_user *out);

/* Contribution of every input to user u's linear churn score (n_features
 * doubles into out; see model_churn). Returns ERR_OK or ERR_NOTFOUND (no
 * churn model). */
int model_churn_contributions(const model *m, uint32_t u, double *out);

/* The item rows of an item-item model (arrays into the map), NULL for an
 * ALS model. */
const itemrows *model_item_rows(const model *m);

/* The "bought together" lists (sparse rows into the map, each best first),
 * NULL when the model has none. */
const itemrows *model_together(const model *m);

/* The repurchase model (into the map), NULL when the model has none. */
const rebuy_model *model_rebuy(const model *m);

/* User u's repurchase numbers, REBUY_PAIR_FLOATS per entry of
 * model_user_items(m, u) (model_rebuy's pairs), NULL without a
 * repurchase model. */
const float *model_rebuy_pairs(const model *m, uint32_t u);

/* The two sides of the label-to-factor mappings. */
typedef enum model_side { MODEL_SIDE_ITEM, MODEL_SIDE_USER } model_side;

/* A label-to-factor mapping as stored: map points into the model map,
 * (n_labels + 1) x factors floats, the last row the bias; a vector from
 * labels is mf_label_vector(map, n_labels, factors, ...) (util/mf.h). */
typedef struct model_label_map {
    uint32_t n_labels, factors;
    const float *map;
} model_label_map;

/* The mapping of one side, NULL when the model has none (trained without a
 * catalogue of that side, or published before the keys existed). The
 * struct is the model's; valid until model_close. */
const model_label_map *model_label_map_of(const model *m, model_side side);

/* Index of a label ("genre:Comedy", "word:mug") of one side: ERR_OK, or
 * ERR_NOTFOUND (unknown label, or no mapping). */
int model_label_index(const model *m, model_side side, const char *label, size_t len,
                      uint32_t *index);

/* Bytes of the label with index < n_labels (not NUL-terminated). */
const char *model_label_id(const model *m, model_side side, uint32_t index, size_t *len);

/* Publication times (unix s, 0 = unknown) and prices (NAN = unknown) of
 * every item, n_items entries into the map; NULL when the model has none. */
const int64_t *model_item_published(const model *m);
const float *model_item_price(const model *m);

/* All items, most popular first (n_items entries). */
const uint32_t *model_popular_items(const model *m);

/* Popularity score of every item (n_items floats, as given to publish in
 * model_input.item_popularity): the score of the most-popular fallback. */
const float *model_item_popularity(const model *m);

#endif
