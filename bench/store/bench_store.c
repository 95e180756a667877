/*
 * bench_store.c — the observation log's costs, through bg_engine with a
 * bandit + noniid guard (the built-in .so plugins):
 *
 *   observe  Observe throughput with C concurrent callers (each its own
 *            session), group commit vs one fdatasync per record (the
 *            engine's per_record_sync, the store of versions before group
 *            commit), for --seconds each
 *   restart  bg_engine_create time and peak RSS over a log of N records
 *            (written straight in the log format: 1,000 sessions), from
 *            segments, then again after bg_engine_compact (one snapshot)
 *
 *   bench_store [--dir DIR] [--callers 1,8,64] [--seconds S]
 *               [--sizes 10000,100000,1000000] [--only observe|restart]
 *
 * DIR (default /tmp) must be on the disk to measure: fdatasync is the cost.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/bg_io.h"
#include "common/bg_log.h"
#include "engine/engine.h"
#include "engine/obs_scan.h"
#include "engine/obs_store.h"
#include "engine/observation.h"
#include "guard_build.h"
#include "tmp_tree.h"
#include "plugin/plugin_host.h"

#define D 4

static const bg_guard *guard;
static atomic_int stop_flag;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, const bg_err *err)
{
    fprintf(stderr, "bench_store: %s: %s\n", what, err ? err->msg : "");
    exit(1);
}

static bg_observation pull(double *x, int i)
{
    for (int j = 0; j < D; j++)
        x[j] = ((i >> j) & 1) ? 1.0 : 0.0;
    bg_observation o;
    memset(&o, 0, sizeof o);
    o.action = (bg_action){
        .tool = "pull", .id = "", .arguments_json = "{\"arm\": 1}", .features = x, .n_features = D};
    o.has_value = 1;
    o.value = 0.5 + 0.37 * (i % 7);
    return o;
}

typedef struct caller {
    bg_engine *e;
    int id;
    uint64_t done;
} caller;

static void *observe_loop(void *arg)
{
    caller *c = arg;
    char s[32];
    snprintf(s, sizeof s, "c%d", c->id);
    for (int i = 0; !atomic_load(&stop_flag); i++) {
        double x[D];
        bg_observation o = pull(x, i);
        bg_err err;
        if (bg_engine_observe(c->e, guard, s, &o, NULL, &err) != BG_OK)
            die("observe", &err);
        c->done++;
    }
    return NULL;
}

static void bench_observe(const char *base, const int *callers, int nc, double secs)
{
    printf("\n## Observe throughput (%s, %.0f s per cell)\n\n", base, secs);
    printf("| callers | mode | observes/s | fdatasyncs/s | records per fdatasync |\n");
    printf("|---:|---|---:|---:|---:|\n");
    for (int k = 0; k < nc; k++) {
        for (int per = 1; per >= 0; per--) {
            char dir[512];
            snprintf(dir, sizeof dir, "%s/bg_bench_store_XXXXXX", base);
            if (!mkdtemp(dir))
                die("mkdtemp", NULL);
            bg_engine_opts eo = {.data_dir = dir, .per_record_sync = per};
            bg_engine *e;
            bg_err err;
            if (bg_engine_create(&eo, &e, &err) != BG_OK)
                die("engine", &err);
            int n = callers[k];
            caller *cs = calloc((size_t)n, sizeof *cs);
            pthread_t *th = calloc((size_t)n, sizeof *th);
            atomic_store(&stop_flag, 0);
            double t0 = now_s();
            for (int i = 0; i < n; i++) {
                cs[i] = (caller){e, i, 0};
                pthread_create(&th[i], NULL, observe_loop, &cs[i]);
            }
            while (now_s() - t0 < secs)
                usleep(10000);
            atomic_store(&stop_flag, 1);
            uint64_t total = 0;
            for (int i = 0; i < n; i++) {
                pthread_join(th[i], NULL);
                total += cs[i].done;
            }
            double dt = now_s() - t0;
            bg_engine_stats st;
            bg_engine_stats_get(e, &st);
            printf("| %d | %s | %.0f | %.0f | %.1f |\n", n,
                   per ? "fdatasync per record" : "group commit", (double)total / dt,
                   (double)st.store_syncs / dt,
                   st.store_syncs ? (double)st.store_appends / (double)st.store_syncs : 0.0);
            fflush(stdout);
            bg_engine_destroy(e);
            free(cs);
            free(th);
            bg_tmp_dir_remove(dir);
        }
    }
}

/* n records in segments of 64 MiB, written straight (no fdatasync each). */
static void write_log(const char *dir, long n)
{
    uint64_t seq = 1;
    FILE *f = NULL;
    uint64_t size = 0;
    for (long i = 0; i < n; i++) {
        if (!f || size >= BG_OBS_SEGMENT_BYTES_DEFAULT) {
            if (f)
                fclose(f);
            char *p = bg__obs_segment_path(dir, seq++);
            f = fopen(p, "wb");
            free(p);
            if (!f)
                die("fopen", NULL);
            fwrite(BG_OBS_STORE_MAGIC, 1, 8, f);
            size = 8;
        }
        char s[32];
        snprintf(s, sizeof s, "s%ld", i % 1000);
        double x[D];
        bg_observation o = pull(x, (int)(i / 1000));
        o.action.arguments_json = "";
        uint8_t *pay = NULL;
        size_t len = bg__obs_encode("arms", s, &o, &pay);
        uint8_t hdr[8];
        bg__obs_frame(hdr, pay, len);
        fwrite(hdr, 1, 8, f);
        fwrite(pay, 1, len, f);
        size += 8 + len;
        free(pay);
    }
    fclose(f);
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            v = atol(line + 6);
    if (f)
        fclose(f);
    return v;
}

