#!/usr/bin/env bash
# Replay via Kafka (`drover replay --via-kafka`): the agent asked produces a
# command event (dev.cdeventsx.drover-replay.requested) to the events topic,
# keyed by the run's repository, and whichever agent owns that partition
# executes it. One events partition, two agents A and B (cooperative-sticky,
# so a partition stays where it is when an agent joins). Each stage appends
# the state directory of the agent that ran it to its counter file.
#  1. Same agent: A alone runs build -> qa -> deploy; qa fails (QA down).
#     The QA cluster comes back; `drover replay --via-kafka` asked to A: A
#     consumes its own command and makes attempt 2 of the run (qa and
#     deploy ran again on A, build did not). The same record produced again
#     (a redelivery) starts nothing.
#  2. Another agent: a second run fails on A. B starts, A stops gracefully,
#     so B owns the partition; A is started again on its state. `drover
#     replay --via-kafka` asked to A: B consumes the command and makes a
#     local run from its snapshot: qa and deploy run on B, build (kept, with
#     its output) does not run anywhere, deploy sees build's output from A's
#     run and checks out the run's commit; B's run says where it came from
#     (`drover show`); A's run is untouched. Asked again, A refuses (409,
#     naming the command sent); with --force it sends a new command
#     (...-a2-r2) and B makes another run of it.
#  3. A command whose snapshot brings a definition other than B's own
#     pipeline of that name (a command never brings code) is refused by B:
#     logged, counted (drover_events_refused_total) and recorded as the
#     event's outcome; a malformed one is dead-lettered.
#  drover_replays_total counts each side: sent/refused on the agent asked,
#  queued/duplicate/command_refused on the one executing.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_real_kafka

EVENTS_PARTITIONS=1
KAFKA_PROPS=("session.timeout.ms: 6000" "heartbeat.interval.ms: 1000"
	"partition.assignment.strategy: cooperative-sticky")
c1=$(make_repo hello)
add_repo Codertocat/Hello-World "$(repo_url hello)"
write_pipeline deliver <<'EOF'
name: deliver
on:
  push:
    branches: [master]
stages:
  - name: build
    uses: shell
    with:
      run: |
        echo "${DROVER_WORKSPACE%/workspaces/*}" >> @T@/build.count
        echo "artifact=built-$DROVER_RUN_ID" >> "$DROVER_OUTPUTS"
  - name: qa
    uses: shell
    needs: [build]
    with:
      run: |
        echo "${DROVER_WORKSPACE%/workspaces/*}" >> @T@/qa.count
        [ -e @T@/qa-up ] || { echo "QA cluster is down"; exit 1; }
  - name: deploy
    uses: shell
    needs: [qa]
    with:
      run: |
        echo "${DROVER_WORKSPACE%/workspaces/*}" >> @T@/deploy.count
        echo "${DROVER_OUTPUT_BUILD_ARTIFACT:-}" > @T@/deploy.saw
        git rev-parse HEAD > @T@/deploy.sha
EOF
slot_configure A a
slot_configure B b

# ran STAGE AGENT: how many times STAGE ran on AGENT (a or b).
ran()
{
	if [ -e "$T/$1.count" ]; then grep -c "/state-$2\$" "$T/$1.count" || true; else echo 0; fi
}

# agent_id X: slot X's agent id.
agent_id()
{
	tr -d ' \n' <"${SLOT_STATE[$1]}/agent-id"
}

# db_query X SQL: a read-only query on slot X's store.
db_query()
{
	sqlite3 "file:${SLOT_STATE[$1]}/drover.db?mode=ro" "$2" ||
		fail "cannot query ${SLOT_STATE[$1]}/drover.db: $2"
}

say "1. same agent: a run on A fails at qa"
slot_start A
push_event "$T/events/push1.json" "$c1"
emit_github push "$T/events/push1.json" deliver-1
run1=$(run_of_event deliver-1)
wait_run_status "$run1" failed 30
assert_eq "$(ran build a) $(ran qa a) $(ran deploy a)" "1 1 0" "stages run on A (build qa deploy)"

say "the QA cluster is back: drover replay --via-kafka asked to A, executed by A"
touch "$T/qa-up"
out=$(dv replay -c "${SLOT_CFG[A]}" --via-kafka --reason "QA back" "$run1" 2>&1) ||
	fail "drover replay --via-kafka failed: $out"
command="drover-replay-$(agent_id A)-$run1-a2"
assert_eq "$out" "run $run1: attempt 2 requested through Kafka (command $command), re-running qa, deploy" \
	"drover replay --via-kafka's line"
