# The GFlowNet engine's sources: one list, compiled into bg_gfn (daemon,
# tests, bench) and into the sampler plugin bg_gfn.so. They include only
# the C library and bayesguard/plugin.h.
set(BG_GFN_SOURCES
  ${CMAKE_SOURCE_DIR}/daemon/gfn/gfn_config.c
  ${CMAKE_SOURCE_DIR}/daemon/gfn/gfn_io.c
  ${CMAKE_SOURCE_DIR}/daemon/gfn/gfn_loss.c
  ${CMAKE_SOURCE_DIR}/daemon/gfn/gfn_mlp.c
  ${CMAKE_SOURCE_DIR}/daemon/gfn/gfn_replay.c
  ${CMAKE_SOURCE_DIR}/daemon/gfn/gfn_rng.c
  ${CMAKE_SOURCE_DIR}/daemon/gfn/gfn_space.c
  ${CMAKE_SOURCE_DIR}/daemon/gfn/gfn_tilt.c
  ${CMAKE_SOURCE_DIR}/daemon/gfn/gfn_train.c)
