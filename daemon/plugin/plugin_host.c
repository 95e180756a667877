/*
 * plugin_host.c — dlopen, ABI checks, the registry by name+kind, and the
 * ref-counted bg_plugin (see plugin_host.h for the contract).
 *
 * Why a private copy: dlopen() caches by path (and by inode on some libcs),
 * so a .so replaced on disk would come back as the old code. Every load
 * copies the file into a fresh private temp dir (mkdtemp, 0700, unique per
 * load and process), dlopens the copy and removes copy and dir at once
 * (the mapping stays), so nothing is left in $TMPDIR even after a kill.
 *
 * Lifecycle of one bg_plugin:
 *   load_file  -> refs = 1 (the caller's)          [copy, dlopen, check]
 *   registry   -> +1 while the file is the current one for its name
 *   snapshots  -> +1 per policy set that instantiated it
 *   last unref -> dlclose, free                     (after every set drained)
 * Invariants: (1) a bg_plugin in the registry passed every ABI check;
 * (2) desc is never dereferenced after dlclose (refs > 0 while used);
 * (3) registry names are unique per kind; (4) nothing is loaded from a
 * directory, or file, that anyone but root and the daemon's user can write
 * (bg_trust.h: a rescan of such a directory fails, such a file is a bad
 * entry with the reason) — a writer there could run code in the guard.
 *
 * Threads: create/destroy on one thread; find/rescan/load_file/errors are
 * serialised by h->mu; ref/unref from any thread (atomic).
 */
#include "plugin/plugin_host.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/bg_log.h"
#include "common/bg_trust.h"
#include "plugin/plugin_priv.h"

/* What a writer of the plugin directory or of a plugin could do
 * (bg_trust.h): every reload rescans the directory and loads what is new. */
#define PLUGIN_STAKE "can run code inside the guard at the next reload"

typedef struct bg_plugin_impl {
    bg_plugin pub; /* first: bg_plugin* converts to the impl */
    atomic_long refs;
    void *dl;
    char *path_owned;
    uint64_t identity; /* FNV-1a of the file's bytes */
} bg_plugin_impl;

typedef struct reg_entry {
    bg_plugin *p; /* registry's reference */
    char *file;   /* path in the plugin dir */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    int seen; /* rescan mark */
} reg_entry;

/* A file that failed to load, remembered so an unchanged bad file is not
 * retried (and re-logged) on every rescan. */
typedef struct bad_entry {
    char *file;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    char *msg;
    int seen;
} bad_entry;

struct bg_plugin_host {
    pthread_mutex_t mu;
    char *dir;
    char *tmp_base; /* $TMPDIR or /tmp: where each load's private dir goes */
    reg_entry *reg;
    size_t n_reg;
    bad_entry *bad;
    size_t n_bad;
    char *errors; /* newline-separated */
    bg__metric_table metrics;
};

static const char *kind_name(int kind)
{
    switch (kind) {
#define KIND_CASE(name, value, text)                                                               \
    case value:                                                                                    \
        return text;
        BG_PLUGIN_KINDS(KIND_CASE)
#undef KIND_CASE
    }
    return "unknown";
}

const char *bg_plugin_kind_name(bg_plugin_kind kind)
{
    return kind_name((int)kind);
}

/* --------------------------------------------------------- ref counting */

void bg_plugin_ref(bg_plugin *p)
{
    if (p)
        atomic_fetch_add(&((bg_plugin_impl *)p)->refs, 1);
}

void bg_plugin_unref(bg_plugin *p)
{
    if (!p)
        return;
    bg_plugin_impl *im = (bg_plugin_impl *)p;
    if (atomic_fetch_sub(&im->refs, 1) != 1)
        return;
    if (im->dl)
        dlclose(im->dl);
    free(im->path_owned);
    free(im);
}

uint64_t bg_plugin_identity(const bg_plugin *p)
{
    return ((const bg_plugin_impl *)p)->identity;
}

/* ------------------------------------------------------------ the copy */

