/*
 * policy_snapshot.c — a bg_policy_set: the whole validated policy directory,
 * immutable once built, shared by reference count.
 *
 * Build (bg_policy_set_load), in order; every step collects ALL its errors
 * and the build fails if any step found one:
 *   1. list dir: *.yaml and *.yml regular files, hidden names skipped (so a
 *      Kubernetes ConfigMap's ..data / ..2026_… dirs are never read twice;
 *      the visible names are symlinks through ..data), and so are policy
 *      unit tests (*_test.yaml, *_test.yml: bg_policy_is_test_file), sorted
 *      by name; the directory and every file must be writable only by root
 *      or the daemon's user (policy_trust.c), else the set is refused;
 *   2. read each file, feed name + NUL, length (u64, host order) and bytes
 *      to SHA-256 (libcrypto; the revision, 64 hex digits);
 *   3. parse every document (policy_parse.c: schema, defaults);
 *   4. names unique; match patterns of equal priority must not overlap;
 *   5. per policy: the model/estimator/sampler instances
 *      (bg_plugin_instance_create: plugin found by name, a services table
 *      whose errors carry positions); fill bg_guard (model_key = the model
 *      instance's key: hash of plugin file identity + name + config);
 *   6. order policies by priority (desc), then file order, for matching;
 *   7. the built-in default-deny catch-all, unless a policy matches "*".
 *
 * Invariants: a set handed out passed every step; its policies, guards,
 * strings and plugin instances are immutable until the last unref, which
 * destroys instances (sampler, estimator, model), drops the plugin
 * references (so a replaced .so is dlclosed once no set uses it) and frees
 * the docs.
 *
 * Threads: load on one thread at a time (the store serialises it);
 * ref/unref/find/match/at from any thread.
 */
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include "common/bg_assert.h"
#include "common/bg_log.h"
#include "engine/sampled.h"
#include "policy/policy_priv.h"

typedef struct pol_impl {
    bg__policy_spec spec;
    bg_plugin_instance *pi[3]; /* model, estimator, sampler (plugin_host.h) */
    bg_sampled *sampled;       /* the sampler instance's sampled state (engine/sampled.h) */
    bg_space_seq space;        /* the model's (and a sequence space's symbols, borrowed
                                * from the model instance), for more sampler instances */
    char *sym_path[3];         /* a sequence space's model files, resolved (owned) */
    bg_plugin_host *host;      /* outlives every set */
} pol_impl;

enum { P_MODEL = 0, P_EST = 1, P_SAMPLER = 2 };

struct bg_policy_set {
    atomic_long refs;
    char revision[65];
    size_t n;
    bg_policy *pols;     /* [n] in definition order */
    pol_impl *impl;      /* [n] parallel to pols */
    size_t *by_priority; /* [n] indices, matching order */
    bg_cfg_doc **docs;
    size_t n_docs;
    /* The built-in default-deny policy for tools no policy matches; unused
     * (has_catch_all 0) when a policy matches "*". */
    bg_policy catch_all;
    int has_catch_all;
};

/* --------------------------------------------------------- accessors */

void bg_policy_set_ref(bg_policy_set *s)
{
    if (s)
        atomic_fetch_add(&s->refs, 1);
}

static void destroy_instances(pol_impl *im)
{
    bg_sampled_destroy(im->sampled); /* before the sampler instance it was made for */
    for (int k = 2; k >= 0; k--)
        bg_plugin_instance_destroy(im->pi[k]);
    for (int k = 0; k < 3; k++)
        free(im->sym_path[k]);
}

static void set_free(bg_policy_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        destroy_instances(&s->impl[i]);
        bg__policy_spec_free(&s->impl[i].spec);
        free((void *)s->pols[i].tools);
    }
    for (size_t i = 0; i < s->n_docs; i++)
        bg_cfg_doc_destroy(s->docs[i]);
    free(s->docs);
    free(s->pols);
    free(s->impl);
    free(s->by_priority);
    free(s);
}

void bg_policy_set_unref(bg_policy_set *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1)
        set_free(s);
}

