# kchain_add_kernel_library(): builds a kchain kernel library.
#
#   kchain_add_kernel_library(<name>
#     TARGET <cuda|host>
#     SOURCES <file>...
#     [OUTPUT_DIRECTORY <dir>]
#     [LINK_LIBRARIES <lib>...])
#
# Produces lib<name>.so, a MODULE library (for dlopen only) that:
#  - compiles with hidden visibility, so the only exported symbols are the ones marked with
#    KCHAIN_KERNEL(...) and KCHAIN_MODULE_*() from <kchain/kernel.h>;
#  - keeps the symbols of static libraries it links private (--exclude-libs,ALL);
#  - must resolve every symbol at link time (--no-undefined), so a missing one fails the
#    build rather than the deploy;
#  - for TARGET cuda: compiles .cu sources for KCHAIN_CUDA_ARCHITECTURES when it is set, else
#    for CMAKE_CUDA_ARCHITECTURES (your project's setting; "90" for Hopper), and links the
#    shared CUDA runtime, the same one the kchain runtime uses, so that launch errors and
#    stream capture are seen by both;
#  - for TARGET host: C or C++ sources (enable C in project() for .c files); link what they
#    need with LINK_LIBRARIES, e.g. m for sqrtf (every symbol must resolve at link time).
#
# The library file is lib<name>.so in OUTPUT_DIRECTORY (default: the build folder of the
# CMakeLists.txt that calls this); name it in the manifest's "library" object.
#
# Works inside the kchain tree and from a standalone project: include() this file directly,
# or find_package(kchain) after installing kchain.
include_guard(GLOBAL)

if(NOT DEFINED KCHAIN_INCLUDE_DIR)
  get_filename_component(KCHAIN_INCLUDE_DIR "${CMAKE_CURRENT_LIST_DIR}/../include" ABSOLUTE)
endif()

if(NOT TARGET kchain::kernel_abi)
  add_library(kchain_kernel_abi INTERFACE)
  add_library(kchain::kernel_abi ALIAS kchain_kernel_abi)
  target_include_directories(kchain_kernel_abi INTERFACE "${KCHAIN_INCLUDE_DIR}")
endif()

function(kchain_add_kernel_library name)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "TARGET;OUTPUT_DIRECTORY" "SOURCES;LINK_LIBRARIES")
  if(NOT ARG_TARGET MATCHES "^(cuda|host)$")
    message(FATAL_ERROR "kchain_add_kernel_library(${name}): TARGET must be cuda or host")
  endif()
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "kchain_add_kernel_library(${name}): SOURCES is required")
  endif()
  if(ARG_TARGET STREQUAL "cuda" AND NOT CMAKE_CUDA_COMPILER)
    message(FATAL_ERROR
      "kchain_add_kernel_library(${name}): TARGET cuda needs enable_language(CUDA)")
  endif()

  add_library(${name} MODULE ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE kchain::kernel_abi ${ARG_LINK_LIBRARIES})
  set_target_properties(${name} PROPERTIES
    PREFIX "lib"
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    CUDA_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  target_link_options(${name} PRIVATE
    "LINKER:--no-undefined" "LINKER:--exclude-libs,ALL" "LINKER:--as-needed")
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${ARG_OUTPUT_DIRECTORY}")
  endif()
  if(ARG_TARGET STREQUAL "cuda")
    find_package(CUDAToolkit REQUIRED)
    set_target_properties(${name} PROPERTIES CUDA_RUNTIME_LIBRARY Shared CUDA_STANDARD 17)
    if(DEFINED KCHAIN_CUDA_ARCHITECTURES)
      set_target_properties(${name} PROPERTIES CUDA_ARCHITECTURES "${KCHAIN_CUDA_ARCHITECTURES}")
    endif()  # else CMAKE_CUDA_ARCHITECTURES, as for any CUDA target of the project
    target_link_libraries(${name} PRIVATE CUDA::cudart)
  endif()
  set_property(TARGET ${name} PROPERTY KCHAIN_KERNEL_TARGET ${ARG_TARGET})
endfunction()