static int copy_file(const char *src, const char *dst, uint64_t *hash, bg_err *err)
{
    uint64_t hv = 0xcbf29ce484222325ULL;
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return bg_err_set(err, BG_EIO, "%s: cannot open plugin: %s", src, strerror(errno));
    int outfd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
    if (outfd < 0) {
        int e = errno;
        close(in);
        return bg_err_set(err, BG_EIO, "%s: cannot create private copy %s: %s", src, dst,
                          strerror(e));
    }
    char buf[65536];
    int rc = BG_OK;
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = bg_err_set(err, BG_EIO, "%s: read error: %s", src, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        for (ssize_t i = 0; i < r; i++) {
            hv ^= (unsigned char)buf[i];
            hv *= 0x100000001b3ULL;
        }
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(outfd, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rc = bg_err_set(err, BG_EIO, "%s: write error: %s", dst, strerror(errno));
                break;
            }
            off += w;
        }
        if (rc)
            break;
    }
    close(in);
    if (close(outfd) != 0 && rc == BG_OK)
        rc = bg_err_set(err, BG_EIO, "%s: write error: %s", dst, strerror(errno));
    if (rc)
        unlink(dst);
    *hash = hv;
    return rc;
}

/* ------------------------------------------------------------ ABI check */

/* The vtable entries every plugin of a kind must fill (the others may be
 * NULL: hypothesis space/check_action, sampler save/load). */
typedef struct required_fn {
    int kind;
    const char *name;
    size_t offset;
} required_fn;

#define REQ(k, vt, f)                                                                              \
    {                                                                                              \
        k, #f, offsetof(vt, f)                                                                     \
    }
static const required_fn required_fns[] = {
    REQ(BG_PLUGIN_KIND_HYPOTHESIS, bg_hypothesis_vtbl, create),
    REQ(BG_PLUGIN_KIND_HYPOTHESIS, bg_hypothesis_vtbl, destroy),
    REQ(BG_PLUGIN_KIND_HYPOTHESIS, bg_hypothesis_vtbl, count),
    REQ(BG_PLUGIN_KIND_HYPOTHESIS, bg_hypothesis_vtbl, log_prior),
    REQ(BG_PLUGIN_KIND_HYPOTHESIS, bg_hypothesis_vtbl, log_lik),
    REQ(BG_PLUGIN_KIND_HYPOTHESIS, bg_hypothesis_vtbl, harm),
    REQ(BG_PLUGIN_KIND_HYPOTHESIS, bg_hypothesis_vtbl, label),
    REQ(BG_PLUGIN_KIND_ESTIMATOR, bg_estimator_vtbl, create),
    REQ(BG_PLUGIN_KIND_ESTIMATOR, bg_estimator_vtbl, destroy),
    REQ(BG_PLUGIN_KIND_ESTIMATOR, bg_estimator_vtbl, order_needed),
    REQ(BG_PLUGIN_KIND_ESTIMATOR, bg_estimator_vtbl, estimate),
    REQ(BG_PLUGIN_KIND_SAMPLER, bg_sampler_vtbl, create),
    REQ(BG_PLUGIN_KIND_SAMPLER, bg_sampler_vtbl, destroy),
    REQ(BG_PLUGIN_KIND_SAMPLER, bg_sampler_vtbl, train),
    REQ(BG_PLUGIN_KIND_SAMPLER, bg_sampler_vtbl, sample),
};
#undef REQ

/* Where each kind's vtable keeps its spare slots. */
typedef struct vt_spares {
    int kind;
    size_t offset, n;
} vt_spares;

#define SPARES(k, vt)                                                                              \
    {                                                                                              \
        k, offsetof(vt, spare), sizeof(((vt *)0)->spare) / sizeof(void *)                          \
    }
static const vt_spares vt_spare_slots[] = {
    SPARES(BG_PLUGIN_KIND_HYPOTHESIS, bg_hypothesis_vtbl),
    SPARES(BG_PLUGIN_KIND_ESTIMATOR, bg_estimator_vtbl),
    SPARES(BG_PLUGIN_KIND_SAMPLER, bg_sampler_vtbl),
};
#undef SPARES

/* The first minor of ABI 1 that knows each config-map flag. */
#define MINOR_OPEN_BOUNDS 1u
/* The first minor whose hypothesis vtable has `symbols` (was spare[0]). */
#define MINOR_SEQUENCE_SPACE 4u

