/*
 * policy_session.c — the session key a policy reads for a request: which
 * stored observations decide (spec.session, docs/POLICIES.md).
 *
 * Why a pure function: the key is the trust boundary's last step (a caller
 * that picks its key picks its history), so it is computed in one place
 * from the policy and what the request and its listener say, and unit
 * tested without a server (tests/policy/test_policy_session.c).
 *
 * Invariants: a key of the peer is never "" — a listener that cannot tell
 * who calls gets an error, not a session shared by every anonymous caller;
 * a two-level key's child is "<identity>|<session>" and its parent
 * "<identity>", and no identity contains '|', so children and parents of
 * different identities never collide.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "policy/policy_priv.h"

/* The caller's identity for a peer key, into buf: "uid:<n>" or the
 * listener's identity. BG_EUNSUPPORTED when there is none. */
static int peer_id(const bg_policy *p, const bg_session_who *who, char *buf, size_t len,
                   const char **id, bg_err *err)
{
    const char *what = p->session_key == BG_SESSION_PEER_UID ? "peer.uid" : "peer.identity";
    if (p->session_key == BG_SESSION_PEER_UID) {
        if (!who->has_uid)
            goto anonymous;
        int w = snprintf(buf, len, "uid:%" PRIu32, who->uid);
        if (w < 0 || (size_t)w >= len)
            return bg_err_set(err, BG_ELIMIT, "policy %s: session key buffer too small", p->name);
        *id = buf;
        return BG_OK;
    }
    if (!who->identity || !who->identity[0])
        goto anonymous;
    if (strchr(who->identity, BG_SESSION_LEVEL_SEP))
        return bg_err_set(err, BG_EUNSUPPORTED,
                          "policy %s keys sessions by %s, but the caller's identity '%s' contains "
                          "'%c', which separates a two-level session key: use an identity "
                          "without it",
                          p->name, what, who->identity, BG_SESSION_LEVEL_SEP);
    *id = who->identity;
    return BG_OK;
anonymous:
    return bg_err_set(err, BG_EUNSUPPORTED,
                      "policy %s keys sessions by %s, but this listener cannot tell who is "
                      "calling (use a unix socket or mTLS)",
                      p->name, what);
}

int bg_policy_session_keys(const bg_policy *p, const bg_session_who *who, char *buf, size_t len,
                           const char **key, const char **parent, bg_err *err)
{
    *key = "";
    *parent = NULL;
    switch (p->session_key) {
    case BG_SESSION_CONTEXT_AGENT:
        *key = who->agent ? who->agent : "";
        return BG_OK;
    case BG_SESSION_GLOBAL:
        return BG_OK;
    case BG_SESSION_ATTRIBUTE:
        for (size_t i = 0; i < who->n_attributes; i++)
            if (p->session_attr && strcmp(who->attributes[i].key, p->session_attr) == 0) {
                *key = who->attributes[i].value;
                return BG_OK;
            }
        return BG_OK;
    case BG_SESSION_PEER_IDENTITY:
    case BG_SESSION_PEER_UID: {
        const char *id = "";
        int rc = peer_id(p, who, buf, len, &id, err);
        if (rc != BG_OK || !p->session_two_level) {
            *key = rc == BG_OK ? id : "";
            return rc;
        }
        /* two levels: the parent is the identity, the child identity|session */
        const char *sess = who->session ? who->session : "";
        size_t il = strlen(id), sl = strlen(sess);
        if (id == buf) { /* uid:<n> is in buf: the child goes after it */
            if (il + 1 + il + 1 + sl + 1 > len)
                return bg_err_set(err, BG_ELIMIT, "policy %s: session key buffer too small",
                                  p->name);
            char *child = buf + il + 1;
            memcpy(child, id, il);
            child[il] = BG_SESSION_LEVEL_SEP;
            memcpy(child + il + 1, sess, sl + 1);
            *key = child;
        } else {
            if (il + 1 + sl + 1 > len)
                return bg_err_set(err, BG_ELIMIT, "policy %s: session key buffer too small",
                                  p->name);
            memcpy(buf, id, il);
            buf[il] = BG_SESSION_LEVEL_SEP;
            memcpy(buf + il + 1, sess, sl + 1);
            *key = buf;
        }
        *parent = id;
        return BG_OK;
    }
    case BG_SESSION_CONTEXT_SESSION:
    default:
        *key = who->session ? who->session : "";
        return BG_OK;
    }
}
