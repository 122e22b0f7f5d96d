/* cpu: which vector instructions the kernels may use on this CPU.
 *
 * The hot loops (util/panel_kernel.c, training/als_kernel.c) are compiled
 * once per level below, and the binary picks at run time, so that one build
 * runs on any x86-64 and still uses the widest units the CPU has. The level
 * in use is process-wide: the best this CPU supports, or RECD_KERNEL's
 * (baseline, avx2, avx512, avx512bf16) when set. A level covers the ones
 * below it. Off x86-64 only the baseline copy is built.
 *
 * The level is read with one atomic load; cpu_use may change it while other
 * threads score (each call then runs wholly on the old or the new one). */
#ifndef RECD_CPU_H
#define RECD_CPU_H

#include "err.h"

typedef enum cpu_level {
    CPU_BASELINE,   /* the compiler's default target (x86-64: SSE2) */
    CPU_AVX2,       /* AVX2 and FMA */
    CPU_AVX512,     /* AVX-512 F, CD, BW, DQ, VL (x86-64-v4) */
    CPU_AVX512BF16, /* AVX-512 and AVX512-BF16 */
    CPU_LEVELS
} cpu_level;

/* The static name of level ("baseline", "avx2", ...), as RECD_KERNEL takes. */
const char *cpu_level_name(cpu_level level);

/* Whether this binary has code for level and this CPU (and the OS, which
 * must save the wider registers) can run it: 1 or 0. */
int cpu_supports(cpu_level level);

/* The highest level cpu_supports. */
cpu_level cpu_best(void);

/* Parses a RECD_KERNEL value into *out. Returns ERR_OK, or ERR_INVALID for
 * an unknown name or a level this CPU cannot run (the message names the
 * levels it can). */
int cpu_parse(const char *name, cpu_level *out, err_t *e);

/* Sets the process-wide level from RECD_KERNEL if set, else cpu_best.
 * Returns ERR_OK, or cpu_parse's error (the level is then cpu_best). Safe
 * to call more than once and from several threads. */
int cpu_init(err_t *e);

/* The process-wide level: cpu_use's last, else cpu_init's choice (made at
 * the first call when nobody called cpu_init; a bad RECD_KERNEL is then
 * logged and cpu_best used). */
cpu_level cpu_level_in_use(void);

/* Makes level the process-wide one (benchmarks and tests compare levels in
 * one process). Returns ERR_OK, or ERR_INVALID when !cpu_supports(level). */
int cpu_use(cpu_level level, err_t *e);

#endif
