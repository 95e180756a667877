/*
 * test_policy_session.c — bg_policy_session_keys, the session key a policy
 * reads for a request: every spec.session kind, the two-level key's child
 * and parent, and the refusals where a key of the peer cannot be made (no
 * identity, no kernel uid, an identity with the level separator, a buffer
 * too small). Pure function: no plugins, no server.
 */
#include "bg_test.h"
#include "policy/policy.h"

static bg_policy pol(bg_session_key k, int two, const char *attr)
{
    bg_policy p;
    memset(&p, 0, sizeof p);
    p.name = "pol";
    p.session_key = k;
    p.session_two_level = two;
    p.session_attr = attr;
    return p;
}

static const bg_attr attrs[] = {{"tenant", "t-7"}, {"user", "u-1"}};

static bg_session_who who(const char *identity, int has_uid)
{
    return (bg_session_who){.session = "s1",
                            .agent = "a1",
                            .attributes = attrs,
                            .n_attributes = 2,
                            .identity = identity,
                            .has_uid = has_uid,
                            .uid = 1000};
}

/* p's key for w: rc, *key and *parent (NULL when one level). */
static int keys(const bg_policy *p, const bg_session_who *w, char *buf, size_t len,
                const char **key, const char **parent, bg_err *err)
{
    bg_err_clear(err);
    return bg_policy_session_keys(p, w, buf, len, key, parent, err);
}

int main(void)
{
    char buf[256];
    const char *key, *parent;
    bg_err err;
    bg_session_who w = who("spiffe://td/agent", 1);

    /* the request's own fields, as before */
    bg_policy p = pol(BG_SESSION_CONTEXT_SESSION, 0, NULL);
    CHECK_INT(keys(&p, &w, buf, sizeof buf, &key, &parent, &err), BG_OK);
    CHECK_STR(key, "s1");
    CHECK(parent == NULL);
    p = pol(BG_SESSION_CONTEXT_AGENT, 0, NULL);
    CHECK_INT(keys(&p, &w, buf, sizeof buf, &key, &parent, &err), BG_OK);
    CHECK_STR(key, "a1");
    p = pol(BG_SESSION_GLOBAL, 0, NULL);
    CHECK_INT(keys(&p, &w, buf, sizeof buf, &key, &parent, &err), BG_OK);
    CHECK_STR(key, "");
    p = pol(BG_SESSION_ATTRIBUTE, 0, "user");
    CHECK_INT(keys(&p, &w, buf, sizeof buf, &key, &parent, &err), BG_OK);
    CHECK_STR(key, "u-1");
    p = pol(BG_SESSION_ATTRIBUTE, 0, "absent");
    CHECK_INT(keys(&p, &w, buf, sizeof buf, &key, &parent, &err), BG_OK);
    CHECK_STR(key, "");

    /* the peer: the listener's identity, the kernel's uid */
    p = pol(BG_SESSION_PEER_IDENTITY, 0, NULL);
    CHECK_INT(keys(&p, &w, buf, sizeof buf, &key, &parent, &err), BG_OK);
    CHECK_STR(key, "spiffe://td/agent");
    CHECK(parent == NULL);
    p = pol(BG_SESSION_PEER_UID, 0, NULL);
    CHECK_INT(keys(&p, &w, buf, sizeof buf, &key, &parent, &err), BG_OK);
    CHECK_STR(key, "uid:1000");

    /* two levels: child identity|session, parent identity */
    p = pol(BG_SESSION_PEER_IDENTITY, 1, NULL);
    CHECK_INT(keys(&p, &w, buf, sizeof buf, &key, &parent, &err), BG_OK);
    CHECK_STR(key, "spiffe://td/agent|s1");
    CHECK_STR(parent, "spiffe://td/agent");
    p = pol(BG_SESSION_PEER_UID, 1, NULL);
    CHECK_INT(keys(&p, &w, buf, sizeof buf, &key, &parent, &err), BG_OK);
    CHECK_STR(key, "uid:1000|s1");
    CHECK_STR(parent, "uid:1000");
    /* a session id with the separator stays inside its identity's child */
    bg_session_who ws = w;
    ws.session = "x|y";
    p = pol(BG_SESSION_PEER_IDENTITY, 1, NULL);
    CHECK_INT(keys(&p, &ws, buf, sizeof buf, &key, &parent, &err), BG_OK);
    CHECK_STR(key, "spiffe://td/agent|x|y");
    CHECK_STR(parent, "spiffe://td/agent");
    /* an empty session is still that identity's own child */
    ws.session = "";
    CHECK_INT(keys(&p, &ws, buf, sizeof buf, &key, &parent, &err), BG_OK);
    CHECK_STR(key, "spiffe://td/agent|");

    /* a listener that cannot tell who calls: refused, never "" */
    bg_session_who anon = who("", 0);
    static const struct {
        bg_session_key k;
        int two;
        const char *what;
    } peer[] = {{BG_SESSION_PEER_IDENTITY, 0, "peer.identity"},
                {BG_SESSION_PEER_IDENTITY, 1, "peer.identity"},
                {BG_SESSION_PEER_UID, 0, "peer.uid"},
                {BG_SESSION_PEER_UID, 1, "peer.uid"}};
    for (size_t i = 0; i < sizeof peer / sizeof peer[0]; i++) {
        p = pol(peer[i].k, peer[i].two, NULL);
        CHECK_INT(keys(&p, &anon, buf, sizeof buf, &key, &parent, &err), BG_EUNSUPPORTED);
        char want[256];
        snprintf(want, sizeof want,
                 "policy pol keys sessions by %s, but this listener cannot tell who is calling "
                 "(use a unix socket or mTLS)",
                 peer[i].what);
        CHECK_STR(err.msg, want);
        CHECK(parent == NULL);
    }
    /* an identity but no kernel uid (mTLS): peer.uid refused, peer.identity fine */
    bg_session_who tls = who("spiffe://td/agent", 0);
    p = pol(BG_SESSION_PEER_UID, 0, NULL);
    CHECK_INT(keys(&p, &tls, buf, sizeof buf, &key, &parent, &err), BG_EUNSUPPORTED);
    p = pol(BG_SESSION_PEER_IDENTITY, 0, NULL);
    CHECK_INT(keys(&p, &tls, buf, sizeof buf, &key, &parent, &err), BG_OK);
    /* an identity containing the separator could alias another's child */
    bg_session_who odd = who("spiffe://td/a|s1", 1);
    CHECK_INT(keys(&p, &odd, buf, sizeof buf, &key, &parent, &err), BG_EUNSUPPORTED);
    CHECK(strstr(err.msg, "contains '|'") != NULL, "%s", err.msg);

    /* the buffer: the documented size suffices, a smaller one is refused */
    p = pol(BG_SESSION_PEER_UID, 1, NULL);
    char small[12];
    CHECK_INT(keys(&p, &w, small, sizeof small, &key, &parent, &err), BG_ELIMIT);
    p = pol(BG_SESSION_PEER_IDENTITY, 1, NULL);
    size_t need = strlen(w.identity) + strlen(w.session) + 32;
    char *exact = malloc(need);
    CHECK(exact != NULL);
    CHECK_INT(keys(&p, &w, exact, need, &key, &parent, &err), BG_OK);
    CHECK_INT(keys(&p, &w, buf, strlen(w.identity) + 2, &key, &parent, &err), BG_ELIMIT);
    free(exact);
    CHECK_DONE("test_policy_session");
}
