# SPDX-License-Identifier: MIT
# Core suites: C++ tests of lib/ itself (things the C API does not show).
foreach(suite forwarder chaos resolver threads)
  add_executable(test_core_${suite} ${CMAKE_CURRENT_LIST_DIR}/test_${suite}.cpp)
  target_link_libraries(test_core_${suite} PRIVATE gw_core PkgConfig::CMOCKA Threads::Threads)
  add_test(NAME core_${suite} COMMAND test_core_${suite})
  set_tests_properties(core_${suite} PROPERTIES TIMEOUT 60 LABELS "core")
endforeach()
# The chaos plan is random, and so is its volume (up to ~70 MB each way): under
# ThreadSanitizer or qemu on a loaded machine a plan takes 40 s and more.
set_tests_properties(core_chaos PROPERTIES TIMEOUT 240)

# The serial device layer (issue 9): pseudo-terminals stand in for UARTs.
add_executable(test_core_serial_port ${CMAKE_CURRENT_LIST_DIR}/test_serial_port.cpp)
target_link_libraries(test_core_serial_port PRIVATE gw_core PkgConfig::CMOCKA Threads::Threads)
add_test(NAME core_serial_port COMMAND test_core_serial_port)
set_tests_properties(core_serial_port PROPERTIES TIMEOUT 60 LABELS "core")

# The serial backend (issue 9): clients, policies, packing and hot-plug over ptys.
foreach(suite serial_backend serial_packer)
  add_executable(test_core_${suite} ${CMAKE_CURRENT_LIST_DIR}/test_${suite}.cpp)
  target_include_directories(test_core_${suite} PRIVATE ${PROJECT_SOURCE_DIR}/lib/src)
  target_link_libraries(test_core_${suite} PRIVATE gw_core PkgConfig::CMOCKA Threads::Threads)
  add_test(NAME core_${suite} COMMAND test_core_${suite})
  set_tests_properties(core_${suite} PROPERTIES TIMEOUT 60 LABELS "core")
endforeach()

# The Modbus gateway (issue 10): the codecs, and the gateway over ptys and loopback.
foreach(suite modbus_codec modbus_gateway)
  add_executable(test_core_${suite} ${CMAKE_CURRENT_LIST_DIR}/test_${suite}.cpp)
  target_link_libraries(test_core_${suite} PRIVATE gw_core PkgConfig::CMOCKA Threads::Threads)
  add_test(NAME core_${suite} COMMAND test_core_${suite})
  set_tests_properties(core_${suite} PROPERTIES TIMEOUT 120 LABELS "core")
endforeach()
