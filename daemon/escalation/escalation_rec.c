/*
 * escalation_rec.c — one escalation record: deep copy, free, the decision
 * a settled one stands for, and its JSON form (the file's payload).
 *
 * Why JSON: a record is written once per change and read only at start;
 * a self-describing payload lets a newer daemon add fields and an operator
 * read the file with jq. The receipt is hex.
 *
 * Threads: pure functions, any thread. Ownership: copies and decoded
 * records are new (bg_escalation_rec_free).
 */
#include <stdlib.h>
#include <string.h>

#include "escalation/escalation_priv.h"

const char *bg_esc_state_name(int state)
{
    switch (state) {
    case BG_ESC_PENDING:
        return "PENDING";
    case BG_ESC_APPROVED:
        return "APPROVED";
    case BG_ESC_REJECTED:
        return "REJECTED";
    case BG_ESC_EXPIRED:
        return "EXPIRED";
    default:
        return "?";
    }
}

int bg_escalation_allows(const bg_escalation_rec *r)
{
    switch (r->state) {
    case BG_ESC_APPROVED:
        return 1;
    case BG_ESC_EXPIRED:
        return r->on_timeout_allow ? 1 : 0;
    case BG_ESC_REJECTED:
        return 0;
    default:
        return -1;
    }
}

char *bg__esc_strndup(const char *s, size_t max)
{
    if (s == NULL)
        s = "";
    size_t n = strlen(s);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--; /* not inside a UTF-8 sequence */
    }
    char *d = malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* The string fields, for copy, free and JSON alike. */
#define BG_ESC_STRINGS(X)                                                                          \
    X(id)                                                                                          \
    X(policy)                                                                                      \
    X(revision)                                                                                    \
    X(tool)                                                                                        \
    X(arguments)                                                                                   \
    X(cautious_label)                                                                              \
    X(session)                                                                                     \
    X(agent)                                                                                       \
    X(peer)                                                                                        \
    X(approver)                                                                                    \
    X(approver_peer)                                                                               \
    X(reason)

void bg_escalation_rec_free(bg_escalation_rec *r)
{
    if (r == NULL)
        return;
#define BG_ESC_FREE(f) free(r->f);
    BG_ESC_STRINGS(BG_ESC_FREE)
#undef BG_ESC_FREE
    free(r->receipt);
    free(r);
}

bg_escalation_rec *bg_escalation_rec_copy(const bg_escalation_rec *r)
{
    return bg__esc_rec_copy_cut(r, SIZE_MAX - 1);
}

bg_escalation_rec *bg__esc_rec_copy_cut(const bg_escalation_rec *r, size_t max)
{
    bg_escalation_rec *c = malloc(sizeof *c);
    if (c == NULL)
        return NULL;
    *c = *r;
    int ok = 1;
#define BG_ESC_DUP(f) ok &= (c->f = bg__esc_strndup(r->f, max)) != NULL;
    BG_ESC_STRINGS(BG_ESC_DUP)
#undef BG_ESC_DUP
    c->receipt = NULL;
    if (r->receipt_len > 0) {
        c->receipt = malloc(r->receipt_len);
        if (c->receipt != NULL)
            memcpy(c->receipt, r->receipt, r->receipt_len);
        else
            ok = 0;
    }
    if (!ok) {
        bg_escalation_rec_free(c);
        return NULL;
    }
    return c;
}

static const char hexd[] = "0123456789abcdef";

json_t *bg__esc_rec_to_json(const bg_escalation_rec *r)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    int bad = 0;
#define BG_ESC_PUT(f) bad |= json_object_set_new(o, #f, json_string(r->f ? r->f : ""));
    BG_ESC_STRINGS(BG_ESC_PUT)
