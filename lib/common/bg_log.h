/*
 * bg_log.h — process-wide logging, safe from any thread.
 *
 * One line per record on stderr: "ts level [module] message". The level
 * threshold is set once at start (bg_log_set_level) and read without locks;
 * each line is written with one write(2) so lines from threads never
 * interleave.
 */
#ifndef BG_LOG_H
#define BG_LOG_H

enum bg_log_level { BG_LOG_DEBUG = 0, BG_LOG_INFO = 1, BG_LOG_WARN = 2, BG_LOG_ERROR = 3 };

void bg_log_set_level(int level);
int bg_log_get_level(void);
/* Parse "debug" | "info" | "warn" | "error"; -1 when unknown. */
int bg_log_level_parse(const char *s);

void bg_log(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define BG_DEBUG(mod, ...) bg_log(BG_LOG_DEBUG, mod, __VA_ARGS__)
#define BG_INFO(mod, ...) bg_log(BG_LOG_INFO, mod, __VA_ARGS__)
#define BG_WARN(mod, ...) bg_log(BG_LOG_WARN, mod, __VA_ARGS__)
#define BG_ERROR(mod, ...) bg_log(BG_LOG_ERROR, mod, __VA_ARGS__)

#endif
