#!/usr/bin/env bash
# Many stage processes ending at the same moment (a burst of SIGCHLD) must
# not hurt the embedded Kafka broker: afterwards results still drain from
# the outbox and a new event is still consumed and run.
#
# Regression test: the agent's signals (SIGCHLD, SIGTERM, SIGINT) could be
# delivered to librdkafka's mock-cluster thread ("rdk:mock", which does not
# block signals); its poll() then fails with EINTR, the thread logs "Mock
# cluster failed to poll N fds: -1: Interrupted system call" and quits, and
# the embedded broker is gone for good.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

c1=$(make_repo hello)
add_repo Codertocat/Hello-World "$(repo_url hello)"
{
	echo "name: burst"
	echo "on:"
	echo "  push: { branches: [master] }"
	echo "stages:"
	for i in $(seq 1 24); do
		echo "  - name: s$i"
		echo "    uses: shell"
		echo "    with: { run: \"sleep 1\" }"
	done
} | write_pipeline burst
write_pipeline probe <<'EOF'
name: probe
on:
  push: { branches: [probe] }
stages:
  - name: probe
    uses: shell
    with: { run: "echo probe" }
EOF
write_config "max_parallel: 64"
start_agent

say "three runs of 24 parallel one-second stages"
for i in 1 2 3; do
	push_event "$T/events/burst$i.json" "$c1"
	emit_github push "$T/events/burst$i.json" "burst-$i"
done
for i in 1 2 3; do
	run=$(run_of_event "burst-$i")
	wait_run_status "$run" succeeded 30
done

say "checking the embedded broker is still alive"
if grep -q 'Mock cluster failed to poll' "$AGENT_LOG"; then
	fail "the embedded broker's thread died: $(grep -m1 'Mock cluster failed to poll' "$AGENT_LOG")"
fi
wait_metric drover_outbox_depth 0 15
push_event "$T/events/probe.json" "$c1" refs/heads/probe
emit_github push "$T/events/probe.json" probe-1
run=$(run_of_event probe-1 "" 15)
wait_run_status "$run" succeeded 20
wait_metric drover_outbox_depth 0 15

stop_agent 20
