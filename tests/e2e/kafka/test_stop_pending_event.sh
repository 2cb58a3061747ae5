#!/usr/bin/env bash
# An agent stopped while POST /api/v1/events waits for Kafka's
# acknowledgement (the broker is down) stops cleanly, and the client gets no
# 202: the event was never accepted, so the client still owns it.
#
# How: a private broker; the agent is ready; the broker stops; a GitHub push
# is posted and left waiting (the producer keeps the record, as it does
# through any outage); the agent gets SIGTERM. At its teardown the producer
# is flushed and destroyed, and the record's delivery report comes after the
# admin API is gone. That report once walked the freed admin API's list (a
# use-after-free ASan found). glibc's MALLOC_PERTURB_ fills freed memory
# with a pattern, so a report that reads the freed list follows a wild
# pointer and the agent crashes instead of exiting 0.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_real_kafka

private_kafka_start 0
c1=$(make_repo hello)
add_repo Codertocat/Hello-World "$(repo_url hello)"
write_config
start_agent MALLOC_PERTURB_=165
wait_health ready true 60

say "the broker stops; a push is posted and waits for Kafka"
private_kafka_stop
wait_health kafka_connected false 30
push_event "$T/events/push.json" "$c1"
curl -s -o "$T/post.body" -w '%{http_code}' --max-time 60 -X POST \
	-H 'Content-Type: application/json' -H 'X-GitHub-Event: push' \
	-H 'X-GitHub-Delivery: pending-at-stop-1' --data-binary "@$T/events/push.json" \
	"http://127.0.0.1:$PORT/api/v1/events" >"$T/post.code" 2>/dev/null &
post_pid=$!
EXTRA_PIDS+=("$post_pid")
sleep 1
kill -0 "$post_pid" 2>/dev/null || fail "the POST was answered ($(cat "$T/post.code")) with the broker down"

say "SIGTERM while the POST waits"
kill -TERM "$AGENT_PID"
wait_agent_stopped 40
wait "$post_pid" || true
code=$(cat "$T/post.code")
[ "$code" != 202 ] || fail "the client got 202 for an event Kafka never acknowledged"
say "the client got '$code' (no answer or an error), the agent exited 0"
