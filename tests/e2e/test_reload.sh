#!/usr/bin/env bash
# SIGHUP reloads the pipelines directory: a pipeline added after the start
# runs for the next event, a run under way keeps the definition it started
# with, and a file with an error is left out (logged with file:line) while
# the others go on.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

c1=$(make_repo hello)
add_repo Codertocat/Hello-World "$(repo_url hello)"
write_pipeline first <<'EOF2'
name: first
on:
  push: {}
stages:
  - name: test
    uses: shell
    with: { run: "echo first $DROVER_RUN_ID >> @T@/ran" }
EOF2
write_config
start_agent

push_event "$T/events/push.json" "$c1"
say "before the reload only 'first' runs"
emit_github push "$T/events/push.json" before-hup
run=$(run_of_event before-hup)
wait_run_status "$run" succeeded 20
assert_eq "$(runs_json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" 1 "runs before the reload"

write_pipeline second <<'EOF2'
name: second
on:
  push: {}
stages:
  - name: test
    uses: shell
    with: { run: "echo second $DROVER_RUN_ID >> @T@/ran" }
EOF2
printf 'name: broken\non: [\n' >"$T/pipelines/broken.yml"
say "SIGHUP with a new pipeline and a broken file"
kill -HUP "$AGENT_PID"
for _ in $(seq 1 50); do
	grep -q "SIGHUP: reloading pipelines" "$AGENT_LOG" && grep -q "loaded second" "$AGENT_LOG" && break
	sleep 0.1
done
grep -q "loaded second" "$AGENT_LOG" || fail "the agent did not load the new pipeline on SIGHUP"
grep -q "broken.yml:[0-9]*:" "$AGENT_LOG" || fail "the broken file was not reported with file:line"

emit_github push "$T/events/push.json" after-hup
say "after the reload both pipelines run"
for _ in $(seq 1 100); do
	n=$(runs_json | python3 -c 'import json,sys; print(sum(1 for r in json.load(sys.stdin) if r["event_id"] == "after-hup" and r["status"] == "succeeded"))')
	[ "$n" = 2 ] && break
	sleep 0.2
done
assert_eq "$n" 2 "succeeded runs of the event sent after SIGHUP"
assert_eq "$(grep -c second "$T/ran")" 1 "runs of the new pipeline"
kill -0 "$AGENT_PID" || fail "the agent died on SIGHUP"
stop_agent
