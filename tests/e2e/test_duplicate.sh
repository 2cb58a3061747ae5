#!/usr/bin/env bash
# The event id (X-GitHub-Delivery) makes delivery effectively-once: the same
# event sent twice with the same id starts exactly one run and counts one
# duplicate; the same body with another id is a new event.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

c1=$(make_repo hello)
add_repo Codertocat/Hello-World "$(repo_url hello)"
write_pipeline ci <<'EOF'
name: ci
on:
  push: {}
stages:
  - name: test
    uses: shell
    with: { run: "echo run $DROVER_RUN_ID >> @T@/ran" }
EOF
write_config
start_agent

push_event "$T/events/push.json" "$c1"
say "the same event twice with id dup-1"
emit_github push "$T/events/push.json" dup-1
emit_github push "$T/events/push.json" dup-1
wait_metric drover_events_received_total 2 20
wait_metric drover_events_duplicate_total 1 10
run=$(run_of_event dup-1)
wait_run_status "$run" succeeded 20
sleep 1 # a second run, if one were wrongly started, would show up by now

say "checking exactly one run"
runs=$(runs_json)
n=$(python3 -c 'import json, sys; print(len(json.load(sys.stdin)))' <<<"$runs")
assert_eq "$n" 1 "number of runs"
assert_eq "$(wc -l <"$T/ran" | tr -d ' ')" 1 "stage executions"
assert_eq "$(metric drover_events_duplicate_total)" 1 "drover_events_duplicate_total"
assert_eq "$(metric drover_runs_created_total)" 1 "drover_runs_created_total"
grep -q 'dup-1 seen before' "$AGENT_LOG" || fail "the agent log does not say dup-1 was seen before"

say "the same body with another id is a new event"
emit_github push "$T/events/push.json" dup-2
run2=$(run_of_event dup-2)
wait_run_status "$run2" succeeded 20
assert_eq "$(metric drover_events_duplicate_total)" 1 "drover_events_duplicate_total after dup-2"
assert_eq "$(metric drover_runs_created_total)" 2 "drover_runs_created_total after dup-2"

stop_agent
