# SPDX-License-Identifier: MIT
# Core suites: C++ tests of lib/ itself (things the C API does not show).

# Suites test_NAME.cpp -> test_core_NAME, CTest core_NAME, each with this
# TIMEOUT (a hang guard). They may include lib/src's private headers: the
# serial and rfc2217 suites test internals that no public header shows.
function(gw_core_suites timeout)
  foreach(suite IN LISTS ARGN)
    add_executable(test_core_${suite} ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/test_${suite}.cpp)
    target_include_directories(test_core_${suite} PRIVATE ${PROJECT_SOURCE_DIR}/lib/src)
    target_link_libraries(test_core_${suite} PRIVATE gw_core PkgConfig::CMOCKA Threads::Threads)
    add_test(NAME core_${suite} COMMAND test_core_${suite})
    set_tests_properties(core_${suite} PROPERTIES TIMEOUT ${timeout} LABELS "core")
  endforeach()
endfunction()

gw_core_suites(60 forwarder chaos resolver threads splice_pipe)
# The chaos plan is random, and so is its volume (up to ~70 MB each way): under
# ThreadSanitizer or qemu on a loaded machine a plan takes 40 s and more.
set_tests_properties(core_chaos PROPERTIES TIMEOUT 240)

# The serial device layer (issue 9): pseudo-terminals stand in for UARTs.
gw_core_suites(60 serial_port)

# The serial backend (issue 9): clients, policies, packing and hot-plug over ptys.
gw_core_suites(60 serial_backend serial_packer)

# The Modbus gateway (issue 10): the codecs, and the gateway over ptys and loopback.
gw_core_suites(120 modbus_codec modbus_gateway)

# systemd's protocols spoken without libsystemd (lib/src/sd_protocol.hpp):
# notify to sockets of the suite's own, LISTEN_* and WATCHDOG_*. It checks the
# -ENOSYS fallbacks when GW_WITH_SYSTEMD is OFF.
gw_core_suites(60 sd_protocol)
target_link_libraries(test_core_sd_protocol PRIVATE gw_systemd)
target_compile_definitions(test_core_sd_protocol PRIVATE GWT_WITH_SYSTEMD=$<BOOL:${GW_WITH_SYSTEMD}>)

# RFC 2217 (issue 10): the Telnet codec alone, and the serial backend's
# rfc2217 sessions driven by hand over ptys.
gw_core_suites(60 telnet rfc2217)

# What an idle client costs in heap bytes (issue 11), against the issue's budgets.
gw_core_suites(60 footprint)
