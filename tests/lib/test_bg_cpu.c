/*
 * test_bg_cpu.c — bg_cpu_available_at (lib/common/bg_cpu.h): the affinity
 * count capped by the smallest CPU quota from the process's cgroup up to the
 * root, v2 (cpu.max) and v1 (cpu.cfs_quota_us / cpu.cfs_period_us), quotas
 * rounded up; "max", -1, missing files and unreadable /proc text mean no
 * limit. Each case builds a cgroup tree in a temp dir; the real machine's
 * value is only checked for range (it depends on where the test runs).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bg_test.h"
#include "common/bg_cpu.h"

static char root[256];

static void put(const char *rel, const char *text)
{
    char path[512], dir[512];
    snprintf(path, sizeof path, "%s%s", root, rel);
    snprintf(dir, sizeof dir, "%s", path);
    for (char *p = dir + strlen(root) + 1; *p; p++) /* mkdir -p of the parent */
        if (*p == '/') {
            *p = '\0';
            mkdir(dir, 0700);
            *p = '/';
        }
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static void fresh(void)
{
    if (root[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        CHECK(system(cmd) == 0);
    }
    snprintf(root, sizeof root, "/tmp/bg_cpu_XXXXXX");
    CHECK(mkdtemp(root) != NULL);
}

int main(void)
{
    /* No cgroup files at all: the affinity count, clamped to [1, 256]. */
    fresh();
    CHECK_INT(bg_cpu_available_at(root, NULL, 8), 8);
    CHECK_INT(bg_cpu_available_at(root, NULL, 0), 1);
    CHECK_INT(bg_cpu_available_at(root, NULL, 1000), 256);

    /* v2, a container with its own cgroup namespace: the root's cpu.max. */
    fresh();
    put("/cpu.max", "200000 100000\n");
    CHECK_INT(bg_cpu_available_at(root, "0::/\n", 64), 2);
    CHECK_INT(bg_cpu_available_at(root, NULL, 64), 2);
    CHECK_INT(bg_cpu_available_at(root, "0::/\n", 1), 1); /* affinity binds */
    put("/cpu.max", "150000 100000\n");                   /* 1.5 CPUs: 2 threads */
    CHECK_INT(bg_cpu_available_at(root, "0::/\n", 64), 2);
    put("/cpu.max", "max 100000\n");
    CHECK_INT(bg_cpu_available_at(root, "0::/\n", 64), 64);

    /* v2 without a namespace: the pod's quota sits on an ancestor of the
     * container's cgroup, which has none of its own. */
    fresh();
    put("/kubepods/pod1/cpu.max", "300000 100000\n");
    put("/kubepods/pod1/c2/cpu.max", "max 100000\n");
    put("/kubepods/cpu.max", "1600000 100000\n");
    CHECK_INT(bg_cpu_available_at(root, "0::/kubepods/pod1/c2\n", 64), 3);
    put("/kubepods/pod1/c2/cpu.max", "100000 100000\n"); /* the tighter one wins */
    CHECK_INT(bg_cpu_available_at(root, "0::/kubepods/pod1/c2\n", 64), 1);

    /* v1: the cpu controller in its own hierarchy; -1 = unlimited. */
    fresh();
    put("/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "250000\n");
    put("/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
    const char *v1 = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/x\n";
    CHECK_INT(bg_cpu_available_at(root, v1, 16), 3);
    put("/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "-1\n");
    CHECK_INT(bg_cpu_available_at(root, v1, 16), 16);

    /* Garbage is no limit, never a crash or a zero. */
    fresh();
    put("/cpu.max", "lots\n");
    CHECK_INT(bg_cpu_available_at(root, "garbage without colons", 4), 4);
    put("/cpu.max", "0 100000\n");
    CHECK_INT(bg_cpu_available_at(root, "0::/\n", 4), 4);

    /* This machine: in range (and, here, at most the online CPUs). */
    int n = bg_cpu_available();
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    CHECK(n >= 1 && n <= 256 && (online <= 0 || n <= online), "bg_cpu_available() = %d", n);
    printf("bg_cpu_available() here: %d (online %ld)\n", n, online);

    fresh(); /* leaves an empty dir: remove it */
    rmdir(root);
    CHECK_DONE("test_bg_cpu");
}
