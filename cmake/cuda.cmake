# Decides ALIGN2_HAVE_CUDA from ALIGN2_WITH_CUDA and what ALIGN2_CUDA_ROOT holds.
# The CUDA parts are host code calling the CUDA runtime and NCCL; no nvcc is needed
# for them, but by default nvcc is asked for too, as the toolkit's sign of completeness.
# ALIGN2_CUDA_REQUIRE_NVCC=OFF drops that: a prefix with only the runtime's and NCCL's
# headers and libraries counts (e.g. one assembled from the nvidia-cuda-runtime and
# nvidia-nccl-cu* wheels that a PyTorch wheel installs; scripts/gpu-check.sh builds such a
# prefix when ALIGN2_CUDA_ROOT lacks NCCL). A CUDA libtorch 2.x's own CMake config still
# looks for a CUDA toolkit (nvcc) when find_package(Torch) runs.
option(ALIGN2_CUDA_REQUIRE_NVCC "Count ALIGN2_CUDA_ROOT as usable only when it also holds bin/nvcc" ON)
set(ALIGN2_HAVE_CUDA OFF)
if(NOT ALIGN2_WITH_CUDA STREQUAL "OFF")
  find_path(ALIGN2_NCCL_INCLUDE nccl.h HINTS ${ALIGN2_CUDA_ROOT}/include NO_DEFAULT_PATH)
  find_library(ALIGN2_NCCL_LIB nccl HINTS ${ALIGN2_CUDA_ROOT}/lib ${ALIGN2_CUDA_ROOT}/lib64 NO_DEFAULT_PATH)
  find_library(ALIGN2_CUDART_LIB cudart HINTS ${ALIGN2_CUDA_ROOT}/lib64 ${ALIGN2_CUDA_ROOT}/lib NO_DEFAULT_PATH)
  find_path(ALIGN2_CUDART_INCLUDE cuda_runtime.h HINTS ${ALIGN2_CUDA_ROOT}/include NO_DEFAULT_PATH)
  set(_align2_nvcc_ok ON)
  set(_align2_needs "nccl.h, cuda_runtime.h, libnccl or libcudart")
  if(ALIGN2_CUDA_REQUIRE_NVCC)
    find_program(ALIGN2_NVCC nvcc HINTS ${ALIGN2_CUDA_ROOT}/bin NO_DEFAULT_PATH)
    if(NOT ALIGN2_NVCC)
      set(_align2_nvcc_ok OFF)
    endif()
    set(_align2_needs "nvcc, ${_align2_needs} (ALIGN2_CUDA_REQUIRE_NVCC=OFF drops nvcc)")
  endif()
  if(ALIGN2_NCCL_INCLUDE AND ALIGN2_NCCL_LIB AND ALIGN2_CUDART_LIB AND ALIGN2_CUDART_INCLUDE AND _align2_nvcc_ok)
    set(ALIGN2_HAVE_CUDA ON)
    add_library(align2_cuda_deps INTERFACE)
    target_include_directories(align2_cuda_deps SYSTEM INTERFACE ${ALIGN2_CUDA_ROOT}/include)
    target_link_libraries(align2_cuda_deps INTERFACE ${ALIGN2_NCCL_LIB} ${ALIGN2_CUDART_LIB})
    message(STATUS "align2: CUDA/NCCL parts ON (${ALIGN2_CUDA_ROOT}: ${ALIGN2_NCCL_LIB}, ${ALIGN2_CUDART_LIB})")
  elseif(ALIGN2_WITH_CUDA STREQUAL "ON")
    message(FATAL_ERROR "ALIGN2_WITH_CUDA=ON but ${ALIGN2_CUDA_ROOT} lacks one of ${_align2_needs}")
  else()
    message(STATUS "align2: CUDA/NCCL parts OFF (nothing usable in ${ALIGN2_CUDA_ROOT})")
  endif()
endif()
