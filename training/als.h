/* als: implicit-feedback matrix factorization (Hu, Koren, Volinsky 2008)
 * trained by alternating least squares with the conjugate-gradient solve of
 * Takacs et al. (2011).
 *
 * For user u and item i with purchase count r_ui the confidence is
 *     c_ui = 1 + alpha * r_ui   (observed cells; preference p_ui = 1)
 *     c_ui = 1                  (unobserved cells; preference 0)
 * and each half-iteration solves, for every user (then every item),
 *     (YtY + Yt(C_u - I)Y + lambda I) x_u = Yt C_u p(u)
 * with a few CG steps warm-started from the previous x_u. YtY comes from
 * OpenBLAS (single-threaded); users/items are split across worker threads
 * in contiguous blocks balanced by nonzeros. Results depend only on the seed
 * and the input (each row's solve is independent of thread count).
 *
 * The exact solve of one user against fixed items (the fold-in a server
 * runs) is mf_fold_in of util/mf.h, below training and serving alike. */
#ifndef RECD_ALS_H
#define RECD_ALS_H

#include <stdint.h>

#include "csr.h"
#include "err.h"

typedef struct als_params {
    uint32_t factors;     /* default 64 */
    uint32_t iterations;  /* default 15 */
    float regularization; /* lambda, default 0.01 */
    float alpha;          /* confidence scale, default 1.0 */
    /* Frequency-scaled regularization (Rendle et al., RecSys 2022): row r
     * of either side is regularized by lambda + this x its nonzeros, so
     * heavy users and popular items are held back more. Default 0 (plain
     * lambda, the model of Hu et al.). */
    float frequency_regularization;
    uint32_t cg_steps; /* default 3 */
    uint32_t threads;  /* default: number of online CPUs */
    uint64_t seed;     /* default 42 */
    /* Called after each iteration (1-based) with elapsed seconds of that
     * iteration and the training loss; may be NULL. */
    void (*progress)(void *ctx, uint32_t iteration, double seconds, double loss);
    void *progress_ctx;
} als_params;

/* Fills p with the defaults above (threads from sysconf). Thread-safe. */
void als_params_init(als_params *p);

/* Factor matrices, row-major float32: user_factors is n_users x factors,
 * item_factors n_items x factors. Owned by the struct; free with
 * als_factors_free. */
typedef struct als_factors {
    uint32_t n_users, n_items, factors;
    float *user_factors, *item_factors;
    double loss; /* after the last iteration */
} als_factors;

/* Trains on counts (users x items, values = purchase counts r_ui; rows with
 * no nonzeros get a zero vector), reading counts only. Fills *out, which
 * the caller owns and frees with als_factors_free; on failure *out is
 * zeroed and needs no freeing. Calls p->progress from the calling thread.
 * Sets OpenBLAS to one thread for the whole process (recd parallelizes
 * over rows itself). Returns ERR_OK, ERR_INVALID (factors not in
 * 1..MF_MAX_FACTORS of mf.h, cg_steps 0, a negative or non-finite
 * regularization, frequency_regularization, alpha or count), ERR_LIMIT (a dimension beyond the BLAS
 * int range), ERR_NOMEM. Keeps no state between calls: concurrent calls
 * on different outputs work, though each already uses p->threads cores. */
int als_train(const csr *counts, const als_params *p, als_factors *out, err_t *e);

/* Frees f's matrices and zeroes it; safe on a zeroed struct. */
void als_factors_free(als_factors *f);

/* The name of the row kernel copy als_train runs now for the cpu level in
 * use (cpu.h): "baseline", "avx2" or "avx512". Static. Every copy computes
 * the same factors. */
const char *als_train_kernel(void);

#endif
