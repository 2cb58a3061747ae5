#!/usr/bin/env bash
# Replay via Kafka asked twice for the same run attempt, and the replay
# counters (drover_replays_total{via,outcome}). One agent; its intake is held
# paused (max_queued_runs 1 and a run of pipeline "block" that waits for a
# file; stop_grace 1s ends it at the restart), so a command it sends to the
# events topic is not consumed yet and the run's attempt cannot change under
# the test. Proves:
#  - `drover replay --via-kafka` is answered 202 (command ...-a2, counted
#    via=kafka outcome=sent); the same request again is refused 409 naming
#    that command and when it was sent (counted refused), since the agent
#    executing it would drop a second one as a duplicate;
#  - the refusal survives a restart (the command is recorded in the store;
#    the embedded broker loses it, as a command to another agent or a lost
#    one would never give this run its attempt; on a real broker the agent
#    comes back on a fresh events topic for the same reason); `--force` then sends a new
#    command (...-a2-r2), which this agent executes: attempt 2 of the run
#    runs and succeeds (counted via=kafka outcome=queued on the executing
#    side);
#  - once the attempt changed, a plain --via-kafka request is accepted again
#    (a new id: ...-a3) and a replay through the API counts via=api queued;
#  - the counters parse as Prometheus text with every series listed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PY=$("$DROVER_SRC/packaging/python-env.sh") || fail "packaging/python-env.sh failed"
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
      run: echo "$DROVER_RUN_ID" >> @T@/build.count
  - name: qa
    uses: shell
    needs: [build]
    with:
      run: |
        echo "$DROVER_RUN_ID" >> @T@/qa.count
        [ -e @T@/qa-up ] || { echo "QA cluster is down"; exit 1; }
EOF
write_pipeline block <<'EOF'
name: block
on:
  push:
    branches: [block]
checkout: false
stages:
  - name: wait
    uses: shell
    with:
      run: |
        for i in $(seq 1 600); do [ -e @T@/unblock ] && exit 0; sleep 0.1; done
        exit 1
EOF
write_config "max_queued_runs: 1" "stop_grace: 1s"
start_agent

# replays METRIC_LABELS: the value of drover_replays_total{LABELS}.
replays()
{
	metric "drover_replays_total{$1}"
}

# replay_out ARGS...: `drover replay ARGS`; prints "rc|output".
replay_out()
{
	local rc=0 out
	out=$(dv replay -c "$CFG" "$@" 2>&1) || rc=$?
	printf '%s|%s\n' "$rc" "$out"
}

say "a push: build succeeds, qa fails (QA cluster down)"
push_event "$T/events/push.json" "$c1"
emit_github push "$T/events/push.json" deliver-1
run=$(run_of_event deliver-1)
wait_run_status "$run" failed 30
assert_eq "$(replays 'via="kafka",outcome="sent"')" 0 "kafka/sent before any replay"
assert_eq "$(replays 'via="api",outcome="queued"')" 0 "api/queued before any replay"

say "a run of 'block' holds the intake paused (max_queued_runs 1)"
push_event "$T/events/block.json" "$c1" refs/heads/block
emit_github push "$T/events/block.json" block-1
blocker=$(run_of_event block-1)
wait_stage_status "$blocker" wait running 30
wait_metric drover_intake_paused 1 30

say "the QA cluster comes back; replay --via-kafka: 202, command ...-a2"
touch "$T/qa-up"
r=$(replay_out --via-kafka --reason "QA back" "$run")
assert_eq "${r%%|*}" 0 "exit code of the first replay --via-kafka (${r#*|})"
assert_contains "$r" "-$run-a2)" "the first command's id"
first=$(sed -n 's/.*(command \([^)]*\)).*/\1/p' <<<"$r")
assert_eq "$(replays 'via="kafka",outcome="sent"')" 1 "kafka/sent after the first command"

say "the same request again: 409, naming the command sent and when"
r=$(replay_out --via-kafka "$run")
assert_eq "${r%%|*}" 1 "exit code of the second replay --via-kafka"
assert_contains "$r" "HTTP 409" "the second replay --via-kafka"
assert_contains "$r" "replay command $first (attempt 2 of run $run) was already sent at 20" \
	"the second replay --via-kafka"
