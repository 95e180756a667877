/*
 * fuzz_metrics_http.c — the /metrics endpoint's request parser
 * (bg__metrics_http_scan, metrics_http.c): the input is what a client
 * sends, delivered in reads the way libuv hands them to the server (byte 0
 * is the size of each read, 1..256), into a head buffer of the server's
 * size; the parser answers or reads on after each read, as on_read does.
 *
 * Checks beyond the sanitizers: every answer has a known status code, a
 * reason and a body (or is the metrics, then a 200); a full head buffer
 * always has an answer (at the latest, 431).
 */
#include "common/bg_assert.h"
#include "fuzz_util.h"
#include "metrics/metrics.h"

static char head[BG_METRICS_HTTP_MAX_HEAD];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (size_t)data[0] + 1, len = 0, at = 1;
    bg__http_answer a;
    int answered = 0;
    while (at < size && !answered) {
        size_t n = size - at < chunk ? size - at : chunk;
        if (n > sizeof head - len)
            n = sizeof head - len; /* the server's read buffer ends there */
        memcpy(head + len, data + at, n);
        at += n;
        size_t from = len;
        len += n;
        answered = bg__metrics_http_scan(head, from, len, &a);
        BG_ASSERT(answered || len < sizeof head, "a full %zu-byte head buffer without an answer",
                  len);
    }
    if (!answered)
        return 0;
    BG_ASSERT(a.code == 200 || a.code == 400 || a.code == 404 || a.code == 405 || a.code == 431 ||
                  a.code == 505,
              "status %d", a.code);
    BG_ASSERT(a.reason != NULL && a.reason[0] != '\0', "status %d without a reason", a.code);
    BG_ASSERT(a.metrics ? a.code == 200 && a.body == NULL : a.body != NULL,
              "status %d: metrics %d, body %p", a.code, a.metrics, (const void *)a.body);
    return 0;
}
