/* rng: the one pseudo-random generator of recd, splitmix64 (Steele, Lea and
 * Flood 2014): tiny and well mixed, and its stream depends only on the
 * seed, so initial factors, tuning samples and generated data are the same
 * on every machine.
 *
 * The state is a caller-owned uint64_t (the seed to start); a state used by
 * one thread at a time needs no locking. */
#ifndef RECD_RNG_H
#define RECD_RNG_H

#include <stdint.h>

/* The next 64 random bits; advances *state. Inline because ALS draws one
 * per initial factor (users x factors of them). */
static inline uint64_t rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) from the top 53 bits of rng_next. */
static inline double rng_unit(uint64_t *state) {
    return (double)(rng_next(state) >> 11) * 0x1.0p-53;
}

#endif