static double timed_open(const char *dir, uint64_t *obs, long *rss)
{
    bg_engine_opts eo = {.data_dir = dir, .max_bytes = (size_t)4 << 30};
    bg_engine *e;
    bg_err err;
    long before = rss_kb();
    double t0 = now_s();
    if (bg_engine_create(&eo, &e, &err) != BG_OK)
        die("restart", &err);
    double dt = now_s() - t0;
    bg_engine_stats st;
    bg_engine_stats_get(e, &st);
    *obs = st.observations;
    *rss = rss_kb() - before;
    if (bg_engine_compact(e, &err) != BG_OK)
        die("compact", &err);
    bg_engine_destroy(e);
    return dt;
}

static void bench_restart(const char *base, const long *sizes, int ns)
{
    printf("\n## Restart time vs log size (%s; 1,000 sessions)\n\n", base);
    printf("| records | log MiB | from | bg_engine_create s | records/s | RSS growth MiB |\n");
    printf("|---:|---:|---|---:|---:|---:|\n");
    for (int k = 0; k < ns; k++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/bg_bench_restart_XXXXXX", base);
        if (!mkdtemp(dir))
            die("mkdtemp", NULL);
        write_log(dir, sizes[k]);
        bg__obs_files fl;
        bg_err err;
        uint64_t bytes = 0;
        if (bg__obs_files_list(dir, &fl, &err) == BG_OK) {
            for (size_t i = 0; i < fl.n; i++) {
                struct stat st;
                if (stat(fl.v[i].path, &st) == 0)
                    bytes += (uint64_t)st.st_size;
            }
            bg__obs_files_free(&fl);
        }
        for (int pass = 0; pass < 2; pass++) {
            uint64_t obs;
            long rss;
            /* the first open compacts on its way out: the second reads the snapshot */
            double dt = timed_open(dir, &obs, &rss);
            printf("| %ld | %.1f | %s | %.3f | %.0f | %.1f |\n", sizes[k],
                   (double)bytes / 1048576.0, pass ? "snapshot" : "segments", dt, (double)obs / dt,
                   (double)rss / 1024.0);
            fflush(stdout);
        }
        bg_tmp_dir_remove(dir);
    }
}

static int parse_list(const char *s, long *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        out[n++] = strtol(s, (char **)&s, 10);
        if (*s == ',')
            s++;
    }
    return n;
}

int main(int argc, char **argv)
{
    const char *base = "/tmp", *only = NULL;
    long callers[8] = {1, 8, 64}, sizes[8] = {10000, 100000, 1000000};
    int nc = 3, ns = 3;
    double secs = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--dir"))
            base = argv[i + 1];
        else if (!strcmp(argv[i], "--callers"))
            nc = parse_list(argv[i + 1], callers, 8);
        else if (!strcmp(argv[i], "--sizes"))
            ns = parse_list(argv[i + 1], sizes, 8);
        else if (!strcmp(argv[i], "--seconds"))
            secs = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--only"))
            only = argv[i + 1];
        else {
            fprintf(stderr, "usage: bench_store [--dir DIR] [--callers 1,8,64] [--seconds S] "
                            "[--sizes 10000,100000,1000000] [--only observe|restart]\n");
            return 2;
        }
    }
    bg_log_set_level(BG_LOG_WARN);
    const char *pdir = getenv("BG_PLUGIN_DIR") ? getenv("BG_PLUGIN_DIR") : BG_DEFAULT_PLUGIN_DIR;
    bg_plugin_host *h;
    bg_err err;
    if (bg_plugin_host_create(pdir, &h, &err) != BG_OK)
        die(pdir, &err);
    bg_guard_spec spec = {.name = "arms",
                          .model = "bandit",
                          .model_cfg = "{features: 4, theta: 2}",
                          .estimator = "noniid",
                          .estimator_cfg = "alpha: 0.01",
                          .threshold = 0.3};
    bg_guard_build *gb;
    if (bg_guard_build_create(h, &spec, &gb, &err) != BG_OK)
        die("guard", &err);
    guard = bg_guard_build_guard(gb);
    int cl[8];
    for (int i = 0; i < nc; i++)
        cl[i] = (int)callers[i];
    if (!only || !strcmp(only, "observe"))
        bench_observe(base, cl, nc, secs);
    if (!only || !strcmp(only, "restart"))
        bench_restart(base, sizes, ns);
    bg_guard_build_destroy(gb);
    bg_plugin_host_destroy(h);
    return 0;
}
