#!/usr/bin/env bash
# A broker outage loses nothing and duplicates nothing (DESIGN §4: results go
# through the SQLite outbox and leave it only when Kafka acknowledged them).
#
# On a private broker (this test stops and starts it; the suite's broker is
# left alone):
#  1. A run's first stage waits on a gate file. The broker is stopped: the
#     agent stays up (same pid), /healthz says kafka_connected false and the
#     log says no broker is reachable. The gate opens: the run finishes while
#     the broker is down, its results wait in the outbox
#     (drover_outbox_depth > 0). The broker comes back on the same port: the
#     agent reconnects (healthz, log), the outbox drains to 0, and an event
#     produced after the return runs.
#  2. A second outage, and this time the agent is stopped (SIGTERM) while the
#     broker is down, with results not yet acknowledged: it exits 0, says
#     they stay in the outbox, and they are on disk. Broker back, agent
#     started again: the outbox drains, the agent gets its partitions (once
#     the broker dropped the member that could not leave). The stop must
#     keep its bounds (stop_grace, consumer close capped at 10 s, producer
#     flush 5 s); that is checked last, so the delivery checks run anyway.
#  3. The whole results topic is read back: every CDEvent id (deterministic:
#     run, stage, attempt, phase) of the three runs appears exactly once, and
#     nothing else is there.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_real_kafka

# assert_same_agent PID: the agent still runs and is the process we started.
assert_same_agent()
{
	[ "$AGENT_PID" = "$1" ] || fail "the agent's pid changed from $1 to $AGENT_PID"
	kill -0 "$1" 2>/dev/null || fail "the agent (pid $1) died during the outage"
}

# emit_push ID: a push to master with delivery id ID; prints the run it starts.
emit_push()
{
	push_event "$T/events/$1.json" "$sha"
	emit_github push "$T/events/$1.json" "$1"
	run_of_event "$1" slow 30
}

# outbox_rows: rows in the outbox table of the stopped agent's database.
outbox_rows()
{
	sqlite3 "file:$STATE_DIR/drover.db?mode=ro" 'SELECT count(*) FROM outbox' ||
		fail "cannot read the outbox in $STATE_DIR/drover.db"
}