/* bg_guard.session_sampler.create: one more instance of the policy's sampler (the
 * same loaded plugin, its config and the model's space), for one session.
 * *keep is the bg_plugin_instance, which holds what the instance needs
 * alive (its plugin, its services), so it may outlive the set that made it
 * (a sampler table shared across reloads). */
static int sampler_new(void *ctx, void **inst, void **keep)
{
    pol_impl *im = ctx;
    bg_plugin_instance *pi;
    bg_err err;
    bg_err_clear(&err);
    int rc = bg_plugin_instance_create_from(im->host, im->pi[P_SAMPLER]->plugin, im->spec.sampler,
                                            im->spec.sampler_cfg, &im->space.space, NULL, NULL, &pi,
                                            &err);
    if (rc != BG_OK) {
        BG_ERROR("policy", "policy %s: sampler %s: create failed: %s", im->spec.name,
                 im->pi[P_SAMPLER]->plugin->desc->name, err.msg);
        return rc == BG_ENOMEM ? BG_ENOMEM : BG_EINTERNAL;
    }
    *inst = pi->inst;
    *keep = pi;
    return BG_OK;
}

/* bg_guard.session_sampler.destroy: the instance and what it kept alive. */
static void sampler_drop(void *inst, void *keep)
{
    (void)inst; /* keep's own */
    bg_plugin_instance_destroy(keep);
}

/* bg_guard.owner: work that outlives a call (background sampler training)
 * keeps the whole set, and so the guard's instances, alive. */
static void owner_ref(void *set)
{
    bg_policy_set_ref(set);
}

static void owner_unref(void *set)
{
    bg_policy_set_unref(set);
}

void bg__policy_set_inherit(bg_policy_set *to, const bg_policy_set *from)
{
    for (size_t i = 0; from && i < to->n; i++) {
        pol_impl *ni = &to->impl[i];
        for (size_t j = 0; ni->sampled && j < from->n; j++) {
            const pol_impl *oi = &from->impl[j];
            if (oi->sampled && strcmp(to->pols[i].name, from->pols[j].name) == 0 &&
                to->pols[i].guard.model_key == from->pols[j].guard.model_key &&
                ni->pi[P_SAMPLER]->plugin == oi->pi[P_SAMPLER]->plugin &&
                ni->pi[P_SAMPLER]->key == oi->pi[P_SAMPLER]->key) {
                bg_sampled_inherit(ni->sampled, oi->sampled);
                BG_DEBUG("policy", "policy %s: the sampler state carries over the reload",
                         to->pols[i].name);
                break;
            }
        }
    }
}

const char *bg_policy_set_revision(const bg_policy_set *s)
{
    return s->revision;
}

size_t bg_policy_set_count(const bg_policy_set *s)
{
    return s->n;
}

const bg_policy *bg_policy_set_at(const bg_policy_set *s, size_t i)
{
    return i < s->n ? &s->pols[i] : NULL;
}

const bg_policy *bg_policy_set_find(const bg_policy_set *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->pols[i].name, name) == 0)
            return &s->pols[i];
    if (s->has_catch_all && strcmp(name, BG_POLICY_DEFAULT_DENY) == 0)
        return &s->catch_all;
    return NULL;
}

const bg_policy *bg_policy_set_catch_all(const bg_policy_set *s)
{
    return s->has_catch_all ? &s->catch_all : NULL;
}

static int tools_match(const bg_cfg_node *tools, const char *tool)
{
    for (size_t j = 0; j < bg_cfg_len(tools); j++)
        if (fnmatch(bg_cfg_scalar(bg_cfg_item(tools, j)), tool, 0) == 0)
            return 1;
    return 0;
}

const bg_policy *bg_policy_set_match(const bg_policy_set *s, const char *tool)
{
    for (size_t k = 0; k < s->n; k++) {
        size_t i = s->by_priority[k];
        if (tools_match(s->impl[i].spec.tools, tool))
            return &s->pols[i];
    }
    return NULL;
}

/* ------------------------------------------------------------ listing */

static int ends_with(const char *s, size_t n, const char *tail)
{
    size_t t = strlen(tail);
    return n > t && strcmp(s + n - t, tail) == 0;
}

