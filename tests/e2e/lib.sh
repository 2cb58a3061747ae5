# shellcheck shell=bash
#
# lib.sh: shared helpers of the end-to-end tests. Each test sources this file,
# then runs the real `drover` binary (agent and CLI) against git repositories
# made in a private temporary directory, on a real Apache Kafka broker (the
# one ctest starts for the suite with packaging/kafka.sh) or on the agent's
# embedded broker.
#
# Environment (set by ctest; defaults for running a test by hand):
#   DROVER_BIN         the drover binary
#   DROVER_BUILD       the build directory (plugins in $DROVER_BUILD/plugins)
#   DROVER_SRC         the source tree
#   DROVER_FIXTURES    tests/fixtures
#   DROVER_E2E_BROKER  real (default when run by hand: embedded) or embedded
#   DROVER_KAFKA_DIR   the real broker's directory (packaging/kafka.sh --dir)
#
# On the real broker every test has topics and a consumer group of its own
# (e2e.<test>.<pid>.*), so tests run side by side on one broker.
#
# Every wait is bounded. On success the temporary directory is removed; on
# failure (or with E2E_KEEP=1) it is kept and its path printed, with the
# tail of the agent's log.

set -euo pipefail
shopt -s inherit_errexit

: "${DROVER_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${DROVER_BUILD:=$DROVER_SRC/build}"
: "${DROVER_BIN:=$DROVER_BUILD/drover}"
: "${DROVER_FIXTURES:=$DROVER_SRC/tests/fixtures}"
: "${DROVER_E2E_BROKER:=embedded}"
: "${DROVER_KAFKA_DIR:=$DROVER_BUILD/kafka}"
export DROVER_SRC DROVER_BUILD DROVER_BIN DROVER_FIXTURES DROVER_E2E_BROKER DROVER_KAFKA_DIR

# Commits made by the tests do not depend on the machine's git identity.
export GIT_AUTHOR_NAME="drover e2e" GIT_AUTHOR_EMAIL="e2e@drover.invalid"
export GIT_COMMITTER_NAME="drover e2e" GIT_COMMITTER_EMAIL="e2e@drover.invalid"
export GIT_CONFIG_NOSYSTEM=1

TEST_NAME=$(basename "$0" .sh)
T=$(mktemp -d "${TMPDIR:-/tmp}/drover-e2e.$TEST_NAME.XXXXXX")
CFG=$T/agent.yaml
STATE_DIR=$T/state
AGENT_PID=""
EXTRA_PIDS=() # more agents a test started itself; killed at the end
AGENT_LOG=$T/agent.1.log
AGENT_STARTS=0
PORT=""
REPO_NAMES=()
REPO_URLS=()
ADMIN_EXTRA=()
KAFKA_PROPS=() # "name: value" lines of kafka.properties
mkdir -p "$T/pipelines" "$T/pids" "$T/git" "$T/events"

if [ ! -x "$DROVER_BIN" ]; then
	echo "FAIL: no drover binary at $DROVER_BIN (build first)" >&2
	exit 1
fi

# ---------------------------------------------------------------- reporting

say()
{
	printf '[%s] %s\n' "$TEST_NAME" "$*"
}

agent_log_tail()
{
	local f
	for f in "$T"/agent.*.log; do
		[ -f "$f" ] || continue
		echo "---- last lines of $f ----" >&2
		tail -n 40 "$f" >&2
	done
}

# Prints why, the agent's log tail, and ends the test (also from a subshell:
# inherit_errexit carries the failure out of command substitutions).
fail()
{
	echo "FAIL [$TEST_NAME]: $*" >&2
	agent_log_tail
	exit 1
}

assert_eq()
{
	local got=$1 want=$2 what=${3:-value}
	[ "$got" = "$want" ] || fail "$what: expected '$want', got '$got'"
}

assert_ne()
{
	local got=$1 unwanted=$2 what=${3:-value}
	[ "$got" != "$unwanted" ] || fail "$what: expected anything but '$unwanted'"
}

assert_contains()
{
	local haystack=$1 needle=$2 what=${3:-text}
	case "$haystack" in
	*"$needle"*) ;;
	*) fail "$what does not contain '$needle'; it is:"$'\n'"$haystack" ;;
	esac
}

assert_not_contains()
{
	local haystack=$1 needle=$2 what=${3:-text}
	case "$haystack" in
	*"$needle"*) fail "$what contains '$needle'; it is:"$'\n'"$haystack" ;;
	*) ;;
	esac
}

# assert_ge A B what: integers.
assert_ge()
{
	[ "$1" -ge "$2" ] || fail "${3:-value}: expected >= $2, got $1"
}

