/* opts: command-line pieces shared by several subcommands: number parsing
 * with range checks, the column-mapping flags of every command that reads a
 * purchase history, and loading that history with progress and a summary. */
#ifndef RECD_OPTS_H
#define RECD_OPTS_H

#include <getopt.h>
#include <stdint.h>

#include "events.h"
#include "ingest.h"

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

/* Applies a column-mapping flag to o. Returns 1 when opt was one of them, 0
 * when it is not, -1 (after printing why) when its argument is bad. */
int opts_ingest(int opt, const char *arg, ingest_options *o);

/* Parse arg as an integer / float in [min, max]; on failure print
 * "recd: --name: ..." to stderr and return -1, else 0. */
int opts_u32(const char *name, const char *arg, uint32_t min, uint32_t max, uint32_t *out);
int opts_u64(const char *name, const char *arg, uint64_t min, uint64_t max, uint64_t *out);
int opts_float(const char *name, const char *arg, double min, double max, float *out);

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

#endif
