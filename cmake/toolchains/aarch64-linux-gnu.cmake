# SPDX-License-Identifier: MIT
# arm64 (aarch64) boards: Debian's aarch64-linux-gnu cross compilers plus a
# bookworm arm64 sysroot (scripts/sysroot.sh arm64). See cross-debian.cmake.
set(GW_CROSS_TRIPLET aarch64-linux-gnu)
set(GW_CROSS_DEBARCH arm64)
set(GW_CROSS_PROCESSOR aarch64)
set(GW_CROSS_QEMU qemu-aarch64)
include(${CMAKE_CURRENT_LIST_DIR}/cross-debian.cmake)
