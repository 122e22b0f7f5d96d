/* opts: command-line pieces shared by several subcommands: number parsing
 * with range checks, the column-mapping flags of every command that reads a
 * purchase history, the ALS flags of train, eval and tune, and loading that
 * history with progress and a summary. */
#ifndef RECD_OPTS_H
#define RECD_OPTS_H

#include <getopt.h>
#include <stdint.h>

#include "als.h"
#include "events.h"
#include "ingest.h"
#include "itemsim.h"
#include "labels.h"
#include "pipeline.h"
#include "repeat.h"

/* The ALS flags, one row each: XX(ID, name, kind, min, max, destination).
 * kind names the parser (opts_u32, opts_u64, opts_float); destination is
 * the field opts_als fills, of als or half_life. One range per flag for
 * every command that takes it. */
#define OPTS_ALS_MAP(XX)                                                                           \
    XX(FACTORS, "factors", u32, 1, 1024, als->factors)                                             \
    XX(ITERATIONS, "iterations", u32, 1, 100000, als->iterations)                                  \
    XX(REGULARIZATION, "regularization", float, 0, 1e9, als->regularization)                       \
    XX(ALPHA, "alpha", float, 0, 1e9, als->alpha)                                                  \
    XX(FREQ_REG, "frequency-regularization", float, 0, 1e9, als->frequency_regularization)         \
    XX(HALF_LIFE, "half-life", float, 0, 1e6, *half_life)                                          \
    XX(THREADS, "threads", u32, 1, 256, als->threads)                                              \
    XX(SEED, "seed", u64, 0, UINT64_MAX, als->seed)

/* The item-item flags of train and eval (training/itemsim.h), as
 * OPTS_ALS_MAP: destinations are fields of itemsim_params *it. --algorithm
 * (a name, not a number) and --neighbors (eval has its own) are apart. */
#define OPTS_ITEMSIM_MAP(XX)                                                                       \
    XX(LAMBDA, "lambda", float, 0, 1e12, it->lambda)                                               \
    XX(MAX_DENSE_ITEMS, "max-dense-items", u32, 0, 46340, it->max_dense_items)                     \
    XX(RP3_ALPHA, "rp3-alpha", float, 0, 100, it->rp3_alpha)                                       \
    XX(RP3_BETA, "rp3-beta", float, 0, 100, it->rp3_beta)

/* The catalogue flags of train and eval (features/labels.h), one row each:
 * XX(ID, name, destination) with destination a field of opts_catalog's
 * struct (a path or a labels_options column name). */
#define OPTS_CATALOG_MAP(XX)                                                                       \
    XX(ITEMS, "items", items_path)                                                                 \
    XX(ITEM_ID_COL, "item-id-col", items.id_col)                                                   \
    XX(ITEM_CATEGORY_COL, "item-category-col", items.category_col)                                 \
    XX(ITEM_LABEL_COLS, "item-label-cols", items.label_cols)                                       \
    XX(ITEM_TEXT_COL, "item-text-col", items.text_col)                                             \
    XX(ITEM_PRICE_COL, "item-price-col", items.price_col)                                          \
    XX(ITEM_TIME_COL, "item-time-col", items.time_col)                                             \
    XX(ITEM_TIME_FORMAT, "item-time-format", items.time_format)                                    \
    XX(USERS, "users", users_path)                                                                 \
    XX(USER_ID_COL, "user-id-col", users.id_col)                                                   \
    XX(USER_LABEL_COLS, "user-label-cols", users.label_cols)

