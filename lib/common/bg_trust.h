/* bg_trust.h — who can write a file the daemon trusts: the rule that the
 * policy loader, the plugin host and the model files share.
 *
 * A path is trusted when no one but root and the daemon's own user can
 * change it: it lies on a file system mounted read-only (statvfs
 * ST_RDONLY: a Kubernetes ConfigMap or an image layer), or it is owned by
 * root or the effective uid and not writable by its group or others
 * (mode & 022 == 0). Like sshd's StrictModes. Parents above the path are
 * the operator's to lay out; they are not walked.
 *
 * Pure checks, nothing kept, any thread. Every refusal writes a message that
 * names the path, who can write it, what that allows (`stake`) and the
 * command that fixes it.
 */
#ifndef BG_TRUST_H
#define BG_TRUST_H

#include <stddef.h>

/* 1 when path (symlinks followed) is trusted, else 0 with why[0..why_len)
 * set: "PATH: KIND owned by uid U, neither root nor ...: whoever owns it
 * STAKE: chown it ..." or "... writable by others (mode 0777): whoever can
 * write it STAKE: chmod go-w it ...". kind names the thing ("policy
 * directory", "plugin"), stake what a writer could do ("can change the
 * policy in force"). A path that cannot be stat'ed is untrusted. */
int bg_path_trusted(const char *path, const char *kind, const char *stake, char *why,
                    size_t why_len);

/* bg_path_trusted of path, and of the directory path's target really lives
 * in when that is not dir itself (a symlink out of dir: a ConfigMap's
 * ..data, a plugin dir of links into a build tree). */
int bg_file_trusted_in(const char *dir, const char *path, const char *kind, const char *stake,
                       char *why, size_t why_len);

#endif
