/*
 * bayesguard/plugin.h — the plugin ABI. The one header a plugin includes.
 * docs/PLUGINS.md shows how to write, build, load and test a plugin.
 *
 * A plugin is a shared object that exports one symbol,
 *
 *     const bg_plugin_desc *bg_plugin_entry(void);
 *
 * returning a static descriptor. The host scans its plugin directory
 * (--plugins DIR) and dlopens every `*.so` in it, whatever the file is
 * called; a plugin is known by its descriptor's `name` (what a policy
 * names in `plugin:`), never by its file name. The host
 * (daemon/plugin/plugin_host.c) checks, in this order and before touching
 * anything else: `abi_major` equal to the host's, `abi_minor` not newer
 * than the host's, and `desc_size` at least the size of the descriptor the
 * plugin claims to implement (a short struct is refused); then name and
 * version set, kind known, the required vtable entries set, the config
 * map well-formed, and every spare slot NULL. A refusal names the plugin file and what to fix and
 * never stops the other plugins from loading. Two plugins of one kind with
 * one name: the first by file name loads, the second is refused.
 * `bayesguard check` lists every refusal and exits 1.
 *
 * Versioning rule (Varnish's): adding a field at the end of a struct, a new
 * function pointer in a spare slot, a new kind or a new flag -> minor;
 * changing or removing anything -> major. Layout before the vtable pointer
 * is frozen forever. tests/plugin/test_plugin_abi.c checks that the
 * constants below match the newest history entry, and the layout.
 *
 * ABI history (newest first; the constants must match the first line):
 *   2026-12-06  1.4  token-sequence spaces: bg_space.flags takes
 *                    BG_SPACE_SEQUENCE with a symbol width and a maximum
 *                    length (bg_space_sequence, bg_seq_* helpers); a
 *                    hypothesis model describes its symbols with
 *                    bg_hypothesis_vtbl.symbols (what was spare[0]) and a
 *                    sampler's create gets them (bg_space_symbols_of). No
 *                    layout change: 7 hypothesis spares remain.
 *   2026-12-06  1.3  host language-model service: bg_host.lm_open,
 *                    lm_close, lm_info, lm_encode, lm_score, lm_next in
 *                    what were spare[0..5] (bg_lm_spec, bg_lm_info,
 *                    bg_lm_item). No layout change: 10 spares remain.
 *   2026-12-06  1.2  a sampler's reward has a version: called with h ==
 *                    NULL and n == 0, a host's bg_log_reward_fn writes
 *                    the version of the data it is bound to into out[0]
 *                    (bg_reward_version, BG_REWARD_UNVERSIONED). No
 *                    layout change.
 *   2026-12-06  1.1  bg_cfg_entry.type takes BG_CFGV_MIN_OPEN and
 *                    BG_CFGV_MAX_OPEN (open range bounds such as (0, 1]);
 *                    BG_PLUGIN_DESC_HEAD_MINOR(m); BG_PLUGIN_LABEL_MIN
 *                    and BG_PLUGIN_MESSAGE_MIN name the buffer sizes
 *                    hosts already passed. Clarified, no layout change:
 *                    `kind` and bg_cfg_entry.type are uint32_t (they were
 *                    enums, 4 bytes on every ABI bayesguard builds for,
 *                    so a 1.0 binary has the same layout).
 *   2026-11-26  1.0  first version: hypothesis, estimator and sampler kinds,
 *                    host services (log, config, rng, metrics);
 *                    bg_estimate_in.post (linear posterior) appended the
 *                    same day, before any release.
 *
 * Compatibility, in both directions:
 *   - `abi_minor` in the descriptor is the oldest host minor the plugin
 *     needs, not the header it was compiled with. A host refuses a plugin
 *     whose minor is newer than its own (it cannot tell which newer
 *     features the plugin relies on). BG_PLUGIN_DESC_HEAD declares this
 *     header's minor; a plugin that uses nothing newer than minor m (no
 *     newer service, flag or vtable entry) and must also load on older
 *     hosts declares BG_PLUGIN_DESC_HEAD_MINOR(m) instead. The host
 *     refuses a plugin that declares m but uses a feature of a later minor
 *     it can see (today: the config-map open-bound flags need 1.1).
 *   - A host serves every plugin of its major with an older or equal minor.
 *   - A host service added in minor N sits in a slot of bg_host that was a
 *     spare before N. A plugin that declared an older minor tests
 *     `host->abi_minor >= N` before calling it (an older host leaves the
 *     slot NULL). `host->size` is sizeof(bg_host) of the host: it only
 *     grows when the spares are used up and a field is appended; such a
 *     field exists iff host->size > its offsetof.
 *   - Spare slots (bg_host.spare, bg_plugin_desc.spare, each vtable's
 *     spare) are NULL: the host leaves its own NULL, and refuses a plugin
 *     whose descriptor or vtable has a non-NULL slot that is still spare
 *     at the minor it declares (it would be relying on a meaning this
 *     host does not know). Static descriptors and vtables are
 *     zero-initialised, so leaving them out is enough.
 *   - Every field of a fixed layout has a fixed width: there is no enum
 *     inside a struct (an enum's width is the compiler's choice, e.g.
 *     -fshort-enums); the enums below name values only.
 *
 * Hypotheses are named by 64-bit ids. An enumerable model (count() > 0)
 * uses ids 0..count-1; a model too large to enumerate (count() == 0)
 * encodes a hypothesis in the id itself (for example a bit string of up to
 * 64 features) and describes that encoding with `space()` so a sampler can
 * build ids step by step. All model functions are batched over arrays of
 * ids so they vectorise.
 *
 * Vtable entries marked "required" must be non-NULL: the host refuses the
 * plugin, naming the entry. "Optional" entries may be NULL.
 *
 * Threads: create/destroy are called on one thread; every other function of
 * a created instance may be called from several threads at once and must not
 * mutate the instance (instances are immutable after create), except the
 * sampler's train/load which the host serialises against sample/save.
 *
 * Ownership: every pointer passed to a plugin is borrowed for the duration
 * of the call unless stated otherwise. Config nodes are valid until the
 * instance's create returns. Plugins allocate with malloc and free their own
 * memory in destroy.
 *
 * Errors: functions return BG_PLUGIN_OK (0) or a negative BG_PLUGIN_E*.
 * Config errors are reported with host->cfg_error(), which records the file,
 * line and column of the offending node; runtime errors with
 * host->log(BG_PLUGIN_LOG_ERROR, ...).
 *
 * Building: a plugin includes only this header and links against nothing
 * of the daemon (every host function comes through bg_host), so
 *   cc -std=c11 -O2 -shared -fPIC -fvisibility=hidden -I include \
 *      -o my_model.so my_model.c -Wl,-z,defs -lm
 * must succeed; -Wl,-z,defs turns an undefined symbol into a link error
 * instead of a load failure, -fvisibility=hidden leaves bg_plugin_entry
 * (BG_PLUGIN_EXPORT) the only exported symbol.
 */
