/*
 * plugin_services.c — the bg_host services table handed to one plugin
 * instance: logging prefixed with the plugin name, read-only config access
 * (cfg.h), positioned config errors, the typed config map (cfg_apply, in
 * plugin_cfgmap.c), the RNG (plugin_rng.c), named counters, and the
 * language-model service of ABI 1.3 (plugin_lm.c).
 *
 * Why one services object per instance: config errors are collected per
 * instance creation (the policy loader reads them after create returns), and
 * the plugin name prefixes every log line and metric without the plugin
 * having to repeat it.
 *
 * Threads: created/destroyed on the thread that creates the instance;
 * log/metric_add/rng from any thread; cfg_error/cfg_apply only during
 * create (config nodes are only valid then).
 * Ownership: the services borrow the host and the plugin (the caller keeps
 * a reference on the plugin for the instance's lifetime).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bg_log.h"
#include "plugin/plugin_priv.h"
#include "cfg/cfg.h"

struct bg_plugin_services {
    bg_host host; /* host.host_ctx == this */
    bg_plugin_host *ph;
    const bg_plugin *plugin;
    const bg_cfg_node *section;
    char *errors;      /* newline-separated, never NULL */
    uint64_t identity; /* resources the instance opened (0: none) */
};

static void svc_log(void *host_ctx, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void svc_log(void *host_ctx, int level, const char *fmt, ...)
{
    bg_plugin_services *s = host_ctx;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (level < BG_LOG_DEBUG)
        level = BG_LOG_DEBUG;
    if (level > BG_LOG_ERROR)
        level = BG_LOG_ERROR;
    bg_log(level, "plugin", "%s: %s", s->plugin->desc->name, msg);
}

const char *bg__services_plugin_name(void *host_ctx)
{
    return ((bg_plugin_services *)host_ctx)->plugin->desc->name;
}

int bg__services_cfg_error(void *host_ctx, const bg_cfg_node *n, const char *fmt, ...)
{
    bg_plugin_services *s = host_ctx;
    if (!n)
        n = s->section;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char line[1400];
    if (n)
        snprintf(line, sizeof line, "%s:%d:%d: plugin %s: %s", bg_cfg_file(n), bg_cfg_line(n),
                 bg_cfg_column(n), s->plugin->desc->name, msg);
    else
        snprintf(line, sizeof line, "plugin %s: %s", s->plugin->desc->name, msg);
    size_t old = strlen(s->errors);
    char *e = realloc(s->errors, old + strlen(line) + 2);
    if (e) {
        if (old)
            e[old++] = '\n';
        strcpy(e + old, line);
        s->errors = e;
    }
    return BG_PLUGIN_ECONFIG;
}

static void svc_metric_add(void *host_ctx, const char *name, double delta)
{
    bg_plugin_services *s = host_ctx;
    char full[128];
    snprintf(full, sizeof full, "bayesguard_plugin_%s_%s", s->plugin->desc->name, name);
    for (char *c = full; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
            *c = '_';
    bg__metric_table_add(bg__plugin_host_metrics(s->ph), full, delta);
}

int bg_plugin_services_create(bg_plugin_host *h, const bg_plugin *p, bg_plugin_services **out,
                              bg_err *err)
{
    *out = NULL;
    bg_plugin_services *s = calloc(1, sizeof *s);
    if (!s || !(s->errors = calloc(1, 1))) {
        free(s);
        return bg_err_set(err, BG_ENOMEM, "plugin %s: out of memory", p->desc->name);
    }
    s->ph = h;
    s->plugin = p;
    bg_host *t = &s->host;
    t->abi_major = BG_PLUGIN_ABI_MAJOR;
    t->abi_minor = BG_PLUGIN_ABI_MINOR;
    t->size = sizeof *t;
    t->host_ctx = s;
    t->log = svc_log;
    t->cfg_type = bg_cfg_type_of;
    t->cfg_get = bg_cfg_get;
    t->cfg_len = bg_cfg_len;
    t->cfg_item = bg_cfg_item;
    t->cfg_key = bg_cfg_key;
    t->cfg_value = bg_cfg_value;
    t->cfg_scalar = bg_cfg_scalar;
    t->cfg_error = bg__services_cfg_error;
    t->cfg_apply = bg__cfg_apply;
    t->rng_seed = bg_rng_seed;
    t->rng_u64 = bg_rng_u64;
    t->rng_uniform = bg_rng_uniform;
    t->rng_normal = bg_rng_normal;
    t->metric_add = svc_metric_add;
    t->lm_open = bg__lm_open;
    t->lm_close = bg__lm_close;
    t->lm_info = bg__lm_info;
    t->lm_encode = bg__lm_encode;
    t->lm_score = bg__lm_score;
    t->lm_next = bg__lm_next;
    *out = s;
    return BG_OK;
}

void bg__services_add_identity(void *host_ctx, uint64_t v)
{
    bg_plugin_services *s = host_ctx;
    s->identity = (s->identity ^ v) * 0x100000001b3ULL;
}

uint64_t bg__services_identity(const bg_plugin_services *s)
{
    return s->identity;
}

void bg_plugin_services_set_section(bg_plugin_services *s, const bg_cfg_node *section)
{
    s->section = section;
}

const bg_host *bg_plugin_services_host(const bg_plugin_services *s)
{
    return &s->host;
}

const char *bg_plugin_services_errors(const bg_plugin_services *s)
{
    return s->errors;
}

void bg_plugin_services_destroy(bg_plugin_services *s)
{
    if (!s)
        return;
    free(s->errors);
    free(s);
}
