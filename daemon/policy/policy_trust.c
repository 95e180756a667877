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
 * The rule (lib/common/bg_trust.h, shared with the plugin host), for the
 * directory, each policy file (symlinks followed) and the directory each
 * file really lives in (a Kubernetes ConfigMap's visible names are symlinks
 * into a ..data directory):
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
#include <sys/stat.h>

#include "common/bg_trust.h"
#include "policy/policy_priv.h"

#define STAKE "can change the policy in force"

static const char *kind_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? "policy directory" : "policy file";
}

int bg__policy_path_trusted(const char *path, bg_policy_errors *errs)
{
    char why[1024];
    if (bg_path_trusted(path, kind_of(path), STAKE, why, sizeof why))
        return 1;
    bg__errs_add(errs, "%s", why);
    return 0;
}

int bg__policy_file_trusted(const char *dir, const char *path, bg_policy_errors *errs)
{
    char why[1024];
    if (bg_file_trusted_in(dir, path, "policy file", STAKE, why, sizeof why))
        return 1;
    bg__errs_add(errs, "%s", why);
    return 0;
}
