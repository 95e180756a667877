/* plugin_code.h — a plugin's failure as the engine's status code, one rule
 * for the enumerated path (engine.c) and the sampled one (sampled*.c).
 *
 * A limit (BG_PLUGIN_ELIMIT: e.g. the language-model service's queue, which
 * an agent can fill by flooding Evaluate, plugin_lm.c) and memory stay what
 * they are — RESOURCE_EXHAUSTED whatever the policy's on_error says
 * (rpc_svc_guard.c) — so that no caller can turn a DENY into the ALLOW of
 * `on_error: allow` by driving a plugin to its limit. Invalid data is the
 * caller's error; anything else is internal. Any thread.
 */
#ifndef BG_ENGINE_PLUGIN_CODE_H
#define BG_ENGINE_PLUGIN_CODE_H

#include "bayesguard/plugin.h"
#include "common/bg_err.h"

static inline int bg__plugin_code(int prc)
{
    switch (prc) {
    case BG_PLUGIN_EINVAL:
        return BG_EINVAL;
    case BG_PLUGIN_ELIMIT:
        return BG_ELIMIT;
    case BG_PLUGIN_ENOMEM:
        return BG_ENOMEM;
    default:
        return BG_EINTERNAL;
    }
}

#endif