say "starting a private broker"
private_kafka_start 0
broker_port=${KAFKA_BROKERS##*:}
kafka_topic "$RESULTS_TOPIC" 2

sha=$(printf 'b%.0s' $(seq 40))
write_pipeline slow <<'EOF'
name: slow
on:
  push: { branches: [master] }
checkout: false
stages:
  - name: first
    uses: shell
    with:
      run: |
        echo $$ > @T@/pids/first.$DROVER_RUN_ID.pid
        i=0
        while [ ! -e @T@/gate.$DROVER_RUN_ID ] && [ $i -lt 900 ]; do sleep 0.1; i=$((i + 1)); done
        [ -e @T@/gate.$DROVER_RUN_ID ]
  - name: second
    uses: shell
    needs: [first]
    with: { run: "sleep 1" }
  - name: third
    uses: shell
    needs: [second]
    with: { run: "echo done" }
EOF
write_config "stop_grace: 2s" "stage_kill_grace: 1s"
start_agent
pid=$AGENT_PID

say "... outage 1: a run is waiting in its first stage"
run1=$(emit_push ev-outage-1)
wait_stage_status "$run1" first running 30
wait_metric drover_outbox_depth 0 30

say "... stopping the broker"
private_kafka_stop
wait_health kafka_connected false 30
curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PORT/readyz" |
	grep -qx 503 || fail "/readyz does not answer 503 while the broker is down"
grep -q "intake: no Kafka broker reachable at $KAFKA_BROKERS" "$AGENT_LOG" ||
	fail "the log does not say the broker is unreachable"

say "... the run finishes while the broker is down"
touch "$T/gate.$run1"
wait_run_status "$run1" succeeded 30
# The results of the run's end (first finished, second and third started and
# finished, the run finished) cannot have been acknowledged.
depth=$(metric drover_outbox_depth)
assert_ge "$depth" 6 "outbox depth with the broker down"
assert_same_agent "$pid"
sleep 2 # a little longer without a broker: nothing may leave the outbox
assert_eq "$(metric drover_outbox_depth)" "$depth" "outbox depth a while later, broker still down"
assert_same_agent "$pid"
say "outbox holds $depth results while the broker is down"

say "... restarting the broker on port $broker_port"
private_kafka_start "$broker_port"
wait_health kafka_connected true 60
n=$(grep -c "intake: connected to Kafka at $KAFKA_BROKERS" "$AGENT_LOG" || true)
assert_eq "$n" 2 "'connected to Kafka' lines (at the start, after the outage)"
wait_metric drover_outbox_depth 0 60
wait_health ready true 60
assert_same_agent "$pid"

say "... an event produced after the broker came back runs"
run2=$(emit_push ev-after-outage-1)
touch "$T/gate.$run2"
wait_run_status "$run2" succeeded 30
wait_metric drover_outbox_depth 0 30

say "... outage 2: the agent is stopped while the broker is down"
run3=$(emit_push ev-outage-2)
wait_stage_status "$run3" first running 30
wait_metric drover_outbox_depth 0 30
private_kafka_stop
wait_health kafka_connected false 30
touch "$T/gate.$run3"
wait_run_status "$run3" succeeded 30
depth=$(metric drover_outbox_depth)
assert_ge "$depth" 6 "outbox depth before the stop, broker down"
# Its bounds: stop_grace (2 s, no stage runs), closing the consumer (capped
# at 10 s), flushing the producer (5 s). The wait is longer so that the
# delivery checks below still run; the bound is checked at the end.
t0=$SECONDS
stop_agent 90
stop_seconds=$((SECONDS - t0))
say "the agent stopped in $stop_seconds s with the broker down"
grep -q 'records not acknowledged at stop (results and dead letters stay in the outbox' "$AGENT_LOG" ||
	fail "the log does not say unacknowledged records were kept in the outbox"
assert_eq "$(outbox_rows)" "$depth" "outbox rows on disk after the stop"

say "... broker back, agent started again: the outbox drains"
private_kafka_start "$broker_port"
# The stopped agent could not leave the group: the broker keeps its member
# until session.timeout.ms passes, and the group waits for it before it
# assigns partitions to the new one. The producer does not wait for that.
t0=$SECONDS
start_agent_nowait
wait_metric drover_outbox_depth 0 60
say "outbox drained $((SECONDS - t0)) s after the start"
wait_health kafka_assigned true 90
say "partitions assigned $((SECONDS - t0)) s after the start"

say "... every expected CDEvent id is on the results topic exactly once"
expected=$T/expected.txt
for run in "$run1" "$run2" "$run3"; do
	j=$(run_json "$run")
	assert_eq "$(json_get status <<<"$j")" succeeded "status of run $run"
	for phase in queued started finished; do
		echo "drover-run-$run-a1-$phase"
	done
	for stage in first second third; do
		assert_eq "$(json_get "stages.@$stage.attempt" <<<"$j")" 1 "attempts of $stage in run $run"
		echo "drover-run-$run-$stage-a1-started"
		echo "drover-run-$run-$stage-a1-finished"
	done
done >"$expected"
timeout 60 kcat -b "$KAFKA_BROKERS" -C -t "$RESULTS_TOPIC" -o beginning -e -J -q \
	>"$T/results.jsonl" 2>"$T/kcat.err" || fail "reading $RESULTS_TOPIC: $(cat "$T/kcat.err")"
python3 - "$expected" "$T/results.jsonl" <<'EOF' || fail "the results topic is not exactly the expected CDEvents"
import collections, json, sys
expected = open(sys.argv[1]).read().split()
seen = collections.Counter()
for line in open(sys.argv[2]):
    if not line.strip():
        continue
    rec = json.loads(line)
    ce = rec["payload"]
    if isinstance(ce, str):
        ce = json.loads(ce)
    seen[ce["id"]] += 1
    if ce["data"]["context"]["id"] != ce["id"]:
        sys.exit("CloudEvent id %s carries CDEvent id %s" % (ce["id"], ce["data"]["context"]["id"]))
dups = {i: n for i, n in seen.items() if n > 1}
missing = [i for i in expected if i not in seen]
extra = [i for i in seen if i not in expected]
print("results topic: %d records, %d distinct ids, %d expected" %
      (sum(seen.values()), len(seen), len(expected)))
if dups or missing or extra:
    sys.exit("duplicates %s, missing %s, unexpected %s" % (dups, missing, extra))
EOF
stop_agent 30
# 2 + 10 + 5 s, with room for a slow machine; librdkafka's default
# session.timeout.ms (45 s) must not hold the stop.
[ "$stop_seconds" -le 35 ] ||
	fail "the stop with the broker down took $stop_seconds s (bound: stop_grace 2 s + consumer close 10 s + flush 5 s)"
