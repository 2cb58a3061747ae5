#!/usr/bin/env bash
# tests/bench/run.sh: drover's benchmark (issue 3). Not a test: nothing here
# passes or fails on a timing, and CI does not run it. Every figure is taken
# in the same run, side by side with the limit it is compared to:
#
#   ingest      200,000 small structured CloudEvents (a drift of a model no
#               pipeline watches) and 50,000 GitHub push bodies (the fixture,
#               unique X-GitHub-Delivery ids, a branch nothing builds),
#               pre-produced to a 4-partition topic each. The agent's rate is
#               from its first "intake: assigned" log line to the moment the
#               group's committed offsets cover every record (so every event
#               was recorded in SQLite and its offset committed). Next to it:
#               kcat -C -e -o beginning -q reading the same topic raw.
#               Target: the agent >= 50% of kcat for the small events.
#   latency     1,000 events 10 ms apart, each starting a one-stage
#               `checkout: false` pipeline whose shell stage runs `date +%s%N`
#               first; the producer put its clock in the event (the model
#               name). produce -> stage start, p50 / p99 / max, with where the
#               time went (the agent's own timestamps) and the floor of
#               spawning sh + date. Target p50 <= 10 ms, p99 <= 50 ms.
#   throughput  10,000 events, each a one-stage `true` run, max_parallel 32:
#               runs/s from the first run created to the last finished (the
#               store's timestamps, once /metrics drover_runs_finished_total
#               reached N), next to posix_spawn+waitpid of /bin/true (and of
#               /bin/sh -e -c true, what the shell plugin runs), 32 at a time
#               like the agent. Target >= 50%.
#   memory      VmRSS of that agent idle after start and after the runs.
#               Targets <= 16 MB and <= 48 MB.
#
# It builds a Release tree (build-bench), compiles its helpers
# (tests/bench/benchtool.c), starts its OWN Kafka broker with
# packaging/kafka.sh (stopped at the end) and one agent per figure, each with
# its own topic, consumer group and state directory.
#
#   tests/bench/run.sh [--quick | --scale N] [--only ingest,latency,throughput]
#                      [--out FILE.json] [--build DIR] [--kafka-dir DIR] [--keep]
#                      [--profile perf|strace] [--kafka-prop NAME=VALUE]...
#                      [--state-root DIR]
#
#   --quick      counts divided by 10 (a try-out; figures are less stable)
#   --scale N    counts divided by N
#   --only LIST  some of ingest, latency, throughput (memory comes with throughput)
#   --out FILE   the JSON (default tests/bench/results/<UTC date-time>.json)
#   --build DIR  the build directory (default build-bench)
#   --kafka-dir  use the broker already running there (not stopped), e.g.
#                to try the script repeatedly without restarting Kafka
#   --keep       keep the work directory (agent logs, stores) at the end
#   --profile T  attach `perf record` (call graphs) or `strace -c` (syscall
#                counts) to the ingest and throughput agents while they work,
#                and print where their time went (files kept in the work
#                directory). Profiling slows the agent: its figures are
#                marked as profiled and are not the benchmark's.
#   --kafka-prop NAME=VALUE
#                a librdkafka property for the agents (kafka.properties), to
#                try a tuning; recorded in the JSON. Default: none (the
#                agent's own defaults, what users get)
#   --state-root DIR
#                the agents' state directories (SQLite) go under DIR instead
#                of the work directory: e.g. /dev/shm, where fsync costs
#                nothing, to see how much of a figure is the disk's (an
#                experiment, recorded in the JSON; not how drover is run)
#
# Environment: BENCH_NOTE, a sentence kept in the JSON (e.g. "taken while
# other jobs shared the machine"); KAFKA_VERSION as for packaging/kafka.sh.
set -euo pipefail
shopt -s inherit_errexit

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$src/build-bench
scale=1
phases="ingest,latency,throughput"
out=""
kafka_dir=""
is_keep=false
profile=""
kafka_props=()
state_root=""
state_tmp=""

