/* bg_cpu.c — the affinity mask capped by cgroup CPU quotas (bg_cpu.h).
 *
 * /proc/self/cgroup names the process's cgroup: "0::/kubepods/pod1/c2" on v2,
 * "N:cpu,cpuacct:/path" on v1. Each directory from that path up to the root
 * may carry a quota; the smallest one binds. In a container with its own
 * cgroup namespace the path is "/" and the root's files are the container's. */
#include "common/bg_cpu.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/bg_assert.h"

#define MAX_CPUS 256

/* Reads up to cap-1 bytes of a small file; 0 when it cannot be read. */
static int read_small(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n > 0;
}

/* CPUs granted by the quota files of one cgroup directory; 0 = no limit. */
static long quota_cpus(const char *dir)
{
    char path[4096], a[64], b[64];
    long quota = -1, period = 0;
    if (snprintf(path, sizeof path, "%s/cpu.max", dir) < (int)sizeof path &&
        read_small(path, a, sizeof a)) {
        char q[32];
        if (sscanf(a, "%31s %ld", q, &period) == 2 && strcmp(q, "max") != 0)
            quota = atol(q);
    } else if (snprintf(path, sizeof path, "%s/cpu.cfs_quota_us", dir) < (int)sizeof path &&
               read_small(path, a, sizeof a) &&
               snprintf(path, sizeof path, "%s/cpu.cfs_period_us", dir) < (int)sizeof path &&
               read_small(path, b, sizeof b)) {
        quota = atol(a); /* -1: unlimited */
        period = atol(b);
    }
    if (quota <= 0 || period <= 0)
        return 0;
    return (quota + period - 1) / period;
}

/* The cgroup path of the line for the CPU controller: the v2 line "0::PATH",
 * or a v1 line whose controller list holds "cpu". */
static int cgroup_path(const char *text, char *out, size_t cap)
{
    const char *p = text;
    while (p && *p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        const char *c1 = memchr(p, ':', len);
        const char *c2 = c1 ? memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - p)) : NULL;
        if (c2) {
            size_t clen = (size_t)(c2 - c1 - 1);
            int v2 = clen == 0 && c1 - p == 1 && p[0] == '0';
            int v1cpu = 0;
            for (const char *s = c1 + 1; s < c2 && !v1cpu;) {
                const char *e = memchr(s, ',', (size_t)(c2 - s));
                size_t n = e ? (size_t)(e - s) : (size_t)(c2 - s);
                v1cpu = n == 3 && memcmp(s, "cpu", 3) == 0;
                s = e ? e + 1 : c2;
            }
            size_t plen = len - (size_t)(c2 + 1 - p);
            if ((v2 || v1cpu) && plen < cap) {
                memcpy(out, c2 + 1, plen);
                out[plen] = '\0';
                return 1;
            }
        }
        p = eol ? eol + 1 : NULL;
    }
    return 0;
}

int bg_cpu_available_at(const char *cgroup_root, const char *proc_self_cgroup, int n_affinity)
{
    long n = n_affinity < 1 ? 1 : n_affinity > MAX_CPUS ? MAX_CPUS : n_affinity;
    char rel[2048] = "/";
    if (proc_self_cgroup)
        (void)cgroup_path(proc_self_cgroup, rel, sizeof rel);
    /* v1 mounts the controller under its own directory; v2 is the root. */
    const char *roots[] = {"", "/cpu", "/cpu,cpuacct"};
    for (size_t r = 0; r < sizeof roots / sizeof *roots; r++) {
        char dir[4096];
        int base = snprintf(dir, sizeof dir, "%s%s", cgroup_root, roots[r]);
        if (base < 0 || (size_t)base >= sizeof dir ||
            snprintf(dir + base, sizeof dir - (size_t)base, "%s", rel) >=
                (int)(sizeof dir - (size_t)base))
            continue;
        size_t len = strlen(dir);
        for (;;) { /* this cgroup, then each ancestor, the root last */
            while (len > (size_t)base && dir[len - 1] == '/')
                dir[--len] = '\0';
            long q = quota_cpus(dir);
            if (q >= 1 && q < n)
                n = q;
            if (len == (size_t)base)
                break;
            char *slash = strrchr(dir + base, '/');
            len = slash ? (size_t)(slash - dir) : (size_t)base;
            dir[len] = '\0';
        }
    }
    BG_ASSERT(n >= 1 && n <= MAX_CPUS, "cpu count %ld out of [1, %d]", n, MAX_CPUS);
    return (int)n;
}

int bg_cpu_available(void)
{
    int n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        n = CPU_COUNT(&set);
    } else {
        long v = sysconf(_SC_NPROCESSORS_ONLN);
        n = v > 0 ? (int)(v < MAX_CPUS ? v : MAX_CPUS) : 1;
    }
    char text[4096];
    int have = read_small("/proc/self/cgroup", text, sizeof text);
    return bg_cpu_available_at("/sys/fs/cgroup", have ? text : NULL, n);
}
