/*
 * test_plugin_abi.c — BG_PLUGIN_ABI_MAJOR/MINOR/DATE match the newest entry
 * of the "ABI history" comment in include/bayesguard/plugin.h (Varnish's
 * rule: bump the constants and write the history line together), and the
 * layout is what 1.0 binaries were built with: 1.1 turned the enum fields
 * `kind` and bg_cfg_entry.type into uint32_t, which must not move a byte
 * (the 1.0 structs are re-declared here, enums and all, and compared
 * field by field), and BG_PLUGIN_DESC_HEAD_MINOR declares what it says.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bayesguard/plugin.h"
#include "bg_test.h"

/* The 1.0 declarations, as 1.0 plugins were compiled. */
typedef struct desc_1_0 {
    uint32_t abi_major;
    uint32_t abi_minor;
    size_t desc_size;
    const char *build_signature;
    const char *name;
    const char *version;
    bg_plugin_kind kind;
    const char *description;
    const bg_cfg_entry *config_map;
    size_t config_map_len;
    const void *vt;
    void *spare[8];
} desc_1_0;

typedef struct cfg_entry_1_0 {
    const char *key;
    bg_cfg_vtype type;
    const char *def;
    size_t offset;
    size_t size;
    size_t count_offset;
    double min, max;
    const char *choices;
    const char *desc;
} cfg_entry_1_0;

/* bg_host as 1.0-1.2 hosts laid it out: 1.3 named six of the spares. */
typedef struct host_1_2 {
    uint32_t abi_major;
    uint32_t abi_minor;
    size_t size;
    void *host_ctx;
    void *fn[15]; /* log .. metric_add */
    void *spare[16];
} host_1_2;

/* bg_hypothesis_vtbl as 1.0-1.3 plugins were compiled: 1.4 named spare[0]. */
typedef struct hyp_vtbl_1_3 {
    void *fn[9]; /* create .. check_action */
    void *spare[8];
} hyp_vtbl_1_3;

#define SAME_FIELD(a, b, f)                                                                        \
    do {                                                                                           \
        CHECK_INT(offsetof(a, f), offsetof(b, f));                                                 \
        CHECK_INT(sizeof(((a *)0)->f), sizeof(((b *)0)->f));                                       \
    } while (0)

static void test_layout(void)
{
    CHECK_INT(sizeof(bg_plugin_desc), sizeof(desc_1_0));
    SAME_FIELD(bg_plugin_desc, desc_1_0, abi_major);
    SAME_FIELD(bg_plugin_desc, desc_1_0, abi_minor);
    SAME_FIELD(bg_plugin_desc, desc_1_0, desc_size);
    SAME_FIELD(bg_plugin_desc, desc_1_0, build_signature);
    SAME_FIELD(bg_plugin_desc, desc_1_0, name);
    SAME_FIELD(bg_plugin_desc, desc_1_0, version);
    SAME_FIELD(bg_plugin_desc, desc_1_0, kind);
    SAME_FIELD(bg_plugin_desc, desc_1_0, description);
    SAME_FIELD(bg_plugin_desc, desc_1_0, config_map);
    SAME_FIELD(bg_plugin_desc, desc_1_0, config_map_len);
    SAME_FIELD(bg_plugin_desc, desc_1_0, vt);
    SAME_FIELD(bg_plugin_desc, desc_1_0, spare);
    CHECK_INT(sizeof(bg_cfg_entry), sizeof(cfg_entry_1_0));
    SAME_FIELD(bg_cfg_entry, cfg_entry_1_0, key);
    SAME_FIELD(bg_cfg_entry, cfg_entry_1_0, type);
    SAME_FIELD(bg_cfg_entry, cfg_entry_1_0, def);
    SAME_FIELD(bg_cfg_entry, cfg_entry_1_0, offset);
    SAME_FIELD(bg_cfg_entry, cfg_entry_1_0, size);
    SAME_FIELD(bg_cfg_entry, cfg_entry_1_0, count_offset);
    SAME_FIELD(bg_cfg_entry, cfg_entry_1_0, min);
    SAME_FIELD(bg_cfg_entry, cfg_entry_1_0, max);
    SAME_FIELD(bg_cfg_entry, cfg_entry_1_0, choices);
    SAME_FIELD(bg_cfg_entry, cfg_entry_1_0, desc);
    /* 1.3: the language-model service sits in the first six of 1.2's
     * spares; the struct did not grow, so a plugin built against 1.2 sees
     * the same layout and a 1.3 plugin on a 1.2 host finds NULL there. */
    CHECK_INT(sizeof(bg_host), sizeof(host_1_2));
    SAME_FIELD(bg_host, host_1_2, size);
    SAME_FIELD(bg_host, host_1_2, host_ctx);
    CHECK_INT(offsetof(bg_host, metric_add), offsetof(host_1_2, fn) + 14 * sizeof(void *));
    CHECK_INT(offsetof(bg_host, lm_open), offsetof(host_1_2, spare));
    CHECK_INT(offsetof(bg_host, lm_next), offsetof(host_1_2, spare) + 5 * sizeof(void *));
    CHECK_INT(offsetof(bg_host, spare), offsetof(host_1_2, spare) + 6 * sizeof(void *));
    /* 1.4: the hypothesis model's `symbols` is what was spare[0]; the
     * vtable did not grow and bg_space is still two uint32_t. */
    CHECK_INT(sizeof(bg_hypothesis_vtbl), sizeof(hyp_vtbl_1_3));
    CHECK_INT(offsetof(bg_hypothesis_vtbl, check_action), 8 * sizeof(void *));
    CHECK_INT(offsetof(bg_hypothesis_vtbl, symbols), offsetof(hyp_vtbl_1_3, spare));
    CHECK_INT(sizeof(bg_space), 8);
    CHECK_INT(offsetof(bg_space_seq, space), 0);
    /* Fixed widths whatever the compiler does with enums. */
    CHECK_INT(sizeof(((bg_plugin_desc *)0)->kind), 4);
    CHECK_INT(sizeof(((bg_cfg_entry *)0)->type), 4);
    /* The open-bound flags keep clear of every type value. */
    CHECK_INT(BG_CFGV_ENUM & ~BG_CFGV_TYPE_MASK, 0);
    CHECK_INT(BG_CFGV_MIN_OPEN & BG_CFGV_TYPE_MASK, 0);
    CHECK_INT(BG_CFGV_MAX_OPEN & BG_CFGV_TYPE_MASK, 0);
    /* The head macros. */
    bg_plugin_desc now = {BG_PLUGIN_DESC_HEAD}, old = {BG_PLUGIN_DESC_HEAD_MINOR(0)};
    CHECK_INT(now.abi_major, BG_PLUGIN_ABI_MAJOR);
    CHECK_INT(now.abi_minor, BG_PLUGIN_ABI_MINOR);
    CHECK_INT(now.desc_size, sizeof(bg_plugin_desc));
    CHECK_INT(old.abi_major, BG_PLUGIN_ABI_MAJOR);
    CHECK_INT(old.abi_minor, 0);
    CHECK_INT(old.desc_size, sizeof(bg_plugin_desc));
    CHECK(old.build_signature && strcmp(old.build_signature, now.build_signature) == 0);
}