usage()
{
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

while [ $# -gt 0 ]; do
	case "$1" in
	--quick) scale=10 ;;
	--scale)
		scale=${2:?--scale needs a number}
		shift
		;;
	--only)
		phases=${2:?--only needs ingest, latency and/or throughput}
		shift
		;;
	--out)
		out=${2:?--out needs a file}
		shift
		;;
	--build)
		build=${2:?--build needs a directory}
		shift
		;;
	--kafka-dir)
		kafka_dir=${2:?--kafka-dir needs a directory}
		shift
		;;
	--keep) is_keep=true ;;
	--kafka-prop)
		case "${2:-}" in *=*) ;; *)
			echo "run.sh: --kafka-prop needs NAME=VALUE" >&2
			exit 2
			;;
		esac
		kafka_props+=("$2")
		shift
		;;
	--state-root)
		state_root=${2:?--state-root needs a directory}
		shift
		;;
	--profile)
		profile=${2:?--profile needs perf or strace}
		shift
		;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		echo "run.sh: unknown argument '$1'" >&2
		usage >&2
		exit 2
		;;
	esac
	shift
done
case "$scale" in '' | *[!0-9]* | 0)
	echo "run.sh: --scale must be a positive integer" >&2
	exit 2
	;;
esac
case "$profile" in '' | perf | strace) ;; *)
	echo "run.sh: --profile takes perf or strace" >&2
	exit 2
	;;
esac
[ -z "$profile" ] || is_keep=true
for p in ${phases//,/ }; do
	case "$p" in ingest | latency | throughput) ;; *)
		echo "run.sh: --only takes ingest, latency, throughput, not '$p'" >&2
		exit 2
		;;
	esac
done

N_CE=$((200000 / scale))
N_GH=$((50000 / scale))
N_LAT=$((1000 / scale))
LAT_INTERVAL_MS=10
N_TP=$((10000 / scale))
MAX_PARALLEL=32
PARTITIONS=4
tag=$(date -u +%Y%m%dT%H%M%S)-$$
[ -n "$out" ] || out=$here/results/$(date -u +%Y-%m-%dT%H%M%SZ).json

W=$(mktemp -d "${TMPDIR:-/tmp}/drover-bench.XXXXXX")
RESULTS=$W/results.txt
AGENT_PID=""
PROF_PID=""
own_kafka=""
: >"$RESULTS"

say()
{
	printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*"
}

fail()
{
	echo "run.sh: FAILED: $*" >&2
	exit 1
}

# put KEY VALUE: one measured figure (bench.py turns them into the report).
put()
{
	printf '%s=%s\n' "$1" "$2" >>"$RESULTS"
}