static int check_vtable(const char *path, const bg_plugin_desc *d, bg_err *err)
{
    if (d->kind < BG_PLUGIN_KIND_HYPOTHESIS || d->kind > BG_PLUGIN_KIND_SAMPLER)
        return bg_err_set(err, BG_EABI,
                          "%s: plugin %s: unknown kind %u: ABI %d.%d knows "
                          "hypothesis (1), estimator (2) and sampler (3)",
                          path, d->name, d->kind, BG_PLUGIN_ABI_MAJOR, BG_PLUGIN_ABI_MINOR);
    if (!d->vt.any)
        return bg_err_set(err, BG_EABI, "%s: plugin %s (%s): vtable is NULL", path, d->name,
                          kind_name(d->kind));
    for (size_t i = 0; i < sizeof required_fns / sizeof required_fns[0]; i++) {
        const required_fn *r = &required_fns[i];
        void (*fn)(void);
        if (r->kind != (int)d->kind)
            continue;
        memcpy(&fn, (const char *)d->vt.any + r->offset, sizeof fn);
        if (!fn)
            return bg_err_set(err, BG_EABI,
                              "%s: plugin %s (%s): vtable entry '%s' is NULL: every ABI %d.%d "
                              "%s plugin must implement it",
                              path, d->name, kind_name(d->kind), r->name, BG_PLUGIN_ABI_MAJOR,
                              BG_PLUGIN_ABI_MINOR, kind_name(d->kind));
    }
    return BG_OK;
}

/* Spare slots are NULL at the minor the plugin declares (every slot is
 * still spare at 1.1): a non-NULL one would carry a meaning this host does
 * not know, or garbage. */
static int check_spares(const char *path, const bg_plugin_desc *d, bg_err *err)
{
    for (size_t i = 0; i < sizeof d->spare / sizeof d->spare[0]; i++)
        if (d->spare[i])
            return bg_err_set(err, BG_EABI,
                              "%s: plugin %s: desc.spare[%zu] is not NULL: spare slots are "
                              "reserved for later ABI minors and must be left zero in an ABI "
                              "%u.%u plugin",
                              path, d->name, i, d->abi_major, d->abi_minor);
    if (d->kind == BG_PLUGIN_KIND_HYPOTHESIS && d->abi_minor < MINOR_SEQUENCE_SPACE &&
        d->vt.hypothesis->symbols)
        return bg_err_set(err, BG_EABI,
                          "%s: plugin %s (hypothesis): vtable entry 'symbols' (spare[0] before "
                          "ABI 1.%u) is set in an ABI %u.%u plugin: declare minor %u "
                          "(BG_PLUGIN_DESC_HEAD) to use it",
                          path, d->name, MINOR_SEQUENCE_SPACE, d->abi_major, d->abi_minor,
                          MINOR_SEQUENCE_SPACE);
    for (size_t k = 0; k < sizeof vt_spare_slots / sizeof vt_spare_slots[0]; k++) {
        const vt_spares *v = &vt_spare_slots[k];
        if (v->kind != (int)d->kind)
            continue;
        for (size_t i = 0; i < v->n; i++) {
            void *slot;
            memcpy(&slot, (const char *)d->vt.any + v->offset + i * sizeof slot, sizeof slot);
            if (slot)
                return bg_err_set(err, BG_EABI,
                                  "%s: plugin %s (%s): vtable spare[%zu] is not NULL: spare "
                                  "slots are reserved for later ABI minors and must be left "
                                  "zero in an ABI %u.%u plugin",
                                  path, d->name, kind_name(d->kind), i, d->abi_major, d->abi_minor);
        }
    }
    return BG_OK;
}

/* The config map is the plugin's contract with cfg_apply and `check`:
 * refuse at load what would otherwise fail at the first policy. */
