# Install-time part of the service files (install(SCRIPT) from
# cmake/packaging.cmake, which sets RECD_PACKAGING_DIR, RECD_SERVICE_OUT and
# RECD_INSTALL_BINDIR). Decided here, not at configure time, so that
# `cmake --install --prefix P` moves them with the binary: the unit's
# ExecStart is P/bin/recd, and its flags file is /etc/default/recd for the
# prefix /usr (the package) or P/etc/default/recd otherwise.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(RECD_SYSCONFDIR /etc)
else()
  set(RECD_SYSCONFDIR "${CMAKE_INSTALL_PREFIX}/etc")
endif()
set(RECD_BINDIR "${CMAKE_INSTALL_PREFIX}/${RECD_INSTALL_BINDIR}")
configure_file(${RECD_PACKAGING_DIR}/recd.service.in ${RECD_SERVICE_OUT} @ONLY)
file(INSTALL DESTINATION "${RECD_SYSCONFDIR}/default" TYPE FILE RENAME recd
     FILES ${RECD_PACKAGING_DIR}/recd.default)
