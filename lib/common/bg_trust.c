/*
 * bg_trust.c — the ownership and mode rule of bg_trust.h.
 *
 * Why: the guard's configuration (policies), its code (plugins) and its
 * models are read from disk and, for policies and plugins, re-read by
 * themselves on a reload. The agent being guarded may run under a uid or
 * group that can write one of them (a group-writable checkout, a shared
 * volume, a file left to another user); whoever can write them decides the
 * verdicts. So each is checked before it is used, with one rule.
 *
 * Invariants: no state; why is always NUL-terminated when why_len > 0.
 */
#include "common/bg_trust.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

int bg_path_trusted(const char *path, const char *kind, const char *stake, char *why,
                    size_t why_len)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(why, why_len, "%s: cannot stat: %s", path, strerror(errno));
        return 0;
    }
    struct statvfs vfs;
    if (statvfs(path, &vfs) == 0 && (vfs.f_flag & ST_RDONLY))
        return 1;
    uid_t me = geteuid();
    if (st.st_uid != 0 && st.st_uid != me) {
        snprintf(why, why_len,
                 "%s: %s owned by uid %u, neither root nor bayesguardd's user (uid %u): "
                 "whoever owns it %s: chown it to root or to uid %u",
                 path, kind, (unsigned)st.st_uid, (unsigned)me, stake, (unsigned)me);
        return 0;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(why, why_len,
                 "%s: %s writable by %s (mode %04o): whoever can write it %s: chmod go-w it, "
                 "or mount it read-only",
                 path, kind, (st.st_mode & S_IWOTH) ? "others" : "its group",
                 (unsigned)(st.st_mode & 07777), stake);
        return 0;
    }
    return 1;
}

int bg_file_trusted_in(const char *dir, const char *path, const char *kind, const char *stake,
                       char *why, size_t why_len)
{
    if (!bg_path_trusted(path, kind, stake, why, why_len))
        return 0;
    char real[PATH_MAX], rdir[PATH_MAX];
    if (realpath(path, real) == NULL || realpath(dir, rdir) == NULL)
        return 1; /* gone mid-swap: the read that follows reports it */
    char *slash = strrchr(real, '/');
    if (slash == NULL || slash == real)
        return 1;
    *slash = '\0';
    if (strcmp(real, rdir) == 0)
        return 1;
    char dkind[96];
    snprintf(dkind, sizeof dkind, "directory of a %s", kind);
    return bg_path_trusted(real, dkind, stake, why, why_len);
}
