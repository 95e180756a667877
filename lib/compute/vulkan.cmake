# vulkan.cmake — the Vulkan backend of bg_compute (included at the end of
# lib/compute/CMakeLists.txt). No -lvulkan: libvulkan.so.1 is dlopen'ed at
# run time (vk_loader.c), so only the headers (libvulkan-dev) and libdl are
# needed to build; SPIR-V comes from bg_shaders (shaders/shaders.cmake).
find_path(BG_VULKAN_INCLUDE vulkan/vulkan.h)
if(NOT BG_VULKAN_INCLUDE)
  message(FATAL_ERROR
    "vulkan/vulkan.h not found: the Vulkan backend is built against the Vulkan headers "
    "(no library is linked). Install them: apt-get install libvulkan-dev "
    "(or scripts/install-deps.sh).")
endif()
target_include_directories(bg_compute PRIVATE ${BG_VULKAN_INCLUDE})
target_sources(bg_compute PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/compute_vulkan.c
  ${CMAKE_CURRENT_LIST_DIR}/compute_vulkan_ops.c
  ${CMAKE_CURRENT_LIST_DIR}/compute_vulkan_train.c
  ${CMAKE_CURRENT_LIST_DIR}/vk_device.c
  ${CMAKE_CURRENT_LIST_DIR}/vk_loader.c
  ${CMAKE_CURRENT_LIST_DIR}/vk_mem.c
  ${CMAKE_CURRENT_LIST_DIR}/vk_pipeline.c)
target_compile_definitions(bg_compute PRIVATE BG_HAVE_VULKAN=1)
target_link_libraries(bg_compute PUBLIC bg_shaders ${CMAKE_DL_LIBS})
