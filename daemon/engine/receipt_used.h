/*
 * receipt_used.h — the set of outcome-receipt ids an engine has accepted
 * (engine-internal; design in receipt_used.c).
 *
 * Threads: any. Ownership: _create returns new (_destroy); ids are copied.
 */
#ifndef BG_ENGINE_RECEIPT_USED_H
#define BG_ENGINE_RECEIPT_USED_H

#include <stddef.h>
#include <stdint.h>

#include "common/bg_err.h"

typedef struct bg__receipt_used bg__receipt_used;

int bg__receipt_used_create(bg__receipt_used **out);
void bg__receipt_used_destroy(bg__receipt_used *u);
/* BG_OK: id is now used (until expiry_unix_ms); BG_EEXIST: it already
 * was; BG_ENOMEM. Ids expired by now_unix_ms may be forgotten. */
int bg__receipt_used_claim(bg__receipt_used *u, const char *id, int64_t expiry_unix_ms,
                           int64_t now_unix_ms);
/* Forget id (its observation was not stored after all). */
void bg__receipt_used_release(bg__receipt_used *u, const char *id);
size_t bg__receipt_used_count(bg__receipt_used *u);

#endif
