/*
 * fuzz_features.c — the feature-expression language (daemon/features):
 * the input is "<expression>\n<JSON arguments>"; the expression is
 * compiled as a policy's spec.features entry would be and, when it
 * compiles and the JSON parses, evaluated over the arguments
 * (bg_features_fuzz_one). Beyond the sanitizers, it checks that the
 * evaluator's promise holds: a value it returns as BG_OK is finite.
 */
#include <stddef.h>
#include <stdint.h>

#include "features/features.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return bg_features_fuzz_one(data, size);
}
