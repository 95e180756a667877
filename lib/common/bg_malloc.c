/* bg_malloc.c — bg_malloc.h. */
#include "bg_malloc.h"

#include <stdlib.h>
#include <string.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define BG_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BG_ASAN 1
#endif
#endif
#ifndef BG_ASAN
#define BG_ASAN 0
#endif

int bg_malloc_tune(void)
{
    const char *off = getenv("BG_MALLOC_TUNE");
    if (off && strcmp(off, "0") == 0)
        return 0;
    const char *tun = getenv("GLIBC_TUNABLES");
    if (tun && strstr(tun, "glibc.malloc."))
        return 0;
#if defined(__GLIBC__) && !BG_ASAN
    /* both: setting either turns glibc's dynamic threshold off */
    return mallopt(M_MMAP_THRESHOLD, (int)BG_MALLOC_MMAP_THRESHOLD) == 1 &&
           mallopt(M_TRIM_THRESHOLD, (int)BG_MALLOC_TRIM_THRESHOLD) == 1;
#else
    return 0;
#endif
}
