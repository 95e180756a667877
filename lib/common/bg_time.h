/* bg_time.h — monotonic clock helpers. Any thread. */
#ifndef BG_TIME_H
#define BG_TIME_H
#include <stdint.h>

/* Monotonic time in nanoseconds / microseconds. */
uint64_t bg_now_ns(void);
static inline uint64_t bg_now_us(void)
{
    return bg_now_ns() / 1000u;
}

#endif
