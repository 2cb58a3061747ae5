# CPackConfig: the Debian package of drover. Included by the top-level
# CMakeLists.txt after its install() rules; adds the systemd unit and the
# default configuration and describes the .deb. Build it with `cpack -G DEB`
# in the build directory (configure with -DCMAKE_INSTALL_PREFIX=/usr so that
# the paths compiled into the binary match the package's).

include(GNUInstallDirs)

set(DROVER_PACKAGE_PREFIX /usr)
set(DROVER_PACKAGE_DIR ${CMAKE_CURRENT_LIST_DIR})
set(DROVER_PACKAGE_BUILD_DIR ${CMAKE_BINARY_DIR}/packaging)

if(NOT CMAKE_INSTALL_PREFIX STREQUAL DROVER_PACKAGE_PREFIX)
  message(STATUS "drover: CMAKE_INSTALL_PREFIX is ${CMAKE_INSTALL_PREFIX}; configure with "
                 "-DCMAKE_INSTALL_PREFIX=${DROVER_PACKAGE_PREFIX} before building a .deb")
endif()

# The unit goes where systemd looks for packaged units.
install(FILES ${DROVER_PACKAGE_DIR}/drover.service DESTINATION lib/systemd/system)

# /etc/drover/agent.yaml is packaging/agent.yaml with the paths that only
# make sense in a source tree (pipelines, plugins) pointed at the installed
# ones. Everything else keeps its default. It is a conffile: dpkg keeps an
# operator's edits across upgrades.
set(DROVER_PACKAGE_PIPELINES ${DROVER_PACKAGE_PREFIX}/${CMAKE_INSTALL_DATADIR}/drover/pipelines)
set(DROVER_PACKAGE_PLUGINS ${DROVER_PACKAGE_PREFIX}/lib/drover/plugins)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${DROVER_PACKAGE_DIR}/agent.yaml)
file(READ ${DROVER_PACKAGE_DIR}/agent.yaml drover_agent_yaml)
foreach(pair "pipelines: ./pipelines|pipelines: ${DROVER_PACKAGE_PIPELINES}"
             "plugins: ./build/plugins|plugins: ${DROVER_PACKAGE_PLUGINS}")
  string(REPLACE "|" ";" pair "${pair}")
  list(GET pair 0 from)
  list(GET pair 1 to)
  string(FIND "${drover_agent_yaml}" "\n${from}\n" at)
  if(at EQUAL -1)
    message(WARNING "packaging/agent.yaml has no line '${from}': the packaged "
                    "/etc/drover/agent.yaml keeps it as it is")
  endif()
  string(REPLACE "\n${from}\n" "\n${to}\n" drover_agent_yaml "${drover_agent_yaml}")
endforeach()
file(WRITE ${DROVER_PACKAGE_BUILD_DIR}/etc/agent.yaml "${drover_agent_yaml}")
install(FILES ${DROVER_PACKAGE_BUILD_DIR}/etc/agent.yaml DESTINATION /etc/drover
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)

# Maintainer scripts: a system user for the service, systemd told about the
# unit, the service restarted on upgrade if it was running, stopped on
# removal, and its state removed on purge. The service is not enabled: the
# operator does that once agent.yaml names the repositories to build.
set(drover_deb_dir ${DROVER_PACKAGE_BUILD_DIR}/deb)
file(WRITE ${drover_deb_dir}/conffiles "/etc/drover/agent.yaml\n")
file(WRITE ${drover_deb_dir}/postinst [=[#!/bin/sh
set -e
if [ "$1" = configure ]; then
	if ! getent passwd drover >/dev/null; then
		if getent group drover >/dev/null; then
			group_flag="--gid drover"
		else
			group_flag="--user-group"
		fi
		useradd --system $group_flag --home-dir /var/lib/drover --no-create-home \
			--shell /usr/sbin/nologin --comment "drover CI/CD agent" drover
	fi
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload >/dev/null || true
		if [ -n "$2" ]; then
			systemctl try-restart drover.service >/dev/null || true
		fi
	fi
fi
exit 0
]=])
file(WRITE ${drover_deb_dir}/prerm [=[#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	systemctl stop drover.service >/dev/null || true
	systemctl disable drover.service >/dev/null 2>&1 || true
fi
exit 0
]=])
file(WRITE ${drover_deb_dir}/postrm [=[#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null || true
fi
if [ "$1" = purge ]; then
	rm -rf /var/lib/drover
fi
exit 0
]=])

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME drover)
set(CPACK_PACKAGE_VENDOR drover)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "drover maintainers <drover@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "CI/CD agent that turns git and model-drift events on Kafka into pipeline runs")
string(CONCAT CPACK_PACKAGE_DESCRIPTION
    "drover hears push, pull-request and model-drift events on a Kafka topic, runs the\n"
    "matching pipelines (tests, job runs, deploys, model promotion) through stage\n"
    "plugins, and reports results as CDEvents. One process, one event loop; heavy\n"
    "work runs in child processes or remote job systems.")
set(CPACK_PACKAGING_INSTALL_PREFIX ${DROVER_PACKAGE_PREFIX})

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION devel)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${drover_deb_dir}/conffiles ${drover_deb_dir}/postinst ${drover_deb_dir}/prerm
    ${drover_deb_dir}/postrm)
# conffiles 0644, maintainer scripts 0755, whatever the build umask was.
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)

# Libraries: found by dpkg-shlibdeps from the binary and plugins when it is
# there (dpkg-dev), else Debian 12's names. git is run, not linked.
find_program(DROVER_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(DROVER_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "git, passwd")
else()
  set(CPACK_DEBIAN_PACKAGE_DEPENDS
      "libevent-2.1-7, libevent-pthreads-2.1-7, librdkafka1, libcurl4, libjansson4, \
libyaml-0-2, libsqlite3-0, libssl3, git, passwd")
endif()
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "ca-certificates, sqlite3")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "kcat")

set(CPACK_SOURCE_GENERATOR TGZ)
set(CPACK_SOURCE_IGNORE_FILES "/\\.git/" "/build[^/]*/" "/\\.cache/")

include(CPack)
