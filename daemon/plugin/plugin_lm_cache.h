/*
 * plugin_lm_cache.h — the score cache of a host language model
 * (plugin_lm.c): log p(cont | prefix) per exact token sequence, so that the
 * Observe of an action — which needs the same items as its Evaluate (the
 * likelihood of the outcome under each theory is the same forward) — and a
 * repeated Evaluate of the same action cost a lookup, not a pass.
 *
 * Keyed by the whole (prefix, cont) token sequence, compared exactly (the
 * hash only picks a bucket: SipHash-2-4 under a per-cache random key, since
 * the tokens come from the agent's arguments). Bounded: at most `cap`
 * entries and BG__LM_CACHE_TOKENS tokens stored in all; the least recently
 * used entry goes first. The cache belongs to one loaded model (one
 * checkpoint, tokenizer and adapter, by file identity), so a reload that
 * changes any of them gets a new model and an empty cache; a reload with the
 * same files keeps the model and its (still exact) scores.
 *
 * Threads: every function from any thread (one mutex per cache).
 * Ownership: the cache copies the tokens it keeps; lookups borrow theirs.
 */
#ifndef BG_PLUGIN_LM_CACHE_H
#define BG_PLUGIN_LM_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "common/bg_err.h"

#define BG__LM_CACHE_ITEMS 4096       /* default entries per model */
#define BG__LM_CACHE_TOKENS (1 << 20) /* tokens kept per model, all entries together */

typedef struct bg__lm_cache bg__lm_cache;

/* cap = 0: a cache that holds nothing (every lookup misses). new: destroy
 * with bg__lm_cache_destroy. */
int bg__lm_cache_create(size_t cap, bg__lm_cache **out, bg_err *err);
void bg__lm_cache_destroy(bg__lm_cache *c);
/* 1 and *score when (prefix, cont) is cached (it becomes the most recent). */
int bg__lm_cache_get(bg__lm_cache *c, const int32_t *prefix, size_t n_prefix, const int32_t *cont,
                     size_t n_cont, double *score);
/* Keeps (prefix, cont) -> score, evicting the least recent entries past the
 * bounds; an entry already there is refreshed. Out of memory: nothing kept. */
void bg__lm_cache_put(bg__lm_cache *c, const int32_t *prefix, size_t n_prefix, const int32_t *cont,
                      size_t n_cont, double score);
/* Entries now held, and lookups answered / missed since create (tests,
 * the log). */
void bg__lm_cache_stats(bg__lm_cache *c, size_t *entries, uint64_t *hits, uint64_t *misses);

#endif