cleanup()
{
	local rc=$?
	set +e
	if [ -n "$PROF_PID" ]; then
		kill -INT "$PROF_PID" 2>/dev/null
		wait "$PROF_PID" 2>/dev/null
	fi
	agent_stop_quietly
	if [ -n "$own_kafka" ]; then
		"$src/packaging/kafka.sh" stop --dir "$own_kafka" >/dev/null
	fi
	if [ "$rc" -eq 0 ] && ! $is_keep; then
		rm -rf "$W"
		[ -z "$state_tmp" ] || rm -rf "$state_tmp"
	else
		echo "run.sh: work directory kept: $W${state_tmp:+ (state: $state_tmp)}" >&2
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ms_now()
{
	date +%s%3N
}

# ---------------------------------------------------------------- build

build_all()
{
	say "building $build (Release)"
	cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
		-DDROVER_E2E_BROKER=real >"$W/cmake.log" 2>&1 ||
		fail "cmake configure (see $W/cmake.log)"
	cmake --build "$build" -j2 --target drover drover_plugins >>"$W/cmake.log" 2>&1 ||
		fail "cmake build (see $W/cmake.log)"
	# shellcheck disable=SC2046 # pkg-config prints separate words
	cc -std=c11 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -o "$W/benchtool" \
		"$here/benchtool.c" $(pkg-config --cflags --libs rdkafka) ||
		fail "compiling benchtool.c"
	DROVER=$build/drover
	BT=$W/benchtool
}

# ---------------------------------------------------------------- Kafka

kafka_up()
{
	if [ -n "$kafka_dir" ]; then
		BROKERS=$("$src/packaging/kafka.sh" status --dir "$kafka_dir") ||
			fail "no broker running in $kafka_dir"
		say "using the broker at $BROKERS ($kafka_dir)"
		return
	fi
	say "starting a Kafka broker of our own in $W/kafka"
	own_kafka=$W/kafka
	"$src/packaging/kafka.sh" start --dir "$own_kafka" --port 0 --auto-create \
		>"$W/kafka-start.log" 2>&1 || fail "kafka.sh start: $(tail -n 5 "$W/kafka-start.log")"
	BROKERS=$("$src/packaging/kafka.sh" status --dir "$own_kafka")
	kafka_dir=$own_kafka
	say "broker at $BROKERS"
}

topic_make()
{
	"$src/packaging/kafka.sh" topic "$1" "$PARTITIONS" --dir "$kafka_dir" >/dev/null ||
		fail "creating topic $1"
}

# ---------------------------------------------------------------- the agent

free_port()
{
	python3 -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# The pipelines every agent loads: two that the benchmark's events start and
# one (push/pull_request to a branch nothing pushes to) that never matches,
# so matching does its work on every event.
pipelines_write()
{
	mkdir -p "$W/pipelines"
	cat >"$W/pipelines/never.yml" <<'EOF'
name: never
on:
  push: { branches: [bench-never] }
  pull_request: { branches: [bench-never] }
checkout: false
stages:
  - name: build
    uses: shell
    with: { run: "true" }
EOF
	cat >"$W/pipelines/latency.yml" <<EOF
name: latency
on:
  drift: { models: ["lat-*"] }
checkout: false
stages:
  - name: mark
    uses: shell
    with:
      run: |
        printf '%s %s\\n' "\$(date +%s%N)" "\$DROVER_MODEL" >>"$W/latency.starts"
EOF
	cat >"$W/pipelines/throughput.yml" <<'EOF'
name: throughput
on:
  drift: { models: ["tp-*"] }
checkout: false
stages:
  - name: run
    uses: shell
    with: { run: "true" }
EOF
	"$DROVER" validate "$W/pipelines" >/dev/null || fail "the bench pipelines do not validate"
}

# The kafka.properties block of the agents' configuration.
agent_kafka_properties()
{
	if [ "${#kafka_props[@]}" -eq 0 ]; then
		echo "  properties: {}"
		return
	fi
	echo "  properties:"
	local kv
	for kv in "${kafka_props[@]}"; do
		printf '    "%s": "%s"\n' "${kv%%=*}" "${kv#*=}"
	done
}

# agent_config NAME TOPIC: $W/NAME/agent.yaml, its own group and state.
agent_config()
{
	local name=$1 topic=$2 dir=$W/$1
	mkdir -p "$dir"
	AGENT_DIR=$dir
	AGENT_STATE=${state_tmp:-$W}/$name.state
	AGENT_GROUP=bench.$tag.$name
	AGENT_PORT=$(free_port)
	cat >"$dir/agent.yaml" <<EOF
state_dir: "$AGENT_STATE"
pipelines: "$W/pipelines"
plugins: "$build/plugins"
max_parallel: $MAX_PARALLEL
kafka:
  brokers: "$BROKERS"
  group: "$AGENT_GROUP"
  events_topic: "$topic"
  results_topic: "bench.$tag.results"
  dead_letter_topic: "bench.$tag.dead-letter"
$(agent_kafka_properties)
admin:
  listen: "127.0.0.1:$AGENT_PORT"
repos: []
EOF
}

healthz()
{
	curl -s --max-time 2 "http://127.0.0.1:$AGENT_PORT/healthz" 2>/dev/null || true
}

# agent_start: runs the agent of the last agent_config until it has its
# partitions (60 s at most).
agent_start()
{
	(cd "$AGENT_DIR" && exec "$DROVER" agent -c "$AGENT_DIR/agent.yaml") \
		>"$AGENT_DIR/agent.log" 2>&1 &
	AGENT_PID=$!
	local end=$((SECONDS + 60))
	until [[ "$(healthz)" == *'"kafka_assigned":true'* ]]; do
		kill -0 "$AGENT_PID" 2>/dev/null ||
			fail "the agent exited at start: $(tail -n 5 "$AGENT_DIR/agent.log")"
		[ "$SECONDS" -lt "$end" ] || fail "the agent got no partitions within 60 s"
		sleep 0.1
	done
}

agent_stop_quietly()
{
	[ -n "$AGENT_PID" ] || return 0
	kill -TERM "$AGENT_PID" 2>/dev/null || true
	local i
	for i in $(seq 1 300); do
		kill -0 "$AGENT_PID" 2>/dev/null || break
		sleep 0.2
	done
	kill -KILL "$AGENT_PID" 2>/dev/null || true
	wait "$AGENT_PID" 2>/dev/null || true
	AGENT_PID=""
}

agent_stop()
{
	local pid=$AGENT_PID rc=0
	kill -TERM "$pid"
	local end=$((SECONDS + 60))
	while kill -0 "$pid" 2>/dev/null; do
		[ "$SECONDS" -lt "$end" ] || fail "the agent did not stop within 60 s of SIGTERM"
		sleep 0.1
	done
	wait "$pid" || rc=$?
	AGENT_PID=""
	[ "$rc" -eq 0 ] || fail "the agent exited $rc after SIGTERM (log: $AGENT_DIR/agent.log)"
}

# metric_try NAME: its value on /metrics, or nothing (a busy loop may answer
# late: the admin API shares the agent's one thread).
metric_try()
{
	curl -s --max-time 30 "http://127.0.0.1:$AGENT_PORT/metrics" 2>/dev/null |
		awk -v n="$1" '$1 == n { print $2 }' || true
}

metric()
{
	local v
	v=$(metric_try "$1")
	[ -n "$v" ] || fail "no metric $1 on /metrics"
	printf '%s\n' "$v"
}

# wait_metric NAME VALUE TIMEOUT_S
wait_metric()
{
	local end=$((SECONDS + $3)) v
	while :; do
		v=$(metric_try "$1")
		[ "$v" = "$2" ] && return 0
		kill -0 "$AGENT_PID" 2>/dev/null || fail "the agent died (log: $AGENT_DIR/agent.log)"
		[ "$SECONDS" -lt "$end" ] || fail "$1 is $v, not $2, after $3 s"
		sleep 0.5
	done
}

# proc_kb PID FIELD: VmRSS / VmHWM in kB.
proc_kb()
{
	awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

# cpu_ms PID: the CPU time (user, system) the process used so far, in ms.
cpu_ms()
{
	awk -v hz="$(getconf CLK_TCK)" '{ printf "%d %d\n", $14 * 1000 / hz, $15 * 1000 / hz }' \
		"/proc/$1/stat"
}

# log_ms PATTERN [last]: the first (or last) agent log line matching
# PATTERN, as epoch milliseconds (the log's timestamps are UTC, in ms).
log_ms()
{
	local ts
	if [ "${2:-}" = last ]; then
		ts=$(grep "$1" "$AGENT_DIR/agent.log" | tail -n 1 | cut -d' ' -f1)
	else
		ts=$(grep -m1 "$1" "$AGENT_DIR/agent.log" | cut -d' ' -f1)
	fi
	[ -n "$ts" ] || fail "no '$1' line in $AGENT_DIR/agent.log"
	date -d "$ts" +%s%3N
}

# profile_start: with --profile, attaches perf or strace to the agent.
profile_start()
{
	case "$profile" in
	perf)
		perf record -q -F 999 --call-graph dwarf,16384 -o "$AGENT_DIR/perf.data" \
			-p "$AGENT_PID" >"$AGENT_DIR/perf.log" 2>&1 &
		;;
	strace)
		strace -c -p "$AGENT_PID" -o "$AGENT_DIR/strace.txt" 2>"$AGENT_DIR/strace.log" &
		;;
	*) return 0 ;;
	esac
	PROF_PID=$!
	sleep 0.5
}

