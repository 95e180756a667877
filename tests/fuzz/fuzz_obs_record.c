/*
 * fuzz_obs_record.c — the observation-log record decoder (bg__obs_decode,
 * observation.h): the input is one record payload, as obs_store hands it
 * over after its length and CRC checks.
 *
 * Checks beyond the sanitizers: a record that decodes re-encodes, and the
 * re-encoding decodes to the same encoding again (a fixed point after one
 * step: a string with a NUL inside decodes shorter, so the first encoding
 * may differ from the input); a record that does not decode returns no
 * strings or observation and a message.
 */
#include "common/bg_assert.h"
#include "engine/observation.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *guard = NULL, *session = NULL;
    bg_observation *obs = NULL;
    bg_err err;
    bg_err_clear(&err);
    int rc = bg__obs_decode(data, size, &guard, &session, &obs, &err);
    if (rc != BG_OK) {
        BG_ASSERT(guard == NULL && session == NULL && obs == NULL && err.msg[0] != '\0',
                  "a failed decode (%d) left output or no message", rc);
        return 0;
    }
    BG_ASSERT(guard != NULL && session != NULL && obs != NULL, "a decode without output");
    uint8_t *enc = NULL, *enc2 = NULL;
    size_t n = bg__obs_encode(guard, session, obs, &enc);
    BG_ASSERT(n > 0, "re-encoding a decoded record failed");
    char *g2, *s2;
    bg_observation *o2;
    rc = bg__obs_decode(enc, n, &g2, &s2, &o2, &err);
    BG_ASSERT(rc == BG_OK, "a re-encoded record does not decode: %s", err.msg);
    size_t n2 = bg__obs_encode(g2, s2, o2, &enc2);
    BG_ASSERT(n2 == n && memcmp(enc, enc2, n) == 0,
              "decode/encode is not a fixed point (%zu vs %zu bytes)", n, n2);
    BG_ASSERT(bg__obs_size(obs) > 0, "bg__obs_size of a decoded observation is 0");
    free(enc);
    free(enc2);
    free(g2);
    free(s2);
    free(o2);
    free(guard);
    free(session);
    free(obs);
    return 0;
}