#ifndef BAYESGUARD_PLUGIN_H
#define BAYESGUARD_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BG_PLUGIN_ABI_MAJOR 1
#define BG_PLUGIN_ABI_MINOR 4
#define BG_PLUGIN_ABI_DATE "2026-12-06"

/* The symbol the host looks up. */
#define BG_PLUGIN_ENTRY_SYMBOL "bg_plugin_entry"

/* Build signature: compiler and ABI date, compared for information only. */
#define BG_PLUGIN_BUILD_SIGNATURE "bayesguard-abi-1 " BG_PLUGIN_ABI_DATE " cc-" __VERSION__

#if defined(__GNUC__)
#define BG_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define BG_PLUGIN_EXPORT
#endif

/* Status codes (a subset of the daemon's, same numbers). */
#define BG_PLUGIN_OK 0
#define BG_PLUGIN_EINVAL (-1)
#define BG_PLUGIN_ENOMEM (-2)
#define BG_PLUGIN_ENOTFOUND (-3)
#define BG_PLUGIN_EIO (-4)
#define BG_PLUGIN_ELIMIT (-6)
#define BG_PLUGIN_EINTERNAL (-8)
#define BG_PLUGIN_ECONFIG (-9)
#define BG_PLUGIN_EUNSUPPORTED (-10)

/* X(name, value, text) — the plugin kinds: the values of desc.kind. */
#define BG_PLUGIN_KINDS(X)                                                                         \
    X(BG_PLUGIN_KIND_HYPOTHESIS, 1, "hypothesis")                                                  \
    X(BG_PLUGIN_KIND_ESTIMATOR, 2, "estimator")                                                    \
    X(BG_PLUGIN_KIND_SAMPLER, 3, "sampler")

typedef enum bg_plugin_kind {
#define BG_PLUGIN_KIND_ENUM(name, value, text) name = value,
    BG_PLUGIN_KINDS(BG_PLUGIN_KIND_ENUM)
#undef BG_PLUGIN_KIND_ENUM
} bg_plugin_kind;

/* ------------------------------------------------------------------------
 * Data the host passes to plugins
 * ------------------------------------------------------------------------ */

/* One key/value of an action's attributes map. */
typedef struct bg_attr {
    const char *key;
    const char *value;
} bg_attr;

