/*
 * cfg.h — YAML documents as trees of positioned nodes (libyaml).
 *
 * A bg_cfg_doc owns a tree of bg_cfg_node (the opaque node type of
 * plugin.h): maps keep key order, every node remembers file, line and
 * column (1-based) for messages. Anchors/aliases are resolved; duplicate
 * keys in a map are an error. A doc is immutable after parse and may be
 * read from any thread.
 */
#ifndef BG_CFG_H
#define BG_CFG_H

#include <stddef.h>

#include "bayesguard/plugin.h"
#include "common/bg_err.h"

typedef struct bg_cfg_doc bg_cfg_doc;

/* Parse every document of a file / a string. new: bg_cfg_doc_destroy.
 * `name` is used in positions ("policies/a.yaml:3:5: ..."). */
int bg_cfg_parse_file(const char *path, bg_cfg_doc **out, bg_err *err);
int bg_cfg_parse_string(const char *text, size_t len, const char *name, bg_cfg_doc **out,
                        bg_err *err);
void bg_cfg_doc_destroy(bg_cfg_doc *d);

size_t bg_cfg_doc_count(const bg_cfg_doc *d); /* documents in the stream */
const bg_cfg_node *bg_cfg_doc_root(const bg_cfg_doc *d, size_t i);

/* Accessors (same semantics as the host services in plugin.h). */
bg_cfg_type bg_cfg_type_of(const bg_cfg_node *n);
const bg_cfg_node *bg_cfg_get(const bg_cfg_node *map, const char *key);
size_t bg_cfg_len(const bg_cfg_node *n);
const bg_cfg_node *bg_cfg_item(const bg_cfg_node *seq, size_t i);
const char *bg_cfg_key(const bg_cfg_node *map, size_t i);
const bg_cfg_node *bg_cfg_value(const bg_cfg_node *map, size_t i);
const char *bg_cfg_scalar(const bg_cfg_node *n);
const char *bg_cfg_file(const bg_cfg_node *n);
int bg_cfg_line(const bg_cfg_node *n);
int bg_cfg_column(const bg_cfg_node *n);
/* The key scalar of pair i of a map (for the key's own position). */
const bg_cfg_node *bg_cfg_key_node(const bg_cfg_node *map, size_t i);
/* 1 when n is a SCALAR written without quotes. */
int bg_cfg_plain(const bg_cfg_node *n);

/* A new map node like `map` (same position) without the pair `drop`,
 * allocated in d and freed with it; for handing a plugin its section minus
 * the keys the daemon consumed. NULL if map is not a MAP or on ENOMEM.
 * Call only while building (before d is shared between threads). */
const bg_cfg_node *bg_cfg_map_without(bg_cfg_doc *d, const bg_cfg_node *map, const char *drop);

/* Canonical text of a subtree (keys in order, scalars quoted), for hashing
 * a model's config into bg_guard.model_key. Returns a 64-bit FNV-1a hash. */
uint64_t bg_cfg_hash(const bg_cfg_node *n, uint64_t seed);

#endif
