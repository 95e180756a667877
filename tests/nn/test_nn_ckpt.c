/*
 * test_nn_ckpt.c — the corrupt-checkpoint corpus. Each file is generated
 * here from a valid synthetic checkpoint (header edits, truncation,
 * trailing bytes, a NaN or an infinity in a weight tensor) and must be rejected by bg_nn_ckpt_open
 * and by bg_nn_model_load with a message naming the file and the field. A valid file must load, and
 * bg_nn_ckpt_bytes must equal its size.
 */
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn_test.h"

static const bg_nn_config base = {36, 100, 2, 6, 2, 97, 16, 1};
/* an optional second header edit for the next make() (-1 = none) */
static int g_field2 = -1;
static int32_t g_value2;

/* Writes the valid base checkpoint, then rewrites header field `field`
 * (0..6; -1 = none) to `value` and truncates/extends to `len` (-1 = keep). */
static void make(const char *path, int field, int32_t value, long len)
{
    bg_err err;
    if (bg_nn_synth_write(path, &base, 5, &err) != BG_OK) {
        printf("synth: %s\n", err.msg);
        exit(1);
    }
    FILE *f = fopen(path, "r+b");
    if (field >= 0) {
        fseek(f, 4L * field, SEEK_SET);
        fwrite(&value, sizeof value, 1, f);
    }
    if (g_field2 >= 0) {
        fseek(f, 4L * g_field2, SEEK_SET);
        fwrite(&g_value2, sizeof g_value2, 1, f);
        g_field2 = -1;
    }
    fclose(f);
    if (len >= 0 && truncate(path, len) != 0) {
        perror("truncate");
        exit(1);
    }
}

static void expect_reject(const char *dir, const char *name, int field, int32_t value, long len,
                          const char *needle)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    make(path, field, value, len);
    bg_nn_ckpt ck;
    bg_err err;
    bg_err_clear(&err);
    int rc = bg_nn_ckpt_open(&ck, path, &err);
    CHECK(rc == BG_EINVAL, "%s: open returned %d (%s), expected BG_EINVAL", name, rc, err.msg);
    CHECK(strstr(err.msg, needle) && strstr(err.msg, path),
          "%s: message '%s' lacks '%s' or the path", name, err.msg, needle);
    printf("ok   %-22s -> %s\n", name, err.msg);
    bg_compute_opts co = {BG_BACKEND_CPU, 1, 0, -1};
    bg_nn_model *m = NULL;
    rc = bg_nn_model_load(path, &co, &m, &err);
    CHECK(rc == BG_EINVAL && !m && strstr(err.msg, needle), "%s: model_load: %d %s", name, rc,
          err.msg);
    unlink(path);
}