/* A proposed action (OpenAI tool-call shape plus numeric features). */
typedef struct bg_action {
    const char *id;             /* tool-call id, may be "" */
    const char *tool;           /* tool name, never NULL */
    const char *arguments_json; /* raw JSON text, may be "" */
    const double *features;     /* n_features finite values */
    size_t n_features;
    const bg_attr *attributes;
    size_t n_attributes;
} bg_action;

/* An observed outcome of an action: what the posterior is made of. */
typedef struct bg_observation {
    bg_action action;
    int harmed;    /* 1 when harm was observed, 0 when not */
    int has_value; /* 1 when `value` carries a measured outcome */
    double value;  /* e.g. the bandit's reward */
} bg_observation;

/* ------------------------------------------------------------------------
 * Host services
 * ------------------------------------------------------------------------ */

typedef struct bg_cfg_node bg_cfg_node; /* opaque: a node of the policy YAML */

typedef enum bg_cfg_type {
    BG_CFG_NULL = 0,
    BG_CFG_SCALAR = 1,
    BG_CFG_SEQ = 2,
    BG_CFG_MAP = 3,
} bg_cfg_type;

#define BG_PLUGIN_LOG_DEBUG 0
#define BG_PLUGIN_LOG_INFO 1
#define BG_PLUGIN_LOG_WARN 2
#define BG_PLUGIN_LOG_ERROR 3

/* Typed config map (Fluent Bit style): a table of the keys a plugin accepts.
 * host->cfg_apply() fills a plugin struct from a map node: unknown keys are
 * rejected with the list of allowed ones, missing keys take the default
 * (parsed like YAML text, and checked like a value), values are type- and
 * range-checked, and every error carries the node's file:line:column.
 * The host checks the table when it loads the plugin (known types, flags
 * only where they apply, a key and its buffer for each entry) and
 * `bayesguard check` prints it: key, type, default, range and desc. */
typedef enum bg_cfg_vtype {
    BG_CFGV_DOUBLE = 1,  /* double at offset; min/max checked */
    BG_CFGV_INT = 2,     /* int64_t at offset; min/max checked */
    BG_CFGV_BOOL = 3,    /* int at offset: true/false */
    BG_CFGV_STRING = 4,  /* char[size] at offset; longer is an error */
    BG_CFGV_DOUBLES = 5, /* double[size] at offset, count (size_t) at count_offset */
    BG_CFGV_ENUM = 6,    /* int at offset: index into choices ("a|b|c") */
} bg_cfg_vtype;

/* Flags or-ed into bg_cfg_entry.type (ABI 1.1) for DOUBLE, INT and DOUBLES:
 * the bound is open (excluded), so {.type = BG_CFGV_DOUBLE |
 * BG_CFGV_MIN_OPEN, .min = 0, .max = 1} accepts (0, 1] and an error prints
 * "out of range (0, 1]". Without a flag a bound is closed (included). */
#define BG_CFGV_MIN_OPEN 0x100u
#define BG_CFGV_MAX_OPEN 0x200u
#define BG_CFGV_TYPE_MASK 0xffu /* type & mask = the bg_cfg_vtype */

typedef struct bg_cfg_entry {
    const char *key;
    uint32_t type;       /* a bg_cfg_vtype, | BG_CFGV_MIN_OPEN/MAX_OPEN */
    const char *def;     /* default as text; NULL = required */
    size_t offset;       /* offsetof(target struct, field) */
    size_t size;         /* STRING: buffer bytes; DOUBLES: max elements */
    size_t count_offset; /* DOUBLES: offsetof the size_t count */
    double min, max;     /* DOUBLE/INT/DOUBLES range, closed unless flagged
                          * open; min > max = unchecked */
    const char *choices; /* ENUM: "a|b|c" */
    const char *desc;    /* one line, printed by `bayesguard check` */
} bg_cfg_entry;

typedef struct bg_host bg_host;

/* ABI 1.3: a language model the host loads for a plugin (host->lm_open).
 * Opaque; shared between instances that name the same files. */
typedef struct bg_lm bg_lm;

/* What to load, as a policy configures it. Strings borrowed for the call. */
typedef struct bg_lm_spec {
    uint32_t size;          /* sizeof(bg_lm_spec) as the plugin was built */
    uint32_t flags;         /* reserved, 0 */
    const char *checkpoint; /* llama2.c checkpoint file, required */
    const char *tokenizer;  /* llama2.c tokenizer.bin for the model's vocab, required */
    const char *backend;    /* "cpu" | "vulkan" | "auto" (NULL = "auto": a Vulkan GPU when
                             * one is present, else the CPU) */
    const char *adapter;    /* LoRA adapter file (bg_nn_lora_save), NULL or "" = none */
} bg_lm_spec;

typedef struct bg_lm_info {
    int32_t vocab_size;
    int32_t seq_len; /* the longest prefix + continuation */
    int32_t bos;     /* the BOS id (1 for llama2.c vocabularies) */
    int32_t reserved;
    const char *backend; /* "cpu (2 threads, ...)", "vulkan: ..." valid while open */
} bg_lm_info;

