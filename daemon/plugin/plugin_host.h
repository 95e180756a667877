/*
 * plugin_host.h — loading plugins (dlopen), checking their ABI, and the
 * services table handed to them.
 *
 * A host scans a plugin directory for *.so files (any name: a plugin is
 * known by its descriptor's name). Each file is dlopened from a private
 * copy (dlopen caches by path, so a file replaced on disk must be opened
 * under a new name to take effect), its bg_plugin_entry() is called, and
 * the descriptor is checked: ABI major equal, minor not newer, desc_size
 * large enough, name and version set, kind known, required vtable entries
 * set, config map well-formed (and using no flag newer than the declared
 * minor), spare slots NULL; then its name must be new for its kind. A
 * refusal is an error naming the file and what to fix, e.g.
 *   "plugins/x.so: plugin ABI 2.0 is not supported by this bayesguard
 *    (ABI 1.1): rebuild the plugin against include/bayesguard/plugin.h 1.x"
 * and never stops the other plugins from loading. include/bayesguard/
 * plugin.h ("Compatibility") is the contract these checks implement.
 *
 * Built-in plugins load through exactly this path.
 *
 * Lifetime: a bg_plugin is shared (ref-counted): a policy snapshot holds a
 * reference for each plugin it instantiated, so the code is dlclosed only
 * after the last snapshot using it is freed. bg_plugin_host_rescan() picks up
 * new or replaced files (by size+mtime+inode) for later lookups; old
 * bg_plugin objects stay valid while referenced.
 *
 * Threads: lookups and rescans are serialised by the host's mutex; the
 * returned bg_plugin is immutable.
 */
#ifndef BG_PLUGIN_HOST_H
#define BG_PLUGIN_HOST_H

#include "bayesguard/plugin.h"
#include "common/bg_err.h"

typedef struct bg_plugin_host bg_plugin_host;
typedef struct bg_plugin bg_plugin;

struct bg_plugin {
    const bg_plugin_desc *desc; /* read-only, valid while referenced */
    const char *path;           /* the file it was loaded from */
};

/* new: destroy. dir must exist. Load failures are logged and listed by
 * bg_plugin_host_errors(); they do not fail create. */
int bg_plugin_host_create(const char *dir, bg_plugin_host **out, bg_err *err);
void bg_plugin_host_destroy(bg_plugin_host *h);
int bg_plugin_host_rescan(bg_plugin_host *h, bg_err *err);

/* Load one file now (also used by tests for fixture plugins).
 * new reference on success. */
int bg_plugin_host_load_file(bg_plugin_host *h, const char *path, bg_plugin **out, bg_err *err);

/* Find by name and kind; new reference, or BG_ENOTFOUND with a message
 * listing the plugins of that kind that exist. */
int bg_plugin_host_find(bg_plugin_host *h, const char *name, bg_plugin_kind kind, bg_plugin **out,
                        bg_err *err);
void bg_plugin_ref(bg_plugin *p);
void bg_plugin_unref(bg_plugin *p);

/* The services table for one plugin instance's creation: config errors
 * are appended to `errs` (newline-separated "file:line:col: plugin NAME:
 * msg"). new: bg_plugin_services_destroy after the instance is destroyed. */
typedef struct bg_plugin_services bg_plugin_services;
int bg_plugin_services_create(bg_plugin_host *h, const bg_plugin *p, bg_plugin_services **out,
                              bg_err *err);
const bg_host *bg_plugin_services_host(const bg_plugin_services *s);
/* Config errors recorded so far ("" when none). */
const char *bg_plugin_services_errors(const bg_plugin_services *s);
void bg_plugin_services_destroy(bg_plugin_services *s);

/* Newline-separated load failures of the last scan ("" when none); valid
 * until the next rescan (use the _copy form where a rescan may run
 * concurrently, e.g. Status during a reload). */
const char *bg_plugin_host_errors(bg_plugin_host *h);
/* The same, copied into buf (truncated to len-1); returns the full length. */
size_t bg_plugin_host_errors_copy(bg_plugin_host *h, char *buf, size_t len);

/* ---- additions (policy helper), all compatible with the above ---- */

/* Calls cb for every loaded plugin, in file-name order, under the host's
 * lock (cb must not call back into the host). BG_ENOMEM or BG_OK. */
typedef void (*bg_plugin_each_cb)(void *ctx, const bg_plugin *p);
int bg_plugin_host_each(bg_plugin_host *h, bg_plugin_each_cb cb, void *ctx);

/* One line describing config entry e for docs and `check`: its type, the
 * allowed values (range printed as an interval, e.g. "(0, 1]") and its
 * default, e.g. "number in (0, 1], default 0.05" or "string, required".
 * Truncated to len-1 bytes. */