static int check_config_entry(const char *path, const bg_plugin_desc *d, size_t i, bg_err *err)
{
    const bg_cfg_entry *e = &d->config_map[i];
    uint32_t t = e->type & BG_CFGV_TYPE_MASK, flags = e->type & ~BG_CFGV_TYPE_MASK;
    if (!e->key || !e->key[0])
        return bg_err_set(err, BG_EABI, "%s: plugin %s: config_map[%zu] has no key", path, d->name,
                          i);
    if (t < BG_CFGV_DOUBLE || t > BG_CFGV_ENUM)
        return bg_err_set(err, BG_EABI,
                          "%s: plugin %s: config key '%s' has unknown type %u: ABI %d.%d knows "
                          "BG_CFGV_DOUBLE (1) .. BG_CFGV_ENUM (6)",
                          path, d->name, e->key, t, BG_PLUGIN_ABI_MAJOR, BG_PLUGIN_ABI_MINOR);
    if (flags & ~(BG_CFGV_MIN_OPEN | BG_CFGV_MAX_OPEN))
        return bg_err_set(err, BG_EABI,
                          "%s: plugin %s: config key '%s' has unknown type flags 0x%x: ABI "
                          "%d.%d knows BG_CFGV_MIN_OPEN and BG_CFGV_MAX_OPEN",
                          path, d->name, e->key, flags, BG_PLUGIN_ABI_MAJOR, BG_PLUGIN_ABI_MINOR);
    if (flags && t != BG_CFGV_DOUBLE && t != BG_CFGV_INT && t != BG_CFGV_DOUBLES)
        return bg_err_set(err, BG_EABI,
                          "%s: plugin %s: config key '%s': open-bound flags apply to DOUBLE, "
                          "INT and DOUBLES only",
                          path, d->name, e->key);
    if (flags && d->abi_minor < MINOR_OPEN_BOUNDS)
        return bg_err_set(err, BG_EABI,
                          "%s: plugin %s: config key '%s' uses BG_CFGV_MIN_OPEN/MAX_OPEN (ABI "
                          "%d.%u) but the plugin declares ABI %u.%u: declare %d.%u or later "
                          "(BG_PLUGIN_DESC_HEAD)",
                          path, d->name, e->key, BG_PLUGIN_ABI_MAJOR, MINOR_OPEN_BOUNDS,
                          d->abi_major, d->abi_minor, BG_PLUGIN_ABI_MAJOR, MINOR_OPEN_BOUNDS);
    if ((t == BG_CFGV_STRING || t == BG_CFGV_DOUBLES) && e->size == 0)
        return bg_err_set(err, BG_EABI, "%s: plugin %s: config key '%s': size is 0: set the %s",
                          path, d->name, e->key,
                          t == BG_CFGV_STRING ? "buffer's bytes" : "most elements");
    if (t == BG_CFGV_ENUM && (!e->choices || !e->choices[0]))
        return bg_err_set(err, BG_EABI,
                          "%s: plugin %s: config key '%s' is an ENUM without choices (\"a|b\")",
                          path, d->name, e->key);
    return BG_OK;
}

static int check_desc(const char *path, const bg_plugin_desc *d, bg_err *err)
{
    if (!d)
        return bg_err_set(err, BG_EABI, "%s: %s() returned NULL: not a usable plugin", path,
                          BG_PLUGIN_ENTRY_SYMBOL);
    if (d->abi_major != BG_PLUGIN_ABI_MAJOR)
        return bg_err_set(err, BG_EABI,
                          "%s: plugin ABI %u.%u is not supported by this bayesguard (ABI %d.%d): "
                          "rebuild the plugin against include/bayesguard/plugin.h %d.x",
                          path, d->abi_major, d->abi_minor, BG_PLUGIN_ABI_MAJOR,
                          BG_PLUGIN_ABI_MINOR, BG_PLUGIN_ABI_MAJOR);
    /* The declared minor is the oldest host the plugin needs: a newer one
     * may rely on services, flags or slots this host lacks. */
    if (d->abi_minor > BG_PLUGIN_ABI_MINOR)
        return bg_err_set(err, BG_EABI,
                          "%s: plugin ABI %u.%u is newer than this bayesguard (ABI %d.%d): "
                          "upgrade bayesguard, or if the plugin uses nothing newer than %d.%d, "
                          "declare it with BG_PLUGIN_DESC_HEAD_MINOR(%d) (or rebuild it against "
                          "include/bayesguard/plugin.h %d.%d)",
                          path, d->abi_major, d->abi_minor, BG_PLUGIN_ABI_MAJOR,
                          BG_PLUGIN_ABI_MINOR, BG_PLUGIN_ABI_MAJOR, BG_PLUGIN_ABI_MINOR,
                          BG_PLUGIN_ABI_MINOR, BG_PLUGIN_ABI_MAJOR, BG_PLUGIN_ABI_MINOR);
    /* Every 1.x minor so far (1.0, 1.1) has the full 1.0 descriptor. */
    if (d->desc_size < sizeof(bg_plugin_desc))
        return bg_err_set(err, BG_EABI,
                          "%s: plugin ABI %u.%u descriptor is %zu bytes, this bayesguard (ABI "
                          "%d.%d) needs at least %zu: rebuild the plugin against "
                          "include/bayesguard/plugin.h %d.%d",
                          path, d->abi_major, d->abi_minor, d->desc_size, BG_PLUGIN_ABI_MAJOR,
                          BG_PLUGIN_ABI_MINOR, sizeof(bg_plugin_desc), BG_PLUGIN_ABI_MAJOR,
                          BG_PLUGIN_ABI_MINOR);
    if (!d->name || !d->name[0])
        return bg_err_set(err, BG_EABI, "%s: plugin has no name: set desc.name", path);
    if (!d->version)
        return bg_err_set(err, BG_EABI, "%s: plugin %s has no version: set desc.version", path,
                          d->name);
    if (d->config_map_len && !d->config_map)
        return bg_err_set(err, BG_EABI,
                          "%s: plugin %s: config_map_len %zu with a NULL "
                          "config_map",
                          path, d->name, d->config_map_len);
    int rc = check_vtable(path, d, err);
    for (size_t i = 0; rc == BG_OK && i < d->config_map_len; i++)
        rc = check_config_entry(path, d, i, err);
    return rc ? rc : check_spares(path, d, err);
}

