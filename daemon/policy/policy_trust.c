/*
 * policy_trust.c — who can write the policy in force: the loader refuses a
 * policy directory or file that anyone but root and the daemon's own user
 * could change.
 *
 * Why: the policy directory is the guard's configuration, and the watch
 * reloads it by itself (policy_watch.c). Whoever can write a policy file,
 * or add one to the directory, sets the threshold, the mode, the session
 * keying and `outcomes: open` — a way round every other check. The agent
 * being guarded may run under a uid or group that can (a group-writable
 * checkout, a shared volume, a file left to another user), so the loader
 * checks, like sshd's StrictModes and like the receipt key's 0600 check
 * (receipt.c).
 *
 * The rule, for the directory, each policy file (symlinks followed) and the
 * directory each file really lives in (a Kubernetes ConfigMap's visible
 * names are symlinks into a ..data directory):
 *   - on a file system mounted read-only (statvfs ST_RDONLY): trusted, no
 *     one can write it (a ConfigMap mount is 0777 root:fsGroup, read-only);
 *   - else it must be owned by root or the daemon's effective uid, and not
 *     writable by its group or others (mode & 022 == 0).
 * Parents above the directory are the operator's to lay out (a root-owned
 * path, as every installation has it); they are not walked.
 *
 * Invariants: pure checks, nothing kept; every refusal names the path, who
 * can write it and the command that fixes it.
 * Threads: any (the loader is serialised by the store).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "policy/policy_priv.h"

int bg__policy_path_trusted(const char *path, bg_policy_errors *errs)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        bg__errs_add(errs, "%s: cannot stat: %s", path, strerror(errno));
        return 0;
    }
    struct statvfs vfs;
    if (statvfs(path, &vfs) == 0 && (vfs.f_flag & ST_RDONLY))
        return 1;
    const char *kind = S_ISDIR(st.st_mode) ? "policy directory" : "policy file";
    uid_t me = geteuid();
    if (st.st_uid != 0 && st.st_uid != me) {
        bg__errs_add(
            errs,
            "%s: %s owned by uid %u, neither root nor bayesguardd's user (uid %u): "
            "whoever owns it can change the policy in force: chown it to root or to uid %u",
            path, kind, (unsigned)st.st_uid, (unsigned)me, (unsigned)me);
        return 0;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        bg__errs_add(errs,
                     "%s: %s writable by %s (mode %04o): whoever can write it can change the "
                     "policy in force: chmod go-w it, or mount the policies read-only",
                     path, kind, (st.st_mode & S_IWOTH) ? "others" : "its group",
                     (unsigned)(st.st_mode & 07777));
        return 0;
    }
    return 1;
}

int bg__policy_file_trusted(const char *dir, const char *path, bg_policy_errors *errs)
{
    if (!bg__policy_path_trusted(path, errs))
        return 0;
    char real[PATH_MAX], rdir[PATH_MAX];
    if (realpath(path, real) == NULL || realpath(dir, rdir) == NULL)
        return 1; /* gone mid-swap: the read that follows reports it */
    char *slash = strrchr(real, '/');
    if (slash == NULL || slash == real)
        return 1;
    *slash = '\0';
    return strcmp(real, rdir) == 0 || bg__policy_path_trusted(real, errs);
}
