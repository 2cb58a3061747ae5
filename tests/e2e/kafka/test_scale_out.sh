#!/usr/bin/env bash
# Scale-out: two agents in one consumer group split the events topic (4
# partitions, events keyed by 8 repositories so every partition gets some)
# and both run pipelines. One agent is stopped with SIGTERM while events are
# still being produced: the survivor gets its partitions (its log says so and
# its consumer-lag gauges then cover all 4) and carries on. The stopped agent
# is started again and the group goes back to two members. Through all of
# it, every event produced yields exactly one run across the two agents'
# stores: none lost, none run twice (each agent only deduplicates against its
# own store, so a duplicate here is an offset handed over too early).
#
# The whole scenario runs once with librdkafka's default (eager) assignment
# and once with partition.assignment.strategy cooperative-sticky (incremental
# rebalances), each on a topic and group of its own.
#
# A last short phase hands partitions over while backpressure has paused the
# intake: agent 1 is paused (two runs held at max_queued_runs 2) when agent 2
# joins and takes half its partitions; agent 1 resumes, agent 2 stops, and
# agent 1 must then consume from every partition again (librdkafka keeps the
# pause flag of a partition revoked while paused: before intake.c resumed
# partitions on revoke, the two that came back were never fetched).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_real_kafka

N_REPOS=8
N_FIRST=150  # produced at once before the stop
N_STREAM=150 # produced in small batches while one agent stops
N_LAST=100   # produced after the stopped agent is back

write_pipeline ci <<'EOF'
name: ci
on:
  push: { branches: [master] }
checkout: false
stages:
  - name: build
    uses: shell
    with: { run: "sleep 0.1; echo built $DROVER_REPO $DROVER_SHA" }
EOF
# Runs of branch "hold" wait until the test creates @T@/release (60 s at most).
write_pipeline hold <<'EOF'
name: hold
on:
  push: { branches: [hold] }
checkout: false
stages:
  - name: wait
    uses: shell
    with:
      run: |
        for i in $(seq 600); do [ -e @T@/release ] && exit 0; sleep 0.1; done
        exit 1
EOF

# Agents 1 and 2 run in lib.sh's slots 1 and 2.

# configure_agent N PHASE [YAML LINE...]: agent N's config for this phase's
# topic and group (max_parallel 4 unless lines are given).
configure_agent()
{
	local n=$1 phase=$2
	shift 2
	if [ "$#" -eq 0 ]; then
		set -- "max_parallel: 4"
	fi
	slot_configure "$n" "$phase-$n" "stop_grace: 10s" "$@"
}

# produce PREFIX FROM COUNT [BRANCH]: COUNT structured CloudEvents
# (com.github.push to BRANCH, default master) with ids PREFIX-FROM..,
# keyed by repository acme/repo-<i mod N_REPOS>.
produce()
{
	python3 -c '
import json, sys
prefix, first, count, n_repos = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
branch = sys.argv[5]
for i in range(first, first + count):
    repo = "acme/repo-%d" % (i % n_repos)
    sha = "%040x" % (0xd00d0000 + i)
    ev = {"specversion": "1.0", "type": "com.github.push", "source": "e2e",
          "id": "%s-%d" % (prefix, i), "datacontenttype": "application/json",
          "data": {"ref": "refs/heads/" + branch, "before": "0" * 40, "after": sha,
                   "repository": {"name": repo.split("/")[1], "full_name": repo,
                                  "clone_url": "file:///nonexistent/%s.git" % repo},
                   "pusher": {"name": "e2e"}, "created": False, "deleted": False,
                   "commits": [], "head_commit": {"id": sha, "message": "change %d" % i}}}
    print("%s\t%s" % (repo, json.dumps(ev, separators=(",", ":"))))
' "$1" "$2" "$3" "$N_REPOS" "${4:-master}" |
		kafka_produce_keyed "events $1-$2..+$3"
}

# produce_slowly PREFIX FROM COUNT: the same, 10 events every 0.1 s.
produce_slowly()
{
	local i
	for ((i = $2; i < $2 + $3; i += 10)); do
		produce "$1" "$i" $((i + 10 <= $2 + $3 ? 10 : $2 + $3 - i))
		sleep 0.1
	done
}

# runs_of N: agent N's runs as JSON (at most 1000, enough here).
runs_of()
{
	slot_use "$1"
	runs_json --limit 1000
}

