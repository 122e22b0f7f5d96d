#include "fuzz_fixture.h"

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "csr.h"
#include "idmap.h"

#define MAX_SCRATCH 4

static char scratch[MAX_SCRATCH][PATH_MAX];
static int n_scratch;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void scratch_cleanup(void) {
    for (int i = 0; i < n_scratch; i++)
        nftw(scratch[i], rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void fuzz_scratch_dir(const char *name, char dir[PATH_MAX]) {
    struct stat st;
    const char *tmp = getenv("TMPDIR");
    const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm"
                       : tmp                                             ? tmp
                                                                         : "/tmp";
    if (n_scratch == MAX_SCRATCH ||
        snprintf(dir, PATH_MAX, "%s/recd-%s-XXXXXX", base, name) >= PATH_MAX || !mkdtemp(dir)) {
        fprintf(stderr, "fuzz: cannot create a scratch folder under %s\n", base);
        abort();
    }
    if (n_scratch == 0) atexit(scratch_cleanup);
    memcpy(scratch[n_scratch++], dir, PATH_MAX);
}

static void must(int rc, const err_t *e, const char *what) {
    if (rc == ERR_OK) return;
    fprintf(stderr, "fuzz: %s: %s\n", what, e ? e->msg : err_message(rc));
    abort();
}

void fuzz_publish_model(const char *model_dir, model_meta *meta) {
    enum { NU = FUZZ_USERS, NI = FUZZ_ITEMS, K = FUZZ_FACTORS, NF = 2 };
    err_t e = {0};
    idmap *users = idmap_new(), *items = idmap_new(), *cats = idmap_new();
    if (!users || !items || !cats) must(ERR_NOMEM, NULL, "idmap_new");
    char id[16];
    uint32_t idx;
    for (int u = 0; u < NU; u++) {
        snprintf(id, sizeof id, "u%d", u);
        must(idmap_intern(users, id, strlen(id), &idx), NULL, "intern user");
    }
    for (int i = 0; i < NI; i++) {
        snprintf(id, sizeof id, "i%d", i);
        must(idmap_intern(items, id, strlen(id), &idx), NULL, "intern item");
    }
    static const char *const cat_names[FUZZ_CATEGORIES] = {"toys", "tools", "food"};
    for (int c = 0; c < FUZZ_CATEGORIES; c++)
        must(idmap_intern(cats, cat_names[c], strlen(cat_names[c]), &idx), NULL, "intern category");
    /* Factors with both signs so that scores, norms and fold-ins vary. */
    float uf[NU * K], itf[NI * K], pop[NI];
    for (int k = 0; k < NU * K; k++)
        uf[k] = sinf(0.7f * (float)k) * 0.5f;
    for (int k = 0; k < NI * K; k++)
        itf[k] = cosf(0.3f * (float)k + 0.1f) * 0.8f;
    uint32_t item_category[NI];
    for (int i = 0; i < NI; i++) {
        pop[i] = (float)((i * 7) % 11);
        item_category[i] = i == 0 ? UINT32_MAX : (uint32_t)(i % FUZZ_CATEGORIES);
    }
    /* User u bought items u, u+3 and u+5 (mod NI): sorted distinct per row. */
    uint32_t rows[NU * 3], cols[NU * 3];
    float counts[NU * 3];
    size_t n = 0;
    for (int u = 0; u < NU; u++) {
        uint32_t b[3] = {(uint32_t)u % NI, (uint32_t)(u + 3) % NI, (uint32_t)(u + 5) % NI};
        for (int j = 0; j < 3; j++, n++) {
            rows[n] = (uint32_t)u;
            cols[n] = b[j];
            counts[n] = (float)(1 + j);
        }
    }
    csr ui;
    must(csr_from_triplets(NU, NI, rows, cols, counts, n, &ui, &e), &e, "csr_from_triplets");

    const char *names[NF] = {"log_recency_days", "orders_90d"};
    double coef[NF] = {0.75, -0.5}, mean[NF] = {2, 0.25}, scale[NF] = {0.5, 4};
    float features[NU * NF], prob[NU], rec[NU], freq[NU], money[NU];
    uint8_t band[NU], segment[NU], tier[NU];
    for (int u = 0; u < NU; u++) {
        features[NF * u] = 1.0f + (float)u;
        features[NF * u + 1] = (float)(u % 4);
        prob[u] = (float)u / NU;
        band[u] = prob[u] < 0.4f ? 0 : prob[u] < 0.7f ? 1 : 2;
        segment[u] = (uint8_t)(u % 6);
        tier[u] = (uint8_t)(u % 5);
        rec[u] = 3.5f * (float)u;
        freq[u] = (float)(u % 7 + 1);
        money[u] = 120.5f * (float)u;
    }
    prob[1] = NAN;
    band[1] = segment[1] = tier[1] = MODEL_CHURN_NONE;
    model_churn churn = {.n_features = NF,
                         .feature_names = names,
                         .coef = coef,
                         .mean = mean,
                         .scale = scale,
                         .intercept = -0.125,
                         .platt_a = 0.9,
                         .platt_b = -0.3,
                         .horizon_days = 90,
                         .scored_at = 1700000001,
                         .bands = {0.4f, 0.7f},
                         .tiers = {3000, 8000, 20000, 50000},
                         .features = features,
                         .probability = prob,
                         .band = band,
                         .segment = segment,
                         .tier = tier,
                         .recency_days = rec,
                         .frequency = freq,
                         .monetary = money,
                         .has_validation = 1,
                         .validation = {.validated_at = 1692224001,
                                        .members = 14,
                                        .churned = 5,
                                        .roc_auc = 0.75,
                                        .pr_auc = 0.6,
                                        .brier = 0.2,
                                        .recency_roc_auc = 0.7,
                                        .base_brier = 0.23}};
    /* Validation figures with an empty bin (NaN), as churn_run gives them. */
    for (int b = 0; b < MODEL_CHURN_CALIB_BINS; b++) {
        churn.validation.calib_n[b] = b == 9 ? 0 : 1;
        churn.validation.calib_predicted[b] = b == 9 ? NAN : 0.1 * b + 0.05;
        churn.validation.calib_observed[b] = b == 9 ? NAN : b % 2;
    }
    /* A repurchase model: every bought item due in about two weeks, the
     * member-item numbers varying by entry. */
    uint64_t nnz = csr_nnz(&ui);
    float rb_params[REBUY_N_PARAMS] = {0}, rb_items[NI * REBUY_ITEM_FLOATS];
    float rb_curve[REBUY_CURVE], *rb_pairs = malloc((nnz + 1) * REBUY_PAIR_FLOATS * sizeof(float));
    if (!rb_pairs) abort();
    rb_params[REBUY_STRENGTH] = rb_params[REBUY_GAP_WEIGHT] = 2;
    rb_params[REBUY_HORIZON] = 30;
    rb_params[REBUY_PLATT_A] = 1;
    for (uint32_t i = 0; i < NI; i++) {
        rb_items[i * REBUY_ITEM_FLOATS] = 0.5f;
        rb_items[i * REBUY_ITEM_FLOATS + 1] = (float)log(14.0);
        rb_items[i * REBUY_ITEM_FLOATS + 2] = 0.5f;
        rb_items[i * REBUY_ITEM_FLOATS + 3] = 4;
    }
    for (int r = 0; r < REBUY_CURVE; r++)
        rb_curve[r] = 0.01f / (float)(r + 1);
    for (uint64_t k = 0; k < nnz; k++) {
        float n = (float)(k % 3);
        rb_pairs[k * REBUY_PAIR_FLOATS] = n; /* 0: only viewed */
        rb_pairs[k * REBUY_PAIR_FLOATS + 1] = (float)(5 + k % 20);
        rb_pairs[k * REBUY_PAIR_FLOATS + 2] = n > 1 ? 14 * (n - 1) : 0;
    }
    model_rebuy_input rebuy = {
        .params = rb_params, .items = rb_items, .curve = rb_curve, .pairs = rb_pairs};
    /* Label mappings with a known answer: item label l maps to the unit
     * vector e_l, the bias is 0.1 on the last factor; the member label
     * "taste:a" to e_0. */
    idmap *item_labels = idmap_new(), *user_labels = idmap_new();
    if (!item_labels || !user_labels) must(ERR_NOMEM, NULL, "idmap_new");
    static const char *const ilabels[] = {"colour:red", "colour:blue", "word:mug"};
    for (size_t l = 0; l < 3; l++)
        must(idmap_intern(item_labels, ilabels[l], strlen(ilabels[l]), &idx), NULL, "label");
    must(idmap_intern(user_labels, "taste:a", 7, &idx), NULL, "label");
    float item_map[(3 + 1) * K] = {0}, user_map[(1 + 1) * K] = {0};
    for (int l = 0; l < 3; l++)
        item_map[l * K + l] = 1.0f;
    item_map[3 * K + K - 1] = 0.1f;
    user_map[0] = 1.0f;
    model_input in;
    memset(&in, 0, sizeof in);
    in.item_labels = item_labels;
    in.item_map = item_map;
    in.user_labels = user_labels;
    in.user_map = user_map;
    in.meta.item_map_lambda = in.meta.user_map_lambda = 1.0f;
    strcpy(in.meta.item_category_column, "colour");
    in.meta.factors = K;
    in.meta.n_users = NU;
    in.meta.n_items = NI;
    in.meta.interactions = n;
    in.meta.iterations = 3;
    in.meta.regularization = 0.01f;
    in.meta.alpha = 1.0f;
    in.meta.data_until = 1700000000;
    strcpy(in.meta.source_fingerprint, "00000000deadbeef");
    in.users = users;
    in.items = items;
    in.user_factors = uf;
    in.item_factors = itf;
    in.user_items = &ui;
    in.item_popularity = pop;
    in.categories = cats;
    in.item_category = item_category;
    in.churn = &churn;
    in.rebuy = &rebuy;
    must(model_publish(model_dir, &in, meta, &e), &e, "model_publish");
    free(rb_pairs);
    csr_free(&ui);
    idmap_free(users);
    idmap_free(items);
    idmap_free(cats);
    idmap_free(item_labels);
    idmap_free(user_labels);
}