/* One sequence to score: log p(cont | prefix). Borrowed for the call. */
typedef struct bg_lm_item {
    const int32_t *prefix; /* n_prefix >= 1 ids (start with bos for a fresh context) */
    size_t n_prefix;
    const int32_t *cont; /* n_cont >= 1 ids */
    size_t n_cont;
} bg_lm_item;

/* A small seeded generator (xoshiro256**), state owned by the caller. */
typedef struct bg_rng {
    uint64_t s[4];
} bg_rng;

/* The generator itself, inline so a plugin, the host and the engines that
 * are compiled into plugins share one implementation (source helpers, not
 * ABI): xoshiro256** (Blackman & Vigna) seeded through splitmix64, so any
 * 64-bit seed (0 included) gives a good state. */
static inline uint64_t bg__rng_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline void bg_rng_init(bg_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = bg__rng_splitmix64(&seed);
}

static inline uint64_t bg_rng_next(bg_rng *r)
{
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5;
    uint64_t result = ((x << 7) | (x >> 57)) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

/* Uniform in [0, 1) from the top 53 bits. */
static inline double bg_rng_next_uniform(bg_rng *r)
{
    return (double)(bg_rng_next(r) >> 11) * 0x1.0p-53;
}

struct bg_host {
    uint32_t abi_major; /* the host's ABI */
    uint32_t abi_minor;
    size_t size;    /* sizeof(bg_host) of the host */
    void *host_ctx; /* opaque, pass back to every service */

    /* Logging: one line, prefixed with the plugin's name by the host. */
    void (*log)(void *host_ctx, int level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

    /* Config access (read only). Missing key -> NULL. */
    bg_cfg_type (*cfg_type)(const bg_cfg_node *n);
    const bg_cfg_node *(*cfg_get)(const bg_cfg_node *map, const char *key);
    size_t (*cfg_len)(const bg_cfg_node *n); /* SEQ items or MAP pairs */
    const bg_cfg_node *(*cfg_item)(const bg_cfg_node *seq, size_t i);
    const char *(*cfg_key)(const bg_cfg_node *map, size_t i);
    const bg_cfg_node *(*cfg_value)(const bg_cfg_node *map, size_t i);
    const char *(*cfg_scalar)(const bg_cfg_node *n); /* NULL unless SCALAR */
    /* Record "file:line:col: plugin NAME: message" for node n (n may be NULL
     * for the config section itself). Returns BG_PLUGIN_ECONFIG. */
    int (*cfg_error)(void *host_ctx, const bg_cfg_node *n, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
    /* Fill `target` from map node `cfg` (may be NULL = all defaults) by the
     * table; returns BG_PLUGIN_OK or BG_PLUGIN_ECONFIG (errors recorded,
     * all of them, not only the first). It does not zero `target`: on OK
     * it has written every field the table names (value or default) and
     * nothing else; on ECONFIG the valid fields are written, the invalid
     * ones untouched — discard the struct. Zero it first (calloc, = {0})
     * when it has fields the table does not fill. */
    int (*cfg_apply)(void *host_ctx, const bg_cfg_node *cfg, const bg_cfg_entry *table,
                     size_t n_entries, void *target);

    /* RNG: seed, 64 random bits, uniform in [0,1), standard normal. */
    void (*rng_seed)(bg_rng *r, uint64_t seed);
    uint64_t (*rng_u64)(bg_rng *r);
    double (*rng_uniform)(bg_rng *r);
    double (*rng_normal)(bg_rng *r);

    /* Metrics: a counter named "bayesguard_plugin_<plugin>_<name>". */
    void (*metric_add)(void *host_ctx, const char *name, double delta);

    /* ---- ABI 1.3: the language-model service (bg_lm above). NULL in a
     * host of minor < 3 (test host->abi_minor >= 3 first). ---- */

    /* Create only (the config node `at` is valid then): a model handle for
     * spec. Models are shared: the same files (by path and by device,
     * inode, size and mtime) with the same backend and adapter give the
     * same loaded model, ref-counted. A missing or corrupt file is
     * recorded with cfg_error at `at` (file:line:col) and returns
     * BG_PLUGIN_ECONFIG; never a fallback to another backend or model.
     * *out: release with lm_close (in destroy). */
    int (*lm_open)(void *host_ctx, const bg_cfg_node *at, const bg_lm_spec *spec, bg_lm **out);
    void (*lm_close)(void *host_ctx, bg_lm *lm);
    /* The model's shape and backend (any thread). */
    void (*lm_info)(const bg_lm *lm, bg_lm_info *out);
    /* Tokenises UTF-8 text with the model's tokenizer exactly as
     * llama2.c's encode() without BOS/EOS: one leading " " (its dummy
     * prefix) before non-empty text, so texts tokenised apart join as
     * words ("a" + "b" is read " a b"). cap >= strlen(text) + 3 (the most
     * ids it can yield; a smaller cap is BG_PLUGIN_EINVAL); text of at
     * most 65536 bytes (else BG_PLUGIN_ELIMIT); a byte the vocabulary has
     * no token for is BG_PLUGIN_EINVAL. *n_out = ids written. Any thread. */
    int (*lm_encode)(const bg_lm *lm, const char *text, int32_t *out, size_t cap, size_t *n_out);
    /* Batched scoring, any thread: out[i] = log p(items[i].cont |
     * items[i].prefix) in nats, the sum over the continuation's tokens.
     * The call joins the model's queue (one worker thread per model runs
     * the queued calls of every caller back to back; items with the same
     * prefix share one prefill); it blocks until its items are done.
     * Returns BG_PLUGIN_ELIMIT, with a message in msg[0..msg_len), when
     * the queue is full, BG_PLUGIN_EINVAL for a bad token id or a
     * sequence longer than seq_len. */
    int (*lm_score)(bg_lm *lm, const bg_lm_item *items, size_t n, double *out, char *msg,
                    size_t msg_len);
    /* Batched forward, any thread: for each prefix i (items[i].cont
     * ignored), the next token's log-probabilities into
     * out[i * vocab_size .. (i+1) * vocab_size). What a token-sequence
     * sampler needs; same queue and errors as lm_score. */
    int (*lm_next)(bg_lm *lm, const bg_lm_item *items, size_t n, float *out, char *msg,
                   size_t msg_len);

    /* Future services, one per slot, each in the minor that adds it; NULL
     * in a host that predates it (test host->abi_minor first). */
    void *spare[10];
};

/* ------------------------------------------------------------------------
 * Kind: hypothesis model
 * ------------------------------------------------------------------------ */

/* How an id encodes a hypothesis when the space is not enumerated: a set of
 * up to 64 binary features, id bit k = feature k (flags 0), or, from ABI
 * 1.4, a token sequence (flags has BG_SPACE_SEQUENCE, below). */
typedef struct bg_space {
    uint32_t n_bits; /* 1..64 */
    uint32_t flags;  /* 0: bit set; BG_SPACE_SEQUENCE | width | max_len (1.4) */
} bg_space;

/* ABI 1.4: token-sequence spaces. An id is a sequence of up to max_len
 * symbols of `width` bits each, symbol i in bits [width·i, width·(i+1)):
 *
 *     id = Σ_i sym_i << (width·i),   sym_i in 1..2^width − 1,
 *
 * and symbol 0 is the end: every symbol after a 0 is 0 too (an id with a
 * non-zero symbol after a 0 is not a sequence; a model gives it log prior
 * −INFINITY). n_bits = width·max_len <= 64. The flags word packs the three:
 * BG_SPACE_SEQUENCE | width << 8 | max_len << 16 (bg_space_sequence). What
 * each symbol means is the model's: bg_hypothesis_vtbl.symbols names the
 * language-model token of each symbol and the model files, and a sampler's
 * create receives them with the space (bg_space_symbols_of). The host
 * refuses to pair a sequence space with a sampler of minor < 4 (it would
 * read the id as a bit set). */
#define BG_SPACE_SEQUENCE 0x1u
#define BG_SPACE_SEQ_MAX_WIDTH 16u

static inline bg_space bg_space_sequence(uint32_t width, uint32_t max_len)
{
    bg_space s = {width * max_len, BG_SPACE_SEQUENCE | (width << 8) | (max_len << 16)};
    return s;
}

/* 1 when s is a well-formed sequence space: the flag, 1 <= width <= 16,
 * max_len >= 1, n_bits = width·max_len <= 64, no other flag bit. */
static inline int bg_space_is_sequence(const bg_space *s)
{
    uint32_t w = (s->flags >> 8) & 0xffu, m = (s->flags >> 16) & 0xffu;
    return (s->flags & 0xff0000feu) == 0 && (s->flags & BG_SPACE_SEQUENCE) && w >= 1 &&
           w <= BG_SPACE_SEQ_MAX_WIDTH && m >= 1 && w * m <= 64 && s->n_bits == w * m;
}

static inline uint32_t bg_space_seq_width(const bg_space *s)
{
    return (s->flags >> 8) & 0xffu;
}

static inline uint32_t bg_space_seq_max_len(const bg_space *s)
{
    return (s->flags >> 16) & 0xffu;
}

/* The id of sym[0..n) (each in 1..2^width − 1, n <= max_len). */
static inline uint64_t bg_seq_encode(const uint32_t *sym, uint32_t n, uint32_t width)
{
    uint64_t id = 0;
    for (uint32_t i = 0; i < n; i++)
        id |= (uint64_t)sym[i] << (width * i);
    return id;
}

/* The symbols of id into sym[0..max_len); returns their number n (the
 * first 0 ends them), or −1 when id is not a sequence of the space (a
 * non-zero symbol after the end, or bits past n_bits). */
static inline int bg_seq_decode(uint64_t id, uint32_t width, uint32_t max_len, uint32_t *sym)
{
    uint64_t mask = width >= 64 ? ~0ULL : (1ULL << width) - 1;
    int n = -1;
    if (width * max_len < 64 && (id >> (width * max_len)) != 0)
        return -1;
    for (uint32_t i = 0; i < max_len; i++) {
        sym[i] = (uint32_t)((id >> (width * i)) & mask);
        if (sym[i] == 0 && n < 0)
            n = (int)i;
        else if (sym[i] != 0 && n >= 0)
            return -1;
    }
    return n < 0 ? (int)max_len : n;
}

/* ABI 1.4: what the symbols of a sequence space are, as a hypothesis
 * model's symbols() describes them. Symbol s (1..n_symbols) is the
 * language-model token tokens[s − 1] of the model in `lm` (the files the
 * hypothesis model scores with); prompt[0..n_prompt) is a context a sampler
 * may condition its generation on (BOS first). Everything is borrowed from
 * the model instance, valid while it lives; a sampler copies what it keeps
 * during create. */
typedef struct bg_space_symbols {
    uint32_t size;      /* sizeof(bg_space_symbols) of the writer */
    uint32_t n_symbols; /* 1..2^width − 1 */
    const int32_t *tokens;
    const char *const *texts; /* [n_symbols] the symbols' text, for logs */
    const int32_t *prompt;
    uint32_t n_prompt;
    uint32_t reserved;
    bg_lm_spec lm; /* checkpoint, tokenizer, backend, adapter */
} bg_space_symbols;

/* What a sampler's create receives for a sequence space: the space, then
 * its symbols. The host passes &seq.space; a sampler that sees
 * BG_SPACE_SEQUENCE in space->flags reads the rest with
 * bg_space_symbols_of (a plugin of minor >= 4 only: older ones are never
 * given a sequence space). */
typedef struct bg_space_seq {
    bg_space space; /* first: a pointer to it is a pointer to the whole */
    bg_space_symbols symbols;
} bg_space_seq;

static inline const bg_space_symbols *bg_space_symbols_of(const bg_space *s)
{
    if (!(s->flags & BG_SPACE_SEQUENCE))
        return NULL;
    return &((const bg_space_seq *)(const void *)s)->symbols;
}

/* The smallest buffer the host passes to label() and check_action(). */
#define BG_PLUGIN_LABEL_MIN 64
#define BG_PLUGIN_MESSAGE_MIN 256

typedef struct bg_hypothesis_vtbl {
    /* Required. Validate config (errors via host->cfg_error) and build an
     * instance. host stays valid until destroy. *out: new, freed by
     * destroy. A non-OK return fails the policy (every cfg_error shown). */
    int (*create)(const bg_host *host, const bg_cfg_node *config, void **out);
    /* Required. */
    void (*destroy)(void *self);
    /* Required. Number of hypotheses, or 0 for a space too large to
     * enumerate (a policy must then name a sampler). */
    uint64_t (*count)(const void *self);
    /* Optional; required for count() == 0 (a policy with a sampler is
     * refused without it): the encoding of ids. */
    int (*space)(const void *self, bg_space *out);
    /* Required. out[i] = log P(h_i). Need not be normalised over the
     * space. -INFINITY excludes h_i (posterior exactly 0 for good). */
    int (*log_prior)(const void *self, const uint64_t *h, size_t n, double *out);
    /* Required. out[i] = log P(obs | history, h_i); history[0..n_hist) are
     * the session's earlier observations, oldest first. -INFINITY is
     * allowed: obs is impossible under h_i, whose posterior becomes exactly
     * 0 and stays 0. When every candidate gets -INFINITY the observation is
     * refused as invalid (INVALID_ARGUMENT: "zero likelihood under every
     * hypothesis") and not stored. NaN or +INFINITY is a plugin bug: the
     * observation is refused as INTERNAL. The same holds for log_prior. */
    int (*log_lik)(const void *self, const bg_observation *obs, const bg_observation *history,
                   size_t n_hist, const uint64_t *h, size_t n, double *out);
    /* Required. out[i] = P(harm | action, history, h_i) in [0, 1]; a value
     * outside (or NaN) fails the evaluation as INTERNAL, never a decision. */
    int (*harm)(const void *self, const bg_action *action, const bg_observation *history,
                size_t n_hist, const uint64_t *h, size_t n, double *out);
    /* Required. A short human label for hypothesis h ("w=0110…",
     * "rate=0.05") into buf[0..len): len >= BG_PLUGIN_LABEL_MIN (the
     * daemon passes 128). Write a NUL-terminated string, truncated to
     * len-1 bytes if longer (snprintf does both). A non-OK return shows
     * "#<id>" instead. */
    int (*label)(const void *self, uint64_t h, char *buf, size_t len);
    /* Optional (NULL = everything accepted). Check an action/observation
     * before it is used: wrong feature count, out-of-range values. On
     * refusal return non-OK with a NUL-terminated message in buf[0..len),
     * len >= BG_PLUGIN_MESSAGE_MIN; the caller gets INVALID_ARGUMENT. */
    int (*check_action)(const void *self, const bg_action *action, char *buf, size_t len);
    /* ABI 1.4 (was spare[0]). Required when space() sets
     * BG_SPACE_SEQUENCE, else NULL: the symbols of the sequence space
     * (bg_space_symbols above, borrowed from the instance). The host
     * passes them to the sampler's create with the space. */
    int (*symbols)(const void *self, bg_space_symbols *out);
    void *spare[7]; /* NULL (see "Spare slots" above) */
} bg_hypothesis_vtbl;

/* ------------------------------------------------------------------------
 * Kind: bound estimator
 * ------------------------------------------------------------------------ */

typedef struct bg_estimate_in {
    size_t n;               /* candidate hypotheses */
    const uint64_t *ids;    /* [n] their ids */
    const double *log_post; /* [n] log P(h|D), normalised over the candidates */
    const double *harm;     /* [n] P(harm | x, h) */
    /* Indices into the arrays in descending posterior order, ties in
     * ascending index order (stable). Covers at least the hypotheses with
     * posterior >= min_post_in_order; n_order <= n. Computed by the engine
     * once per observation. */
    const uint32_t *order;
    size_t n_order;
    int order_complete; /* 1 when n_order == n (a full order) */
    /* Added at the end (engine helper, same 1.0 day): [n] P(h|D) =
     * exp(log_post) in linear space, computed by the engine once per
     * observation (values below DBL_MIN flushed to 0), so an estimator
     * streams it instead of calling exp() per hypothesis per request. */
    const double *post;
} bg_estimate_in;

typedef struct bg_estimate_out {
    double bound;                /* the harm estimate compared with the threshold */
    size_t cautious;             /* index (into ids) of the hypothesis giving it */
    uint64_t plausible;          /* size of the set maximised over (1 for iid) */
    double posterior_predictive; /* Σ P(h|D)·P(harm|x,h), always filled */
} bg_estimate_out;

/* Σ_i post[i]·harm[i], the posterior predictive every estimator reports:
 * one sequential pass, four accumulators so the adds pipeline. A source
 * helper for estimators, not ABI. */
static inline double bg_posterior_predictive(const double *post, const double *harm, size_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += post[i] * harm[i];
        s1 += post[i + 1] * harm[i + 1];
        s2 += post[i + 2] * harm[i + 2];
        s3 += post[i + 3] * harm[i + 3];
    }
    for (; i < n; i++)
        s0 += post[i] * harm[i];
    return (s0 + s1) + (s2 + s3);
}

typedef struct bg_estimator_vtbl {
    /* Required, as for a hypothesis. */
    int (*create)(const bg_host *host, const bg_cfg_node *config, void **out);
    void (*destroy)(void *self); /* required */
    /* Required. The smallest posterior mass this estimator needs ordered
     * (the non-iid α): the engine orders at least every hypothesis with
     * P(h|D) >= this. 0 = needs the full order; 2 = needs no order. */
    double (*order_needed)(const void *self);
    /* Required. Fill every field of out: bound and posterior_predictive in
     * [0, 1], cautious < in->n, plausible in 1..n, else INTERNAL. */
    int (*estimate)(const void *self, const bg_estimate_in *in, bg_estimate_out *out);
    void *spare[8]; /* NULL */
} bg_estimator_vtbl;

/* ------------------------------------------------------------------------
 * Kind: sampler
 * ------------------------------------------------------------------------ */

/* log R(h) for a batch; the host binds it to a session's data.
 *
 * The reward moves: bound to a session, R(h) = P(h)·P(D|h) changes with
 * every observation, so a log R a sampler stored during one train() call
 * may be stale at the next (a replay buffer must re-score it). ABI 1.2:
 * the reward has a version. Called with h == NULL and n == 0, a host's
 * reward writes into out[0] the version of the data it is bound to — an
 * integer in [0, 2^53) as a double; equal versions mean the same log R for
 * every h — and returns BG_PLUGIN_OK (the engine: a digest of the session's
 * history and its length). A reward that leaves out[0] alone, or returns
 * an error, has no version: treat it as new at every call. Ask through
 * bg_reward_version, on hosts of minor >= 2 (host->abi_minor). */
typedef int (*bg_log_reward_fn)(void *ctx, const uint64_t *h, size_t n, double *out);

#define BG_REWARD_UNVERSIONED UINT64_MAX

/* The version of a reward (ABI 1.2, above), or BG_REWARD_UNVERSIONED. A
 * source helper, not ABI. */
static inline uint64_t bg_reward_version(bg_log_reward_fn reward, void *ctx)
{
    double v = -1.0;
    if (reward(ctx, NULL, 0, &v) != BG_PLUGIN_OK || !(v >= 0.0 && v < 9007199254740992.0))
        return BG_REWARD_UNVERSIONED;
    return (uint64_t)v;
}

typedef struct bg_sampler_vtbl {
    /* Required. space: the model's encoding; fixed for the instance,
     * borrowed for the call. A sequence space (BG_SPACE_SEQUENCE, 1.4)
     * comes with its symbols: bg_space_symbols_of(space). A sampler that
     * cannot sample the space it is given refuses with cfg_error. */
    int (*create)(const bg_host *host, const bg_cfg_node *config, const bg_space *space,
                  void **out);
    void (*destroy)(void *self); /* required */
    /* Required. Train for `steps` optimiser steps on the reward. The
     * reward may differ from the previous call's (see bg_log_reward_fn):
     * re-score anything stored at another version before using it. */
    int (*train)(void *self, bg_log_reward_fn reward, void *reward_ctx, uint32_t steps);
    /* Required. Draw n ids with their log q (log_q may be NULL); rng owned
     * by caller. */
    int (*sample)(const void *self, bg_rng *rng, size_t n, uint64_t *ids, double *log_q);
    /* Optional, both or neither: persist / restore a trained sampler. */
    int (*save)(const void *self, const char *path);
    int (*load)(void *self, const char *path);
    void *spare[8]; /* NULL */
} bg_sampler_vtbl;

/* ------------------------------------------------------------------------
 * The descriptor
 * ------------------------------------------------------------------------ */

typedef struct bg_plugin_desc {
    /* Frozen forever: */
    uint32_t abi_major;
    uint32_t abi_minor;
    size_t desc_size; /* sizeof(bg_plugin_desc) as the plugin was built */
    const char *build_signature;
    /* ABI 1.0: */
    const char *name;               /* required, unique per kind: what policies
                                     * name in `plugin:` (the file name is not) */
    const char *version;            /* required: the plugin's own version */
    uint32_t kind;                  /* a bg_plugin_kind value (fixed width) */
    const char *description;        /* one line, printed by `bayesguard check` */
    const bg_cfg_entry *config_map; /* may be NULL; checked at load,
                                     * printed by `check` */
    size_t config_map_len;
    union {
        const bg_hypothesis_vtbl *hypothesis;
        const bg_estimator_vtbl *estimator;
        const bg_sampler_vtbl *sampler;
        const void *any;
    } vt;
    void *spare[8]; /* NULL */
} bg_plugin_desc;

typedef const bg_plugin_desc *(*bg_plugin_entry_fn)(void);

/* Every plugin defines this (and nothing else needs to be exported). */
BG_PLUGIN_EXPORT const bg_plugin_desc *bg_plugin_entry(void);

/* The last line of a plugin: BG_PLUGIN_REGISTER(desc) defines the entry
 * point returning the plugin's static descriptor. */
#define BG_PLUGIN_REGISTER(d)                                                                      \
    BG_PLUGIN_EXPORT const bg_plugin_desc *bg_plugin_entry(void)                                   \
    {                                                                                              \
        return &(d);                                                                               \
    }

/* Fill the frozen head of a descriptor: BG_PLUGIN_DESC_HEAD, .name = ...
 * declares this header's minor; BG_PLUGIN_DESC_HEAD_MINOR(m) declares an
 * older minor m, for a plugin that uses nothing newer and must load on
 * hosts of minor m too (see "Compatibility" at the top). */
#define BG_PLUGIN_DESC_HEAD_MINOR(m)                                                               \
    .abi_major = BG_PLUGIN_ABI_MAJOR, .abi_minor = (m), .desc_size = sizeof(bg_plugin_desc),       \
    .build_signature = BG_PLUGIN_BUILD_SIGNATURE
#define BG_PLUGIN_DESC_HEAD BG_PLUGIN_DESC_HEAD_MINOR(BG_PLUGIN_ABI_MINOR)

#ifdef __cplusplus
}
#endif

#endif /* BAYESGUARD_PLUGIN_H */