#undef BG_ESC_PUT
    bad |= json_object_set_new(o, "state", json_integer(r->state));
    bad |= json_object_set_new(o, "harm_bound", json_real(r->harm_bound));
    bad |= json_object_set_new(o, "threshold", json_real(r->threshold));
    bad |= json_object_set_new(o, "has_cautious", json_boolean(r->has_cautious));
    bad |= json_object_set_new(o, "cautious_id", json_integer((json_int_t)r->cautious_id));
    bad |= json_object_set_new(o, "cautious_posterior", json_real(r->cautious_posterior));
    bad |= json_object_set_new(o, "cautious_harm", json_real(r->cautious_harm));
    bad |= json_object_set_new(o, "created_ms", json_integer(r->created_ms));
    bad |= json_object_set_new(o, "expires_ms", json_integer(r->expires_ms));
    bad |= json_object_set_new(o, "resolved_ms", json_integer(r->resolved_ms));
    bad |= json_object_set_new(o, "on_timeout_allow", json_boolean(r->on_timeout_allow));
    char *hex = malloc(2 * r->receipt_len + 1);
    if (hex != NULL) {
        for (size_t i = 0; i < r->receipt_len; i++) {
            hex[2 * i] = hexd[r->receipt[i] >> 4];
            hex[2 * i + 1] = hexd[r->receipt[i] & 15];
        }
        hex[2 * r->receipt_len] = '\0';
        bad |= json_object_set_new(o, "receipt", json_string(hex));
        free(hex);
    }
    if (bad || hex == NULL) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int unhex(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A number field (integer or real) of o into *v; 0 when missing/not one. */
static int num(const json_t *o, const char *k, double *v)
{
    const json_t *x = json_object_get(o, k);
    if (!json_is_number(x))
        return 0;
    *v = json_number_value(x);
    return 1;
}

/* An integer field of o into *v; 0 when missing/not one (a real is not). */
static int integer(const json_t *o, const char *k, int64_t *v)
{
    const json_t *x = json_object_get(o, k);
    if (!json_is_integer(x))
        return 0;
    *v = (int64_t)json_integer_value(x);
    return 1;
}

bg_escalation_rec *bg__esc_rec_from_json(const json_t *o, bg_err *err)
{
    if (!json_is_object(o)) {
        bg_err_set(err, BG_EINVAL, "not a JSON object");
        return NULL;
    }
    bg_escalation_rec *r = calloc(1, sizeof *r);
    if (r == NULL) {
        bg_err_set(err, BG_ENOMEM, "out of memory");
        return NULL;
    }
    const char *missing = NULL;
#define BG_ESC_GET(f)                                                                              \
    if (missing == NULL) {                                                                         \
        const json_t *x_ = json_object_get(o, #f);                                                 \
        if (!json_is_string(x_) ||                                                                 \
            (r->f = bg__esc_strndup(json_string_value(x_), SIZE_MAX - 1)) == NULL)                 \
            missing = #f;                                                                          \
    }
    BG_ESC_STRINGS(BG_ESC_GET)
#undef BG_ESC_GET
    int64_t st = 0, cid = 0;
    if (missing == NULL &&
        !(integer(o, "state", &st) && num(o, "harm_bound", &r->harm_bound) &&
          num(o, "threshold", &r->threshold) && integer(o, "cautious_id", &cid) &&
          num(o, "cautious_posterior", &r->cautious_posterior) &&
          num(o, "cautious_harm", &r->cautious_harm) && integer(o, "created_ms", &r->created_ms) &&
          integer(o, "expires_ms", &r->expires_ms) && integer(o, "resolved_ms", &r->resolved_ms)))
        missing = "a number field";
    r->state = st >= BG_ESC_PENDING && st <= BG_ESC_EXPIRED ? (int)st : 0;
    r->cautious_id = (uint64_t)cid;
    r->has_cautious = json_is_true(json_object_get(o, "has_cautious"));
    r->on_timeout_allow = json_is_true(json_object_get(o, "on_timeout_allow"));
    if (missing == NULL && (r->state < BG_ESC_PENDING || r->state > BG_ESC_EXPIRED))
        missing = "state (1..4)";
    const json_t *h = json_object_get(o, "receipt");
    const char *hs = json_is_string(h) ? json_string_value(h) : NULL;
    size_t hn = hs ? strlen(hs) : 0;
    if (missing == NULL && (hs == NULL || hn % 2 != 0))
        missing = "receipt (hex)";
    if (missing == NULL && hn > 0) {
        r->receipt = malloc(hn / 2);
        if (r->receipt == NULL)
            missing = "receipt (out of memory)";
        for (size_t i = 0; r->receipt != NULL && i < hn / 2; i++) {
            int a = unhex(hs[2 * i]), b = unhex(hs[2 * i + 1]);
            if (a < 0 || b < 0) {
                missing = "receipt (hex)";
                break;
            }
            r->receipt[i] = (uint8_t)(a << 4 | b);
        }
        r->receipt_len = hn / 2;
    }
    if (missing != NULL || r->id[0] == '\0') {
        bg_err_set(err, BG_EINVAL, "not an escalation record: field %s is missing or wrong",
                   missing ? missing : "id");
        bg_escalation_rec_free(r);
        return NULL;
    }
    return r;
}
