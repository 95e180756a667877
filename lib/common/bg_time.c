/* bg_time.c — monotonic clock (see bg_time.h). */
#include "common/bg_time.h"

#include <time.h>

uint64_t bg_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
