/*
 * vk_pipeline.h — the one pipeline layout shared by every kernel, and compute
 * pipelines created lazily from the embedded SPIR-V.
 *
 * Layout: set 0 holds BG_VK_BINDINGS storage buffers (bindings 0..7; a kernel
 * uses a prefix of them: the attention backward needs 8, so a device must
 * offer maxPerStageDescriptorStorageBuffers >= 8, checked at creation), push
 * constants are struct bg_vk_pc (96 bytes, under the 128 bytes every device
 * guarantees) mirrored by
 * shaders/bg_common.glsl. One layout means one descriptor-set shape for the
 * whole backend, so sets come from one pool and any kernel can follow any.
 *
 * Pipelines are keyed by (shader name, specialization constants 0..n-1) and
 * created on first use; workgroup and tile sizes are spec constants, so one
 * shader yields variants per device without recompiling GLSL. The cache owns
 * every pipeline until bg__vk_pipes_close. Thread: the backend's owner.
 */
#ifndef BG_VK_PIPELINE_H
#define BG_VK_PIPELINE_H

#include <stdint.h>

#include "compute/vk_device.h"

#define BG_VK_BINDINGS 8
#define BG_VK_MAX_SPEC 8
#define BG_VK_MAX_PIPES 64

/* Push constants: must match `PC` in shaders/bg_common.glsl word for word. */
typedef struct bg_vk_pc {
    uint32_t o[BG_VK_BINDINGS]; /* element offset of each view within its bound range */
    int32_t i[8];               /* op arguments */
    float f[8];                 /* op arguments (eps; AdamW's hyperparameters) */
} bg_vk_pc;

typedef struct bg_vk_pipe {
    const char *shader; /* static string */
    uint32_t spec[BG_VK_MAX_SPEC];
    int nspec;
    VkPipeline pipeline;
} bg_vk_pipe;

typedef struct bg_vk_pipes {
    bg_vk_dev *d; /* borrowed */
    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    bg_vk_pipe pipes[BG_VK_MAX_PIPES];
    int npipes;
} bg_vk_pipes;

int bg__vk_pipes_init(bg_vk_pipes *p, bg_vk_dev *d, bg_err *err);
void bg__vk_pipes_close(bg_vk_pipes *p);
/* The pipeline of shader (a string literal) with spec constants spec[0..nspec). */
int bg__vk_pipes_get(bg_vk_pipes *p, const char *shader, const uint32_t *spec, int nspec,
                     VkPipeline *out, bg_err *err);

#endif
