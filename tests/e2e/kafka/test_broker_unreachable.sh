#!/usr/bin/env bash
# An agent started while its broker is down waits for it instead of exiting
# (a systemd unit or a container must not crash-loop because Kafka starts a
# little later):
#  - the agent keeps running, logs once that no broker is reachable
#    ("retrying (not ready)"), /healthz answers 200 with "ready":false and
#    /readyz 503;
#  - librdkafka's connection failures do not flood the log (a generous bound
#    on the lines per second, printed);
#  - once a broker listens at that address the agent connects, gets its
#    partitions, /readyz answers 200, and an event produced then runs.
#
# The test uses a private broker (started once to make the topics, then
# stopped), never the suite's.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_real_kafka

readyz_code()
{
	curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PORT/readyz" || true
}

say "making the topics on a private broker, then stopping it"
private_kafka_start 0
broker_port=${KAFKA_BROKERS##*:}
kafka_topic "$RESULTS_TOPIC" 1
write_pipeline ci <<'EOF'
name: ci
on:
  push: { branches: [master] }
checkout: false
stages:
  - name: test
    uses: shell
    with: { run: "echo testing $DROVER_SHA" }
EOF
write_config
private_kafka_stop
! kcat -b "$KAFKA_BROKERS" -L -m 2 >/dev/null 2>&1 || fail "something still answers at $KAFKA_BROKERS"

say "... starting the agent with nothing listening at $KAFKA_BROKERS"
start_agent_nowait "while no broker was reachable"
pid=$AGENT_PID
t_start=$SECONDS
end=$((SECONDS + 20))
until grep -q "intake: no Kafka broker reachable at $KAFKA_BROKERS: retrying (not ready)" "$AGENT_LOG"; do
	kill -0 "$pid" 2>/dev/null || fail "the agent exited while no broker was reachable"
	[ "$SECONDS" -lt "$end" ] || fail "the log does not say that no broker is reachable after 20 s"
	sleep 0.2
done
h=$(healthz)
assert_contains "$h" '"ready":false' "/healthz with no broker"
assert_contains "$h" '"kafka_connected":false' "/healthz with no broker"
assert_eq "$(readyz_code)" 503 "/readyz with no broker"

say "... waiting a while without a broker (the agent must stay up, the log stay calm)"
sleep 12
kill -0 "$pid" 2>/dev/null || fail "the agent exited while no broker was reachable"
assert_eq "$(readyz_code)" 503 "/readyz after 12 s with no broker"
elapsed=$((SECONDS - t_start))
lines=$(wc -l <"$AGENT_LOG")
kafka_lines=$(grep -c ' kafka: ' "$AGENT_LOG" || true)
reachable_lines=$(grep -c 'no Kafka broker reachable' "$AGENT_LOG" || true)
say "in ${elapsed} s without a broker: $lines log lines, $kafka_lines from librdkafka," \
	"$reachable_lines 'no Kafka broker reachable'"
assert_eq "$reachable_lines" 1 "'no Kafka broker reachable' lines (said once, not per retry)"
# librdkafka retries with a backoff growing to 10 s and suppresses identical
# errors: a few lines per second at worst. A flood is many more.
[ "$kafka_lines" -le $((5 + 2 * elapsed)) ] ||
	fail "librdkafka floods the log: $kafka_lines lines in $elapsed s"$'\n'"$(grep ' kafka: ' "$AGENT_LOG" | tail -n 20)"

say "... starting the broker on port $broker_port"
private_kafka_start "$broker_port"
wait_health kafka_assigned true 60
wait_health ready true 30
assert_eq "$(readyz_code)" 200 "/readyz once the broker is up"
grep -q "intake: connected to Kafka at $KAFKA_BROKERS" "$AGENT_LOG" ||
	fail "the log does not say the agent connected"
[ "$AGENT_PID" = "$pid" ] && kill -0 "$pid" 2>/dev/null || fail "the agent did not survive"

say "... an event produced now runs"
sha=$(printf 'd%.0s' $(seq 40))
push_event "$T/events/push.json" "$sha"
emit_github push "$T/events/push.json" ev-after-start
run=$(run_of_event ev-after-start ci 30)
wait_run_status "$run" succeeded 30
wait_metric drover_outbox_depth 0 30
stop_agent
