# Read by cpack (CPACK_PROJECT_CONFIG_FILE). Without dpkg-shlibdeps CPack
# would build a .deb that names none of the libraries recd links: refuse.
if(CPACK_GENERATOR STREQUAL "DEB")
  find_program(RECD_DPKG_SHLIBDEPS dpkg-shlibdeps)
  if(NOT RECD_DPKG_SHLIBDEPS)
    message(FATAL_ERROR "cpack -G DEB needs dpkg-shlibdeps for the package's Depends: "
                        "install the Debian package dpkg-dev")
  endif()
  # CPack's shlibdeps step finds the binaries with file(1) and stops with a
  # long error without it.
  find_program(RECD_FILE file)
  if(NOT RECD_FILE)
    message(FATAL_ERROR "cpack -G DEB needs file(1) to find the binaries: install the Debian package file")
  endif()
endif()
