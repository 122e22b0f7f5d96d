# Read by cpack (CPACK_PROJECT_CONFIG_FILE). Without dpkg-shlibdeps CPack
# would build a .deb that names none of the libraries recd links: refuse.
if(CPACK_GENERATOR STREQUAL "DEB")
  find_program(RECD_DPKG_SHLIBDEPS dpkg-shlibdeps)
  if(NOT RECD_DPKG_SHLIBDEPS)
    message(FATAL_ERROR "cpack -G DEB needs dpkg-shlibdeps for the package's Depends: "
                        "install the Debian package dpkg-dev")
  endif()
endif()
