/*
 * observation.h — owned copies of observations and their byte encoding
 * (engine-internal).
 *
 * A stored observation is one malloc block: the bg_observation header, then
 * its features, attributes and strings, all pointing inside the block, so
 * one free() releases it and the block can be moved around by pointer.
 *
 * Encoding (little-endian, version 1), used by obs_store records:
 *   u8 version=1 | str guard | str session | str tool | str id | str args |
 *   u32 n_features | f64 × n | u32 n_attributes | (str key, str value) × n |
 *   u8 harmed | u8 has_value | f64 value
 * where str = u32 length + bytes (no NUL). Version 2 is an observation
 * accepted with an outcome receipt (engine.h, bg_obs_receipt): the same
 * fields after u8 version=2, then
 *   str decision id | f64-sized i64 expiry (Unix ms) | u8 receipt flags
 * so a replay rebuilds the set of receipts already used. Both versions are
 * read; version 1 is still written for observations without a receipt.
 *
 * Threads: pure functions. Ownership: _dup returns new (free()).
 */
#ifndef BG_ENGINE_OBSERVATION_H
#define BG_ENGINE_OBSERVATION_H

#include <stddef.h>
#include <stdint.h>

#include "bayesguard/plugin.h"
#include "common/bg_err.h"
#include "engine/engine.h"

/* new: one block, free() it. NULL when out of memory. */
bg_observation *bg__obs_dup(const bg_observation *o);
/* Bytes of the block bg__obs_dup allocates. */
size_t bg__obs_size(const bg_observation *o);

/* Check what the engine checks for every action: tool present, features
 * finite, attribute keys/values present. `what` names it in messages. */
int bg__action_validate(const bg_action *a, const char *what, bg_err *err);

/* Encode into a new buffer (*out, free()); returns length or 0 on ENOMEM.
 * _receipt writes version 2 when rc is not NULL. */
size_t bg__obs_encode(const char *guard, const char *session, const bg_observation *o,
                      uint8_t **out);
size_t bg__obs_encode_receipt(const char *guard, const char *session, const bg_observation *o,
                              const bg_obs_receipt *rc, uint8_t **out);

/* Decode a record. new: *guard, *session (free()) and *obs (free()).
 * BG_EIO when the bytes are not a valid version-1 record. */
int bg__obs_decode(const uint8_t *buf, size_t len, char **guard, char **session,
                   bg_observation **obs, bg_err *err);
/* ... and the receipt of a version-2 record into *rc (may be NULL);
 * *has_rc (may be NULL) says whether there was one. */
int bg__obs_decode_receipt(const uint8_t *buf, size_t len, char **guard, char **session,
                           bg_observation **obs, bg_obs_receipt *rc, int *has_rc, bg_err *err);

#endif
