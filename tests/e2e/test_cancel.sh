#!/usr/bin/env bash
# An operator's cancel: `drover cancel RUN` (POST /api/v1/runs/{id}/cancel)
# while the run's first stage sleeps. Proves that the stage's whole process
# group goes (a background child, and one that ignores SIGTERM so only the
# KILL after stage_kill_grace ends it), that the run and both stages end
# cancelled with the reason in their summaries, that the second stage never
# started (no attempt, its marker file absent), and that the run's
# "finished" CDEvent says cancel (real broker). Then the refusals: a cancel
# of the finished run and of an unknown run exit 1 with the server's reason,
# a GET on the route answers 405 and a request without the token 401.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

c1=$(make_repo hello)
add_repo Codertocat/Hello-World "$(repo_url hello)"
write_pipeline sleepy <<'EOF'
name: sleepy
on:
  push: {}
stages:
  - name: sleep
    uses: shell
    timeout: 5m
    with:
      run: |
        echo $$ > @T@/pids/stage.pid
        sleep 300 & echo $! > @T@/pids/child.pid
        sh -c 'trap "" TERM; sleep 301 & echo $! > @T@/pids/stubborn-child.pid; wait' &
        echo $! > @T@/pids/stubborn.pid
        wait
  - name: after
    uses: shell
    needs: [sleep]
    with: { run: "touch @T@/after-ran" }
EOF
printf 's3cret-token\n' >"$T/token"
ADMIN_EXTRA=("token_file: \"$T/token\"")
write_config "stage_kill_grace: 1s"
start_agent

# api METHOD PATH [CURL ARGS...]: the HTTP status of a request with the token.
api()
{
	local method=$1 path=$2
	shift 2
	curl -s -o "$T/api.out" -w '%{http_code}' --max-time 10 -X "$method" \
		-H "Authorization: Bearer s3cret-token" "$@" "http://127.0.0.1:$PORT$path" || true
}

say "a push starts a run whose first stage sleeps"
push_event "$T/events/push.json" "$c1"
emit_github push "$T/events/push.json" sleepy-1
run=$(run_of_event sleepy-1)
wait_stage_status "$run" sleep running 20
for f in stage child stubborn stubborn-child; do
	wait_file "$T/pids/$f.pid"
done
pids=()
for f in stage child stubborn stubborn-child; do
	pids+=("$(cat "$T/pids/$f.pid")")
done

say "GET on the cancel route is refused (405), a POST without the token too (401)"
assert_eq "$(api GET "/api/v1/runs/$run/cancel")" 405 "status of GET /api/v1/runs/$run/cancel"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST \
	"http://127.0.0.1:$PORT/api/v1/runs/$run/cancel" || true)
assert_eq "$code" 401 "status of a cancel without the token"
assert_eq "$(json_get status <<<"$(run_json "$run")")" running "run status after the refused requests"

say "drover cancel $run while its first stage runs"
out=$(dv cancel -c "$CFG" --reason "QA cluster is down" "$run" 2>&1) ||
	fail "drover cancel $run failed: $out"
assert_eq "$out" "run $run: cancelling" "drover cancel's line"

say "the stage's process group goes (TERM, then KILL after the 1 s grace)"
for pid in "${pids[@]}"; do
	wait_pid_gone "$pid" 15
done
wait_run_status "$run" cancelled 20

say "checking the cancelled run"
j=$(run_json "$run")
assert_eq "$(json_get stages.@sleep.status <<<"$j")" cancelled "status of stage sleep"
assert_eq "$(json_get stages.@after.status <<<"$j")" cancelled "status of stage after"
assert_eq "$(json_get stages.@after.attempt <<<"$j")" 0 "attempts of stage after (never started)"
[ ! -e "$T/after-ran" ] || fail "stage after ran although the run was cancelled before it"
for s in sleep after; do
	assert_eq "$(json_get "stages.@$s.summary" <<<"$j")" "cancelled: QA cluster is down" \
		"summary of stage $s (the reason)"
done
grep -q "cancelling run $run" "$AGENT_LOG" || fail "the agent log does not say it cancelled run $run"

if is_real_kafka; then
	say "the run's finished CDEvent says cancel"
	found=""
	end=$((SECONDS + 30))
	while [ -z "$found" ]; do
		found=$(timeout 20 kcat -b "$KAFKA_BROKERS" -C -t "$RESULTS_TOPIC" -o beginning -e -q \
			-f '%s\n' 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        d = json.loads(line)
    except ValueError:
        continue
    d = d.get("data", d)  # the CloudEvent envelope around the CDEvent
    ctx, subj = d.get("context", {}), d.get("subject", {})
    if ctx.get("type", "").startswith("dev.cdevents.pipelinerun.finished") \
       and subj.get("id") == sys.argv[1]:
        print(subj.get("content", {}).get("outcome", ""))
' "$run" || true)
		[ -n "$found" ] || [ "$SECONDS" -lt "$end" ] ||
			fail "no pipelinerun.finished CDEvent of run $run on $RESULTS_TOPIC within 30 s"
		[ -n "$found" ] || sleep 0.5
	done
	assert_eq "$found" cancel "outcome of run $run's finished CDEvent"
fi

say "cancelling the finished run is refused (exit 1, 409)"
rc=0
out=$(dv cancel -c "$CFG" "$run" 2>&1) || rc=$?
assert_eq "$rc" 1 "exit code of drover cancel of a finished run"
assert_contains "$out" "already finished" "drover cancel of a finished run"
assert_contains "$out" "409" "drover cancel of a finished run"

say "cancelling an unknown run is refused (exit 1, 404)"
rc=0
out=$(dv cancel -c "$CFG" 999999 2>&1) || rc=$?
assert_eq "$rc" 1 "exit code of drover cancel of an unknown run"
assert_contains "$out" "no run 999999" "drover cancel of an unknown run"

assert_eq "$(json_get status <<<"$(run_json "$run")")" cancelled "run status at the end"
stop_agent
say "ok"
