/* experiment: A/B assignment of members to model variants, and request ids.
 *
 * A member's variant follows from a hash of (salt, user id) alone, so it is
 * the same on every server and every call, and changes only when the salt
 * or the shares do. Request ids carry the variant ("<variant>:<16 hex>"), so
 * feedback quoting one can be counted per variant with no server state.
 *
 * An experiment is a plain value the caller owns (no allocation, nothing to
 * free). Functions that only read one are thread-safe with each other;
 * exp_set_shares and exp_restore change it and need the caller's lock (or a
 * copy) against concurrent readers. The feedback-table functions are pure. */
#ifndef RECD_EXPERIMENT_H
#define RECD_EXPERIMENT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define EXP_MAX_VARIANTS 8
#define EXP_MAX_NAME 32 /* bytes of a variant name, without NUL */
#define EXP_MAX_SALT 64
#define EXP_REQUEST_ID_MAX (EXP_MAX_NAME + 18)

/* Bytes of an experiment's stored state (exp_encode): the variant count,
 * the names (NUL-padded slots), the shares (f64 little-endian) and the salt
 * (NUL-padded). */
#define EXP_STATE_BYTES                                                                            \
    (1 + EXP_MAX_VARIANTS * (EXP_MAX_NAME + 1) + EXP_MAX_VARIANTS * 8 + EXP_MAX_SALT + 1)

typedef struct experiment {
    char salt[EXP_MAX_SALT + 1];
    uint32_t n;
    char names[EXP_MAX_VARIANTS][EXP_MAX_NAME + 1];
    double shares[EXP_MAX_VARIANTS]; /* add up to 1 */
} experiment;

/* The feedback types of RecordFeedback, one row each: XX(NAME, value, word).
 *   value  the public proto's FeedbackType value (server/svc.c asserts that
 *          they agree), also the type of the record in the feedback store
 *   word   the spelling of recd query feedback and of the metrics
 * Rows ascend by value: EXP_FEEDBACK_END is one past the last. */
#define EXP_FEEDBACK_MAP(XX)                                                                       \
    XX(IMPRESSION, 1, "impression")                                                                \
    XX(CLICK, 2, "click")                                                                          \
    XX(CART, 3, "cart")                                                                            \
    XX(CONVERSION, 4, "conversion")

typedef enum exp_feedback {
#define EXP_FEEDBACK_ENUM(name, value, word) EXP_FEEDBACK_##name = value,
    EXP_FEEDBACK_MAP(EXP_FEEDBACK_ENUM)
#undef EXP_FEEDBACK_ENUM
        EXP_FEEDBACK_END /* size of an array indexed by type (0 is no type) */
} exp_feedback;

/* The word of feedback type t, or NULL when t is not a type of the table
 * (so also the test of a known type). The string is static. */
const char *exp_feedback_word(uint32_t t);

/* The feedback type whose word is word (NUL-terminated, exact), or 0 when
 * none is. */
uint32_t exp_feedback_of_word(const char *word);

/* Writes the words as a sentence, "impression, click, cart or conversion",
 * into buf (truncated to size - 1 bytes, NUL-terminated). */
void exp_feedback_words(char *buf, size_t size);

/* 1 when name (NUL-terminated) is 1..EXP_MAX_NAME bytes of [A-Za-z0-9_-],
 * else 0. */
int exp_name_valid(const char *name);

/* Sets the shares of x's variants from shares (n entries, each in [0, 1],
 * adding up to 1 within 1e-6; copied). Returns ERR_OK or ERR_INVALID with
 * the reason (n is not x->n, or a share is out of range, or the sum is not
 * 1); x is unchanged on failure. */
int exp_set_shares(experiment *x, const double *shares, uint32_t n, err_t *e);

/* Writes x's variant names, shares and salt into out (all EXP_STATE_BYTES,
 * the same bytes on any host), so that a restarted server can take the
 * shares and salt set at run time back. Cannot fail. */
void exp_encode(const experiment *x, unsigned char out[EXP_STATE_BYTES]);

/* Takes the shares and salt of a stored state (exp_encode) into x when it
 * names the same variants as x (in any order: shares follow the names).
 * Returns ERR_OK, or ERR_INVALID with the reason (other variants, or a
 * damaged state) and x unchanged. */
int exp_restore(experiment *x, const unsigned char in[EXP_STATE_BYTES], err_t *e);

/* The variant index (< x->n; 0 when x has none) of the user id
 * user[0..len), from xxh64 of the salt and the id (only the first 1024
 * bytes of a longer id count). Deterministic: the same on every server. */
uint32_t exp_assign(const experiment *x, const char *user, size_t len);

/* Writes a new request id for variant (< x->n) into out, NUL-terminated:
 * "<name>:" and 16 hex digits hashed from the clock and a process-wide
 * atomic counter, so ids differ between calls and threads (and, by the
 * clock, across restarts). Thread-safe. */
void exp_request_id(const experiment *x, uint32_t variant, char out[EXP_REQUEST_ID_MAX]);

/* The variant named by a request id's prefix (the bytes before its first
 * ':'): its index in x, or -1 when there is no ':' or no such variant. */
int exp_variant_of_request(const experiment *x, const char *request_id);

#endif
