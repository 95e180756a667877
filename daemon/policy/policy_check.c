/*
 * policy_check.c — `bayesguard check DIR` / `bayesguardd --check`: the
 * exact validation a reload runs (bg_policy_set_load with a fresh plugin
 * host), with every error printed, for an operator's CI and for a plugin
 * author trying a plugin.
 *
 * Valid means: every policy valid AND every *.so of the plugin dir loaded.
 * A reload would serve with a plugin file that failed to load (it is only
 * logged), but a file in the plugin dir that is not a plugin, or a second
 * plugin of a kind with a name already taken, is a mistake someone made:
 * check says so and exits 1 instead of "ok". On success it lists the
 * policies, then every plugin with its description and each config key
 * (type, range, default, desc) from its config map.
 * bg_policy_check_dir_json reports the same as one JSON document (schema in
 * docs/CLI.md) for `bayesguard check --json`.
 * Threads: any; uses its own plugin host (its own private copies).
 */
#include <stdio.h>
#include <string.h>

#include "common/bg_strbuf.h"
#include "policy/policy_priv.h"

static size_t count_lines(const char *s)
{
    size_t n = *s ? 1 : 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void print_plugin(void *ctx, const bg_plugin *p)
{
    FILE *out = ctx;
    const bg_plugin_desc *d = p->desc;
    const char *base = strrchr(p->path, '/');
    fprintf(out, "  %s %s %s (%s, ABI %u.%u): %s\n", bg_plugin_kind_name(d->kind), d->name,
            d->version, base ? base + 1 : p->path, d->abi_major, d->abi_minor,
            d->description && d->description[0] ? d->description : "(no description)");
    for (size_t i = 0; i < d->config_map_len; i++) {
        const bg_cfg_entry *e = &d->config_map[i];
        char what[512];
        bg_cfg_entry_describe(e, what, sizeof what);
        fprintf(out, "      %-16s %s%s%s\n", e->key, what, e->desc && e->desc[0] ? ": " : "",
                e->desc ? e->desc : "");
    }
}

/* What check found: the load's outcome, shared by the text and the JSON
 * report. Owns host, set, errs. */
typedef struct check_result {
    int rc; /* the exit code: 0 valid, 1 invalid, 2 plugin dir unusable */
    bg_plugin_host *host;
    bg_policy_set *set; /* NULL when the policies are invalid */
    bg_policy_errors errs;
    const char *perr; /* plugin files that failed to load, newline-separated; "" */
    char host_err[BG_ERR_MSG_MAX];
} check_result;

static void check_load(const char *dir, const char *plugin_dir, check_result *r)
{
    memset(r, 0, sizeof *r);
    r->perr = "";
    bg_err err;
    if (bg_plugin_host_create(plugin_dir, &r->host, &err) != BG_OK) {
        snprintf(r->host_err, sizeof r->host_err, "%s", err.msg);
        r->rc = 2;
        return;
    }
    int rc = bg_policy_set_load(dir, r->host, &r->set, &r->errs);
    r->perr = bg_plugin_host_errors(r->host);
    r->rc = rc != BG_OK || *r->perr ? 1 : 0;
}

static void check_free(check_result *r)
{
    bg_policy_errors_free(&r->errs);
    if (r->set)
        bg_policy_set_unref(r->set);
    bg_plugin_host_destroy(r->host);
}

int bg_policy_check_dir(const char *dir, const char *plugin_dir, FILE *out)
{
    check_result r;
    check_load(dir, plugin_dir, &r);
    if (r.rc == 2) {
        fprintf(out, "%s\n", r.host_err);
        check_free(&r);
        return 2;
    }
    bg_policy_set *s = r.set;
    const char *perr = r.perr;
    if (!s) {
        for (size_t i = 0; i < r.errs.n; i++)
            fprintf(out, "%s\n", r.errs.msgs[i]);
        if (*perr)
            fprintf(out, "plugins that failed to load:\n%s\n", perr);
        fprintf(out, "%s: %zu error(s); a reload would be refused\n", dir, r.errs.n);
        check_free(&r);
        return 1;
    }
    if (*perr) {
        fprintf(out, "plugins that failed to load:\n%s\n", perr);
        fprintf(out,
                "%s: %zu policies valid (revision %s), but %zu file(s) in plugin dir %s failed "
                "to load: fix or remove them\n",
                dir, bg_policy_set_count(s), bg_policy_set_revision(s), count_lines(perr),
                plugin_dir);
        check_free(&r);
        return 1;
    }
    fprintf(out, "%s: ok, %zu policies, revision %s\n", dir, bg_policy_set_count(s),
            bg_policy_set_revision(s));
    for (size_t i = 0; i < bg_policy_set_count(s); i++) {
        const bg_policy *p = bg_policy_set_at(s, i);
        fprintf(out, "  %-20s %s:%d  model %s, estimator %s%s%s, threshold %g, %s%s, priority %d\n",
                p->name, p->file, p->line, p->guard.model_name, p->guard.estimator_name,
                p->guard.sampler_name ? ", sampler " : "",
                p->guard.sampler_name ? p->guard.sampler_name : "", p->guard.threshold,
                p->guard.over_threshold == BG_DECISION_ESCALATE ? "escalate" : "deny",
                p->guard.shadow ? " (shadow)" : "", p->priority);
    }
    fprintf(out, "plugins in %s:\n", plugin_dir);
    int rc = bg_plugin_host_each(r.host, print_plugin, out);
    check_free(&r);
    return rc == BG_OK ? 0 : 1;
}

/* ------------------------------------------------------------ --json */

static void json_key(bg_strbuf *b, const char *key)
{
    bg_strbuf_json_cstr(b, key);
    bg_strbuf_puts(b, ": ");
}

static void json_str_or_null(bg_strbuf *b, const char *s)
{
    if (s)
        bg_strbuf_json_cstr(b, s);
    else
        bg_strbuf_puts(b, "null");
}

/* Lines of a newline-separated text as a JSON array of strings. */
static void json_lines(bg_strbuf *b, const char *text)
{
    bg_strbuf_putc(b, '[');
    int first = 1;
    while (*text) {
        const char *nl = strchr(text, '\n');
        size_t n = nl ? (size_t)(nl - text) : strlen(text);
        if (n) {
            bg_strbuf_puts(b, first ? "" : ", ");
            bg_strbuf_json_string(b, text, n);
            first = 0;
        }
        text += n + (nl ? 1 : 0);
    }
    bg_strbuf_putc(b, ']');
}

typedef struct json_each {
    bg_strbuf *b;
    int n;
} json_each;

static void json_plugin(void *ctx, const bg_plugin *p)
{
    json_each *je = ctx;
    bg_strbuf *b = je->b;
    const bg_plugin_desc *d = p->desc;
    const char *base = strrchr(p->path, '/');
    bg_strbuf_puts(b, je->n++ ? ", {" : "{");
    json_key(b, "kind");
    bg_strbuf_json_cstr(b, bg_plugin_kind_name(d->kind));
    bg_strbuf_puts(b, ", ");
    json_key(b, "name");
    bg_strbuf_json_cstr(b, d->name);
    bg_strbuf_puts(b, ", ");
    json_key(b, "version");
    bg_strbuf_json_cstr(b, d->version);
    bg_strbuf_puts(b, ", ");
    json_key(b, "file");
    bg_strbuf_json_cstr(b, base ? base + 1 : p->path);
    bg_strbuf_printf(b, ", \"abi\": \"%u.%u\", ", d->abi_major, d->abi_minor);
    json_key(b, "description");
    bg_strbuf_json_cstr(b, d->description ? d->description : "");
    bg_strbuf_puts(b, ", \"config\": [");
    for (size_t i = 0; i < d->config_map_len; i++) {
        const bg_cfg_entry *e = &d->config_map[i];
        char what[512];
        bg_cfg_entry_describe(e, what, sizeof what);
        bg_strbuf_puts(b, i ? ", {" : "{");
        json_key(b, "key");
        bg_strbuf_json_cstr(b, e->key);
        bg_strbuf_puts(b, ", ");
        json_key(b, "type");
        bg_strbuf_json_cstr(b, what);
        bg_strbuf_puts(b, ", ");
        json_key(b, "desc");
        bg_strbuf_json_cstr(b, e->desc ? e->desc : "");
        bg_strbuf_putc(b, '}');
    }
    bg_strbuf_puts(b, "]}");
}

static void json_policy(bg_strbuf *b, const bg_policy *p)
{
    bg_strbuf_putc(b, '{');
    json_key(b, "name");
    bg_strbuf_json_cstr(b, p->name);
    bg_strbuf_puts(b, ", ");
    json_key(b, "file");
    json_str_or_null(b, p->file);
    bg_strbuf_printf(b, ", \"line\": %d, ", p->line);
    json_key(b, "model");
    json_str_or_null(b, p->guard.model_name);
    bg_strbuf_puts(b, ", ");
    json_key(b, "estimator");
    json_str_or_null(b, p->guard.estimator_name);
    bg_strbuf_puts(b, ", ");
    json_key(b, "sampler");
    json_str_or_null(b, p->guard.sampler_name);
    bg_strbuf_puts(b, ", \"threshold\": ");
    bg_strbuf_json_double(b, p->guard.threshold);
    bg_strbuf_printf(b, ", \"over_threshold\": \"%s\", \"shadow\": %s, \"priority\": %d, ",
                     p->guard.over_threshold == BG_DECISION_ESCALATE ? "escalate" : "deny",
                     p->guard.shadow ? "true" : "false", p->priority);
    json_key(b, "session");
    json_str_or_null(b, p->session_spec);
    bg_strbuf_printf(b, ", \"builtin\": %s, \"tools\": [", p->builtin ? "true" : "false");
    for (size_t t = 0; t < p->n_tools; t++) {
        bg_strbuf_puts(b, t ? ", " : "");
        bg_strbuf_json_cstr(b, p->tools[t]);
    }
    bg_strbuf_puts(b, "]}");
}

int bg_policy_check_dir_json(const char *dir, const char *plugin_dir, FILE *out)
{
    check_result r;
    check_load(dir, plugin_dir, &r);
    bg_strbuf b;
    bg_strbuf_init(&b);
    bg_strbuf_putc(&b, '{');
    json_key(&b, "dir");
    bg_strbuf_json_cstr(&b, dir);
    bg_strbuf_puts(&b, ", ");
    json_key(&b, "plugin_dir");
    bg_strbuf_json_cstr(&b, plugin_dir);
    bg_strbuf_printf(&b, ", \"valid\": %s, ", r.rc == 0 ? "true" : "false");
    json_key(&b, "revision");
    json_str_or_null(&b, r.set ? bg_policy_set_revision(r.set) : NULL);
    bg_strbuf_puts(&b, ", \"errors\": [");
    if (r.rc == 2)
        bg_strbuf_json_cstr(&b, r.host_err);
    for (size_t i = 0; i < r.errs.n; i++) {
        bg_strbuf_puts(&b, i ? ", " : "");
        bg_strbuf_json_cstr(&b, r.errs.msgs[i]);
    }
    bg_strbuf_puts(&b, "], \"plugin_errors\": ");
    json_lines(&b, r.perr);
    bg_strbuf_puts(&b, ", \"policies\": [");
    for (size_t i = 0; r.set && i < bg_policy_set_count(r.set); i++) {
        bg_strbuf_puts(&b, i ? ", " : "");
        json_policy(&b, bg_policy_set_at(r.set, i));
    }
    bg_strbuf_puts(&b, "], \"plugins\": [");
    json_each je = {&b, 0};
    if (r.host && bg_plugin_host_each(r.host, json_plugin, &je) != BG_OK && r.rc == 0)
        r.rc = 1;
    bg_strbuf_puts(&b, "]}\n");
    int rc = r.rc;
    if (b.failed) {
        fprintf(out, "{\"valid\": false, \"errors\": [\"out of memory\"]}\n");
        rc = 2;
    } else {
        fwrite(b.p, 1, b.len, out);
    }
    bg_strbuf_close(&b);
    check_free(&r);
    return rc;
}