# _end_agent SECONDS: at the end of a test, the agent (if one runs) gets
# SIGTERM and SECONDS to exit, then SIGKILL.
_end_agent()
{
	local i
	if [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null; then
		kill -TERM "$AGENT_PID" 2>/dev/null
		for i in $(seq 1 $(($1 * 5))); do
			kill -0 "$AGENT_PID" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL "$AGENT_PID" 2>/dev/null
		wait "$AGENT_PID" 2>/dev/null
		AGENT_PID=""
	fi
}

_e2e_cleanup()
{
	local rc=$?
	set +e
	_end_agent 10
	local p
	for p in "${EXTRA_PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	# Processes the tests' stages recorded (pid files under $T/pids): a failed
	# test must not leave sleepers behind. Only sleeps are signalled.
	local f pid
	for f in "$T"/pids/*.pid; do
		[ -f "$f" ] || continue
		pid=$(cat "$f" 2>/dev/null)
		case "$pid" in '' | *[!0-9]*) continue ;; esac
		if grep -qa sleep "/proc/$pid/cmdline" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null
		fi
	done
	if [ "$rc" -eq 0 ] && [ -z "${E2E_KEEP:-}" ]; then
		rm -rf "$T"
		say "PASS"
	else
		[ "$rc" -eq 0 ] && say "PASS"
		[ "$rc" -eq 0 ] || echo "[$TEST_NAME] FAILED (exit $rc)" >&2
		echo "[$TEST_NAME] files kept in $T" >&2
	fi
	exit "$rc"
}
trap _e2e_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- JSON

# json_get PATH < json: prints the value at a dotted path. A number picks an
# array element, "@NAME" the element whose "name" is NAME. Strings print raw,
# null as "null", anything else as compact JSON. A missing key fails.
json_get()
{
	python3 -c '
import json, sys
d = json.load(sys.stdin)
path = sys.argv[1]
for part in (path.split(".") if path else []):
    if isinstance(d, list):
        if part.startswith("@"):
            m = [x for x in d if isinstance(x, dict) and x.get("name") == part[1:]]
            if not m:
                sys.exit("json_get: no element named %r" % part[1:])
            d = m[0]
        else:
            d = d[int(part)]
    elif isinstance(d, dict):
        if part not in d:
            sys.exit("json_get: no key %r in %s" % (part, json.dumps(d)[:300]))
        d = d[part]
    else:
        sys.exit("json_get: %r is not an object or array" % part)
if isinstance(d, str):
    sys.stdout.write(d + "\n")
elif d is None:
    print("null")
else:
    print(json.dumps(d, separators=(",", ":")))
' "$1"
}

# json_edit IN OUT CODE [ARG...]: loads IN as d, runs the Python CODE (which
# sees the extra arguments as a[0], a[1], ...), writes d to OUT. Values go
# through argv, never pasted into the code.
json_edit()
{
	local in=$1 out=$2 code=$3
	shift 3
	python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
a = sys.argv[4:]
exec(sys.argv[3])
with open(sys.argv[2], "w") as f:
    json.dump(d, f)
' "$in" "$out" "$code" "$@" || fail "json_edit of $in failed"
}

# iso_ms ISO-8601 → epoch milliseconds.
iso_ms()
{
	python3 -c '
import sys, datetime
s = sys.argv[1].replace("Z", "+00:00")
print(int(datetime.datetime.fromisoformat(s).timestamp() * 1000))
' "$1"
}

# ---------------------------------------------------------------- repositories

# make_repo NAME: a work tree $T/git/NAME with one commit (data.txt "v1") and
# a bare clone $T/git/NAME.git (the URL drover fetches from). Prints the sha.
make_repo()
{
	local name=$1 dir=$T/git/$1
	git init -q -b master "$dir"
	printf 'v1\n' >"$dir/data.txt"
	git -C "$dir" add data.txt
	git -C "$dir" commit -q -m "initial commit"
	git clone -q --bare "$dir" "$dir.git"
	git -C "$dir" remote add origin "$dir.git"
	git -C "$dir" rev-parse HEAD
}

repo_url()
{
	printf '%s\n' "$T/git/$1.git"
}

# repo_commit NAME CONTENT [MESSAGE] [BRANCH]: sets data.txt to CONTENT,
# commits with MESSAGE (any bytes), pushes it to BRANCH (default master) of
# the bare repository. Prints the sha.
repo_commit()
{
	local name=$1 content=$2 msg=${3:-"set data to $2"} branch=${4:-master}
	local dir=$T/git/$1
	printf '%s\n' "$content" >"$dir/data.txt"
	git -C "$dir" add data.txt
	printf '%s' "$msg" | git -C "$dir" commit -q -F -
	git -C "$dir" push -q origin "HEAD:refs/heads/$branch"
	git -C "$dir" rev-parse HEAD
}

# add_repo NAME URL: an entry of the config's repos: list.
add_repo()
{
	REPO_NAMES+=("$1")
	REPO_URLS+=("$2")
}

# ---------------------------------------------------------------- events

GITHUB_FIXTURES=$DROVER_FIXTURES/github

# push_event OUT SHA [REF] [REPO]: the GitHub branch-push fixture rewritten
# to push SHA to REF (default refs/heads/master) of REPO (default
# Codertocat/Hello-World).
push_event()
{
	local out=$1 sha=$2 ref=${3:-refs/heads/master} repo=${4:-Codertocat/Hello-World}
	json_edit "$GITHUB_FIXTURES/push.with-new-branch.payload.json" "$out" '
d["after"] = a[0]
d["ref"] = a[1]
d["created"] = False
d["before"] = "1" * 40
d["head_commit"]["id"] = a[0]
for c in d["commits"]:
    c["id"] = a[0]
d["repository"]["full_name"] = a[2]
d["repository"]["name"] = a[2].split("/")[-1]
' "$sha" "$ref" "$repo"
}

# pr_event OUT ACTION NUMBER HEAD_SHA [BASE]: the pull_request fixture for
# pull request NUMBER whose head is HEAD_SHA, into BASE (default master).
pr_event()
{
	local out=$1 action=$2 number=$3 sha=$4 base=${5:-master}
	json_edit "$GITHUB_FIXTURES/pull_request.synchronize.payload.json" "$out" '
d["action"] = a[0]
d["number"] = int(a[1])
d["pull_request"]["number"] = int(a[1])
d["pull_request"]["head"]["sha"] = a[2]
d["pull_request"]["base"]["ref"] = a[3]
' "$action" "$number" "$sha" "$base"
}

# ---------------------------------------------------------------- kafka

is_real_kafka()
{
	[ "$DROVER_E2E_BROKER" = real ]
}

if is_real_kafka; then
	KAFKA_BROKERS=$("$DROVER_SRC/packaging/kafka.sh" status --dir "$DROVER_KAFKA_DIR") ||
		fail "no Kafka broker running in $DROVER_KAFKA_DIR (ctest starts it: run the suite, or packaging/kafka.sh start --dir $DROVER_KAFKA_DIR --port 0 --auto-create)"
	KAFKA_GROUP="e2e.$TEST_NAME.$$"
	EVENTS_TOPIC="$KAFKA_GROUP.events"
	RESULTS_TOPIC="$KAFKA_GROUP.results"
	DEAD_LETTER_TOPIC="$KAFKA_GROUP.dead-letter"
else
	KAFKA_BROKERS=embedded
	KAFKA_GROUP=drover
	EVENTS_TOPIC=drover.events
	RESULTS_TOPIC=drover.results
	DEAD_LETTER_TOPIC=drover.dead-letter
fi

# require_real_kafka: tests of delivery guarantees mean nothing on the
# in-memory broker (ctest registers them only for the real one).
require_real_kafka()
{
	is_real_kafka || fail "this test needs the real broker (DROVER_E2E_BROKER=real)"
}

# kafka_topic NAME PARTITIONS: creates a topic on the real broker.
kafka_topic()
{
	local out
	out=$("$DROVER_SRC/packaging/kafka.sh" topic "$1" "$2" --dir "$DROVER_KAFKA_DIR" 2>&1) ||
		fail "creating topic $1: $out"
}

# kafka_consume TOPIC COUNT [TIMEOUT]: the first COUNT records of TOPIC as
# kcat JSON envelopes, one per line (topic, partition, offset, key, payload,
# headers as a flat [name, value, ...] list). Fails if fewer arrive in time.
kafka_consume()
{
	local topic=$1 count=$2 timeout=${3:-30} out n
	out=$(timeout "$timeout" kcat -b "$KAFKA_BROKERS" -C -t "$topic" -o beginning \
		-c "$count" -J -q 2>/dev/null || true)
	n=$(printf '%s' "$out" | grep -c . || true)
	[ "$n" -ge "$count" ] || fail "only $n of $count records on $topic within $timeout s"
	printf '%s\n' "$out"
}

# kafka_count TOPIC: how many records TOPIC holds now (sum over partitions).
kafka_count()
{
	timeout 30 kcat -b "$KAFKA_BROKERS" -C -t "$1" -o beginning -e -q -f 'x\n' 2>/dev/null |
		grep -c x || true
}

# ---------------------------------------------------------------- config

free_port()
{
	python3 -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
'
}

# write_pipeline NAME < yaml: $T/pipelines/NAME.yml; "@T@" becomes $T.
write_pipeline()
{
	local text
	text=$(cat)
	printf '%s\n' "${text//@T@/$T}" >"$T/pipelines/$1.yml"
}

# write_config [TOP-LEVEL YAML LINE...]: $CFG with $STATE_DIR, the test's
# pipelines, the built plugins, the test's broker and topics (KAFKA_PROPS
# lines in kafka.properties), a free admin port, the repos added with
# add_repo, ADMIN_EXTRA lines inside admin:, then the given lines. On the
# real broker it creates the events topic (EVENTS_PARTITIONS, default 4).
write_config()
{
	[ -n "$PORT" ] || PORT=$(free_port)
	if is_real_kafka && [ -z "${_EVENTS_TOPIC_MADE:-}" ]; then
		kafka_topic "$EVENTS_TOPIC" "${EVENTS_PARTITIONS:-4}"
		_EVENTS_TOPIC_MADE=1
	fi
	local i line
	{
		echo "state_dir: \"$STATE_DIR\""
		echo "pipelines: \"$T/pipelines\""
		echo "plugins: \"$DROVER_BUILD/plugins\""
		echo "kafka:"
		echo "  brokers: \"$KAFKA_BROKERS\""
		echo "  group: \"$KAFKA_GROUP\""
		echo "  events_topic: \"$EVENTS_TOPIC\""
		echo "  results_topic: \"$RESULTS_TOPIC\""
		echo "  dead_letter_topic: \"$DEAD_LETTER_TOPIC\""
		if [ "${#KAFKA_PROPS[@]}" -eq 0 ]; then
			echo "  properties: {}"
		else
			echo "  properties:"
			for line in "${KAFKA_PROPS[@]}"; do
				echo "    $line"
			done
		fi
		echo "admin:"
		echo "  listen: \"127.0.0.1:$PORT\""
		for line in "${ADMIN_EXTRA[@]}"; do
			echo "  $line"
		done
		if [ "${#REPO_NAMES[@]}" -eq 0 ]; then
			echo "repos: []"
		else
			echo "repos:"
			for i in "${!REPO_NAMES[@]}"; do
				echo "  - name: \"${REPO_NAMES[$i]}\""
				echo "    url: \"${REPO_URLS[$i]}\""
			done
		fi
		for line in "$@"; do
			echo "$line"
		done
	} >"$CFG"
}

# ---------------------------------------------------------------- the agent

dv()
{
	"$DROVER_BIN" "$@"
}

healthz()
{
	curl -s --max-time 2 "http://127.0.0.1:$PORT/healthz" 2>/dev/null || true
}

# _launch_agent [NAME=VALUE...]: runs `drover agent -c $CFG` in the
# background from $T (extra environment as given), logging to
# $T/agent.N.log; sets AGENT_PID and AGENT_LOG.
_launch_agent()
{
	AGENT_STARTS=$((AGENT_STARTS + 1))
	AGENT_LOG=$T/agent.$AGENT_STARTS.log
	(cd "$T" && exec env "$@" "$DROVER_BIN" agent -c "$CFG") >"$AGENT_LOG" 2>&1 &
	AGENT_PID=$!
}

# start_agent [NAME=VALUE...]: starts the agent (see _launch_agent) and waits
# (30 s at most) until it consumes: healthz says kafka_assigned true.
start_agent()
{
	_launch_agent "$@"
	local end=$((SECONDS + 30)) h
	while :; do
		if ! kill -0 "$AGENT_PID" 2>/dev/null; then
			local rc=0
			wait "$AGENT_PID" || rc=$?
			AGENT_PID=""
			fail "the agent exited (code $rc) before it was ready"
		fi
		h=$(healthz)
		case "$h" in *'"kafka_assigned":true'*) break ;; esac
		[ "$SECONDS" -lt "$end" ] || fail "the agent did not get its partitions within 30 s (healthz: $h)"
		sleep 0.2
	done
	say "agent started (pid $AGENT_PID, port $PORT)"
}

# start_agent_nowait [WHEN]: starts the agent (see _launch_agent) and only
# waits (30 s at most) until its admin API answers, not for partitions (it
# cannot get them while its broker is down). If the agent exits meanwhile
# the test fails with "the agent exited WHEN" (default: "at start").
start_agent_nowait()
{
	local why=${1:-}
	_launch_agent
	local end=$((SECONDS + 30))
	until [ -n "$(healthz)" ]; do
		kill -0 "$AGENT_PID" 2>/dev/null || fail "the agent exited ${why:-at start}"
		[ "$SECONDS" -lt "$end" ] || fail "the agent's admin API did not answer within 30 s"
		sleep 0.2
	done
	say "agent started (pid $AGENT_PID, port $PORT), not waiting for partitions"
}

# wait_health KEY true|false [TIMEOUT]: until /healthz has "KEY":VALUE.
wait_health()
{
	local key=$1 want=$2 timeout=${3:-30} end h
	end=$((SECONDS + timeout))
	while :; do
		h=$(healthz)
		case "$h" in *"\"$key\":$want"*) return 0 ;; esac
		[ "$SECONDS" -lt "$end" ] || fail "/healthz has no \"$key\":$want after $timeout s: $h"
		sleep 0.2
	done
}

# stop_agent [TIMEOUT]: SIGTERM, then wait_agent_stopped TIMEOUT (default 30).
stop_agent()
{
	[ -n "$AGENT_PID" ] || fail "stop_agent: no agent running"
	kill -TERM "$AGENT_PID"
	wait_agent_stopped "${1:-30}"
}

# wait_agent_stopped TIMEOUT: the agent, sent SIGTERM, exits within TIMEOUT
# seconds with code 0 and its log says "agent: stopped".
wait_agent_stopped()
{
	local timeout=$1 end rc=0
	end=$((SECONDS + timeout))
	while kill -0 "$AGENT_PID" 2>/dev/null; do
		[ "$SECONDS" -lt "$end" ] || fail "the agent did not stop within $timeout s of SIGTERM"
		sleep 0.1
	done
	wait "$AGENT_PID" || rc=$?
	AGENT_PID=""
	assert_eq "$rc" 0 "exit code of the agent after SIGTERM"
	grep -q 'agent: stopped' "$AGENT_LOG" || fail "the agent log has no 'agent: stopped'"
	say "agent stopped (exit 0)"
}

# emit_github EVENT FILE ID: `drover emit`, asserting the agent queued it.
emit_github()
{
	local out
	out=$(dv emit -c "$CFG" --github-event "$1" --id "$3" "$2" 2>&1) ||
		fail "drover emit --github-event $1 --id $3 $2 failed: $out"
	case "$out" in
	"queued $EVENTS_TOPIC["*"]@"*) ;;
	*) fail "drover emit printed '$out', not 'queued <topic>[<p>]@<offset>'" ;;
	esac
}

# emit_gitlab_push SHA REPO ID: GitLab's push hook fixture for SHA on branch
# main of REPO (group/name), posted to POST /api/v1/events with X-Gitlab-Event
# and X-Gitlab-Event-UUID ID (the event's id); fails unless answered 202.
emit_gitlab_push()
{
	local code
	json_edit "$DROVER_FIXTURES/events/gitlab.push.json" "$T/events/gl-$3.json" '
d["project"]["path_with_namespace"] = a[1]
d["ref"] = "refs/heads/main"
d["after"] = d["checkout_sha"] = a[0]
for c in d.get("commits", []):
    c["id"] = a[0]
' "$1" "$2"
	code=$(curl -s -o "$T/gl-$3.out" -w '%{http_code}' --max-time 10 \
		-H 'Content-Type: application/json' -H 'X-Gitlab-Event: Push Hook' \
		-H "X-Gitlab-Event-UUID: $3" --data-binary "@$T/events/gl-$3.json" \
		"http://127.0.0.1:$PORT/api/v1/events")
	[ "$code" = 202 ] || fail "POST /api/v1/events (GitLab push $3) answered $code: $(cat "$T/gl-$3.out")"
}

metrics()
{
	curl -s --max-time 5 "http://127.0.0.1:$PORT/metrics" || fail "GET /metrics failed"
}

# metric NAME: its value on /metrics.
metric()
{
	local text
	text=$(metrics)
	awk -v n="$1" '$1 == n { print $2; found = 1 } END { if (!found) exit 1 }' <<<"$text" ||
		fail "no metric $1 on /metrics"
}

# wait_metric NAME VALUE [TIMEOUT]: until NAME equals VALUE.
wait_metric()
{
	local name=$1 want=$2 timeout=${3:-20} end v
	end=$((SECONDS + timeout))
	while :; do
		v=$(metric "$name")
		[ "$v" = "$want" ] && return 0
		[ "$SECONDS" -lt "$end" ] || fail "metric $name is $v, not $want, after $timeout s"
		sleep 0.2
	done
}

# run_json RUN: `drover show RUN --json` (fails the test when it fails).
run_json()
{
	local out
	out=$(dv show -c "$CFG" "$1" --json) || fail "drover show $1 --json failed"
	printf '%s\n' "$out"
}

runs_json()
{
	local out
	out=$(dv runs -c "$CFG" --json "$@") || fail "drover runs --json failed"
	printf '%s\n' "$out"
}

is_terminal()
{
	case "$1" in
	succeeded | failed | cancelled | timed_out | error | skipped) return 0 ;;
	*) return 1 ;;
	esac
}

# wait_run_status RUN STATUS [TIMEOUT]: polls `drover show --json` until the
# run has STATUS; fails at once when it settles on another terminal status.
wait_run_status()
{
	local run=$1 want=$2 timeout=${3:-20} end json st
	end=$((SECONDS + timeout))
	while :; do
		json=$(dv show -c "$CFG" "$run" --json 2>/dev/null || true)
		st=""
		[ -z "$json" ] || st=$(json_get status <<<"$json")
		[ "$st" = "$want" ] && return 0
		if is_terminal "$st"; then
			fail "run $run ended $st, not $want:"$'\n'"$json"
		fi
		[ "$SECONDS" -lt "$end" ] ||
			fail "run $run is '${st:-absent}', not $want, after $timeout s:"$'\n'"$json"
		sleep 0.2
	done
}

# wait_run_done RUN [TIMEOUT]: until the run has a terminal status; prints it.
wait_run_done()
{
	local run=$1 timeout=${2:-20} end json st
	end=$((SECONDS + timeout))
	while :; do
		json=$(dv show -c "$CFG" "$run" --json 2>/dev/null || true)
		st=""
		[ -z "$json" ] || st=$(json_get status <<<"$json")
		if is_terminal "$st"; then
			printf '%s\n' "$st"
			return 0
		fi
		[ "$SECONDS" -lt "$end" ] ||
			fail "run $run is '${st:-absent}', not finished, after $timeout s:"$'\n'"$json"
		sleep 0.2
	done
}

# wait_stage_status RUN STAGE STATUS [TIMEOUT]
wait_stage_status()
{
	local run=$1 stage=$2 want=$3 timeout=${4:-20} end json st
	end=$((SECONDS + timeout))
	while :; do
		json=$(dv show -c "$CFG" "$run" --json 2>/dev/null || true)
		st=""
		[ -z "$json" ] || st=$(json_get "stages.@$stage.status" <<<"$json")
		[ "$st" = "$want" ] && return 0
		[ "$SECONDS" -lt "$end" ] ||
			fail "stage $stage of run $run is '${st:-absent}', not $want, after $timeout s:"$'\n'"$json"
		sleep 0.2
	done
}

# run_of_event EVENT_ID [PIPELINE] [TIMEOUT]: waits for the run the event
# started and prints its id.
run_of_event()
{
	local id=$1 pipeline=${2:-} timeout=${3:-20} end json run
	end=$((SECONDS + timeout))
	while :; do
		json=$(dv runs -c "$CFG" --json 2>/dev/null || true)
		run=""
		if [ -n "$json" ]; then
			run=$(python3 -c '
import json, sys
runs = json.load(sys.stdin)
ids = [r["id"] for r in runs if r.get("event_id") == sys.argv[1]
       and (not sys.argv[2] or r.get("pipeline") == sys.argv[2])]
print(ids[0] if ids else "")
' "$id" "$pipeline" <<<"$json")
		fi
		if [ -n "$run" ]; then
			printf '%s\n' "$run"
			return 0
		fi
		[ "$SECONDS" -lt "$end" ] || fail "no run for event $id after $timeout s"
		sleep 0.2
	done
}

# wait_file PATH [TIMEOUT]: until it exists and is not empty.
wait_file()
{
	local path=$1 timeout=${2:-20} end
	end=$((SECONDS + timeout))
	until [ -s "$path" ]; do
		[ "$SECONDS" -lt "$end" ] || fail "$path did not appear within $timeout s"
		sleep 0.1
	done
}

# is_pid_gone PID: not running (absent, or a zombie waiting for its reaper).
is_pid_gone()
{
	local pid=$1 state
	kill -0 "$pid" 2>/dev/null || return 0
	state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null || true)
	[ -z "$state" ] || [ "$state" = Z ] || [ "$state" = X ]
}

# wait_pid_gone PID [TIMEOUT]
wait_pid_gone()
{
	local pid=$1 timeout=${2:-10} end
	end=$((SECONDS + timeout))
	until is_pid_gone "$pid"; do
		[ "$SECONDS" -lt "$end" ] || fail "process $pid is still running after $timeout s"
		sleep 0.1
	done
}

# db SQL: a query on the store of the agent of $STATE_DIR.
db()
{
	sqlite3 "$STATE_DIR/drover.db" "$1"
}

# ---------------------------------------------------------------- Kafka records

# kafka_produce_keyed WHAT < lines: "key<TAB>value" lines to the events
# topic, one record each, in one kcat call (WHAT names them if it fails).
kafka_produce_keyed()
{
	kcat -P -b "$KAFKA_BROKERS" -t "$EVENTS_TOPIC" -K $'\t' || fail "kcat could not produce $1"
}

# kafka_produce_webhooks FILE: each "key<TAB>delivery id<TAB>GitHub push
# body" line of FILE as a raw webhook record, with its own X-GitHub-Event
# (push) and X-GitHub-Delivery headers.
kafka_produce_webhooks()
{
	local key id body
	while IFS=$'\t' read -r key id body; do
		printf '%s\n' "$body" | kcat -P -b "$KAFKA_BROKERS" -t "$EVENTS_TOPIC" -k "$key" \
			-H "x-github-event=push" -H "x-github-delivery=$id" ||
			fail "kcat could not produce $id"
	done <"$1"
}

# ---------------------------------------------------------------- a private broker

PRIVATE_KAFKA=$T/kafka

# private_kafka_start [PORT]: starts (or restarts, data kept) a broker of the
# test's own in $PRIVATE_KAFKA, for tests that stop, kill or restart their
# broker (the suite's is left alone); PORT 0 (the default) picks free ports.
# Sets KAFKA_BROKERS to its address and DROVER_KAFKA_DIR to its directory
# (write_config and kafka_topic create topics there). From the first call
# on, the test's end runs _private_kafka_cleanup.
private_kafka_start()
{
	local out
	trap _private_kafka_cleanup EXIT
	out=$("$DROVER_SRC/packaging/kafka.sh" start --dir "$PRIVATE_KAFKA" --port "${1:-0}" \
		--auto-create 2>&1) || fail "starting the private broker: $out"
	KAFKA_BROKERS=$("$DROVER_SRC/packaging/kafka.sh" status --dir "$PRIVATE_KAFKA") ||
		fail "the private broker does not run after start: $out"
	DROVER_KAFKA_DIR=$PRIVATE_KAFKA
}

# private_kafka_stop: stops the private broker; fails if it still runs.
private_kafka_stop()
{
	local out
	out=$("$DROVER_SRC/packaging/kafka.sh" stop --dir "$PRIVATE_KAFKA" 2>&1) ||
		fail "stopping the private broker: $out"
	! "$DROVER_SRC/packaging/kafka.sh" status --dir "$PRIVATE_KAFKA" >/dev/null 2>&1 ||
		fail "the private broker still runs after stop"
}

# Runs before lib.sh's cleanup (which removes $T, the broker's directory):
# the agent gets SIGTERM and 20 s (then SIGKILL: it may wait on an absent
# broker), EXTRA_PIDS get SIGKILL, then the private broker is stopped. The
# test's exit code is kept.
_private_kafka_cleanup()
{
	local rc=$? p
	set +e
	_end_agent 20
	for p in "${EXTRA_PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	EXTRA_PIDS=()
	"$DROVER_SRC/packaging/kafka.sh" stop --dir "$PRIVATE_KAFKA" >/dev/null 2>&1
	(exit "$rc")
	_e2e_cleanup
}

# ---------------------------------------------------------------- several agents

# A test may run several agents at once, each in a slot named by a word (1,
# 2, A, B...) that keeps its config, admin port, state directory, pid and
# log. slot_use points lib.sh's CFG, PORT, STATE_DIR and AGENT_LOG at one
# (so that metric, wait_metric, runs_json... ask that agent). The agents
# running in slots are the EXTRA_PIDS (killed at the end); AGENT_PID stays
# empty between the slot_* calls.
SLOTS=() # slot names, in the order they were first configured
declare -A SLOT_CFG=() SLOT_PORT=() SLOT_STATE=() SLOT_PID=() SLOT_LOG=()

# slot_configure X NAME [YAML LINE...]: slot X gets config $T/agent-NAME.yaml
# (write_config with the lines given), state directory $T/state-NAME and a
# free admin port; no agent runs in it yet.
slot_configure()
{
	local x=$1 name=$2
	shift 2
	CFG=$T/agent-$name.yaml
	STATE_DIR=$T/state-$name
	PORT=""
	write_config "$@"
	case " ${SLOTS[*]} " in
	*" $x "*) ;;
	*) SLOTS+=("$x") ;;
	esac
	SLOT_CFG[$x]=$CFG
	SLOT_PORT[$x]=$PORT
	SLOT_STATE[$x]=$STATE_DIR
	SLOT_PID[$x]=""
	SLOT_LOG[$x]=""
}

# slot_use X: points CFG, PORT, STATE_DIR, AGENT_LOG at slot X.
slot_use()
{
	CFG=${SLOT_CFG[$1]}
	PORT=${SLOT_PORT[$1]}
	STATE_DIR=${SLOT_STATE[$1]}
	AGENT_LOG=${SLOT_LOG[$1]:-}
	AGENT_PID=""
}

# slot_sync_pids: EXTRA_PIDS becomes the pids of the slots' running agents.
slot_sync_pids()
{
	local x
	EXTRA_PIDS=()
	for x in "${SLOTS[@]}"; do
		[ -z "${SLOT_PID[$x]}" ] || EXTRA_PIDS+=("${SLOT_PID[$x]}")
	done
}

# slot_start X: starts slot X's agent (start_agent: waits until it has
# partitions).
slot_start()
{
	slot_use "$1"
	start_agent
	SLOT_PID[$1]=$AGENT_PID
	SLOT_LOG[$1]=$AGENT_LOG
	AGENT_PID=""
	slot_sync_pids
}

# slot_stop X [TIMEOUT]: SIGTERM to slot X's agent; asserts it stops within
# TIMEOUT (default 30 s) with exit code 0 (stop_agent).
slot_stop()
{
	slot_use "$1"
	AGENT_PID=${SLOT_PID[$1]}
	stop_agent "${2:-30}"
	SLOT_PID[$1]=""
	slot_sync_pids
}

# slot_kill X: SIGKILL to slot X's agent, no cleanup of any kind.
slot_kill()
{
	local pid=${SLOT_PID[$1]}
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null || true
	SLOT_PID[$1]=""
	slot_sync_pids
}

# slot_partitions X: how many partitions slot X's agent holds now, from its
# log: "intake: assigned N" adds, "revoked N" and "lost N" take away (an
# eager rebalance revokes everything and assigns anew, a cooperative one
# only moves the difference; the sum is right for both).
slot_partitions()
{
	awk '/intake: assigned [0-9]+ partition/ { n += $(NF - 1) }
	     /intake: (revoked|lost) [0-9]+ partition/ { n -= $(NF - 1) }
	     END { print n + 0 }' "${SLOT_LOG[$1]}"
}

# slot_wait_owns X COUNT [TIMEOUT]: until slot X's agent holds COUNT
# partitions (default 30 s).
slot_wait_owns()
{
	local x=$1 want=$2 timeout=${3:-30} end
	end=$((SECONDS + timeout))
	until [ "$(slot_partitions "$x")" -eq "$want" ]; do
		[ "$SECONDS" -lt "$end" ] ||
			fail "agent $x holds $(slot_partitions "$x") partitions, not $want, after $timeout s"
		sleep 0.3
	done
}

# slot_wait_split X Y [TIMEOUT]: until the agents of slots X and Y each hold
# some of the events topic's EVENTS_PARTITIONS (default 4) partitions, and
# together all of them.
slot_wait_split()
{
	local x=$1 y=$2 timeout=${3:-30} all=${EVENTS_PARTITIONS:-4} end nx ny
	end=$((SECONDS + timeout))
	while :; do
		nx=$(slot_partitions "$x")
		ny=$(slot_partitions "$y")
		[ "$nx" -ge 1 ] && [ "$ny" -ge 1 ] && [ $((nx + ny)) -eq "$all" ] && break
		[ "$SECONDS" -lt "$end" ] ||
			fail "partitions split $nx + $ny, not two ways over $all, after $timeout s"
		sleep 0.3
	done
	say "partitions split: agent $x $nx, agent $y $ny"
}

# slot_lag X: slot X's consumer-lag gauges, "partition=lag" lines sorted.
slot_lag()
{
	slot_use "$1"
	metrics | sed -n 's/^drover_consumer_lag{partition="\([0-9]*\)"} \([0-9-]*\)$/\1=\2/p' |
		sort -n
}

# slot_wait_consumed X [TIMEOUT] [COUNT]: until slot X's agent has consumer-lag
# gauges for COUNT partitions (default: as many as it holds now, at least
# one) and all are 0: what it was given is recorded and its offsets
# committed. TIMEOUT defaults to 45 s.
slot_wait_consumed()
{
	local x=$1 timeout=${2:-45} count=${3:-} end lag n
	end=$((SECONDS + timeout))
	while :; do
		lag=$(slot_lag "$x" | tr '\n' ' ')
		n=${count:-$(slot_partitions "$x")}
		[ "$n" -ge 1 ] && [ "$(wc -w <<<"$lag")" -eq "$n" ] &&
			[ -z "$(tr ' ' '\n' <<<"$lag" | grep -v '=0$' | grep . || true)" ] && return 0
		[ "$SECONDS" -lt "$end" ] ||
			fail "agent $x's consumer lag is '${lag% }' after $timeout s, not 0 on $n partition(s)"
		sleep 0.5
	done
}

# slot_all_runs: the runs of every slot's store (`drover runs --json`, 10000
# at most each) as one JSON array, each run with "agent": its slot's name.
slot_all_runs()
{
	local x
	for x in "${SLOTS[@]}"; do
		slot_use "$x"
		runs_json --limit 10000 >"$T/runs.$x.json"
	done
	python3 -c '
import json, sys
out = []
for x in sys.argv[2:]:
    for r in json.load(open("%s/runs.%s.json" % (sys.argv[1], x))):
        r["agent"] = x
        out.append(r)
print(json.dumps(out))
' "$T" "${SLOTS[@]}"
}

# slot_wait_runs WANT TIMEOUT [CHECK...]: until the slots' stores hold WANT
# runs together, all finished. More than WANT fails at once, after running
# the command CHECK (which should fail saying which events ran twice).
slot_wait_runs()
{
	local want=$1 timeout=$2 end got
	shift 2
	end=$((SECONDS + timeout))
	while :; do
		got=$(slot_all_runs | python3 -c '
import json, sys
runs = json.load(sys.stdin)
print(len(runs), sum(1 for r in runs if r["status"] not in ("queued", "running")))
')
		if [ "${got% *}" -gt "$want" ]; then
			[ "$#" -eq 0 ] || "$@" >/dev/null
			fail "${got% *} runs for $want events"
		fi
		[ "$got" = "$want $want" ] && return 0
		[ "$SECONDS" -lt "$end" ] ||
			fail "(total, finished) runs are ($got), not ($want $want), after $timeout s"
		sleep 0.5
	done
}

# ---------------------------------------------------------------- stage processes

# write_stage_script SHORT: $T/stage.sh MODE, for stages to exec (so $$ is
# the stage's process). It records its pid in $T/pids (lib.sh's cleanup
# reads them) and pid and start time (/proc/PID/stat field 22) in
# $T/starts/RUN.STAGE.ATTEMPT, works, then appends "RUN STAGE ATTEMPT" to
# $T/done. MODE short sleeps 0.SHORT to 0.(SHORT+3) s (by run id); gate
# waits for $T/release (60 s at most), then 0.3 s; long sleeps 60 s on its
# first attempt only; stuck always.
write_stage_script()
{
	mkdir -p "$T/starts"
	touch "$T/done"
	cat >"$T/stage.sh" <<STAGE
#!/bin/sh
set -e
mode=\$1
tag=\$DROVER_RUN_ID.\$DROVER_STAGE.\$DROVER_ATTEMPT
echo \$\$ >"$T/pids/\$tag.pid"
read -r stat </proc/\$\$/stat
set -- \$stat
echo "\$\$ \${22}" >"$T/starts/\$tag"
case \$mode in
short) sleep "0.\$((DROVER_RUN_ID % 4 + $1))" ;;
gate)
	i=0
	while [ ! -e "$T/release" ] && [ \$i -lt 600 ]; do
		sleep 0.1
		i=\$((i + 1))
	done
	sleep 0.3
	;;
long) [ "\$DROVER_ATTEMPT" -gt 1 ] || exec sleep 60 ;;
stuck) exec sleep 60 ;;
esac
echo "\$DROVER_RUN_ID \$DROVER_STAGE \$DROVER_ATTEMPT" >>"$T/done"
STAGE
	chmod +x "$T/stage.sh"
}

# write_stage_pipeline NAME BRANCH STAGE MODE [RETRIES]: pipeline NAME, run
# by pushes to BRANCH, of one stage STAGE that execs $T/stage.sh MODE
# (write_stage_script), retried RETRIES times (none by default) 100 ms apart.
write_stage_pipeline()
{
	{
		echo "name: $1"
		echo "on:"
		echo "  push: { branches: [$2] }"
		echo "checkout: false"
		echo "stages:"
		echo "  - name: $3"
		echo "    uses: shell"
		[ -z "${5:-}" ] || echo "    retry: { attempts: $5, delay: 100ms }"
		echo "    with: { run: \"exec @T@/stage.sh $4\" }"
	} | write_pipeline "$1"
}

# is_stage_alive TAG: the stage process of TAG (run.stage.attempt) still
# runs: its pid is there with the start time it recorded, and not a zombie
# (so a reused pid is never taken for a stage).
is_stage_alive()
{
	local pid start stat f
	read -r pid start <"$T/starts/$1" 2>/dev/null || return 1
	stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
	read -r -a f <<<"${stat##*) }" # f[0] is field 3 (state), f[19] field 22
	[ "${f[0]}" != Z ] && [ "${f[0]}" != X ] && [ "${f[19]}" = "$start" ]
}