/* --------------------------------------------------------------- loading */

/* dlopen a private copy of path: a fresh 0700 dir per load (mkdtemp, so
 * the name is unique and nobody else can swap the file), the copy inside,
 * dlopen, then unlink and rmdir at once — the mapping stays, and nothing is
 * left behind even if the process is killed later. */
static void *open_private_copy(bg_plugin_host *h, const char *path, uint64_t *identity, bg_err *err)
{
    static const char six_x[] = {'X', 'X', 'X', 'X', 'X', 'X', '\0'}; /* mkdtemp template */
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char dir[4096], copy[4400];
    snprintf(dir, sizeof dir, "%.3000s/bayesguard-plugin-%s", h->tmp_base, six_x);
    if (!mkdtemp(dir)) {
        bg_err_set(err, BG_EIO, "%s: cannot create a private dir in %s: %s", path, h->tmp_base,
                   strerror(errno));
        return NULL;
    }
    snprintf(copy, sizeof copy, "%s/%.255s", dir, base);
    void *dl = NULL;
    if (copy_file(path, copy, identity, err) == BG_OK) {
        dl = dlopen(copy, RTLD_NOW | RTLD_LOCAL);
        if (!dl) {
            const char *why = dlerror();
            bg_err_set(err, BG_EABI, "%s: cannot load plugin: %s", path, why ? why : "?");
        }
        unlink(copy);
    }
    rmdir(dir);
    return dl;
}

static int load_locked(bg_plugin_host *h, const char *path, bg_plugin **out, bg_err *err)
{
    *out = NULL;
    uint64_t identity = 0;
    void *dl = open_private_copy(h, path, &identity, err);
    if (!dl)
        return err ? err->code : BG_EABI;
    int rc;
    bg_plugin_entry_fn entry;
    void *sym = dlsym(dl, BG_PLUGIN_ENTRY_SYMBOL);
    memcpy(&entry, &sym, sizeof entry);
    if (!sym) {
        dlclose(dl);
        return bg_err_set(err, BG_EABI,
                          "%s: no symbol %s: not a bayesguard plugin (export "
                          "`const bg_plugin_desc *bg_plugin_entry(void)` with BG_PLUGIN_EXPORT)",
                          path, BG_PLUGIN_ENTRY_SYMBOL);
    }
    const bg_plugin_desc *d = entry();
    rc = check_desc(path, d, err);
    if (rc) {
        dlclose(dl);
        return rc;
    }
    bg_plugin_impl *im = calloc(1, sizeof *im);
    if (!im || !(im->path_owned = strdup(path))) {
        free(im);
        dlclose(dl);
        return bg_err_set(err, BG_ENOMEM, "%s: out of memory", path);
    }
    atomic_init(&im->refs, 1);
    im->dl = dl;
    im->identity = identity;
    im->pub.desc = d;
    im->pub.path = im->path_owned;
    *out = &im->pub;
    return BG_OK;
}