/* getopt_long ids of the column-mapping flags (above any short option). */
enum {
    OPT_USER_COL = 1000,
    OPT_ITEM_COL,
    OPT_TIME_COL,
    OPT_TIME_FORMAT,
    OPT_QUANTITY_COL,
    OPT_PRICE_COL,
    OPT_CATEGORY_COL,
    OPT_DELIMITER,
    OPT_QUOTE,
#define OPTS_ALS_ID(id, name, kind, min, max, dest) OPT_ALS_##id,
    OPTS_ALS_MAP(OPTS_ALS_ID)
#undef OPTS_ALS_ID
        OPT_ALGORITHM,
#define OPTS_ITEMSIM_ID(id, name, kind, min, max, dest) OPT_ITEMSIM_##id,
    OPTS_ITEMSIM_MAP(OPTS_ITEMSIM_ID)
#undef OPTS_ITEMSIM_ID
        OPT_TOGETHER_NEIGHBORS,
    OPT_TOGETHER_SHRINKAGE,
    OPT_REPEAT_HORIZON,
    OPT_REPEAT_SHRINKAGE,
#define OPTS_CATALOG_ID(id, name, field) OPT_CATALOG_##id,
    OPTS_CATALOG_MAP(OPTS_CATALOG_ID)
#undef OPTS_CATALOG_ID
        OPT_FIRST_FREE /* first id a command may use for its own flags */
};

/* Spread into a command's struct option table. */
#define OPTS_INGEST_LONG                                                                           \
    {"user-col", required_argument, 0, OPT_USER_COL},                                              \
        {"item-col", required_argument, 0, OPT_ITEM_COL},                                          \
        {"time-col", required_argument, 0, OPT_TIME_COL},                                          \
        {"time-format", required_argument, 0, OPT_TIME_FORMAT},                                    \
        {"quantity-col", required_argument, 0, OPT_QUANTITY_COL},                                  \
        {"price-col", required_argument, 0, OPT_PRICE_COL},                                        \
        {"category-col", required_argument, 0, OPT_CATEGORY_COL},                                  \
        {"delimiter", required_argument, 0, OPT_DELIMITER}, {                                      \
        "quote", required_argument, 0, OPT_QUOTE                                                   \
    }

/* Help text of those flags, for a command's --help. */
extern const char OPTS_INGEST_HELP[];

/* All the ALS flags, spread into the struct option table of a command that
 * takes them all (train, eval). */
#define OPTS_ALS_OPTION(id, name, kind, min, max, dest) {name, required_argument, 0, OPT_ALS_##id},
#define OPTS_ALS_LONG OPTS_ALS_MAP(OPTS_ALS_OPTION)