void bg_cfg_entry_describe(const bg_cfg_entry *e, char *buf, size_t len);

/* The directory the host scans. */
const char *bg_plugin_host_dir(const bg_plugin_host *h);
/* "hypothesis" | "estimator" | "sampler" | "unknown". */
const char *bg_plugin_kind_name(bg_plugin_kind kind);
/* A hash of the plugin file's bytes as loaded: part of a guard's model_key
 * so a replaced model .so starts a new posterior. */
uint64_t bg_plugin_identity(const bg_plugin *p);

/* The node blamed by cfg_error(NULL, ...) and by cfg_apply for a missing
 * required key when the plugin got no config map (e.g. the policy's
 * `model:` section). Borrowed; must outlive the services. */
void bg_plugin_services_set_section(bg_plugin_services *s, const bg_cfg_node *section);

/* Plugin metrics (host->metric_add): calls cb for each counter, under the
 * table's lock (cb must not call back into the host). */
typedef void (*bg_plugin_metric_cb)(void *ctx, const char *name, double value);
void bg_plugin_host_metrics(bg_plugin_host *h, bg_plugin_metric_cb cb, void *ctx);

/* The typed config map engine behind host->cfg_apply, usable by the daemon
 * with its own error sink (records "file:line:col: msg" for node n; n may
 * be NULL): key_prefix is prepended to key names in messages ("spec.");
 * extra_keys (NULL-terminated, may be NULL) are keys the caller handles
 * itself, so they are neither applied nor unknown. */
typedef int (*bg_cfg_sink)(void *ctx, const bg_cfg_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int bg_cfg_apply_table(bg_cfg_sink sink, void *sink_ctx, const bg_cfg_node *cfg,
                       const bg_cfg_entry *table, size_t n_entries, const char *key_prefix,
                       const char *const *extra_keys, void *target);

/* RNG services (also used by the daemon): xoshiro256** seeded by
 * splitmix64; uniform in [0,1) from the top 53 bits; normal by Box-Muller
 * (one value per call, the cosine branch). */
void bg_rng_seed(bg_rng *r, uint64_t seed);
uint64_t bg_rng_u64(bg_rng *r);
double bg_rng_uniform(bg_rng *r);
double bg_rng_normal(bg_rng *r);

/* ---- plugin instances (plugin_instance.c): the one way to make one ---- */

/* What a plugin instance's state depends on: the plugin (its file's bytes,
 * its name) and its config subtree (bg_cfg_hash: layout and comments do not
 * count). A guard's model_key is the key of its model instance. */
uint64_t bg_plugin_config_key(const bg_plugin *p, const bg_cfg_node *cfg);

/* One plugin instance with what it needs alive. Fields read-only. */
typedef struct bg_plugin_instance {
    bg_plugin *plugin;       /* a reference, held until destroy */
    void *inst;              /* the plugin's instance (vtable of plugin->desc) */
    uint64_t key;            /* bg_plugin_config_key(plugin, cfg) */
    bg_plugin_services *svc; /* private: the instance's services table */
} bg_plugin_instance;

/* Find plugin `name` of `kind` (a reference), make its services table,
 * create an instance from cfg (NULL: the plugin's defaults; space: the
 * model's, for samplers only). section is blamed by config errors without
 * a node of their own (the policy's `model:` section; may be NULL).
 * Returns BG_OK with *out new (bg_plugin_instance_destroy), or:
 *   BG_ECONFIG  the plugin refused its config: every message (positioned,
 *               "file:line:col: plugin NAME: msg") goes to sink, one call
 *               each, when sink is set, and into err (truncated);
 *   other       no such plugin (BG_ENOTFOUND, err lists those that exist),
 *               out of memory: err says which plugin.
 * _from makes one more instance of an already loaded plugin (it takes its
 * own reference), e.g. a session's sampler of the same plugin object. */
int bg_plugin_instance_create(bg_plugin_host *h, const char *name, bg_plugin_kind kind,
                              const bg_cfg_node *section, const bg_cfg_node *cfg,
                              const bg_space *space, bg_cfg_sink sink, void *sink_ctx,
                              bg_plugin_instance **out, bg_err *err);
int bg_plugin_instance_create_from(bg_plugin_host *h, bg_plugin *p, const bg_cfg_node *section,
                                   const bg_cfg_node *cfg, const bg_space *space, bg_cfg_sink sink,
                                   void *sink_ctx, bg_plugin_instance **out, bg_err *err);
/* Destroys the instance, then its services table, then drops the plugin
 * reference. NULL is a no-op. */
void bg_plugin_instance_destroy(bg_plugin_instance *pi);

#endif
