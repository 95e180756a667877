/* bg_cpu.h — how many CPUs this process may really use.
 *
 * Thread pools size themselves by it (the RPC completion queues, the compute
 * backend's workers). A sidecar limited to 2 CPUs on a 64-core node must not
 * start 64 threads: the count is the CPUs of the process's affinity mask
 * (cpusets count), capped by the CPU quota of every cgroup from the process's
 * own up to the root — cgroup v2 `cpu.max` ("QUOTA PERIOD" or "max PERIOD"),
 * cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` — rounded up
 * (a quota of 1.5 CPUs gives 2 threads).
 *
 * Invariant: the result is in [1, 256]. Any thread; reads /proc and /sys at
 * each call (callers call it once, at start). */
#ifndef BG_CPU_H
#define BG_CPU_H

/* The CPUs this process may use (affinity capped by cgroup quotas). */
int bg_cpu_available(void);

/* The same from a given cgroup file-system root and /proc/self/cgroup text
 * (tests point both at a temp dir); n_affinity is the affinity count. */
int bg_cpu_available_at(const char *cgroup_root, const char *proc_self_cgroup, int n_affinity);

#endif
