# Install rules and the Debian package (cpack -G DEB), included at the end of
# CMakeLists.txt. `cmake --install` puts recd, its man page, the systemd unit
# and its flags file under the prefix; README says how the package is built,
# installed and removed.
include(GNUInstallDirs)
find_program(HELP2MAN help2man)
if(NOT HELP2MAN)
  message(FATAL_ERROR "the man page needs the Debian package help2man (scripts/setup.sh build installs it)")
endif()
find_program(GZIP gzip REQUIRED)

# recd.1: help2man over `recd --help` and `recd --version`, with every
# command's --help in a COMMANDS section (cmake/man-commands.cmake).
set(MAN_OUT ${CMAKE_BINARY_DIR}/man)
add_custom_command(
  OUTPUT ${MAN_OUT}/recd.1.gz
  COMMAND ${CMAKE_COMMAND} -E make_directory ${MAN_OUT}
  COMMAND ${CMAKE_COMMAND} -DRECD=$<TARGET_FILE:recd> -DOUTPUT=${MAN_OUT}/commands.h2m
          -P ${CMAKE_SOURCE_DIR}/cmake/man-commands.cmake
  COMMAND ${HELP2MAN} --no-info --section=1 "--name=real-time recommendation service"
          --include=${MAN_OUT}/commands.h2m --output=${MAN_OUT}/recd.1 $<TARGET_FILE:recd>
  COMMAND ${GZIP} -9nf ${MAN_OUT}/recd.1
  DEPENDS recd ${CMAKE_SOURCE_DIR}/cmake/man-commands.cmake
  VERBATIM)
add_custom_target(recd_man ALL DEPENDS ${MAN_OUT}/recd.1.gz)

install(TARGETS recd RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${MAN_OUT}/recd.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES README.md packaging/haproxy.cfg DESTINATION ${CMAKE_INSTALL_DOCDIR})
# The cluster's balancer (README, "Running a cluster"), beside the single
# server's haproxy.cfg.
install(FILES deploy/haproxy.cfg DESTINATION ${CMAKE_INSTALL_DOCDIR} RENAME haproxy-cluster.cfg)
install(CODE "set(RECD_PACKAGING_DIR \"${CMAKE_SOURCE_DIR}/packaging\")
  set(RECD_SERVICE_OUT \"${CMAKE_BINARY_DIR}/packaging/recd.service\")
  set(RECD_INSTALL_BINDIR \"${CMAKE_INSTALL_BINDIR}\")")
install(SCRIPT ${CMAKE_SOURCE_DIR}/cmake/install-service.cmake)
install(FILES ${CMAKE_BINARY_DIR}/packaging/recd.service DESTINATION lib/systemd/system)

# The .deb installs into /usr and /etc/default/recd: CPack DEB installs
# with the prefix /usr under DESTDIR, which cmake/install-service.cmake sees.
set(RECD_DEB_MAINTAINER "recd maintainers <maintainers@users.noreply.h-seed-ca711d17.example>"
    CACHE STRING "Maintainer field of the .deb")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME recd)
set(CPACK_PACKAGE_CONTACT ${RECD_DEB_MAINTAINER})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_PROJECT_CONFIG_FILE ${CMAKE_SOURCE_DIR}/cmake/cpack-project.cmake)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER ${RECD_DEB_MAINTAINER})
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# CPack indents the lines after the summary; an empty line is a new paragraph.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "real-time recommendation service over gRPC
recd trains implicit-feedback ALS recommendation and churn models from
purchase histories (recd train), stores them in LMDB and serves
recommendations, churn risk and campaign targets over gRPC (recd serve),
folding recorded events into the scores in real time.

The package runs recd serve as the system user recd (recd.service) on the
model in /var/lib/recd/model; its flags are in /etc/default/recd.")
# The libraries come from dpkg-shlibdeps; adduser creates the user recd.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS adduser)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_SOURCE_DIR}/packaging/postinst ${CMAKE_SOURCE_DIR}/packaging/prerm
    ${CMAKE_SOURCE_DIR}/packaging/postrm ${CMAKE_SOURCE_DIR}/packaging/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
