/*
 * plugin_priv.h — internals shared by the files of module bg_plugin only
 * (plugin_host.c, plugin_services.c, plugin_cfgmap.c, plugin_metrics.c).
 * Nothing outside daemon/plugin/ includes this.
 */
#ifndef BG_PLUGIN_PRIV_H
#define BG_PLUGIN_PRIV_H

#include <pthread.h>
#include <stddef.h>

#include "plugin/plugin_host.h"

/* Named counters, "bayesguard_plugin_<plugin>_<name>". Mutex-protected;
 * plugins add from any thread. */
typedef struct bg__metric {
    char name[128];
    double value;
} bg__metric;

typedef struct bg__metric_table {
    pthread_mutex_t mu;
    bg__metric *m;
    size_t n, cap;
} bg__metric_table;

void bg__metric_table_init(bg__metric_table *t);
void bg__metric_table_close(bg__metric_table *t);
/* Adds delta to the counter `full_name` (created at 0 when new). */
void bg__metric_table_add(bg__metric_table *t, const char *full_name, double delta);
void bg__metric_table_each(bg__metric_table *t, bg_plugin_metric_cb cb, void *ctx);

bg__metric_table *bg__plugin_host_metrics(bg_plugin_host *h);

/* The error sink of cfg_apply: records "file:line:col: plugin NAME: msg". */
int bg__services_cfg_error(void *host_ctx, const bg_cfg_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The plugin name of a services context (for messages). */
const char *bg__services_plugin_name(void *host_ctx);

/* host->cfg_apply. */
int bg__cfg_apply(void *host_ctx, const bg_cfg_node *cfg, const bg_cfg_entry *table,
                  size_t n_entries, void *target);

/* ---- the language-model service (plugin_lm.c) ---- */

/* What an instance's state depends on besides its config text: lm_open
 * folds in the model files' identity, and the instance's key (the engine's
 * model_key) mixes it in, so a model file replaced under the same path
 * gives the sessions posteriors rebuilt with the new model's likelihoods. */
void bg__services_add_identity(void *host_ctx, uint64_t v);
uint64_t bg__services_identity(const bg_plugin_services *s);

/* host->lm_open and the rest (plugin.h, ABI 1.3). */
int bg__lm_open(void *host_ctx, const bg_cfg_node *at, const bg_lm_spec *spec, bg_lm **out);
void bg__lm_close(void *host_ctx, bg_lm *lm);
void bg__lm_info(const bg_lm *lm, bg_lm_info *out);
int bg__lm_encode(const bg_lm *lm, const char *text, int32_t *out, size_t cap, size_t *n_out);
int bg__lm_score(bg_lm *lm, const bg_lm_item *items, size_t n, double *out, char *msg,
                 size_t msg_len);
int bg__lm_next(bg_lm *lm, const bg_lm_item *items, size_t n, float *out, char *msg,
                size_t msg_len);

#endif