# count_runs N: how many runs agent N recorded.
count_runs()
{
	runs_of "$1" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))'
}

# check_exactly_once PREFIX COUNT: the ids PREFIX-0..COUNT-1 each have exactly
# one run across both stores, every run succeeded, and there is nothing else.
check_exactly_once()
{
	slot_all_runs >"$T/runs.all.json"
	python3 -c '
import collections, json, sys
runs = json.load(open(sys.argv[1]))
prefix, count = sys.argv[2], int(sys.argv[3])
want = {"%s-%d" % (prefix, i) for i in range(count)}
seen = collections.defaultdict(list)
for r in runs:
    seen[r["event_id"]].append((r["agent"], r["id"], r["status"]))
twice = {k: v for k, v in seen.items() if len(v) > 1}
lost = sorted(want - set(seen), key=lambda s: int(s.rsplit("-", 1)[1]))
extra = sorted(set(seen) - want)
bad = [(k, v) for k, v in seen.items() for x in v if x[2] != "succeeded"]
per = collections.Counter(r["agent"] for r in runs)
problems = []
if twice:
    problems.append("%d event(s) ran more than once, e.g. %s" % (len(twice), sorted(twice.items())[:5]))
if lost:
    problems.append("%d event(s) never ran, e.g. %s" % (len(lost), lost[:10]))
if extra:
    problems.append("runs of unknown events %s" % extra[:5])
if bad:
    problems.append("%d run(s) did not succeed, e.g. %s" % (len(bad), bad[:5]))
if problems:
    sys.exit("; ".join(problems) + " (runs: agent 1 %d, agent 2 %d)" % (per["1"], per["2"]))
print("%d events, %d runs: agent 1 %d, agent 2 %d" % (count, len(runs), per["1"], per["2"]))
' "$T/runs.all.json" "$1" "$2" || fail "events of $1 were not run exactly once"
}

# check_all_partitions_used: every partition of the topic holds events (the
# repositories' keys spread over all of them).
check_all_partitions_used()
{
	local per
	per=$(timeout 30 kcat -b "$KAFKA_BROKERS" -C -t "$EVENTS_TOPIC" -o beginning -e -q \
		-f '%p\n' 2>/dev/null | sort -n | uniq -c | awk '{ printf "%s:%s ", $2, $1 }')
	say "records per partition: $per"
	[ "$(wc -w <<<"$per")" -eq 4 ] || fail "not every partition got events: $per"
}