int bg_policy_is_test_file(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && (ends_with(name, n, "_test.yaml") || ends_with(name, n, "_test.yml"));
}

static int is_policy_file(const char *name)
{
    size_t n = strlen(name);
    if (name[0] == '.' || bg_policy_is_test_file(name))
        return 0;
    return (n > 5 && strcmp(name + n - 5, ".yaml") == 0) ||
           (n > 4 && strcmp(name + n - 4, ".yml") == 0);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int bg__policy_list_dir(const char *dir, char ***names, size_t *n, bg_policy_errors *errs)
{
    *names = NULL;
    *n = 0;
    DIR *dp = opendir(dir);
    if (!dp) {
        bg__errs_add(errs, "%s: cannot open policy directory: %s", dir, strerror(errno));
        return BG_EIO;
    }
    if (!bg__policy_path_trusted(dir, errs)) { /* policy_trust.c */
        closedir(dp);
        return BG_ECONFIG;
    }
    struct dirent *de;
    int rc = BG_OK, untrusted = 0;
    while ((de = readdir(dp))) {
        if (!is_policy_file(de->d_name))
            continue;
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue; /* dangling symlink mid-swap, or a directory */
        if (!bg__policy_file_trusted(dir, path, errs))
            untrusted = 1; /* every such file named, then refused */
        char **nn = realloc(*names, (*n + 1) * sizeof *nn);
        if (!nn) {
            rc = BG_ENOMEM;
            break;
        }
        *names = nn;
        if (!(nn[*n] = strdup(de->d_name))) {
            rc = BG_ENOMEM;
            break;
        }
        (*n)++;
    }
    closedir(dp);
    if (rc)
        bg__errs_add(errs, "%s: out of memory", dir);
    if (*n)
        qsort(*names, *n, sizeof **names, cmp_str);
    return rc ? rc : untrusted ? BG_ECONFIG : BG_OK;
}

static int read_all(const char *path, char **buf, size_t *len, bg_policy_errors *errs)
{
    FILE *f = fopen(path, "rb");
    *buf = NULL;
    *len = 0;
    if (!f) {
        bg__errs_add(errs, "%s: cannot open: %s", path, strerror(errno));
        return BG_EIO;
    }
    size_t cap = 0;
    for (;;) {
        if (cap - *len < 4096) {
            char *nb = realloc(*buf, cap = cap ? cap * 2 : 8192);
            if (!nb) {
                fclose(f);
                bg__errs_add(errs, "%s: out of memory", path);
                return BG_ENOMEM;
            }
            *buf = nb;
        }
        size_t r = fread(*buf + *len, 1, cap - *len, f);
        *len += r;
        if (!r)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        bg__errs_add(errs, "%s: read error", path);
        return BG_EIO;
    }
    return BG_OK;
}

/* ------------------------------------------------------------- build */

/* The revision from the finished hash: 64 lowercase hex digits. */
static int revision_hex(EVP_MD_CTX *sha, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    if (!EVP_DigestFinal_ex(sha, md, &n) || n != 32)
        return -1;
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* Steps 2-3: read, hash and parse every file; collect schema-valid specs. */
static int parse_files(const char *dir, char **names, size_t n_files, bg_policy_set *s,
                       bg_policy_errors *errs)
{
    int rc = BG_OK, hashed = 1;
    s->docs = calloc(n_files ? n_files : 1, sizeof *s->docs);
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    if (!s->docs || !sha || !EVP_DigestInit_ex(sha, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(sha);
        return BG_ENOMEM;
    }
    for (size_t f = 0; f < n_files; f++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[f]);
        char *buf;
        size_t len;
        if (read_all(path, &buf, &len, errs)) {
            rc = BG_ECONFIG;
            continue;
        }
        uint64_t len64 = len;
        hashed = hashed && EVP_DigestUpdate(sha, names[f], strlen(names[f]) + 1) &&
                 EVP_DigestUpdate(sha, &len64, sizeof len64) && EVP_DigestUpdate(sha, buf, len);
        bg_err err;
        bg_cfg_doc *doc = NULL;
        int prc = bg_cfg_parse_string(buf, len, path, &doc, &err);
        free(buf);
        if (prc) {
            bg__errs_add(errs, "%s", err.msg);
            rc = BG_ECONFIG;
            continue;
        }
        s->docs[s->n_docs++] = doc;
        size_t nd = bg_cfg_doc_count(doc);
        if (nd == 0)
            continue;
        bg_policy *np = realloc(s->pols, (s->n + nd) * sizeof *np);
        if (np)
            s->pols = np;
        pol_impl *ni = np ? realloc(s->impl, (s->n + nd) * sizeof *ni) : NULL;
        if (!ni) {
            bg__errs_add(errs, "%s: out of memory", path);
            EVP_MD_CTX_free(sha);
            return BG_ENOMEM;
        }
        s->impl = ni;
        for (size_t d = 0; d < nd; d++) {
            const bg_cfg_node *root = bg_cfg_doc_root(doc, d);
            if (bg_cfg_type_of(root) == BG_CFG_NULL)
                continue; /* an empty document (a stray ---) */
            pol_impl *im = &s->impl[s->n];
            memset(im, 0, sizeof *im);
            memset(&s->pols[s->n], 0, sizeof s->pols[s->n]);
            if (bg__policy_parse(doc, root, &im->spec, errs))
                rc = BG_ECONFIG; /* kept: its usable parts are still checked */
            s->n++;
        }
    }
    if (!hashed || revision_hex(sha, s->revision) != 0) {
        bg__errs_add(errs, "%s: libcrypto's SHA-256 failed; the revision cannot be computed", dir);
        rc = BG_EINTERNAL;
    }
    EVP_MD_CTX_free(sha);
    return rc;
}

/* Step 4: unique names; no overlapping matches at equal priority. */
static int check_pairs(bg_policy_set *s, bg_policy_errors *errs)
{
    int rc = BG_OK;
    for (size_t j = 0; j < s->n; j++) {
        const bg__policy_spec *b = &s->impl[j].spec;
        for (size_t i = 0; i < j; i++) {
            const bg__policy_spec *a = &s->impl[i].spec;
            if (!a->name_ok || !b->name_ok)
                continue;
            if (strcmp(a->name, b->name) == 0) {
                rc = bg__errs_at(errs, b->name_node,
                                 "metadata.name '%s' is already used by the policy at %s:%d:%d; "
                                 "policy names must be unique",
                                 b->name, bg_cfg_file(a->name_node), bg_cfg_line(a->name_node),
                                 bg_cfg_column(a->name_node));
                continue;
            }
            if (a->v.priority != b->v.priority || !a->match_ok || !b->match_ok || !a->schema_ok ||
                !b->schema_ok)
                continue; /* priorities are only known for schema-valid documents */
            int found = 0;
            for (size_t x = 0; x < bg_cfg_len(b->tools) && !found; x++) {
                const bg_cfg_node *bn = bg_cfg_item(b->tools, x);
                for (size_t y = 0; y < bg_cfg_len(a->tools) && !found; y++) {
                    const bg_cfg_node *an = bg_cfg_item(a->tools, y);
                    if (!bg__glob_overlap(bg_cfg_scalar(an), bg_cfg_scalar(bn)))
                        continue;
                    found = 1;
                    rc = bg__errs_at(errs, bn,
                                     "policy '%s': match pattern '%s' overlaps pattern '%s' of "
                                     "policy '%s' (%s:%d:%d) at equal priority %lld: give one a "
                                     "higher spec.priority or narrow the patterns",
                                     b->name, bg_cfg_scalar(bn), bg_cfg_scalar(an), a->name,
                                     bg_cfg_file(an), bg_cfg_line(an), bg_cfg_column(an),
                                     (long long)b->v.priority);
                }
            }
        }
    }
    return rc;
}

/* Create one plugin instance of kind k (bg_plugin_instance_create); its
 * config errors come with positions, a missing plugin is blamed on the
 * section's `plugin:` key. */
static int create_one(bg_plugin_host *h, pol_impl *im, int k, bg_plugin_kind kind, const char *name,
                      const bg_cfg_node *section, const bg_cfg_node *cfg, const bg_space *space,
                      bg_policy_errors *errs)
{
    static const char *const paths[] = {"spec.model.plugin", "spec.estimator.plugin",
                                        "spec.sampler.plugin"};
    bg_err err;
    bg_err_clear(&err);
    int rc = bg_plugin_instance_create(h, name, kind, section, cfg, space, bg__errs_at, errs,
                                       &im->pi[k], &err);
    if (rc == BG_OK || rc == BG_ECONFIG) /* config errors went to errs */
        return rc;
    const bg_cfg_node *pn = bg_cfg_get(section, "plugin");
    return bg__errs_at(errs, pn ? pn : section, "%s: %s", paths[k], err.msg);
}

/* spec.features computes as many features as the model takes: asked of
 * the model's check_action with an action of that many zeros, so a
 * mismatch is the operator's load error, not every caller's
 * INVALID_ARGUMENT. */
static int check_feature_count(pol_impl *im, const bg_hypothesis_vtbl *mv, bg_policy_errors *errs)
{
    const bg__policy_spec *sp = &im->spec;
    if (sp->n_features == 0 || !mv->check_action)
        return BG_OK;
    double zeros[BG_FEATURES_MAX_COUNT] = {0};
    bg_action a = {
        .tool = "", .arguments_json = "{}", .features = zeros, .n_features = sp->n_features};
    char why[BG_PLUGIN_MESSAGE_MIN * 2] = "";
    if (mv->check_action(im->pi[P_MODEL]->inst, &a, why, sizeof why) == BG_PLUGIN_OK)
        return BG_OK;
    why[sizeof why - 1] = '\0';
    return bg__errs_at(errs, bg_cfg_get(bg_cfg_get(sp->root, "spec"), "features"),
                       "spec.features: %zu expression(s), but model %s refuses that many "
                       "features: %s",
                       sp->n_features, sp->v.model_plugin, why);
}

/* A space with flags (ABI 1.4) is a token-sequence space: well formed,
 * and its symbols from the model's symbols() (borrowed from the model
 * instance, which lives as long as im). Flags 0: a bit set, nothing to do. */
static int seq_symbols(pol_impl *im, const bg_hypothesis_vtbl *mv, bg_space_seq *space,
                       bg_policy_errors *errs)
{
    const bg__policy_spec *sp = &im->spec;
    if (space->space.flags == 0)
        return BG_OK;
    if (!bg_space_is_sequence(&space->space))
        return bg__errs_at(errs, sp->model,
                           "spec.model: plugin %s describes a space with flags 0x%x and %u bits, "
                           "which is neither a bit set (flags 0) nor a token-sequence space "
                           "(BG_SPACE_SEQUENCE, width x max_len <= 64 bits)",
                           sp->v.model_plugin, space->space.flags, space->space.n_bits);
    space->symbols.size = sizeof space->symbols;
    uint32_t w = bg_space_seq_width(&space->space);
    if (!mv->symbols || mv->symbols(im->pi[P_MODEL]->inst, &space->symbols) != BG_PLUGIN_OK ||
        space->symbols.n_symbols < 1 || space->symbols.n_symbols > (1u << w) - 1 ||
        !space->symbols.tokens || !space->symbols.lm.checkpoint)
        return bg__errs_at(errs, sp->model,
                           "spec.model: plugin %s describes a token-sequence space but not its "
                           "symbols (symbols() is NULL, failed, or gave other than 1..%u symbols "
                           "with their tokens and model files)",
                           sp->v.model_plugin, (1u << w) - 1);
    /* The model's paths as its policy wrote them: a relative one is
     * relative to the policy file (as the host's lm_open reads it), and
     * the sampler opens them from the daemon's directory. */
    const char **paths[3] = {&space->symbols.lm.checkpoint, &space->symbols.lm.tokenizer,
                             &space->symbols.lm.adapter};
    const char *file = bg_cfg_file(sp->model), *slash = file ? strrchr(file, '/') : NULL;
    for (int k = 0; k < 3; k++) {
        const char *p = *paths[k];
        if (!p || !*p || p[0] == '/' || !slash)
            continue;
        size_t len = (size_t)(slash - file) + 1 + strlen(p) + 1;
        if (!(im->sym_path[k] = malloc(len)))
            return bg__errs_at(errs, sp->model, "spec.model: out of memory");
        snprintf(im->sym_path[k], len, "%.*s/%s", (int)(slash - file), file, p);
        *paths[k] = im->sym_path[k];
    }
    return BG_OK;
}

static int instantiate(bg_plugin_host *h, bg_policy_set *s, size_t i, bg_policy_errors *errs)
{
    pol_impl *im = &s->impl[i];
    const bg__policy_spec *sp = &im->spec;
    int rc = BG_OK;
    if (create_one(h, im, P_MODEL, BG_PLUGIN_KIND_HYPOTHESIS, sp->v.model_plugin, sp->model,
                   sp->model_cfg, NULL, errs))
        rc = BG_ECONFIG;
    if (create_one(h, im, P_EST, BG_PLUGIN_KIND_ESTIMATOR, sp->v.estimator_plugin, sp->estimator,
                   sp->est_cfg, NULL, errs))
        rc = BG_ECONFIG;
    if (rc)
        return rc;
    const bg_hypothesis_vtbl *mv = im->pi[P_MODEL]->plugin->desc->vt.hypothesis;
    if (check_feature_count(im, mv, errs))
        return BG_ECONFIG;
    uint64_t count = mv->count(im->pi[P_MODEL]->inst);
    if (sp->sampler) {
        bg_space_seq space;
        memset(&space, 0, sizeof space);
        if (!mv->space || mv->space(im->pi[P_MODEL]->inst, &space.space) != BG_PLUGIN_OK)
            return bg__errs_at(errs, sp->sampler,
                               "spec.sampler: model plugin %s does not describe its hypothesis "
                               "space (space() is NULL or failed), so it cannot be sampled",
                               sp->v.model_plugin);
        if (seq_symbols(im, mv, &space, errs))
            return BG_ECONFIG;
        if (create_one(h, im, P_SAMPLER, BG_PLUGIN_KIND_SAMPLER, sp->v.sampler_plugin, sp->sampler,
                       sp->sampler_cfg, &space.space, errs))
            return BG_ECONFIG;
        const bg_plugin_desc *sd = im->pi[P_SAMPLER]->plugin->desc;
        if (space.space.flags && sd->abi_minor < 4)
            return bg__errs_at(errs, sp->sampler,
                               "spec.sampler: sampler %s (ABI %u.%u) reads ids as bit sets; model "
                               "%s's hypotheses are token sequences (ABI 1.4): name a sequence "
                               "sampler such as lm_gfn",
                               sd->name, sd->abi_major, sd->abi_minor, sp->v.model_plugin);
        im->space = space;
        im->host = h;
        bg_err err;
        if (bg_sampled_create(im->pi[P_SAMPLER]->inst, &im->sampled, &err) != BG_OK)
            return bg__errs_at(errs, sp->sampler, "spec.sampler: %s", err.msg);
    } else if (count == 0) {
        return bg__errs_at(errs, sp->model,
                           "spec.model: plugin %s does not enumerate its hypotheses (count() = "
                           "0): add a spec.sampler section",
                           sp->v.model_plugin);
    }
    return BG_OK;
}

static void fill_policy(bg_policy_set *s, size_t i)
{
    pol_impl *im = &s->impl[i];
    const bg__policy_spec *sp = &im->spec;
    bg_policy *p = &s->pols[i];
    memset(p, 0, sizeof *p);
    p->name = sp->name;
    p->file = bg_cfg_file(sp->root);
    p->line = bg_cfg_line(sp->root);
    p->on_error_allow = sp->v.on_error == 1;
    p->session_key = sp->session_key;
    p->session_attr = sp->session_attr;
    p->session_two_level = sp->session_two_level;
    p->session_spec = sp->v.session;
    p->features = (const bg_feature_expr *const *)sp->features;
    p->n_features = sp->n_features;
    p->features_from_request = sp->features_from_request;
    p->priority = (int)sp->v.priority;
    p->outcomes_open = sp->v.outcomes == 1;
    p->escalation_timeout_ms = sp->esc_timeout_ms;
    p->escalation_on_timeout_allow = sp->v.esc_on_timeout == 1;
    p->fleet_max_lag_ms = sp->fleet_max_lag_ms;
    p->fleet_on_stale = sp->v.fleet_on_stale == 0   ? BG_DECISION_DENY
                        : sp->v.fleet_on_stale == 1 ? BG_DECISION_ESCALATE
                                                    : BG_DECISION_ALLOW;
    /* For Status only: on allocation failure the list is just empty. */
    size_t nt = bg_cfg_len(sp->tools);
    const char **tools = nt ? malloc(nt * sizeof *tools) : NULL;
    for (size_t j = 0; tools && j < nt; j++)
        tools[j] = bg_cfg_scalar(bg_cfg_item(sp->tools, j));
    p->tools = tools;
    p->n_tools = tools ? nt : 0;
    bg_guard *g = &p->guard;
    g->name = sp->name;
    g->revision = s->revision;
    const bg_plugin_desc *m = im->pi[P_MODEL]->plugin->desc;
    g->model_key = im->pi[P_MODEL]->key;
    g->model_name = m->name;
    g->model = m->vt.hypothesis;
    g->model_inst = im->pi[P_MODEL]->inst;
    g->estimator_name = im->pi[P_EST]->plugin->desc->name;
    g->estimator = im->pi[P_EST]->plugin->desc->vt.estimator;
    g->estimator_inst = im->pi[P_EST]->inst;
    if (im->pi[P_SAMPLER]) {
        g->sampler_name = im->pi[P_SAMPLER]->plugin->desc->name;
        g->sampler = im->pi[P_SAMPLER]->plugin->desc->vt.sampler;
        g->sampler_inst = im->pi[P_SAMPLER]->inst;
        g->sampler_samples = (uint32_t)sp->v.samples;
        g->sampler_always = sp->v.sampler_always != 0;
        g->sampler_train_steps = (uint32_t)sp->v.sampler_train_steps;
        /* refinement flips id bits: on a token-sequence space a neighbour is
         * another sentence, each scored by the language model, so it is off
         * there unless the policy asks for a budget */
        g->sampler_refine = sp->v.sampler_refine > 0    ? (int32_t)sp->v.sampler_refine
                            : sp->v.sampler_refine == 0 ? -1
                            : im->space.space.flags     ? -1
                                                        : 0;
        /* the posterior search flips id bits too (sampled_archive.c) */
        g->sampler_search = sp->v.sampler_search > 0    ? (int32_t)sp->v.sampler_search
                            : sp->v.sampler_search == 0 ? -1
                            : im->space.space.flags     ? -1
                                                        : 0;
        /* the per-context search flips id bits too (sampled_context.c) */
        g->sampler_contexts = sp->v.sampler_contexts > 0    ? (int32_t)sp->v.sampler_contexts
                              : sp->v.sampler_contexts == 0 ? -1
                              : im->space.space.flags       ? -1
                                                            : 0;
        g->sampler_context_search = sp->v.sampler_context_search > 0
                                        ? (int32_t)sp->v.sampler_context_search
                                    : sp->v.sampler_context_search == 0 ? -1
                                                                        : 0;
        g->sampler_limits = (bg_sampler_limits){
            .enabled = 1,
            .max_tb_residual = sp->v.max_tb_residual,
            .min_ess = sp->v.min_ess,
            .max_version_lag = (uint64_t)sp->v.max_version_lag,
            .on_unhealthy = sp->v.on_unhealthy == 2   ? BG_UNHEALTHY_ESCALATE
                            : sp->v.on_unhealthy == 1 ? BG_UNHEALTHY_DENY
                                                      : BG_UNHEALTHY_UNAVAILABLE};
        g->sampled = im->sampled;
        /* the daemon's way: one sampler per session, trained in the
         * background while the set is kept alive */
        g->train = BG_TRAIN_BACKGROUND;
        g->owner = (bg_guard_owner){.ctx = s, .ref = owner_ref, .unref = owner_unref};
        g->per_session = 1;
        g->session_sampler =
            (bg_sampler_factory){.ctx = im, .create = sampler_new, .destroy = sampler_drop};
    }
    g->threshold = sp->v.threshold;
    g->over_threshold = sp->v.over_threshold == 1 ? BG_DECISION_ESCALATE : BG_DECISION_DENY;
    g->shadow = sp->v.mode == 1;
    bg_err err;
    BG_ASSERT(bg_guard_check(g, &err) == BG_OK, "%s", err.msg);
}

/* Step 7: the built-in default-deny catch-all, unless a policy matches
 * every tool with the pattern "*" (then it answers instead). No model and
 * no engine: rpc answers DENY with harm_bound 1 for it. */
static void fill_catch_all(bg_policy_set *s)
{
    static const char *const star[] = {"*"};
    for (size_t i = 0; i < s->n; i++)
        for (size_t j = 0; j < s->pols[i].n_tools; j++)
            if (strcmp(s->pols[i].tools[j], "*") == 0)
                return;
    bg_policy *p = &s->catch_all;
    memset(p, 0, sizeof *p);
    p->name = BG_POLICY_DEFAULT_DENY;
    p->file = "(built in)";
    p->session_key = BG_SESSION_GLOBAL;
    p->session_spec = "global";
    p->priority = INT32_MIN;
    p->tools = star;
    p->n_tools = 1;
    p->builtin = 1;
    p->guard.name = BG_POLICY_DEFAULT_DENY;
    p->guard.revision = s->revision;
    p->guard.threshold = 0;
    p->guard.over_threshold = BG_DECISION_DENY;
    s->has_catch_all = 1;
}

/* Step 6: matching order, priority descending then definition order
 * (insertion sort: a handful of policies, and stable). */
static void sort_by_priority(bg_policy_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        size_t v = i, k = i;
        while (k > 0 && s->pols[s->by_priority[k - 1]].priority < s->pols[v].priority) {
            s->by_priority[k] = s->by_priority[k - 1];
            k--;
        }
        s->by_priority[k] = v;
    }
}

int bg_policy_set_load(const char *dir_arg, bg_plugin_host *host, bg_policy_set **out,
                       bg_policy_errors *errs)
{
    *out = NULL;
    char dir[4000]; /* without trailing slashes: "dir/a.yaml" in messages */
    snprintf(dir, sizeof dir, "%s", dir_arg);
    for (size_t len = strlen(dir); len > 1 && dir[len - 1] == '/';)
        dir[--len] = '\0';
    char **names = NULL;
    size_t n_files = 0;
    bg_policy_set *s = calloc(1, sizeof *s);
    if (!s) {
        bg__errs_add(errs, "%s: out of memory", dir);
        return BG_ENOMEM;
    }
    atomic_init(&s->refs, 1);
    int rc = bg__policy_list_dir(dir, &names, &n_files, errs);
    if (rc == BG_OK && n_files == 0) {
        bg__errs_add(errs, "%s: no policy files (*.yaml, *.yml) in the directory", dir);
        rc = BG_ECONFIG;
    }
    if (rc == BG_OK)
        rc = parse_files(dir, names, n_files, s, errs);
    if (rc == BG_OK && s->n == 0) {
        bg__errs_add(errs,
                     "%s: no policies in %zu file(s): each document needs apiVersion "
                     "bayesguard/v1 and kind GuardPolicy",
                     dir, n_files);
        rc = BG_ECONFIG;
    }
    if (check_pairs(s, errs))
        rc = BG_ECONFIG;
    for (size_t i = 0; i < s->n; i++) {
        if (!s->impl[i].spec.schema_ok)
            rc = BG_ECONFIG;
        if (s->impl[i].spec.plugins_ok && instantiate(host, s, i, errs))
            rc = BG_ECONFIG;
    }
    for (size_t i = 0; i < n_files; i++)
        free(names[i]);
    free(names);
    if (rc == BG_OK && !(s->by_priority = malloc(s->n * sizeof *s->by_priority)))
        rc = BG_ENOMEM;
    if (rc) {
        set_free(s);
        return rc == BG_ENOMEM ? rc : BG_ECONFIG;
    }
    for (size_t i = 0; i < s->n; i++)
        fill_policy(s, i);
    sort_by_priority(s);
    fill_catch_all(s);
    *out = s;
    return BG_OK;
}