# profile_stop N WHAT: ends the profile and prints its summary (per WHAT).
profile_stop()
{
	[ -n "$PROF_PID" ] || return 0
	kill -INT "$PROF_PID"
	wait "$PROF_PID" || true
	PROF_PID=""
	local summary=$AGENT_DIR/profile.txt
	if [ "$profile" = perf ]; then
		{
			echo "# perf: the agent's main thread, inclusive (children) share of all samples"
			perf report -i "$AGENT_DIR/perf.data" --stdio --children --comm drover \
				--sort symbol -g none 2>/dev/null | grep -v -e '^#' -e '^$' |
				head -n 60 || true
			echo "# perf: self time by thread and library"
			perf report -i "$AGENT_DIR/perf.data" --stdio --no-children --sort comm,dso \
				-g none 2>/dev/null | grep -v -e '^#' -e '^$' | head -n 15 || true
		} >"$summary"
	else
		{
			echo "# strace -c of the agent's main thread; calls per $2:"
			awk -v n="$1" 'NR > 2 && $4 ~ /^[0-9]+$/ && $NF != "total" {
				printf "%10.1f  %s\n", $4 / n, $NF }' "$AGENT_DIR/strace.txt" |
				sort -rn | head -n 20 || true
		} >"$summary"
	fi
	say "profile of $(basename "$AGENT_DIR") ($profile): $summary"
	sed 's/^/    /' "$summary" | head -n 45 || true
	put "profiled" "$profile"
}

