#!/usr/bin/env bash
# Records the agent cannot understand (malformed JSON, a GitHub event type it
# does not handle) go to the dead-letter topic: the dead-letter counter goes
# up, the record leaves the outbox (Kafka acknowledged it), the log says
# "dead-lettered", no run starts, and the next good event still runs. A
# GitHub ping is ignored, not dead-lettered.
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
    with: { run: "echo testing $DROVER_SHA" }
EOF
write_config
start_agent

assert_eq "$(metric drover_events_dead_lettered_total)" 0 "dead letters at start"

say "a malformed JSON body"
printf '{"ref": "refs/heads/master", "after": oops' >"$T/events/bad.json"
emit_github push "$T/events/bad.json" bad-1
wait_metric drover_events_dead_lettered_total 1 20
assert_eq "$(metric drover_events_malformed_total)" 1 "malformed counter"

say "a GitHub event type drover does not handle (issues)"
json_edit "$GITHUB_FIXTURES/push.with-new-branch.payload.json" "$T/events/issues.json" \
	'd["action"] = "opened"; d["issue"] = {"number": 1, "title": "a bug"}'
emit_github issues "$T/events/issues.json" issues-1
wait_metric drover_events_dead_lettered_total 2 20
assert_eq "$(metric drover_events_unknown_total)" 1 "unknown counter"

say "a GitHub ping is understood and ignored, not dead-lettered"
emit_github ping "$GITHUB_FIXTURES/ping.payload.json" ping-1
wait_metric drover_events_ignored_total 1 20
assert_eq "$(metric drover_events_dead_lettered_total)" 2 "dead letters after the ping"

say "checking the dead letters reached Kafka (outbox drained) and were logged"
wait_metric drover_outbox_depth 0 20
assert_ge "$(metric drover_results_published_total)" 2 "results published"
n=$(grep -c 'dead-lettered' "$AGENT_LOG" || true)
assert_eq "$n" 2 "'dead-lettered' lines in the agent log"
grep 'dead-lettered' "$AGENT_LOG" | grep -q 'malformed' || fail "no 'malformed' dead-letter line"
grep 'dead-lettered' "$AGENT_LOG" | grep -q 'unknown' || fail "no 'unknown' dead-letter line"
assert_eq "$(runs_json)" "[]" "runs after the bad records"

say "the next good event still runs"
push_event "$T/events/good.json" "$c1"
emit_github push "$T/events/good.json" good-1
run=$(run_of_event good-1)
wait_run_status "$run" succeeded 20
assert_eq "$(metric drover_events_received_total)" 4 "records received"
assert_eq "$(metric drover_events_accepted_total)" 1 "events accepted"
assert_eq "$(metric drover_events_dead_lettered_total)" 2 "dead letters at the end"
wait_metric drover_outbox_depth 0 20

stop_agent
