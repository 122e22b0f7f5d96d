#include "experiment.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "text.h"

#define EXP_FEEDBACK_CHECK(name, value, word)                                                      \
    _Static_assert(value > 0 && value < EXP_FEEDBACK_END, "EXP_FEEDBACK_MAP rows ascend by "       \
                                                          "value");
EXP_FEEDBACK_MAP(EXP_FEEDBACK_CHECK)
#undef EXP_FEEDBACK_CHECK

static const struct {
    uint32_t value;
    const char *word;
} exp_feedback_types[] = {
#define EXP_FEEDBACK_ROW(name, value, word) {value, word},
    EXP_FEEDBACK_MAP(EXP_FEEDBACK_ROW)
#undef EXP_FEEDBACK_ROW
};

#define EXP_N_FEEDBACK (sizeof exp_feedback_types / sizeof exp_feedback_types[0])

const char *exp_feedback_word(uint32_t t) {
    for (size_t i = 0; i < EXP_N_FEEDBACK; i++)
        if (exp_feedback_types[i].value == t) return exp_feedback_types[i].word;
    return NULL;
}

uint32_t exp_feedback_of_word(const char *word) {
    for (size_t i = 0; i < EXP_N_FEEDBACK; i++)
        if (!strcmp(exp_feedback_types[i].word, word)) return exp_feedback_types[i].value;
    return 0;
}

void exp_feedback_words(char *buf, size_t size) {
    const char *words[EXP_N_FEEDBACK];
    for (size_t i = 0; i < EXP_N_FEEDBACK; i++)
        words[i] = exp_feedback_types[i].word;
    text_join_words(buf, size, words, EXP_N_FEEDBACK);
}

int exp_name_valid(const char *name) {
    size_t len = strlen(name);
    if (len == 0 || len > EXP_MAX_NAME) return 0;
    for (size_t i = 0; i < len; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", name[i]))
            return 0;
    return 1;
}

int exp_set_shares(experiment *x, const double *shares, uint32_t n, err_t *e) {
    if (n != x->n) return err_set(e, ERR_INVALID, "%u shares for %u variants", n, x->n);
    double sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (!(shares[i] >= 0 && shares[i] <= 1))
            return err_set(e, ERR_INVALID, "share of %s is %g, not in [0, 1]", x->names[i],
                           shares[i]);
        sum += shares[i];
    }
    if (fabs(sum - 1) > 1e-6) return err_set(e, ERR_INVALID, "shares add up to %g, not 1", sum);
    memcpy(x->shares, shares, n * sizeof *shares);
    return ERR_OK;
}

/* Offsets of the parts of a stored state. */
enum {
    STATE_NAMES = 1,
    STATE_SHARES = STATE_NAMES + EXP_MAX_VARIANTS * (EXP_MAX_NAME + 1),
    STATE_SALT = STATE_SHARES + EXP_MAX_VARIANTS * 8
};

void exp_encode(const experiment *x, unsigned char out[EXP_STATE_BYTES]) {
    memset(out, 0, EXP_STATE_BYTES);
    out[0] = (unsigned char)x->n;
    for (uint32_t v = 0; v < x->n; v++) {
        memcpy(out + STATE_NAMES + v * (EXP_MAX_NAME + 1), x->names[v], strlen(x->names[v]));
        uint64_t bits;
        memcpy(&bits, &x->shares[v], sizeof bits);
        for (int b = 0; b < 8; b++)
            out[STATE_SHARES + v * 8 + b] = (unsigned char)(bits >> (8 * b));
    }
    memcpy(out + STATE_SALT, x->salt, strlen(x->salt));
}

int exp_restore(experiment *x, const unsigned char in[EXP_STATE_BYTES], err_t *e) {
    uint32_t n = in[0];
    if (n != x->n)
        return err_set(e, ERR_INVALID, "stored experiment has %u variants, %u are served", n, x->n);
    double shares[EXP_MAX_VARIANTS];
    uint32_t seen = 0; /* bit w: served variant w is named */
    for (uint32_t v = 0; v < n; v++) {
        /* Slots are NUL-padded, so a name that fills none is damage. */
        const char *name = (const char *)in + STATE_NAMES + v * (EXP_MAX_NAME + 1);
        if (!memchr(name, '\0', EXP_MAX_NAME + 1) || !exp_name_valid(name))
            return err_set(e, ERR_INVALID, "stored experiment: variant %u has no valid name", v);
        uint32_t w = 0;
        while (w < n && strcmp(x->names[w], name) != 0)
            w++;
        if (w == n)
            return err_set(e, ERR_INVALID, "stored experiment has variant %s, not served now",
                           name);
        if (seen & (1u << w))
            return err_set(e, ERR_INVALID, "stored experiment names variant %s twice", name);
        seen |= 1u << w;
        uint64_t bits = 0;
        for (int b = 0; b < 8; b++)
            bits |= (uint64_t)in[STATE_SHARES + v * 8 + b] << (8 * b);
        memcpy(&shares[w], &bits, sizeof bits);
    }
    const char *salt = (const char *)in + STATE_SALT;
    if (!memchr(salt, '\0', EXP_MAX_SALT + 1))
        return err_set(e, ERR_INVALID, "stored experiment: the salt is not terminated");
    /* n distinct stored names, all served: the same set. The shares are
     * checked as SetExperiment checks them. */
    experiment y = *x;
    int rc = exp_set_shares(&y, shares, n, e);
    if (rc) {
        err_wrap(e, "stored experiment");
        return rc;
    }
    memcpy(y.salt, salt, strlen(salt) + 1);
    *x = y;
    return ERR_OK;
}

uint32_t exp_assign(const experiment *x, const char *user, size_t len) {
    /* salt, NUL, id: the NUL keeps ("ab", "c") and ("a", "bc") apart. Ids
     * are at most 256 bytes where served; longer ones are cut here. */
    char buf[EXP_MAX_SALT + 1 + 1024];
    size_t salt_len = strlen(x->salt);
    if (len > sizeof buf - salt_len - 1) len = sizeof buf - salt_len - 1;
    memcpy(buf, x->salt, salt_len + 1);
    memcpy(buf + salt_len + 1, user, len);
    /* The top 53 bits make a uniform double in [0, 1). */
    double u = (double)(XXH64(buf, salt_len + 1 + len, 0) >> 11) / 9007199254740992.0;
    double edge = 0;
    for (uint32_t v = 0; v < x->n; v++) {
        edge += x->shares[v];
        if (u < edge) return v;
    }
    /* Rounding can leave u just above the last edge: it belongs to the last
     * variant with traffic. */
    for (uint32_t v = x->n; v-- > 0;)
        if (x->shares[v] > 0) return v;
    return 0;
}

void exp_request_id(const experiment *x, uint32_t variant, char out[EXP_REQUEST_ID_MAX]) {
    static atomic_ulong counter;
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    unsigned long n = atomic_fetch_add(&counter, 1);
    uint64_t seed[3] = {(uint64_t)t.tv_sec, (uint64_t)t.tv_nsec, n};
    snprintf(out, EXP_REQUEST_ID_MAX, "%s:%016llx", x->names[variant],
             (unsigned long long)XXH64(seed, sizeof seed, 0x5eed));
}

int exp_variant_of_request(const experiment *x, const char *request_id) {
    const char *colon = strchr(request_id, ':');
    if (!colon) return -1;
    size_t len = (size_t)(colon - request_id);
    for (uint32_t v = 0; v < x->n; v++)
        if (strlen(x->names[v]) == len && !memcmp(x->names[v], request_id, len)) return (int)v;
    return -1;
}
