# SPDX-License-Identifier: MIT
# gatewayd integration suites: cmocka C programs that drive the real daemon
# binary (passed as argv[1]) over loopback and Unix sockets they create.
add_library(gwd_harness STATIC ${CMAKE_CURRENT_LIST_DIR}/daemon_harness.c)
set_target_properties(gwd_harness PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
target_compile_definitions(gwd_harness PRIVATE _GNU_SOURCE)
target_include_directories(gwd_harness PUBLIC ${CMAKE_CURRENT_LIST_DIR} ${CMAKE_CURRENT_LIST_DIR}/../c)
target_link_libraries(gwd_harness PUBLIC gwt_helpers PkgConfig::CMOCKA Threads::Threads)

set(GWD_SUITE_TIMEOUT 360)
set(GWD_SUITES cli echo forward activate signals notify routes reload allow dns hostile faults serial)
foreach(suite IN LISTS GWD_SUITES)
  add_executable(test_daemon_${suite} ${CMAKE_CURRENT_LIST_DIR}/test_${suite}.c)
  set_target_properties(test_daemon_${suite} PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
  target_compile_definitions(test_daemon_${suite} PRIVATE _GNU_SOURCE)
  target_link_libraries(test_daemon_${suite} PRIVATE gwd_harness)
  add_dependencies(test_daemon_${suite} gatewayd)
  add_test(NAME daemon_${suite} COMMAND test_daemon_${suite} $<TARGET_FILE:gatewayd>)
  # A hang guard, sized for scripts/valgrind.sh, which runs these suites with
  # every gatewayd under memcheck and GWD_TIME_SCALE=6 (60 s x 6): a test's
  # TIMEOUT wins over ctest --timeout. Natively each takes seconds.
  set_tests_properties(daemon_${suite} PROPERTIES TIMEOUT ${GWD_SUITE_TIMEOUT} LABELS "daemon")
endforeach()

# test_dns controls name resolution without a network: an LD_PRELOAD shim that
# answers names under ".gwtest" from a file the test rewrites. It is test
# scaffolding, not code under test, so it is built without sanitizers (the
# ASan runtime must stay first in gatewayd's own link order).
add_library(gwtest_resolv MODULE ${CMAKE_CURRENT_LIST_DIR}/resolv_shim.c)
target_compile_options(gwtest_resolv PRIVATE -fno-sanitize=all)
set_target_properties(gwtest_resolv PROPERTIES C_VISIBILITY_PRESET default)  # it exists to export getaddrinfo
target_link_options(gwtest_resolv PRIVATE -fno-sanitize=all)
target_link_libraries(gwtest_resolv PRIVATE ${CMAKE_DL_LIBS} Threads::Threads)
add_dependencies(test_daemon_dns gwtest_resolv)
set_tests_properties(daemon_dns PROPERTIES ENVIRONMENT "GWD_RESOLV_SHIM=$<TARGET_FILE:gwtest_resolv>")

# test_modbus: Modbus routes against libmodbus, the reference Modbus stack,
# as the masters (TCP) and the devices (an RTU slave on a pty, a TCP slave).
# libmodbus-dev is in GW_BUILD_PACKAGES and the cross sysroots; a build
# without it has no Modbus suite, and says so.
pkg_check_modules(MODBUS IMPORTED_TARGET libmodbus)
if(MODBUS_FOUND)
  add_executable(test_daemon_modbus ${CMAKE_CURRENT_LIST_DIR}/test_modbus.c)
  set_target_properties(test_daemon_modbus PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
  target_compile_definitions(test_daemon_modbus PRIVATE _GNU_SOURCE)
  target_link_libraries(test_daemon_modbus PRIVATE gwd_harness PkgConfig::MODBUS)
  add_dependencies(test_daemon_modbus gatewayd)
  add_test(NAME daemon_modbus COMMAND test_daemon_modbus $<TARGET_FILE:gatewayd>)
  set_tests_properties(daemon_modbus PROPERTIES TIMEOUT ${GWD_SUITE_TIMEOUT} LABELS "daemon")
else()
  message(WARNING "libmodbus not found (apt-get install libmodbus-dev): the daemon_modbus suite is not built")
endif()

# RFC 2217 through pyserial's client (Debian python3-serial): a Python script,
# run by the system's python3 (where apt puts python3-serial). In cross builds
# the emulator goes in front of gatewayd, as GWD_WRAPPER does for valgrind.
find_program(GW_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
find_program(GW_PYTHON3 python3)
if(GW_PYTHON3)
  add_test(NAME daemon_rfc2217 COMMAND ${GW_PYTHON3} ${CMAKE_CURRENT_LIST_DIR}/test_rfc2217.py $<TARGET_FILE:gatewayd>)
  set_tests_properties(daemon_rfc2217 PROPERTIES TIMEOUT ${GWD_SUITE_TIMEOUT} LABELS "daemon")
  if(CMAKE_CROSSCOMPILING_EMULATOR)
    list(JOIN CMAKE_CROSSCOMPILING_EMULATOR " " gw_emulator_words)
    set_tests_properties(daemon_rfc2217 PROPERTIES ENVIRONMENT "GWD_WRAPPER=${gw_emulator_words}")
  endif()
endif()
