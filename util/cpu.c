#include "cpu.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#if defined(RECD_X86_KERNELS)
#include <cpuid.h>
#endif

static const char *const level_names[CPU_LEVELS] = {"baseline", "avx2", "avx512", "avx512bf16"};

const char *cpu_level_name(cpu_level level) {
    return level >= 0 && level < CPU_LEVELS ? level_names[level] : "unknown";
}

#if defined(RECD_X86_KERNELS)
/* The highest level from cpuid itself rather than __builtin_cpu_supports:
 * clang-14 and gcc 12's libgcc disagree on where some feature bits (avx512bf16
 * among them) live in __cpu_model. Under valgrind, whose emulated CPUID
 * reports no AVX-512, this gives AVX2 at most. */
static cpu_level detect(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return CPU_BASELINE;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx || !fma) return CPU_BASELINE;
    /* XCR0: which register states the OS saves on a context switch. */
    uint32_t xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    (void)xcr0_hi;
    if ((xcr0_lo & 0x6) != 0x6) return CPU_BASELINE; /* XMM and YMM */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return CPU_BASELINE;
    unsigned max_subleaf = a;
    if (!((b >> 5) & 1)) return CPU_BASELINE; /* AVX2 */
    /* F (16), DQ (17), CD (28), BW (30), VL (31); opmask and ZMM states. */
    const unsigned avx512 = 1u << 16 | 1u << 17 | 1u << 28 | 1u << 30 | 1u << 31;
    if ((b & avx512) != avx512 || (xcr0_lo & 0xe0) != 0xe0) return CPU_AVX2;
    if (max_subleaf < 1 || !__get_cpuid_count(7, 1, &a, &b, &c, &d)) return CPU_AVX512;
    return (a >> 5) & 1 ? CPU_AVX512BF16 : CPU_AVX512;
}
#else
static cpu_level detect(void) {
    return CPU_BASELINE;
}
#endif

static cpu_level best_level;
static pthread_once_t best_once = PTHREAD_ONCE_INIT;

static void find_best(void) {
    best_level = detect();
}

cpu_level cpu_best(void) {
    pthread_once(&best_once, find_best);
    return best_level;
}

int cpu_supports(cpu_level level) {
    return level >= 0 && level <= cpu_best();
}

int cpu_parse(const char *name, cpu_level *out, err_t *e) {
    char can[64] = "";
    for (int l = 0; l <= (int)cpu_best(); l++)
        snprintf(can + strlen(can), sizeof can - strlen(can), "%s%s", l ? ", " : "",
                 level_names[l]);
    for (int l = 0; l < CPU_LEVELS; l++)
        if (strcmp(name, level_names[l]) == 0) {
            if (!cpu_supports((cpu_level)l))
                return err_set(e, ERR_INVALID, "kernel '%s': this CPU cannot run it (it can: %s)",
                               name, can);
            *out = (cpu_level)l;
            return ERR_OK;
        }
    return err_set(e, ERR_INVALID,
                   "kernel '%s': unknown (baseline, avx2, avx512 or avx512bf16; this CPU can: %s)",
                   name, can);
}

/* -1 until chosen; then a cpu_level. */
static atomic_int level_in_use = -1;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static err_t init_error;

static void init_from_env(void) {
    const char *want = getenv("RECD_KERNEL");
    cpu_level level = cpu_best();
    if (want && *want && cpu_parse(want, &level, &init_error)) level = cpu_best();
    /* Unless cpu_use came first. */
    int unset = -1;
    atomic_compare_exchange_strong(&level_in_use, &unset, (int)level);
}

int cpu_init(err_t *e) {
    pthread_once(&init_once, init_from_env);
    if (init_error.code) return err_set(e, init_error.code, "RECD_KERNEL: %s", init_error.msg);
    return ERR_OK;
}

cpu_level cpu_level_in_use(void) {
    int level = atomic_load_explicit(&level_in_use, memory_order_relaxed);
    if (level >= 0) return (cpu_level)level;
    err_t e;
    if (cpu_init(&e)) {
        char msg[sizeof e.msg];
        log_error("msg=\"%s; using %s\"", log_escape(e.msg, msg, sizeof msg),
                  level_names[cpu_best()]);
    }
    return (cpu_level)atomic_load(&level_in_use);
}

int cpu_use(cpu_level level, err_t *e) {
    if (!cpu_supports(level))
        return err_set(e, ERR_INVALID, "kernel '%s': this CPU cannot run it",
                       cpu_level_name(level));
    atomic_store(&level_in_use, (int)level);
    return ERR_OK;
}
