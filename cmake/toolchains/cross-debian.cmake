# SPDX-License-Identifier: MIT
# Shared part of the Debian cross toolchain files (included by
# aarch64-linux-gnu.cmake and arm-linux-gnueabihf.cmake, which set
# GW_CROSS_TRIPLET, GW_CROSS_DEBARCH and GW_CROSS_QEMU first).
#
# Compilers: Debian's crossbuild-essential-<arch> (<triplet>-gcc/g++).
# Target libraries: a sysroot of bookworm packages made by scripts/sysroot.sh,
# by default .cache/sysroot/<debarch> in the source tree; override with
# -DGW_SYSROOT=... or the GW_SYSROOT environment variable.
# Tests run under qemu-user with that sysroot (CMAKE_CROSSCOMPILING_EMULATOR).

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR ${GW_CROSS_PROCESSOR})

if(NOT GW_SYSROOT)
  if(DEFINED ENV{GW_SYSROOT})
    set(GW_SYSROOT "$ENV{GW_SYSROOT}")
  else()
    get_filename_component(GW_SYSROOT "${CMAKE_CURRENT_LIST_DIR}/../../.cache/sysroot/${GW_CROSS_DEBARCH}" ABSOLUTE)
  endif()
endif()
# try_compile() projects re-read this file: hand the values on.
set(GW_SYSROOT "${GW_SYSROOT}" CACHE PATH "Target sysroot (scripts/sysroot.sh ${GW_CROSS_DEBARCH})")
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES GW_SYSROOT)
if(NOT EXISTS "${GW_SYSROOT}/usr/include/${GW_CROSS_TRIPLET}")
  message(FATAL_ERROR "No ${GW_CROSS_DEBARCH} sysroot at ${GW_SYSROOT}: run scripts/sysroot.sh ${GW_CROSS_DEBARCH}")
endif()

set(CMAKE_SYSROOT "${GW_SYSROOT}")
set(CMAKE_C_COMPILER ${GW_CROSS_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${GW_CROSS_TRIPLET}-g++)
set(CMAKE_LIBRARY_ARCHITECTURE ${GW_CROSS_TRIPLET})

# Search headers/libraries/packages in the sysroot only, programs on the host.
set(CMAKE_FIND_ROOT_PATH "${GW_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# CMake passes --sysroot itself; having it in CMAKE_<LANG>_FLAGS too lets the
# tests that compile against the installed library with the project's flags
# (tests/examples_install.sh, tests/cmake_consumer.sh) find the target libc.
set(CMAKE_C_FLAGS_INIT "--sysroot=${GW_SYSROOT}")
set(CMAKE_CXX_FLAGS_INIT "--sysroot=${GW_SYSROOT}")

# The sysroot is not usr-merged and its .so linker scripts and DT_NEEDED
# chains refer to /lib/<triplet>: let the linker follow them inside it.
set(_gw_rpl "-Wl,-rpath-link,${GW_SYSROOT}/lib/${GW_CROSS_TRIPLET}:${GW_SYSROOT}/usr/lib/${GW_CROSS_TRIPLET}")
set(CMAKE_EXE_LINKER_FLAGS_INIT "${_gw_rpl}")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "${_gw_rpl}")
set(CMAKE_MODULE_LINKER_FLAGS_INIT "${_gw_rpl}")

# pkg-config: only the target's .pc files, with paths prefixed by the sysroot.
set(PKG_CONFIG_EXECUTABLE pkg-config CACHE FILEPATH "pkg-config (host binary, sysroot search path)")
set(ENV{PKG_CONFIG_DIR} "")
set(ENV{PKG_CONFIG_PATH} "")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "${GW_SYSROOT}")
set(ENV{PKG_CONFIG_LIBDIR} "${GW_SYSROOT}/usr/lib/${GW_CROSS_TRIPLET}/pkgconfig:${GW_SYSROOT}/usr/lib/pkgconfig:${GW_SYSROOT}/usr/share/pkgconfig")

# Run target binaries (tests, ctest) under qemu-user with the sysroot's loader
# and libraries. qemu-user-static provides qemu-<cpu>-static, qemu-user qemu-<cpu>.
# Target programs that the tests start themselves (gatewayd, the examples) run
# through binfmt_misc, which scripts/sysroot.sh registers, with QEMU_LD_PREFIX
# from the arm64/armhf test presets.
find_program(GW_QEMU NAMES ${GW_CROSS_QEMU}-static ${GW_CROSS_QEMU})
if(GW_QEMU)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${GW_QEMU};-L;${GW_SYSROOT}")
else()
  message(WARNING "${GW_CROSS_QEMU} not found (apt-get install qemu-user-static): tests cannot run")
endif()