int main(void)
{
    const char *dir = nt_tmpdir();
    long full = (long)bg_nn_ckpt_bytes(&base);

    expect_reject(dir, "empty", -1, 0, 0, "shorter than the 28-byte header");
    expect_reject(dir, "short_header", -1, 0, 17, "file is 17 bytes, shorter than the 28-byte");
    expect_reject(dir, "truncated", -1, 0, full - 4, "truncated");
    expect_reject(dir, "trailing", -1, 0, full + 8, "header describes");
    expect_reject(dir, "dim_zero", 0, 0, -1, "header field dim = 0; expected 1..");
    expect_reject(dir, "dim_negative", 0, -36, -1, "header field dim = -36");
    expect_reject(dir, "hidden_zero", 1, 0, -1, "header field hidden_dim = 0");
    expect_reject(dir, "layers_negative", 2, -2, -1, "header field n_layers = -2");
    expect_reject(dir, "heads_zero", 3, 0, -1, "header field n_heads = 0");
    expect_reject(dir, "heads_not_dividing", 3, 5, -1, "n_heads = 5 does not divide dim = 36");
    expect_reject(dir, "kv_heads_gt_heads", 4, 12, -1, "n_kv_heads = 12; expected a divisor");
    expect_reject(dir, "kv_heads_not_dividing", 4, 4, -1, "n_kv_heads = 4; expected a divisor");
    expect_reject(dir, "kv_heads_zero", 4, 0, -1, "n_kv_heads = 0");
    expect_reject(dir, "odd_head_size", 3, 12, -1, "head size dim/n_heads = 3 is odd");
    expect_reject(dir, "vocab_zero", 5, 0, -1, "vocab_size = 0");
    expect_reject(dir, "vocab_int_min", 5, INT32_MIN, -1, "vocab_size = 0");
    expect_reject(dir, "seq_len_zero", 6, 0, -1, "seq_len = 0");
    expect_reject(dir, "dim_huge", 0, INT32_MAX, -1, "dim = 2147483647; expected 1..65536");
    expect_reject(dir, "hidden_huge", 1, 1 << 30, -1, "hidden_dim = 1073741824");
    expect_reject(dir, "vocab_huge_separate", 5, -(1 << 30), -1, "vocab_size = 1073741824");
    expect_reject(dir, "seq_huge", 6, INT32_MAX, -1, "seq_len = 2147483647");
    /* large sizes inside the limits: 3*1024 layers*2^20*36 floats needs
     * more than 2^32 bytes (computed in 64 bits) and the file is far too
     * short — reported as truncated, not wrapped around */
    g_field2 = 2;
    g_value2 = 1024;
    expect_reject(dir, "sizes_beyond_32bit", 1, 1 << 20, -1, "needs 463870933180 bytes");
    /* separate classifier claimed but not present */
    expect_reject(dir, "missing_classifier", 5, -97, -1, "truncated");

    /* missing file: not found, names the path */
    char path[700];
    snprintf(path, sizeof path, "%s/absent.bin", dir);
    bg_nn_ckpt ck;
    bg_err err;
    CHECK(bg_nn_ckpt_open(&ck, path, &err) == BG_ENOTFOUND && strstr(err.msg, path),
          "missing file: %s", err.msg);

    /* a directory is not a checkpoint */
    CHECK(bg_nn_ckpt_open(&ck, dir, &err) == BG_EIO && strstr(err.msg, "not a regular file"),
          "directory: %s", err.msg);

    /* the in-memory parser applies the same checks */
    {
        int32_t hdr[7] = {36, 100, 2, 5, 1, 97, 16};
        CHECK(bg_nn_ckpt_parse(&ck, hdr, sizeof hdr, "mem", &err) == BG_EINVAL &&
                  strstr(err.msg, "checkpoint mem: header field n_heads = 5 does not divide"),
              "parse: %s", err.msg);
        CHECK(bg_nn_ckpt_parse(&ck, hdr, 20, "mem", &err) == BG_EINVAL &&
                  strstr(err.msg, "20 bytes, shorter"),
              "parse short: %s", err.msg);
    }

    /* a NaN or an infinity in a weight tensor is refused, naming the
     * tensor (open, parse and model_load); one in the unused RoPE tables
     * is not read and still loads */
    {
        long d = base.dim, L = base.n_layers, hd = base.hidden_dim, V = base.vocab_size;
        long kv = (long)bg_nn_kv_dim(&base);
        long w2 = V * d + L * d + L * d * d + 2 * L * kv * d + L * d * d + L * d + L * hd * d;
        long rms_final = w2 + 2 * L * hd * d;
        long rope = rms_final + d;
        struct {
            const char *name;
            long at;
            float v;
            const char *needle;
        } bad[] = {
            {"nan_w2", w2 + hd * d + 7, NAN,
             "tensor w2 of layer 1 holds a non-finite value (nan) at float 7 of 3600"},
            {"inf_rms_final", rms_final + d - 1, INFINITY,
             "tensor rms_final holds a non-finite value (inf) at float 35 of 36"},
            {"ninf_embedding", 0, -INFINITY,
             "tensor token embedding holds a non-finite value (-inf)"},
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            snprintf(path, sizeof path, "%s/%s.bin", dir, bad[i].name);
            make(path, -1, 0, -1);
            FILE *f = fopen(path, "r+b");
            fseek(f, 28 + 4 * bad[i].at, SEEK_SET);
            fwrite(&bad[i].v, 4, 1, f);
            fclose(f);
            CHECK(bg_nn_ckpt_open(&ck, path, &err) == BG_EINVAL && strstr(err.msg, bad[i].needle) &&
                      strstr(err.msg, path),
                  "%s: %s", bad[i].name, err.msg);
            printf("ok   %-22s -> %s\n", bad[i].name, err.msg);
            bg_compute_opts co = {BG_BACKEND_CPU, 1, 0, -1};
            bg_nn_model *m = NULL;
            CHECK(bg_nn_model_load(path, &co, &m, &err) == BG_EINVAL && !m &&
                      strstr(err.msg, bad[i].needle),
                  "%s: model_load: %s", bad[i].name, err.msg);
            unlink(path);
        }
        snprintf(path, sizeof path, "%s/nan_rope.bin", dir);
        make(path, -1, 0, -1);
        FILE *f = fopen(path, "r+b");
        float nan = NAN;
        fseek(f, 28 + 4 * rope, SEEK_SET);
        fwrite(&nan, 4, 1, f);
        fclose(f);
        CHECK(bg_nn_ckpt_open(&ck, path, &err) == BG_OK, "nan in the RoPE table: %s", err.msg);
        bg_nn_ckpt_close(&ck);
        unlink(path);
        /* a separate classifier is checked too */
        bg_nn_config sep = base;
        sep.shared_classifier = 0;
        snprintf(path, sizeof path, "%s/nan_cls.bin", dir);
        CHECK(bg_nn_synth_write(path, &sep, 5, &err) == BG_OK, "synth sep: %s", err.msg);
        struct stat cs;
        stat(path, &cs);
        f = fopen(path, "r+b");
        fseek(f, (long)cs.st_size - 4, SEEK_SET);
        fwrite(&nan, 4, 1, f);
        fclose(f);
        CHECK(bg_nn_ckpt_open(&ck, path, &err) == BG_EINVAL &&
                  strstr(err.msg,
                         "tensor classifier holds a non-finite value (nan) at float 3491 of "
                         "3492"),
              "nan in the classifier: %s", err.msg);
        unlink(path);
    }

    /* a valid file loads; its size is what the header says */
    snprintf(path, sizeof path, "%s/valid.bin", dir);
    make(path, -1, 0, -1);
    struct stat st;
    stat(path, &st);
    CHECK(st.st_size == full, "size %ld vs bg_nn_ckpt_bytes %ld", (long)st.st_size, full);
    CHECK(bg_nn_ckpt_open(&ck, path, &err) == BG_OK, "valid: %s", err.msg);
    CHECK(ck.cfg.dim == 36 && ck.cfg.n_kv_heads == 2 && ck.cfg.shared_classifier == 1 &&
              ck.w.wcls == ck.w.tok_emb,
          "valid: decoded config");
    bg_nn_ckpt_close(&ck);
    /* the same bytes with a separate classifier appended */
    bg_nn_config sep = base;
    sep.shared_classifier = 0;
    CHECK(bg_nn_synth_write(path, &sep, 5, &err) == BG_OK, "synth sep: %s", err.msg);
    CHECK(bg_nn_ckpt_open(&ck, path, &err) == BG_OK && !ck.cfg.shared_classifier &&
              ck.w.wcls != ck.w.tok_emb && ck.cfg.vocab_size == 97,
          "separate classifier: %s", err.msg);
    bg_nn_ckpt_close(&ck);
    unlink(path);
    /* the synthetic writer refuses an invalid config */
    bg_nn_config badc = base;
    badc.n_heads = 5;
    CHECK(bg_nn_synth_write(path, &badc, 1, &err) == BG_EINVAL, "synth accepted n_heads 5");
    rmdir(dir);
    CHECK_DONE("test_nn_ckpt");
}