int bg_plugin_host_load_file(bg_plugin_host *h, const char *path, bg_plugin **out, bg_err *err)
{
    pthread_mutex_lock(&h->mu);
    int rc = load_locked(h, path, out, err);
    pthread_mutex_unlock(&h->mu);
    return rc;
}

/* -------------------------------------------------------------- registry */

static int same_identity(const struct stat *st, dev_t dev, ino_t ino, off_t size,
                         struct timespec mtime)
{
    return st->st_dev == dev && st->st_ino == ino && st->st_size == size &&
           st->st_mtim.tv_sec == mtime.tv_sec && st->st_mtim.tv_nsec == mtime.tv_nsec;
}

static int errors_append(bg_plugin_host *h, const char *msg)
{
    size_t old = h->errors ? strlen(h->errors) : 0;
    char *e = realloc(h->errors, old + strlen(msg) + 2);
    if (!e)
        return BG_ENOMEM;
    if (old)
        e[old++] = '\n';
    strcpy(e + old, msg);
    h->errors = e;
    return BG_OK;
}

static void reg_remove(bg_plugin_host *h, size_t i)
{
    bg_plugin_unref(h->reg[i].p);
    free(h->reg[i].file);
    h->reg[i] = h->reg[--h->n_reg];
}

static void bad_remove(bg_plugin_host *h, size_t i)
{
    free(h->bad[i].file);
    free(h->bad[i].msg);
    h->bad[i] = h->bad[--h->n_bad];
}

static int bad_add(bg_plugin_host *h, const char *file, const struct stat *st, const char *msg)
{
    bad_entry *b = realloc(h->bad, (h->n_bad + 1) * sizeof *b);
    if (!b)
        return BG_ENOMEM;
    h->bad = b;
    bad_entry *e = &h->bad[h->n_bad];
    memset(e, 0, sizeof *e);
    e->file = strdup(file);
    e->msg = strdup(msg);
    if (!e->file || !e->msg) {
        free(e->file);
        free(e->msg);
        return BG_ENOMEM;
    }
    e->dev = st->st_dev;
    e->ino = st->st_ino;
    e->size = st->st_size;
    e->mtime = st->st_mtim;
    e->seen = 1;
    h->n_bad++;
    return BG_OK;
}

/* The registry entry for (name, kind) other than index `skip`. */
static reg_entry *reg_find(bg_plugin_host *h, const char *name, int kind, size_t skip)
{
    for (size_t i = 0; i < h->n_reg; i++)
        if (i != skip && (int)h->reg[i].p->desc->kind == kind &&
            strcmp(h->reg[i].p->desc->name, name) == 0)
            return &h->reg[i];
    return NULL;
}

static int reg_add(bg_plugin_host *h, const char *file, const struct stat *st, bg_plugin *p,
                   bg_err *err)
{
    reg_entry *dup = reg_find(h, p->desc->name, (int)p->desc->kind, (size_t)-1);
    if (dup)
        return bg_err_set(err, BG_EINVAL,
                          "%s: plugin name '%s' (%s) is already provided by %s: rename one", file,
                          p->desc->name, kind_name(p->desc->kind), dup->file);
    reg_entry *r = realloc(h->reg, (h->n_reg + 1) * sizeof *r);
    if (!r)
        return bg_err_set(err, BG_ENOMEM, "%s: out of memory", file);
    h->reg = r;
    reg_entry *e = &h->reg[h->n_reg];
    memset(e, 0, sizeof *e);
    if (!(e->file = strdup(file)))
        return bg_err_set(err, BG_ENOMEM, "%s: out of memory", file);
    e->p = p;
    e->dev = st->st_dev;
    e->ino = st->st_ino;
    e->size = st->st_size;
    e->mtime = st->st_mtim;
    e->seen = 1;
    h->n_reg++;
    return BG_OK;
}

