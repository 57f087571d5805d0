# What elastilm's headers need, found the same way for the build (CMakeLists.txt) and for a host app
# (elastilmConfig.cmake, which installs this file beside itself): threads, xsimd, nlohmann_json.
# Debian's packages ship CMake configs for the host architecture only; cross builds and installs
# without them fall back to the headers, which are architecture-neutral.
find_package(Threads REQUIRED)
find_package(xtl QUIET)          # Debian's xsimd 8 CMake package expects xtl to be found first
find_package(xsimd QUIET)
if(NOT TARGET xsimd)
  find_path(XSIMD_INCLUDE_DIR xsimd/xsimd.hpp PATHS /usr/include NO_CMAKE_FIND_ROOT_PATH REQUIRED)
  add_library(xsimd INTERFACE IMPORTED)
  set_target_properties(xsimd PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${XSIMD_INCLUDE_DIR}")
endif()
find_package(nlohmann_json 3 QUIET)
if(NOT TARGET nlohmann_json::nlohmann_json)
  find_path(NLOHMANN_INCLUDE_DIR nlohmann/json.hpp PATHS /usr/include NO_CMAKE_FIND_ROOT_PATH REQUIRED)
  add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)
  set_target_properties(nlohmann_json::nlohmann_json PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${NLOHMANN_INCLUDE_DIR}")
endif()
