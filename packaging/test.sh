#!/usr/bin/env bash
# test: sets everything up and runs every test of drover.
#
#   packaging/test.sh              install deps, build, run all tests (plain and ASan+UBSan)
#   packaging/test.sh --quick      plain build only
#
# Builds go to build/ (plain, RelWithDebInfo), build-asan/ (sanitizers) and
# build-fuzz/ (clang, libFuzzer). Unit tests (cmocka), fuzz-corpus replays and
# end-to-end tests (the real binary with real git repositories) run through
# ctest. In build/ the end-to-end tests run on a real Apache Kafka broker that
# ctest starts once (packaging/kafka.sh; Kafka's jars are fetched from Maven
# Central the first time and cached in ~/.m2 and ~/.cache/drover), together
# with the delivery-guarantee tests (tests/e2e/kafka/); in build-asan/ they
# run on the embedded broker.
set -euo pipefail
cd "$(dirname "$0")/.."

is_quick=false
for arg in "$@"; do
	case "$arg" in
	--quick) is_quick=true ;;
	*) echo "test: unknown argument '$arg'" >&2; exit 2 ;;
	esac
done

if $is_quick; then packaging/install-deps.sh; else packaging/install-deps.sh --fuzz; fi

jobs=$(nproc 2>/dev/null || echo 2)
gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)

run_suite() {
	local dir=$1; shift
	echo "== configure $dir ($*)"
	cmake -S . -B "$dir" "${gen[@]}" "$@" >/dev/null
	echo "== build $dir"
	cmake --build "$dir" -j "$jobs"
	echo "== test $dir"
	ctest --test-dir "$dir" --output-on-failure -j "$jobs"
}

# The C sources are formatted with the project's .clang-format.
echo "== clang-format"
mapfile -t c_files < <(git ls-files '*.c' '*.h' 2>/dev/null || find agent plugins tests -name '*.[ch]')
clang-format --dry-run -Werror "${c_files[@]}"

run_suite build -DDROVER_E2E_BROKER=real

# Every unit test under valgrind as well: no invalid access, no definite leak.
echo "== valgrind (unit tests)"
for t in build/tests/test_*; do
	[ -x "$t" ] || continue
	log=$(mktemp)
	if ! valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
		"$t" >"$log" 2>&1; then
		cat "$log"
		echo "valgrind: $(basename "$t") failed" >&2
		exit 1
	fi
	echo "valgrind: $(basename "$t") clean"
	rm -f "$log"
done
if ! $is_quick; then
	# Tests run under ASan+UBSan too; leaks are reported at exit by LeakSanitizer.
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		run_suite build-asan -DDROVER_SANITIZE=ON -DDROVER_E2E_BROKER=embedded
	# Each libFuzzer harness runs a bounded time from its seed corpus (copied,
	# so the repository's seeds stay as they are).
	echo "== fuzz (libFuzzer, ${FUZZ_SECONDS:-20} s per harness)"
	CC=clang cmake -S . -B build-fuzz "${gen[@]}" -DDROVER_FUZZ=ON >/dev/null
	for src in tests/fuzz/fuzz_*.c; do
		name=$(basename "$src" .c)
		cmake --build build-fuzz -j "$jobs" --target "$name"
		corpus=$(mktemp -d)
		cp -r "tests/fuzz/corpus/${name#fuzz_}/." "$corpus/"
		build-fuzz/tests/"$name" -max_total_time="${FUZZ_SECONDS:-20}" -timeout=10 \
			-rss_limit_mb=2048 -print_final_stats=1 "$corpus" 2>&1 | tail -n 4
		rm -rf "$corpus"
	done
fi
echo "== all tests passed"
