# Shared build helpers.
#
# Every library that includes torch reuses one precompiled header of <torch/torch.h>, built
# once for the target `qsched_pch`; this is what keeps a clean build on 2 cores short.

add_library(qsched_pch STATIC ${PROJECT_SOURCE_DIR}/cmake/pch.cpp)
target_link_libraries(qsched_pch PUBLIC ${TORCH_LIBRARIES} nlohmann_json::nlohmann_json)
target_include_directories(qsched_pch PUBLIC ${PROJECT_SOURCE_DIR})
target_compile_options(qsched_pch PUBLIC -Wall -Wextra -Wno-unused-parameter)
if(QSCHED_USE_PCH)
  target_precompile_headers(qsched_pch PRIVATE <torch/torch.h> <nlohmann/json.hpp>)
endif()

# qsched_target(<target>): reuse the torch PCH and the common settings.
function(qsched_target tgt)
  target_link_libraries(${tgt} PUBLIC qsched_pch)
  if(QSCHED_USE_PCH)
    target_precompile_headers(${tgt} REUSE_FROM qsched_pch)
  endif()
endfunction()

# With ccache, GCC must preprocess through the PCH for the result to be cacheable.
if(CCACHE_PROGRAM AND QSCHED_USE_PCH AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(qsched_pch PUBLIC -fpch-preprocess)
endif()
