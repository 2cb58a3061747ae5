#!/usr/bin/env bash
# install-deps: installs the Debian/Ubuntu packages drover needs to build,
# test and run (Java 17 and Maven run the local Kafka broker of
# packaging/kafka.sh). Idempotent: when everything is already installed it touches
# nothing (no apt-get update, no sudo) and says so.
#
#   packaging/install-deps.sh           build, test and run dependencies
#   packaging/install-deps.sh --fuzz    also clang and its fuzzer runtime
#   packaging/install-deps.sh --check   only report what is missing (exit 1 if any)
set -euo pipefail

packages=(
	build-essential cmake pkg-config git
	libevent-dev librdkafka-dev libcurl4-openssl-dev libjansson-dev libyaml-dev
	libsqlite3-dev sqlite3 libcmocka-dev libssl-dev
	clang-format valgrind kcat curl python3 python3-venv
	openjdk-17-jre-headless maven
)
fuzz_packages=(clang libclang-rt-14-dev)

usage() {
	sed -n '2,8s/^# \{0,1\}//p' "$0"
}

is_check_only=false
for arg in "$@"; do
	case "$arg" in
	--fuzz) packages+=("${fuzz_packages[@]}") ;;
	--check) is_check_only=true ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		echo "install-deps: unknown argument '$arg'" >&2
		usage >&2
		exit 2
		;;
	esac
done

if ! command -v dpkg-query >/dev/null 2>&1; then
	echo "install-deps: dpkg-query not found; this script is for Debian and Ubuntu" >&2
	exit 1
fi

# A package counts as present only when dpkg says it is fully installed.
missing=()
for pkg in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
	if [[ "$status" != "installed" ]]; then
		missing+=("$pkg")
	fi
done

if ((${#missing[@]} == 0)); then
	echo "install-deps: all ${#packages[@]} packages are already installed"
	exit 0
fi

echo "install-deps: missing: ${missing[*]}"
if $is_check_only; then
	exit 1
fi

as_root=()
if ((EUID != 0)); then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "install-deps: not root and sudo is not available; run as root" >&2
		exit 1
	fi
	as_root=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -q
${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive \
	apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install-deps: installed ${missing[*]}"
