/* panel_kernel: the copies of panel_scores's kernel, one per cpu level
 * (util/cpu.h), each compiled from panel_kernel.c with that level's
 * instruction set (CMakeLists.txt). panel_scores calls the one of the level
 * in use; calling a copy the CPU cannot run (cpu_supports) is SIGILL. Off
 * x86-64 (RECD_X86_KERNELS undefined) only the baseline copy exists.
 *
 * Each has panel_scores's contract (panel.h). With AVX-512 a vector is a
 * whole panel row, with AVX512-BF16 one instruction multiply-adds two
 * factors of 16 items; below that the pairs are unpacked to float32. */
#ifndef RECD_PANEL_KERNEL_H
#define RECD_PANEL_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#define PANEL_KERNEL_PARAMS                                                                        \
    const uint16_t *panels, uint32_t f, uint32_t first, uint32_t len, const uint32_t *queries,     \
        uint32_t n_queries, float *scores, size_t stride

void panel_kernel_baseline(PANEL_KERNEL_PARAMS);
#if defined(RECD_X86_KERNELS)
void panel_kernel_avx2(PANEL_KERNEL_PARAMS);
void panel_kernel_avx512(PANEL_KERNEL_PARAMS);
void panel_kernel_avx512bf16(PANEL_KERNEL_PARAMS);
#endif

#endif
