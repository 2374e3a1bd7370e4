# SPDX-License-Identifier: MIT
# armhf (32-bit ARMv7, hard float) boards: Debian's arm-linux-gnueabihf cross
# compilers plus a bookworm armhf sysroot (scripts/sysroot.sh armhf).
# See cross-debian.cmake.
set(GW_CROSS_TRIPLET arm-linux-gnueabihf)
set(GW_CROSS_DEBARCH armhf)
set(GW_CROSS_PROCESSOR arm)
set(GW_CROSS_QEMU qemu-arm)
include(${CMAKE_CURRENT_LIST_DIR}/cross-debian.cmake)