end=$((SECONDS + 30))
until [ "$(json_get attempt <<<"$(run_json "$run1")")" = 2 ]; do
	[ "$SECONDS" -lt "$end" ] || fail "run $run1 is not at attempt 2 30 s after the command"
	sleep 0.2
done
wait_run_status "$run1" succeeded 30
assert_eq "$(ran build a) $(ran qa a) $(ran deploy a)" "1 2 1" "stages run on A after the replay"
j=$(run_json "$run1")
assert_eq "$(json_get attempts.1.reason <<<"$j")" "QA back" "reason of attempt 2"
assert_eq "$(json_get attempts.1.stages <<<"$j")" '["qa","deploy"]' "stages of attempt 2"
assert_eq "$(db_query A "SELECT outcome FROM events WHERE id = '$command'")" accepted \
	"outcome of the command on A"

say "the same command record again (a redelivery) starts nothing"
timeout 20 kcat -b "$KAFKA_BROKERS" -C -t "$EVENTS_TOPIC" -o beginning -e -q -f '%k\t%s\n' 2>/dev/null |
	grep -F "\"id\":\"$command\"" | head -1 >"$T/command.rec" || true
[ -s "$T/command.rec" ] || fail "the command $command is not on $EVENTS_TOPIC"
cut -f2- "$T/command.rec" | kcat -b "$KAFKA_BROKERS" -P -t "$EVENTS_TOPIC" -k "$(cut -f1 "$T/command.rec")"
slot_use A
wait_metric drover_events_duplicate_total 1 30
assert_eq "$(metric 'drover_replays_total{via="kafka",outcome="duplicate"}')" 1 \
	"commands dropped as duplicates on A"
assert_eq "$(metric 'drover_replays_total{via="kafka",outcome="queued"}') $(metric 'drover_replays_total{via="kafka",outcome="sent"}')" \
	"1 1" "commands executed and sent by A"
assert_eq "$(json_get attempt <<<"$(run_json "$run1")")" 2 "run attempt after the redelivery"
assert_eq "$(ran qa a)" 2 "qa runs on A after the redelivery"

say "2. another agent: a second run fails on A"
rm "$T/qa-up"
c2=$(repo_commit hello v2)
push_event "$T/events/push2.json" "$c2"
emit_github push "$T/events/push2.json" deliver-2
run2=$(run_of_event deliver-2)
wait_run_status "$run2" failed 30
assert_eq "$(ran build a) $(ran qa a)" "2 3" "build and qa runs on A after the second run"

say "B starts, A stops gracefully: B owns the partition; A starts again on its state"
slot_start B
slot_stop A
slot_wait_owns B 1 30
slot_use A
start_agent_nowait "after its graceful stop"
SLOT_PID[A]=$AGENT_PID
SLOT_LOG[A]=$AGENT_LOG
AGENT_PID=""
slot_sync_pids
wait_health kafka_connected true 30
a_id=$(agent_id A)

say "drover replay --via-kafka asked to A: B executes it from the snapshot"
touch "$T/qa-up"
slot_use A
out=$(dv replay -c "${SLOT_CFG[A]}" --via-kafka --reason "QA back again" "$run2" 2>&1) ||
	fail "drover replay --via-kafka of run $run2 failed: $out"
