# SPDX-License-Identifier: MIT
# Install rules: the shared library (SONAME libgateway.so.0), the public header,
# gateway.pc for pkg-config and a CMake package (find_package(gateway) gives
# gateway::gateway). gatewayd installs itself from service/.
include(CMakePackageConfigHelpers)

install(TARGETS gateway EXPORT gatewayTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT dev
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_SOURCE_DIR}/capi/include/gateway/gateway.h
  ${PROJECT_SOURCE_DIR}/capi/tables/gateway/tables.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/gateway COMPONENT dev)

install(EXPORT gatewayTargets NAMESPACE gateway::
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/gateway COMPONENT dev)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/gatewayConfig.cmake.in
  ${PROJECT_BINARY_DIR}/gatewayConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/gateway)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/gatewayConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/gatewayConfig.cmake ${PROJECT_BINARY_DIR}/gatewayConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/gateway COMPONENT dev)

# pkg-config wants absolute paths, and the prefix is only known for sure at
# install time (cmake --install --prefix DIR overrides the configured one): the
# file is written then, with the prefix actually used.
set(GW_PC_PREFIX "@GW_PC_PREFIX@")  # kept as a placeholder for the second pass
configure_file(${PROJECT_SOURCE_DIR}/cmake/gateway.pc.in ${PROJECT_BINARY_DIR}/gateway.pc.in @ONLY)
install(CODE "
  set(GW_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  configure_file(\"${PROJECT_BINARY_DIR}/gateway.pc.in\" \"${PROJECT_BINARY_DIR}/gateway.pc\" @ONLY)
" COMPONENT dev)
install(FILES ${PROJECT_BINARY_DIR}/gateway.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)
