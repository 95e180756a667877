/* bg_malloc.h — the process's malloc settings: keep freed memory of the
 * sizes the trainer reuses instead of handing it back to the kernel and
 * faulting it in again.
 *
 * Why: a sampled policy's training round allocates and frees buffers of
 * 0.1–3 MiB (the per-context search's visited table, the gfn plugin's
 * step buffers, the draws' scores) every round and step. glibc's default
 * (a dynamic mmap threshold, the heap's top trimmed past twice it) gave
 * them back to the kernel and faulted them in again: ~690,000 minor page
 * faults, 2.5 s of system CPU in 40 d = 64 rounds at the default context
 * budget, ~10 % of the round's thread CPU, with a peak RSS of 17 MiB
 * (docs/GFLOWNET.md, "Training cost per observation").
 *
 * bg_malloc_tune() sets glibc's mmap threshold to BG_MALLOC_MMAP_THRESHOLD
 * and its trim threshold to BG_MALLOC_TRIM_THRESHOLD: at most that much
 * freed heap is kept per arena before it goes back to the kernel.
 * Skipped (returns 0) when BG_MALLOC_TUNE=0 is in the environment, when
 * GLIBC_TUNABLES sets any glibc.malloc tunable (the operator's own
 * settings win), under AddressSanitizer (its allocator ignores them) and
 * off glibc. Call it first in main, before any thread starts.
 * The CLI (`bayesguard`) does not: `lm train` allocates its buffers once
 * per run. Measured (2026-12-07, Zen 3, the 15M shape from scratch, 3
 * steps of batch 8 x seq 256, the daemon's thresholds given through
 * GLIBC_TUNABLES instead): 166,775 minor faults against 167,152 untuned,
 * a max RSS of 674 MB either way — its faults are first touches. */
#ifndef BG_MALLOC_H
#define BG_MALLOC_H

#include <stdlib.h> /* __GLIBC__ */

/* 1 where bg_malloc_tune can apply its settings: glibc, and no
 * AddressSanitizer (its allocator ignores mallopt). */
#if defined(BG_SANITIZE) || defined(__SANITIZE_ADDRESS__)
#define BG_MALLOC_TUNABLE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BG_MALLOC_TUNABLE 0
#endif
#endif
#ifndef BG_MALLOC_TUNABLE
#if defined(__GLIBC__)
#define BG_MALLOC_TUNABLE 1
#else
#define BG_MALLOC_TUNABLE 0
#endif
#endif

#define BG_MALLOC_MMAP_THRESHOLD (16u << 20) /* blocks this large or larger: mmap */
#define BG_MALLOC_TRIM_THRESHOLD (32u << 20) /* freed heap kept before trimming */

/* 1: the settings were applied; 0: skipped (see above) or refused. */
int bg_malloc_tune(void);

#endif