/* --algorithm and the item-item flags, spread into a struct option table. */
#define OPTS_ITEMSIM_OPTION(id, name, kind, min, max, dest)                                        \
    {name, required_argument, 0, OPT_ITEMSIM_##id},
#define OPTS_ITEMSIM_LONG                                                                          \
    {"algorithm", required_argument, 0, OPT_ALGORITHM}, OPTS_ITEMSIM_MAP(OPTS_ITEMSIM_OPTION)

/* Help text of --algorithm and the item-item flags. */
extern const char OPTS_ITEMSIM_HELP[];

/* The bought-together flags of train and eval (training/together.h), their
 * option table rows and help text. */
#define OPTS_TOGETHER_LONG                                                                         \
    {"together-neighbors", required_argument, 0, OPT_TOGETHER_NEIGHBORS},                          \
        {"together-shrinkage", required_argument, 0, OPT_TOGETHER_SHRINKAGE},
extern const char OPTS_TOGETHER_HELP[];

/* The catalogue files and their column mappings, as the flags give them. */
typedef struct opts_catalog {
    const char *items_path, *users_path; /* NULL = none */
    labels_options items, users;         /* users.id_col defaults to "user_id" */
} opts_catalog;

#define OPTS_CATALOG_OPTION(id, name, field) {name, required_argument, 0, OPT_CATALOG_##id},
#define OPTS_CATALOG_LONG OPTS_CATALOG_MAP(OPTS_CATALOG_OPTION)
extern const char OPTS_CATALOG_HELP[];

/* Fills c with no files and the default mappings. */
void opts_catalog_init(opts_catalog *c);

/* Applies a catalogue flag to c. Returns 1 when opt was one, else 0. */
int opts_catalog_flag(int opt, const char *arg, opts_catalog *c);

/* Reads the catalogue files of c that are set into items / users
 * (zeroed otherwise), with the delimiter and quote of the purchase
 * history's io, printing their summaries on stderr. The caller frees both
 * with labels_table_free. Returns 0, or -1 after printing why. */
int opts_load_catalog(opts_catalog *c, const ingest_options *io, labels_table *items,
                      labels_table *users);

/* Applies a bought-together flag to *p. Returns 1 when opt was one of
 * them, 0 when not, -1 (after printing why) for a bad argument. */
int opts_together(int opt, const char *arg, together_params *p);

/* The repurchase-model flags of train and eval (training/repeat.h), their
 * option table rows and help text. */
#define OPTS_REPEAT_LONG                                                                           \
    {"repeat-horizon", required_argument, 0, OPT_REPEAT_HORIZON},                                  \
        {"repeat-shrinkage", required_argument, 0, OPT_REPEAT_SHRINKAGE},
extern const char OPTS_REPEAT_HELP[];

/* Applies a repurchase-model flag to *p. Returns 1 when opt was one of
 * them, 0 when not, -1 (after printing why) for a bad argument. */
int opts_repeat(int opt, const char *arg, repeat_params *p);

/* Applies --algorithm (to *algorithm) or an item-item flag (to *it).
 * Returns 1 when opt was one of them, 0 when not, -1 (after printing why)
 * for a bad argument. */
int opts_itemsim(int opt, const char *arg, itemsim_algorithm *algorithm, itemsim_params *it);

/* Applies an ALS flag to *als or *half_life (days). Returns 1 when opt was
 * one of them, 0 when it is not, -1 (after printing why) when its argument
 * is bad. */
int opts_als(int opt, const char *arg, als_params *als, float *half_life);

/* Applies a column-mapping flag to o. Returns 1 when opt was one of them, 0
 * when it is not, -1 (after printing why) when its argument is bad. */
int opts_ingest(int opt, const char *arg, ingest_options *o);

/* Parse arg as an integer / float in [min, max]; on failure print
 * "recd: --name: ..." to stderr and return -1, else 0. */
int opts_u32(const char *name, const char *arg, uint32_t min, uint32_t max, uint32_t *out);
int opts_u64(const char *name, const char *arg, uint64_t min, uint64_t max, uint64_t *out);
int opts_float(const char *name, const char *arg, double min, double max, float *out);

/* Parses --tie-order's "asc" or "desc" into *out; prints the error and
 * returns -1 for anything else. */
int opts_tie_order(const char *arg, ev_tie_order *out);

/* Parses "view=0.1,cart=0.3,purchase=1,favorite=0.5" (TYPE=WEIGHT with the
 * words of EV_TYPE_MAP, any subset, any order) into w, indexed by event
 * type; entries not named keep their value. Returns 0, or -1 after printing
 * why. */
int opts_event_weights(const char *arg, float w[EV_TYPE_END]);

/* Reads a small text file (a PEM certificate, a token) into a malloc'ed
 * NUL-terminated string (caller frees); with trim, trailing white space goes.
 * Returns NULL after printing why. */
char *opts_read_file(const char *flag, const char *path, int trim);

/* Reads a purchase-history CSV into s (initialized here; caller frees with
 * ev_set_free), printing progress and the import summary to stderr. Returns
 * 0 or -1 after printing the error. */
int opts_load_history(const char *path, const ingest_options *o, ev_set *s);

/* Trains on history with p and publishes into model_dir (pipeline_train),
 * reporting the matrix, every ALS iteration and the published model (the
 * total time counted from start, a clock_seconds value) on stderr and its
 * version on stdout: what recd train and recd tune print alike. Sets p's
 * callbacks. Returns the exit status, 0 or 1 (after printing why). */
int opts_train_publish(ev_set *history, pipeline_params *p, const char *model_dir, double start);

#endif
