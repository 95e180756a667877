/*
 * vk_spirv.h — the SPIR-V of every compute shader, embedded at build time.
 *
 * shaders/shaders.cmake compiles shaders/<name>.comp with glslangValidator and
 * generates the table below (build dir only). Entries are immutable program
 * data: any thread may read them.
 */
#ifndef BG_VK_SPIRV_H
#define BG_VK_SPIRV_H

#include <stddef.h>
#include <stdint.h>

typedef struct bg_vk_spirv {
    const char *name;     /* file name without .comp: "matmul" */
    const uint32_t *code; /* SPIR-V words */
    size_t size;          /* bytes */
} bg_vk_spirv;

extern const bg_vk_spirv bg__vk_spirv_table[];
extern const size_t bg__vk_spirv_count;

/* The entry named name, NULL when absent. */
const bg_vk_spirv *bg__vk_spirv_find(const char *name);

#endif
