/* bg_malloc.c — bg_malloc.h. */
#include "bg_malloc.h"

#include <stdlib.h>
#include <string.h>

#if BG_MALLOC_TUNABLE
#include <malloc.h>
#endif

int bg_malloc_tune(void)
{
    const char *off = getenv("BG_MALLOC_TUNE");
    if (off && strcmp(off, "0") == 0)
        return 0;
    const char *tun = getenv("GLIBC_TUNABLES");
    if (tun && strstr(tun, "glibc.malloc."))
        return 0;
#if BG_MALLOC_TUNABLE
    /* both: setting either turns glibc's dynamic threshold off */
    return mallopt(M_MMAP_THRESHOLD, (int)BG_MALLOC_MMAP_THRESHOLD) == 1 &&
           mallopt(M_TRIM_THRESHOLD, (int)BG_MALLOC_TRIM_THRESHOLD) == 1;
#else
    return 0;
#endif
}