# ---------------------------------------------------------------- ingest

# ingest_one KIND N: pre-produce N records, read them raw with kcat, then
# let a fresh agent take them all.
ingest_one()
{
	local kind=$1 n=$2
	local topic=bench.$tag.ingest-$kind
	topic_make "$topic"
	say "ingest $kind: producing $n records to $topic"
	"$BT" produce-ingest "$BROKERS" "$topic" "$kind" "$n" "$tag" \
		"$src/tests/fixtures/github/push.with-new-branch.payload.json" >/dev/null ||
		fail "producing the $kind records"

	say "ingest $kind: kcat reads the topic raw"
	local t0 t1 bytes
	t0=$(ms_now)
	bytes=$(kcat -C -b "$BROKERS" -t "$topic" -o beginning -e -q | wc -c) ||
		fail "kcat -C failed"
	t1=$(ms_now)
	put "ingest_${kind}_kcat_ms" $((t1 - t0))
	# kcat ends each payload with a newline.
	put "ingest_${kind}_bytes" $((bytes / n - 1))

	say "ingest $kind: the agent consumes it"
	agent_config "ingest-$kind" "$topic"
	agent_start
	profile_start
	local start end cpu
	start=$(log_ms 'intake: assigned')
	end=$("$BT" committed "$BROKERS" "$AGENT_GROUP" "$topic" "$PARTITIONS" "$n" \
		$((120 + n / 50))) || fail "the agent did not commit all $n offsets in time"
	cpu=$(cpu_ms "$AGENT_PID")
	put "ingest_${kind}_events" "$n"
	put "ingest_${kind}_agent_ms" $((end - start))
	# Events that start nothing are logged one by one only at debug level.
	if grep -q 'intake: event ' "$AGENT_DIR/agent.log"; then
		put "ingest_${kind}_recorded_ms" $(($(log_ms 'intake: event ' last) - start))
	fi
	put "ingest_${kind}_cpu_user_ms" "${cpu% *}"
	put "ingest_${kind}_cpu_sys_ms" "${cpu#* }"
	put "ingest_${kind}_rss_kb" "$(proc_kb "$AGENT_PID" VmRSS)"
	profile_stop "$n" event
	python3 "$here/bench.py" stalls "$AGENT_DIR/agent.log" "ingest_$kind" >>"$RESULTS"
	local received unmatched dead
	received=$(metric drover_events_received_total)
	unmatched=$(metric drover_events_unmatched_total)
	dead=$(metric drover_events_dead_lettered_total)
	put "ingest_${kind}_unmatched" "$unmatched"
	put "ingest_${kind}_dead" "$dead"
	[ "$received" = "$n" ] || fail "ingest $kind: received $received records, not $n"
	[ "$unmatched" = "$n" ] ||
		fail "ingest $kind: $unmatched of $n events normalized and unmatched (dead letters: $dead)"
	say "ingest $kind: $n events in $((end - start)) ms (kcat: $((t1 - t0)) ms)"
	agent_stop
}

phase_ingest()
{
	ingest_one ce "$N_CE"
	ingest_one github "$N_GH"
}

# ---------------------------------------------------------------- latency

phase_latency()
{
	local topic=bench.$tag.latency n=$N_LAT
	topic_make "$topic"
	agent_config latency "$topic"
	: >"$W/latency.starts"
	agent_start
	sleep 1
	say "latency: $n events, one every $LAT_INTERVAL_MS ms"
	"$BT" produce-timed "$BROKERS" "$topic" "$n" "$LAT_INTERVAL_MS" lat >/dev/null ||
		fail "producing the latency events"
	wait_metric drover_runs_finished_total "$n" $((60 + n / 10))
	local lines
	lines=$(wc -l <"$W/latency.starts")
	[ "$lines" -eq "$n" ] || fail "latency: $lines stage marks for $n events"
	put latency_events "$n"
	put latency_interval_ms "$LAT_INTERVAL_MS"
	python3 "$here/bench.py" latency "$W/latency.starts" "$AGENT_STATE/drover.db" \
		>>"$RESULTS" || fail "analysing the latency marks"
	agent_stop
	say "latency: the floor of sh + date on this machine"
	local floor
	floor=$("$BT" spawn-date "$n")
	put floor_p50_ms "$(awk '{ printf "%.3f", $1 / 1e6 }' <<<"$floor")"
	put floor_p99_ms "$(awk '{ printf "%.3f", $2 / 1e6 }' <<<"$floor")"
}

