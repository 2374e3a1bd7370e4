# SPDX-License-Identifier: MIT
# Configuration layer of gatewayd (service/config.*): cmocka, from C++.
# Included by tests/CMakeLists.txt; needs the gatewayd_config target (GW_BUILD_SERVICE).
if(TARGET gatewayd_config)
  if(NOT TARGET PkgConfig::CMOCKA)
    find_package(PkgConfig REQUIRED)
    pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)
  endif()
  add_executable(test_config ${CMAKE_CURRENT_LIST_DIR}/test_config.cpp)
  target_compile_definitions(test_config PRIVATE
    GWT_DEFAULT_CONF="${PROJECT_SOURCE_DIR}/service/gateway.conf")
  target_link_libraries(test_config PRIVATE gatewayd_config PkgConfig::CMOCKA)
  # The CTest name is "config", as it was before the suite moved to tests/service/.
  add_test(NAME config COMMAND test_config)
  set_tests_properties(config PROPERTIES TIMEOUT 60 LABELS "service")
endif()