# scenario PHASE [STRATEGY]: the whole story on a topic and group of its own.
scenario()
{
	local phase=$1 strategy=${2:-} total log1_lines
	KAFKA_GROUP="e2e.$TEST_NAME.$$.$phase"
	EVENTS_TOPIC="$KAFKA_GROUP.events"
	_EVENTS_TOPIC_MADE=""
	KAFKA_PROPS=("session.timeout.ms: 6000" "heartbeat.interval.ms: 1000")
	[ -z "$strategy" ] || KAFKA_PROPS+=("partition.assignment.strategy: $strategy")
	configure_agent 1 "$phase"
	configure_agent 2 "$phase"

	say "[$phase] two agents in group $KAFKA_GROUP (${strategy:-default eager} assignment)"
	slot_start 1
	slot_start 2
	slot_wait_split 1 2

	say "[$phase] producing $N_FIRST events over $N_REPOS repositories"
	produce "$phase" 0 "$N_FIRST"
	check_all_partitions_used
	local end=$((SECONDS + 30))
	until [ "$(count_runs 1)" -ge 1 ] && [ "$(count_runs 2)" -ge 1 ]; do
		[ "$SECONDS" -lt "$end" ] ||
			fail "both agents should run something: runs $(count_runs 1) and $(count_runs 2)"
		sleep 0.2
	done

	say "[$phase] producing $N_STREAM more while agent 2 stops (SIGTERM)"
	produce_slowly "$phase" "$N_FIRST" "$N_STREAM" &
	local producer=$!
	sleep 0.3
	log1_lines=$(wc -l <"${SLOT_LOG[1]}")
	say "[$phase] agent 2 had $(count_runs 2) run(s) at the stop; agent 1 $(count_runs 1)"
	slot_stop 2
	wait "$producer" || fail "the producer failed"
	total=$((N_FIRST + N_STREAM))

	say "[$phase] checking agent 1 took over all 4 partitions"
	slot_wait_owns 1 4 30
	local since
	since=$(tail -n +"$((log1_lines + 1))" "${SLOT_LOG[1]}")
	# Eager: everything is revoked and all 4 assigned anew; cooperative: the
	# 2 partitions of agent 2 are added, nothing is revoked (this shows the
	# strategy really was in effect).
	if [ -z "$strategy" ]; then
		assert_contains "$since" "intake: assigned 4 partition(s)" "agent 1's log after the stop"
	else
		assert_contains "$since" "intake: assigned 2 partition(s)" "agent 1's log after the stop"
		assert_not_contains "$since" "intake: revoked" "agent 1's log after the stop"
	fi
	slot_wait_consumed 1 45 4

	say "[$phase] starting agent 2 again: the group goes back to two"
	log1_lines=$(wc -l <"${SLOT_LOG[1]}")
	slot_start 2
	slot_wait_split 1 2
	since=$(tail -n +"$((log1_lines + 1))" "${SLOT_LOG[1]}")
	assert_contains "$since" "intake: revoked" "agent 1's log after agent 2 came back"
	say "[$phase] agent 2 took up $(sed -n 's/.*scheduler: took up \([0-9]*\) unfinished.*/\1/p' \
		"${SLOT_LOG[2]}") run(s) left queued or running at its stop"
	local before2
	before2=$(count_runs 2)
	slot_wait_runs "$total" 45 check_exactly_once "$phase" "$total"
	produce "$phase" "$total" "$N_LAST"
	total=$((total + N_LAST))
	slot_wait_runs "$total" 45 check_exactly_once "$phase" "$total"
	[ "$(count_runs 2)" -gt "$before2" ] ||
		fail "the restarted agent 2 ran nothing of the last $N_LAST events"

	say "[$phase] checking every event ran exactly once"
	local summary
	summary=$(check_exactly_once "$phase" "$total")
	say "[$phase] $summary"
	if grep -q 'intake: lost' "$T"/agent.*.log; then
		fail "an agent lost partitions (session timeout) instead of handing them over"
	fi
	slot_stop 1
	slot_stop 2
}

# paused_handover: the last phase (see the header).
paused_handover()
{
	local phase=paused i before end
	KAFKA_GROUP="e2e.$TEST_NAME.$$.$phase"
	EVENTS_TOPIC="$KAFKA_GROUP.events"
	_EVENTS_TOPIC_MADE=""
	KAFKA_PROPS=("session.timeout.ms: 6000" "heartbeat.interval.ms: 1000")
	configure_agent 1 "$phase" "max_parallel: 1" "max_queued_runs: 2"
	configure_agent 2 "$phase" "max_parallel: 1" "max_queued_runs: 2"
	say "[$phase] agent 1 paused by two held runs while agent 2 joins"
	slot_start 1
	produce "$phase" "$N_REPOS" 2 hold # ids paused-8 and -9
	slot_use 1
	wait_metric drover_intake_paused 1 20
	slot_start 2
	slot_wait_split 1 2
	slot_use 1
	assert_eq "$(metric drover_intake_paused)" 1 "agent 1 paused through the rebalance"
	touch "$T/release"
	wait_metric drover_runs_active 0 20
	wait_metric drover_intake_paused 0 20
	say "[$phase] agent 1 resumed; stopping agent 2"
	slot_stop 2
	slot_wait_owns 1 4 30
	say "[$phase] one event per repository, one at a time: agent 1 must take each"
	slot_use 1
	for ((i = 0; i < N_REPOS; i++)); do
		before=$(metric drover_events_received_total)
		produce "$phase" "$i" 1
		end=$((SECONDS + 15))
		until [ "$(metric drover_events_received_total)" -gt "$before" ]; do
			[ "$SECONDS" -lt "$end" ] ||
				fail "agent 1 did not consume event $phase-$i (acme/repo-$i) in 15 s;" \
					"its lag: $(slot_lag 1 | tr '\n' ' ')"
			sleep 0.2
		done
	done
	slot_start 2
	slot_wait_runs $((N_REPOS + 2)) 30 check_exactly_once "$phase" $((N_REPOS + 2))
	say "[$phase] $(check_exactly_once "$phase" $((N_REPOS + 2)))"
	slot_stop 1
	slot_stop 2
}

scenario eager
scenario coop cooperative-sticky
paused_handover