assert_contains "$out" "command drover-replay-$a_id-$run2-a2" "drover replay --via-kafka's line"
slot_use B
end=$((SECONDS + 45))
brun=""
while [ -z "$brun" ]; do
	brun=$(runs_json | python3 -c '
import json, sys
for r in json.load(sys.stdin):
    if r.get("event_id") == sys.argv[1]:
        print(r["id"])
' "drover-replay-$a_id-$run2-a2")
	[ -n "$brun" ] || [ "$SECONDS" -lt "$end" ] || fail "B made no run of the command within 45 s"
	[ -n "$brun" ] || sleep 0.3
done
wait_run_status "$brun" succeeded 45
assert_eq "$(ran build a) $(ran build b)" "2 0" "build runs (A, B): kept, not run again"
assert_eq "$(ran qa b) $(ran deploy b)" "1 1" "qa and deploy runs on B"
assert_eq "$(cat "$T/deploy.saw")" "built-$run2" "build's output (from A's run) as deploy saw it on B"
assert_eq "$(cat "$T/deploy.sha")" "$c2" "commit deploy ran on at B"
j=$(run_json "$brun")
assert_eq "$(json_get attempts.0.origin.agent <<<"$j")" "$a_id" "origin agent of B's run"
assert_eq "$(json_get attempts.0.origin.run <<<"$j")" "$run2" "origin run of B's run"
assert_eq "$(json_get attempts.0.reason <<<"$j")" "QA back again" "reason on B's run"
assert_eq "$(json_get stages.@build.status <<<"$j")" succeeded "build on B's run (kept)"
assert_eq "$(json_get stages.@qa.attempt <<<"$j")" 2 "qa's attempt on B's run (numbered on)"
assert_eq "$(json_get sha <<<"$j")" "$c2" "sha of B's run"
text=$(dv show -c "${SLOT_CFG[B]}" "$brun") || fail "drover show $brun on B failed"
assert_contains "$text" "from run $run2 of agent $a_id" "drover show on B"
slot_use A
j=$(run_json "$run2")
assert_eq "$(json_get status <<<"$j") $(json_get attempt <<<"$j")" "failed 1" "A's run $run2 (untouched)"

say "asked again, A refuses (409: the command went out; B would drop another)"
out=$(dv replay -c "${SLOT_CFG[A]}" --via-kafka "$run2" 2>&1) && fail "a second replay --via-kafka was accepted: $out"
assert_contains "$out" "replay command drover-replay-$a_id-$run2-a2 (attempt 2 of run $run2) was already sent" \
	"the second replay --via-kafka"
assert_contains "$out" "HTTP 409" "the second replay --via-kafka"
assert_eq "$(metric 'drover_replays_total{via="kafka",outcome="refused"}')" 1 "refusals counted on A"

say "--force: a new command (-r2), which B executes as another run"
out=$(dv replay -c "${SLOT_CFG[A]}" --via-kafka --force --reason "once more" "$run2" 2>&1) ||
	fail "drover replay --via-kafka --force of run $run2 failed: $out"
assert_contains "$out" "command drover-replay-$a_id-$run2-a2-r2" "drover replay --via-kafka --force's line"
assert_eq "$(metric 'drover_replays_total{via="kafka",outcome="sent"}')" 2 "commands sent by A (since its restart)"
slot_use B
end=$((SECONDS + 45))
brun2=""
while [ -z "$brun2" ]; do
	brun2=$(runs_json | python3 -c '
import json, sys
for r in json.load(sys.stdin):
    if r.get("event_id") == sys.argv[1]:
        print(r["id"])
' "drover-replay-$a_id-$run2-a2-r2")
	[ -n "$brun2" ] || [ "$SECONDS" -lt "$end" ] || fail "B made no run of the forced command within 45 s"
	[ -n "$brun2" ] || sleep 0.3
done
wait_run_status "$brun2" succeeded 45
assert_eq "$(ran build b) $(ran qa b) $(ran deploy b)" "0 2 2" "stages run on B after the forced command"
assert_eq "$(json_get attempts.0.reason <<<"$(run_json "$brun2")")" "once more" "reason on B's second run"
wait_metric 'drover_replays_total{via="kafka",outcome="queued"}' 2 20

say "3. B refuses a command that brings its own definition (logged, counted, recorded)"
slot_use B
before=$(metric drover_events_refused_total)
python3 -c '
import json, sys
ce = {"specversion": "1.0", "type": "dev.cdeventsx.drover-replay.requested.0.1.0",
      "source": "/drover/x", "id": "drover-replay-x-1-a2",
      "data": {"origin_agent": "x", "run_id": 1, "attempt": 2, "stages": ["qa"],
               "mode": "stages", "snapshot": {"pipeline": "deliver",
               "event": {"repo": "Codertocat/Hello-World", "kind": "push"},
               "definition": {"name": "deliver"}, "stages": [], "outputs": {}}}}
print(json.dumps(ce))
bad = dict(ce, id="drover-replay-x-1-a3")
del bad["data"]["snapshot"]
print(json.dumps(bad))
' | kcat -b "$KAFKA_BROKERS" -P -t "$EVENTS_TOPIC" -k Codertocat/Hello-World
wait_metric drover_events_refused_total $((before + 1)) 30
assert_eq "$(metric 'drover_replays_total{via="kafka",outcome="command_refused"}')" 1 \
	"commands refused on B"
wait_metric drover_events_malformed_total 1 30
assert_eq "$(db_query B "SELECT outcome FROM events WHERE id = 'drover-replay-x-1-a2'")" refused \
	"outcome of the refused command"
assert_contains "$(db_query B "SELECT error FROM events WHERE id = 'drover-replay-x-1-a2'")" \
	"definition differs from this agent's pipeline deliver" "error of the refused command"
grep -q "command drover-replay-x-1-a2 .*refused" "${SLOT_LOG[B]}" ||
	fail "B's log does not say it refused the command"

slot_stop B
slot_stop A
say "ok"