# ---------------------------------------------------------------- throughput

phase_throughput()
{
	local topic=bench.$tag.throughput n=$N_TP
	topic_make "$topic"
	agent_config throughput "$topic"
	agent_start
	sleep 2
	put rss_idle_kb "$(proc_kb "$AGENT_PID" VmRSS)"
	say "throughput: $n one-stage runs, max_parallel $MAX_PARALLEL"
	profile_start
	"$BT" produce-timed "$BROKERS" "$topic" "$n" 0 tp >/dev/null ||
		fail "producing the throughput events"
	wait_metric drover_runs_finished_total "$n" $((120 + n / 10))
	local cpu
	cpu=$(cpu_ms "$AGENT_PID")
	put tp_cpu_user_ms "${cpu% *}"
	put tp_cpu_sys_ms "${cpu#* }"
	profile_stop "$n" run
	put tp_runs "$n"
	put tp_max_parallel "$MAX_PARALLEL"
	put rss_after_kb "$(proc_kb "$AGENT_PID" VmRSS)"
	put hwm_after_kb "$(proc_kb "$AGENT_PID" VmHWM)"
	python3 "$here/bench.py" throughput "$AGENT_STATE/drover.db" >>"$RESULTS" ||
		fail "reading the runs"
	local ok
	ok=$(sed -n 's/^tp_runs_succeeded=//p' "$RESULTS")
	[ "$ok" = "$n" ] || fail "throughput: $ok of $n runs succeeded"
	agent_stop
	say "throughput: posix_spawn + waitpid, $MAX_PARALLEL at a time"
	put spawn_true_per_s "$("$BT" spawn "$n" "$MAX_PARALLEL" /bin/true | cut -d' ' -f3)"
	put spawn_sh_true_per_s "$("$BT" spawn "$n" "$MAX_PARALLEL" /bin/sh -e -c true |
		cut -d' ' -f3)"
}

# pressure: how much other work held this machine back (Linux PSI, "some"
# over the last 60 s): the share of time something waited for a CPU, or for I/O.
pressure()
{
	local cpu io
	cpu=$(awk '$1 == "some" { sub("avg60=", "", $3); print $3 }' /proc/pressure/cpu 2>/dev/null)
	io=$(awk '$1 == "some" { sub("avg60=", "", $3); print $3 }' /proc/pressure/io 2>/dev/null)
	echo "cpu ${cpu:-?}% io ${io:-?}%"
}

# ---------------------------------------------------------------- main

put date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
put commit "$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)"
# Uncommitted changes to what is measured: their digest says which ones.
put dirty "$([ -z "$(git -C "$src" status --porcelain -- agent plugins 2>/dev/null)" ] &&
	echo 0 || echo 1)"
put diff_sha256 "$(git -C "$src" diff HEAD -- agent plugins 2>/dev/null | sha256sum | cut -c1-16)"
put scale "$scale"
put cpus "$(nproc)"
put cpu_model "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
put kernel "$(uname -r)"
put kafka_version "${KAFKA_VERSION:-4.1.1}"
put load_before "$(cut -d' ' -f1-3 /proc/loadavg)"
put psi_before "$(pressure)"
[ -z "${BENCH_NOTE:-}" ] || put note "$BENCH_NOTE"
[ "${#kafka_props[@]}" -eq 0 ] || put kafka_props "${kafka_props[*]}"
if [ -n "$state_root" ]; then
	mkdir -p "$state_root"
	state_tmp=$(mktemp -d "$state_root/drover-bench-state.XXXXXX")
	put state_root "$state_tmp ($(stat -f -c %T "$state_tmp"))"
fi

build_all
kafka_up
pipelines_write
for p in ingest latency throughput; do
	case ",$phases," in *",$p,"*) "phase_$p" ;; esac
done
put load_after "$(cut -d' ' -f1-3 /proc/loadavg)"
put psi_after "$(pressure)"
mkdir -p "$(dirname "$out")"
python3 "$here/bench.py" report "$RESULTS" "$out"
