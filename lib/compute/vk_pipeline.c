/*
 * vk_pipeline.c — shared layouts and the lazy pipeline cache (vk_pipeline.h).
 *
 * A miss looks the shader up in the embedded SPIR-V table, builds a shader
 * module, creates the pipeline with the spec constants and drops the module
 * (the pipeline does not need it). The cache is a small array searched
 * linearly: a backend uses a dozen kernels with one or two variants each.
 */
#include "compute/vk_pipeline.h"

#include <string.h>

#include "common/bg_log.h"
#include "compute/vk_spirv.h"

_Static_assert(sizeof(bg_vk_pc) == 96, "bg_vk_pc mirrors PC in shaders/bg_common.glsl");

const bg_vk_spirv *bg__vk_spirv_find(const char *name)
{
    for (size_t i = 0; i < bg__vk_spirv_count; i++)
        if (strcmp(bg__vk_spirv_table[i].name, name) == 0)
            return &bg__vk_spirv_table[i];
    return NULL;
}

int bg__vk_pipes_init(bg_vk_pipes *p, bg_vk_dev *d, bg_err *err)
{
    memset(p, 0, sizeof(*p));
    p->d = d;
    VkDescriptorSetLayoutBinding b[BG_VK_BINDINGS];
    for (uint32_t i = 0; i < BG_VK_BINDINGS; i++)
        b[i] = (VkDescriptorSetLayoutBinding){
            .binding = i,
            .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .descriptorCount = 1,
            .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        };
    VkDescriptorSetLayoutCreateInfo dci = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .bindingCount = BG_VK_BINDINGS,
        .pBindings = b,
    };
    VkResult r = d->fn.vkCreateDescriptorSetLayout(d->dev, &dci, NULL, &p->dsl);
    if (r != VK_SUCCESS)
        return bg_err_set(err, BG_EINTERNAL, "vulkan: descriptor set layout: %s",
                          bg__vk_result_str(r));
    VkPushConstantRange pcr = {
        .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        .offset = 0,
        .size = sizeof(bg_vk_pc),
    };
    VkPipelineLayoutCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .setLayoutCount = 1,
        .pSetLayouts = &p->dsl,
        .pushConstantRangeCount = 1,
        .pPushConstantRanges = &pcr,
    };
    r = d->fn.vkCreatePipelineLayout(d->dev, &pci, NULL, &p->layout);
    if (r != VK_SUCCESS) {
        bg__vk_pipes_close(p);
        return bg_err_set(err, BG_EINTERNAL, "vulkan: pipeline layout: %s", bg__vk_result_str(r));
    }
    return BG_OK;
}

void bg__vk_pipes_close(bg_vk_pipes *p)
{
    bg_vk_dev *d = p->d;
    if (!d)
        return;
    for (int i = 0; i < p->npipes; i++)
        d->fn.vkDestroyPipeline(d->dev, p->pipes[i].pipeline, NULL);
    if (p->layout)
        d->fn.vkDestroyPipelineLayout(d->dev, p->layout, NULL);
    if (p->dsl)
        d->fn.vkDestroyDescriptorSetLayout(d->dev, p->dsl, NULL);
    memset(p, 0, sizeof(*p));
}

static int create(bg_vk_pipes *p, const char *shader, const uint32_t *spec, int nspec,
                  VkPipeline *out, bg_err *err)
{
    bg_vk_dev *d = p->d;
    const bg_vk_spirv *sp = bg__vk_spirv_find(shader);
    if (!sp)
        return bg_err_set(err, BG_EINTERNAL, "vulkan: no embedded SPIR-V for shader %s", shader);
    VkShaderModuleCreateInfo smi = {
        .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
        .codeSize = sp->size,
        .pCode = sp->code,
    };
    VkShaderModule mod;
    VkResult r = d->fn.vkCreateShaderModule(d->dev, &smi, NULL, &mod);
    if (r != VK_SUCCESS)
        return bg_err_set(err, BG_EINTERNAL, "vulkan: shader module %s: %s", shader,
                          bg__vk_result_str(r));
    VkSpecializationMapEntry me[BG_VK_MAX_SPEC];
    for (int i = 0; i < nspec; i++)
        me[i] = (VkSpecializationMapEntry){.constantID = (uint32_t)i,
                                           .offset = (uint32_t)(i * sizeof(uint32_t)),
                                           .size = sizeof(uint32_t)};
    VkSpecializationInfo si = {
        .mapEntryCount = (uint32_t)nspec,
        .pMapEntries = me,
        .dataSize = (size_t)nspec * sizeof(uint32_t),
        .pData = spec,
    };
    VkComputePipelineCreateInfo cpi = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage =
            {
                .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                .module = mod,
                .pName = "main",
                .pSpecializationInfo = nspec ? &si : NULL,
            },
        .layout = p->layout,
    };
    r = d->fn.vkCreateComputePipelines(d->dev, VK_NULL_HANDLE, 1, &cpi, NULL, out);
    d->fn.vkDestroyShaderModule(d->dev, mod, NULL);
    if (r != VK_SUCCESS)
        return bg_err_set(err, BG_EINTERNAL, "vulkan: compute pipeline %s: %s", shader,
                          bg__vk_result_str(r));
    BG_DEBUG("vulkan", "pipeline %s created (%d spec constants)", shader, nspec);
    return BG_OK;
}

int bg__vk_pipes_get(bg_vk_pipes *p, const char *shader, const uint32_t *spec, int nspec,
                     VkPipeline *out, bg_err *err)
{
    if (nspec < 0 || nspec > BG_VK_MAX_SPEC)
        return bg_err_set(err, BG_EINTERNAL, "vulkan: %d spec constants for %s; at most %d", nspec,
                          shader, BG_VK_MAX_SPEC);
    for (int i = 0; i < p->npipes; i++) {
        bg_vk_pipe *e = &p->pipes[i];
        if (e->nspec == nspec && strcmp(e->shader, shader) == 0 &&
            memcmp(e->spec, spec, (size_t)nspec * sizeof(uint32_t)) == 0) {
            *out = e->pipeline;
            return BG_OK;
        }
    }
    if (p->npipes == BG_VK_MAX_PIPES)
        return bg_err_set(err, BG_ELIMIT, "vulkan: more than %d pipeline variants",
                          BG_VK_MAX_PIPES);
    VkPipeline pl;
    int rc = create(p, shader, spec, nspec, &pl, err);
    if (rc != BG_OK)
        return rc;
    bg_vk_pipe *e = &p->pipes[p->npipes++];
    e->shader = shader;
    memset(e->spec, 0, sizeof(e->spec));
    memcpy(e->spec, spec, (size_t)nspec * sizeof(uint32_t));
    e->nspec = nspec;
    e->pipeline = pl;
    *out = pl;
    return BG_OK;
}