assert_contains "$r" "--force" "the second replay --via-kafka"
code=$(curl -s -o "$T/api.out" -w '%{http_code}' --max-time 10 -X POST \
	-d '{"via_kafka": true}' "http://127.0.0.1:$PORT/api/v1/runs/$run/replay")
assert_eq "$code" 409 "status of the same request through the API"
assert_eq "$(replays 'via="kafka",outcome="refused"')" 2 "kafka/refused after two refusals"
assert_eq "$(replays 'via="kafka",outcome="sent"')" 1 "kafka/sent after two refusals"
assert_eq "$(attempt_json=$(run_json "$run"); json_get attempt <<<"$attempt_json")" 1 \
	"the run's attempt while the command waits"

say "restart: the broker (embedded) loses the command; the refusal is remembered"
stop_agent
if is_real_kafka; then
	# A real broker keeps the command, which this agent would consume after
	# the restart: a fresh events topic and group stand for a command that
	# went to another agent (or was lost), as the embedded broker's is.
	KAFKA_GROUP="$KAFKA_GROUP.after"
	EVENTS_TOPIC="$KAFKA_GROUP.events"
	_EVENTS_TOPIC_MADE=""
	write_config "max_queued_runs: 1" "stop_grace: 1s"
fi
touch "$T/unblock"
start_agent
r=$(replay_out --via-kafka "$run")
assert_eq "${r%%|*}" 1 "exit code of replay --via-kafka after the restart"
assert_contains "$r" "replay command $first" "replay --via-kafka after the restart"
assert_eq "$(replays 'via="kafka",outcome="refused"')" 1 "kafka/refused after the restart"

say "--force sends a new command (...-a2-r2); this agent executes it"
r=$(replay_out --via-kafka --force --reason "first one lost" "$run")
assert_eq "${r%%|*}" 0 "exit code of replay --via-kafka --force (${r#*|})"
assert_contains "$r" "(command $first-r2)" "the forced command's id"
wait_run_status "$run" succeeded 30
j=$(run_json "$run")
assert_eq "$(json_get attempt <<<"$j")" 2 "the run's attempt after the forced command"
assert_eq "$(json_get attempts.1.reason <<<"$j")" "first one lost" "reason of attempt 2"
assert_eq "$(wc -l <"$T/build.count" | tr -d ' ')" 1 "build runs (kept by the replay)"
wait_metric 'drover_replays_total{via="kafka",outcome="queued"}' 1 20
assert_eq "$(replays 'via="kafka",outcome="sent"')" 1 "kafka/sent after the forced command"

say "the attempt changed: --via-kafka is accepted again (...-a3), and through the API"
r=$(replay_out --via-kafka --stage qa "$run")
assert_eq "${r%%|*}" 0 "exit code of replay --via-kafka for attempt 3 (${r#*|})"
assert_contains "$r" "-$run-a3)" "the command id for attempt 3"
end=$((SECONDS + 30))
until [ "$(json_get attempt <<<"$(run_json "$run")")" = 3 ]; do
	[ "$SECONDS" -lt "$end" ] || fail "run $run is not at attempt 3 after 30 s"
	sleep 0.2
done
wait_run_status "$run" succeeded 30
r=$(replay_out --stage qa "$run")
assert_eq "${r%%|*}" 0 "exit code of a replay through the API (${r#*|})"
wait_run_status "$run" succeeded 30
assert_eq "$(replays 'via="api",outcome="queued"')" 1 "api/queued"
wait_metric 'drover_replays_total{via="kafka",outcome="queued"}' 2 20

say "the counters parse as Prometheus text, every series listed"
metrics >"$T/metrics.txt"
"$PY" - "$T/metrics.txt" <<'EOF' || fail "drover_replays_total does not parse, or misses series"
import sys
from prometheus_client.parser import text_string_to_metric_families
want = {("api", o) for o in ("queued", "refused", "failed")} | {
    ("kafka", o) for o in ("sent", "refused", "failed", "queued", "command_refused", "duplicate")}
seen = set()
for fam in text_string_to_metric_families(open(sys.argv[1]).read()):
    if fam.name == "drover_replays":
        assert fam.type == "counter", fam.type
        for s in fam.samples:
            if s.name == "drover_replays_total":
                seen.add((s.labels["via"], s.labels["outcome"]))
missing = want - seen
assert not missing, "series missing: %s" % sorted(missing)
EOF
say "ok"