static int has_so_suffix(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && n > 3 && strcmp(name + n - 3, ".so") == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted list of *.so names in dir (deterministic load order). */
static int list_so(const char *dir, char ***names, size_t *n, bg_err *err)
{
    *names = NULL;
    *n = 0;
    DIR *dp = opendir(dir);
    if (!dp)
        return bg_err_set(err, BG_EIO, "plugin dir %s: cannot open: %s", dir, strerror(errno));
    struct dirent *de;
    int rc = BG_OK;
    while ((de = readdir(dp))) {
        if (!has_so_suffix(de->d_name))
            continue;
        char **nn = realloc(*names, (*n + 1) * sizeof *nn);
        if (!nn || !(nn[*n] = strdup(de->d_name))) {
            if (nn)
                *names = nn;
            rc = bg_err_set(err, BG_ENOMEM, "plugin dir %s: out of memory", dir);
            break;
        }
        *names = nn;
        (*n)++;
    }
    closedir(dp);
    if (*n)
        qsort(*names, *n, sizeof **names, cmp_str);
    return rc;
}

/* Try one file of the directory: unchanged -> keep; changed/new -> load. */
static void scan_one(bg_plugin_host *h, const char *file)
{
    struct stat st;
    if (stat(file, &st) != 0 || !S_ISREG(st.st_mode))
        return;
    for (size_t i = 0; i < h->n_reg; i++) {
        reg_entry *e = &h->reg[i];
        if (strcmp(e->file, file) != 0)
            continue;
        if (same_identity(&st, e->dev, e->ino, e->size, e->mtime)) {
            e->seen = 1;
            return;
        }
        reg_remove(h, i); /* replaced: snapshots keep their references */
        break;
    }
    for (size_t i = 0; i < h->n_bad; i++) {
        bad_entry *b = &h->bad[i];
        if (strcmp(b->file, file) != 0)
            continue;
        if (same_identity(&st, b->dev, b->ino, b->size, b->mtime)) {
            b->seen = 1;
            errors_append(h, b->msg);
            return;
        }
        bad_remove(h, i);
        break;
    }
    bg_err err;
    bg_err_clear(&err);
    bg_plugin *p = NULL;
    char why[1024];
    int rc;
    if (!bg_file_trusted_in(h->dir, file, "plugin", PLUGIN_STAKE, why, sizeof why))
        rc = bg_err_set(&err, BG_EINVAL, "%s", why);
    else
        rc = load_locked(h, file, &p, &err);
    if (rc == BG_OK) {
        rc = reg_add(h, file, &st, p, &err);
        if (rc == BG_OK) {
            BG_INFO("plugin", "loaded %s %s %s from %s", kind_name(p->desc->kind), p->desc->name,
                    p->desc->version, file);
            return;
        }
        bg_plugin_unref(p);
    }
    BG_ERROR("plugin", "%s", err.msg);
    errors_append(h, err.msg);
    bad_add(h, file, &st, err.msg);
}

static int rescan_locked(bg_plugin_host *h, bg_err *err)
{
    char **names = NULL;
    size_t n = 0;
    char why[1024];
    if (!bg_path_trusted(h->dir, "plugin directory", PLUGIN_STAKE, why, sizeof why))
        return bg_err_set(err, BG_EINVAL, "%s", why);
    int rc = list_so(h->dir, &names, &n, err);
    if (rc)
        goto out;
    free(h->errors);
    h->errors = NULL;
    for (size_t i = 0; i < h->n_reg; i++)
        h->reg[i].seen = 0;
    for (size_t i = 0; i < h->n_bad; i++)
        h->bad[i].seen = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        int len = snprintf(path, sizeof path, "%s/%s", h->dir, names[i]);
        if (len > 0 && (size_t)len < sizeof path)
            scan_one(h, path);
    }
    for (size_t i = h->n_reg; i-- > 0;)
        if (!h->reg[i].seen)
            reg_remove(h, i);
    for (size_t i = h->n_bad; i-- > 0;)
        if (!h->bad[i].seen)
            bad_remove(h, i);
out:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

int bg_plugin_host_rescan(bg_plugin_host *h, bg_err *err)
{
    pthread_mutex_lock(&h->mu);
    int rc = rescan_locked(h, err);
    pthread_mutex_unlock(&h->mu);
    return rc;
}

int bg_plugin_host_create(const char *dir, bg_plugin_host **out, bg_err *err)
{
    *out = NULL;
    struct stat st;
    if (!dir || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return bg_err_set(err, BG_EINVAL, "plugin dir %s: not a directory: pass --plugins DIR",
                          dir ? dir : "(null)");
    bg_plugin_host *h = calloc(1, sizeof *h);
    if (!h)
        return bg_err_set(err, BG_ENOMEM, "plugin host: out of memory");
    pthread_mutex_init(&h->mu, NULL);
    bg__metric_table_init(&h->metrics);
    const char *tmp = getenv("TMPDIR");
    h->dir = strdup(dir);
    h->tmp_base = strdup(tmp && *tmp ? tmp : "/tmp");
    if (!h->dir || !h->tmp_base) {
        bg_plugin_host_destroy(h);
        return bg_err_set(err, BG_ENOMEM, "plugin host: out of memory");
    }
    int rc = bg_plugin_host_rescan(h, err);
    if (rc) {
        bg_plugin_host_destroy(h);
        return rc;
    }
    *out = h;
    return BG_OK;
}

void bg_plugin_host_destroy(bg_plugin_host *h)
{
    if (!h)
        return;
    while (h->n_reg)
        reg_remove(h, h->n_reg - 1);
    while (h->n_bad)
        bad_remove(h, h->n_bad - 1);
    free(h->reg);
    free(h->bad);
    free(h->tmp_base);
    free(h->dir);
    free(h->errors);
    bg__metric_table_close(&h->metrics);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

int bg_plugin_host_find(bg_plugin_host *h, const char *name, bg_plugin_kind kind, bg_plugin **out,
                        bg_err *err)
{
    *out = NULL;
    pthread_mutex_lock(&h->mu);
    reg_entry *e = reg_find(h, name, (int)kind, (size_t)-1);
    if (e) {
        bg_plugin_ref(e->p);
        *out = e->p;
        pthread_mutex_unlock(&h->mu);
        return BG_OK;
    }
    char avail[768] = "";
    size_t used = 0;
    for (size_t i = 0; i < h->n_reg; i++) {
        if (h->reg[i].p->desc->kind != kind)
            continue;
        int n = snprintf(avail + used, sizeof avail - used, "%s%s", used ? ", " : "",
                         h->reg[i].p->desc->name);
        if (n < 0 || (size_t)n >= sizeof avail - used)
            break;
        used += (size_t)n;
    }
    pthread_mutex_unlock(&h->mu);
    return bg_err_set(err, BG_ENOTFOUND, "no %s plugin named '%s' in %s; available: %s",
                      kind_name(kind), name, h->dir, used ? avail : "(none)");
}

const char *bg_plugin_host_errors(bg_plugin_host *h)
{
    pthread_mutex_lock(&h->mu);
    const char *e = h->errors ? h->errors : "";
    pthread_mutex_unlock(&h->mu);
    return e;
}

size_t bg_plugin_host_errors_copy(bg_plugin_host *h, char *buf, size_t len)
{
    pthread_mutex_lock(&h->mu);
    const char *e = h->errors ? h->errors : "";
    size_t n = strlen(e);
    if (len)
        snprintf(buf, len, "%s", e);
    pthread_mutex_unlock(&h->mu);
    return n;
}

static int cmp_reg_file(const void *a, const void *b)
{
    return strcmp((*(reg_entry *const *)a)->file, (*(reg_entry *const *)b)->file);
}

int bg_plugin_host_each(bg_plugin_host *h, bg_plugin_each_cb cb, void *ctx)
{
    pthread_mutex_lock(&h->mu);
    reg_entry **v = malloc((h->n_reg ? h->n_reg : 1) * sizeof *v);
    if (!v) {
        pthread_mutex_unlock(&h->mu);
        return BG_ENOMEM;
    }
    for (size_t i = 0; i < h->n_reg; i++)
        v[i] = &h->reg[i];
    qsort(v, h->n_reg, sizeof *v, cmp_reg_file);
    for (size_t i = 0; i < h->n_reg; i++)
        cb(ctx, v[i]->p);
    pthread_mutex_unlock(&h->mu);
    free(v);
    return BG_OK;
}

const char *bg_plugin_host_dir(const bg_plugin_host *h)
{
    return h->dir;
}

bg__metric_table *bg__plugin_host_metrics(bg_plugin_host *h)
{
    return &h->metrics;
}

void bg_plugin_host_metrics(bg_plugin_host *h, bg_plugin_metric_cb cb, void *ctx)
{
    bg__metric_table_each(&h->metrics, cb, ctx);
}