/* The 1.4 sequence encoding: pack/unpack, canonical ids only. */
static void test_sequence_space(void)
{
    bg_space s = bg_space_sequence(2, 3);
    CHECK_INT(s.n_bits, 6);
    CHECK(bg_space_is_sequence(&s));
    CHECK_INT(bg_space_seq_width(&s), 2);
    CHECK_INT(bg_space_seq_max_len(&s), 3);
    bg_space bits = {10, 0}, bad = s, wide = bg_space_sequence(16, 5);
    CHECK(!bg_space_is_sequence(&bits));
    bad.flags |= 0x2u; /* an unknown flag bit */
    CHECK(!bg_space_is_sequence(&bad));
    CHECK(!bg_space_is_sequence(&wide)); /* 80 bits */
    CHECK(bg_space_symbols_of(&bits) == NULL);
    uint32_t sym[3] = {3, 1, 2}, out[3];
    uint64_t id = bg_seq_encode(sym, 3, 2);
    CHECK_INT(id, 3 | 1 << 2 | 2 << 4);
    CHECK_INT(bg_seq_decode(id, 2, 3, out), 3);
    CHECK(out[0] == 3 && out[1] == 1 && out[2] == 2);
    CHECK_INT(bg_seq_decode(bg_seq_encode(sym, 2, 2), 2, 3, out), 2);
    CHECK_INT(bg_seq_decode(0, 2, 3, out), 0);
    CHECK_INT(bg_seq_decode(2 << 2, 2, 3, out), -1);    /* a symbol after the end */
    CHECK_INT(bg_seq_decode(1ULL << 6, 2, 3, out), -1); /* past n_bits */
    bg_space full = bg_space_sequence(16, 4);
    uint32_t s4[4] = {65535, 1, 2, 65535}, o4[4];
    CHECK(bg_space_is_sequence(&full));
    CHECK_INT(bg_seq_decode(bg_seq_encode(s4, 4, 16), 16, 4, o4), 4);
    CHECK(o4[3] == 65535);
}

int main(void)
{
    const char *src = getenv("BG_SOURCE_DIR");
    if (!src) {
        printf("BG_SOURCE_DIR not set: run through ctest\n");
        return 77;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/include/bayesguard/plugin.h", src);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (!f)
        CHECK_DONE("test_plugin_abi");
    char line[512];
    int in_history = 0, found = 0;
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "ABI history")) {
            in_history = 1;
            continue;
        }
        char date[16];
        int major, minor;
        if (in_history && sscanf(line, " * %15s %d.%d", date, &major, &minor) == 3) {
            CHECK_INT(major, BG_PLUGIN_ABI_MAJOR);
            CHECK_INT(minor, BG_PLUGIN_ABI_MINOR);
            CHECK_STR(date, BG_PLUGIN_ABI_DATE);
            found = 1;
            break;
        }
    }
    fclose(f);
    CHECK(found);
    /* The frozen head: version and size first. */
    CHECK_INT(offsetof(bg_plugin_desc, abi_major), 0);
    CHECK_INT(offsetof(bg_plugin_desc, abi_minor), 4);
    CHECK_INT(offsetof(bg_plugin_desc, desc_size), 8);
    test_layout();
    test_sequence_space();
    CHECK_DONE("test_plugin_abi");
}
