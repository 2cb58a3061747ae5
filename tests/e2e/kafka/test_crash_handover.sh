#!/usr/bin/env bash
# Crash hand-over: an agent killed (kill -9) with events recorded whose
# offsets Kafka never acknowledged, whose partitions go to another agent
# before it comes back, must not make those events run twice (once by each
# agent). The README's "Several agents" described this as a known gap; the
# fix is "held" runs: an agent starts an event's runs only once Kafka has
# acknowledged the offset commit covering it, and a restarted agent settles
# the events it still holds against the ownership history the commits carry.
#
# On a private broker (this test kills and restarts it):
#  1. Agents A and B share one group (dynamic membership, session.timeout.ms
#     6 s) on a 4-partition events topic; both get partitions. Events are
#     CloudEvents pushes keyed by 8 repositories; each run's only stage
#     appends "<event id> <agent>" to $T/marks (the id read from
#     $DROVER_EVENT_FILE, the agent from the state directory of
#     $DROVER_WORKSPACE). A first wave runs, each event exactly once.
#  2. The moment: agent A must hold records it has not recorded yet while no
#     commit can reach Kafka any more. The test holds A's SQLite write lock
#     (an outside BEGIN IMMEDIATE), produces a second wave and waits until
#     A's event loop is stuck on the lock (its /healthz stops answering: A
#     has a batch in hand; librdkafka prefetches the rest meanwhile). Then
#     the broker is killed with SIGKILL: nothing sent to it from then on
#     lands, not even a request already in its socket buffers (SIGSTOP does
#     not do: tried, A's commit sent to the frozen broker was applied after
#     SIGCONT, Kafka still serves what a closed connection sent, and B never
#     got A's events). The lock is
#     released: A records the wave's records it holds (polled in its
#     database) and its commit cannot land. One second later (today's agent
#     starts their runs at once) A is killed with SIGKILL. What A recorded is
#     read from its database: each event's received_at must be after the
#     broker died, so no commit of them can have landed.
#  3. The broker is restarted on its port (data kept; 10-20 s: the
#     controller first fences the dead incarnation). B rejoins, A's session expires, B
#     gets all 4 partitions and consumes from the committed offsets: it must
#     record again every event A recorded (else the scenario did not happen
#     and the test says so). Then A is restarted on the same state
#     directory, rejoins, and a third wave is produced.
#  4. Across both agents' stores (`drover runs --json`), every produced event
#     has exactly one run, and it succeeded; none is lost, none runs twice,
#     and the marks file holds each event id exactly once. Before held runs,
#     A ran (or took up at its restart) the events B ran again: duplicates.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_real_kafka

N_REPOS=8
N_W1=16 # first wave, before the crash
N_W2=24 # second wave, the one the crash cuts
N_W3=8  # third wave, after A is back
SQL_DB=drover.db
HOLDER_PID="" # the process holding an agent's store lock (lock_store)

# broker_pid: the private broker's pid.
broker_pid()
{
	local pid
	pid=$(cat "$PRIVATE_KAFKA/kafka.pid" 2>/dev/null || true)
	case "$pid" in '' | *[!0-9]*) fail "no pid in $PRIVATE_KAFKA/kafka.pid" ;; esac
	printf '%s\n' "$pid"
}

# ---------------------------------------------------------------- agents
# Agents A and B run in lib.sh's slots A and B (state directories
# $T/state-a and $T/state-b, which the mark stage tells apart).

# db_query X SQL: a read-only query on agent X's database.
db_query()
{
	sqlite3 "file:${SLOT_STATE[$1]}/$SQL_DB?mode=ro" "$2" ||
		fail "cannot query ${SLOT_STATE[$1]}/$SQL_DB: $2"
}

# ---------------------------------------------------------------- events

# produce PREFIX COUNT: CloudEvents com.github.push with ids PREFIX-0.., keyed
# (and pushed to) acme/repo-<i mod N_REPOS>, each with a sha of its own.
produce()
{
	python3 -c '
import json, sys
prefix, count, n_repos = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(count):
    repo = "acme/repo-%d" % (i % n_repos)
    sha = "%08x%032x" % (sum(map(ord, prefix)), i)
    ev = {"specversion": "1.0", "type": "com.github.push", "source": "e2e",
          "id": "%s-%d" % (prefix, i), "datacontenttype": "application/json",
          "data": {"ref": "refs/heads/master", "before": "0" * 40, "after": sha,
                   "repository": {"name": repo.split("/")[1], "full_name": repo,
                                  "clone_url": "file:///nonexistent/%s.git" % repo},
                   "pusher": {"name": "e2e"}, "created": False, "deleted": False,
                   "commits": [], "head_commit": {"id": sha, "message": "change %d" % i}}}
    print("%s\t%s" % (repo, json.dumps(ev, separators=(",", ":"))))
' "$1" "$2" "$N_REPOS" |
		kafka_produce_keyed "the events $1-0..$(($2 - 1))"
}

# expected_ids: every event id produced, one per line.
expected_ids()
{
	local i
	for ((i = 0; i < N_W1; i++)); do echo "w1-$i"; done
	for ((i = 0; i < N_W2; i++)); do echo "w2-$i"; done
	for ((i = 0; i < N_W3; i++)); do echo "w3-$i"; done
}

# check_exactly_once: every expected id has exactly one run across the two
# stores, which succeeded, and one line in the marks file; nothing else.
# Events A recorded before its crash ($T/a-recorded) are counted apart.
check_exactly_once()
{
	expected_ids >"$T/expected"
	slot_all_runs >"$T/runs.all.json"
	python3 - "$T/expected" "$T/runs.all.json" "$T/marks" "$T/a-recorded" <<'EOF' ||
import collections, json, os, sys
want = open(sys.argv[1]).read().split()
runs = json.load(open(sys.argv[2]))
marks = [l.split() for l in open(sys.argv[3])] if os.path.exists(sys.argv[3]) else []
held = set(open(sys.argv[4]).read().split()) if os.path.exists(sys.argv[4]) else set()
by_event = collections.defaultdict(list)
for r in runs:
    by_event[r["event_id"]].append("%s:run %s %s" % (r["agent"], r["id"], r["status"]))
marked = collections.defaultdict(list)
for m in marks:
    marked[m[0] if m else ""].append(m[1] if len(m) > 1 else "?")
problems = []
twice = {e: v for e, v in by_event.items() if len(v) > 1}
if twice:
    n_held = sum(1 for e in twice if e in held)
    problems.append("%d event(s) have more than one run (%d of them recorded by A before its "
                    "crash), e.g. %s" % (len(twice), n_held, sorted(twice.items())[:4]))
lost = [e for e in want if e not in by_event]
if lost:
    problems.append("%d event(s) have no run, e.g. %s" % (len(lost), lost[:8]))
extra = sorted(set(by_event) - set(want))
if extra:
    problems.append("runs of unknown events %s" % extra[:5])
bad = sorted((e, x) for e, v in by_event.items() for x in v if not x.endswith(" succeeded"))
if bad:
    problems.append("%d run(s) did not succeed, e.g. %s" % (len(bad), bad[:4]))
mark_twice = {e: v for e, v in marked.items() if len(v) > 1}
if mark_twice:
    problems.append("%d event(s) marked more than once, e.g. %s" %
                    (len(mark_twice), sorted(mark_twice.items())[:4]))
unmarked = [e for e in want if e not in marked]
if unmarked:
    problems.append("%d event(s) never marked, e.g. %s" % (len(unmarked), unmarked[:8]))
if set(marked) - set(want):
    problems.append("marks of unknown events %s" % sorted(set(marked) - set(want))[:5])
per = collections.Counter(r["agent"] for r in runs)
held_by = collections.Counter(a for e in held for a in marked.get(e, []))
summary = ("%d events, %d runs (A %d, B %d), %d marks; of the %d events A recorded before "
           "its crash, A ran %d and B %d" % (len(want), len(runs), per["A"], per["B"],
           len(marks), len(held), held_by["A"], held_by["B"]))
if problems:
    sys.exit("; ".join(problems) + " [" + summary + "]")
print(summary)
EOF
		fail "events did not run exactly once across the two agents"
}

# ---------------------------------------------------------------- the moment

# lock_store X: holds agent X's SQLite write lock (BEGIN IMMEDIATE from
# another process) until unlock_store; waits until it is held.
lock_store()
{
	rm -f "$T/unlock"
	python3 -c '
import os, sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], timeout=10, isolation_level=None)
con.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
end = time.monotonic() + 30
while not os.path.exists(sys.argv[2]) and time.monotonic() < end:
    time.sleep(0.01)
con.execute("ROLLBACK")
' "${SLOT_STATE[$1]}/$SQL_DB" "$T/unlock" >"$T/holder.out" 2>&1 &
	HOLDER_PID=$!
	EXTRA_PIDS+=("$HOLDER_PID") # killed at the end if the test fails first
	local end=$((SECONDS + 15))
	until grep -q locked "$T/holder.out"; do
		kill -0 "$HOLDER_PID" 2>/dev/null || fail "could not lock agent $1's store: $(cat "$T/holder.out")"
		[ "$SECONDS" -lt "$end" ] || fail "agent $1's store was not locked within 15 s"
		sleep 0.05
	done
}

unlock_store()
{
	touch "$T/unlock"
	wait "$HOLDER_PID" || fail "the lock holder failed: $(cat "$T/holder.out")"
	HOLDER_PID=""
	slot_sync_pids # EXTRA_PIDS: the agents again
}

# wait_stuck X [TIMEOUT]: until agent X's event loop is stuck (its /healthz,
# served by that loop, does not answer within half a second). The lock must
# go within the agent's SQLite busy timeout (5 s, store.c) of its first try,
# or it gives the batch up and rewinds: the test releases it ~1 s after.
wait_stuck()
{
	local end=$((SECONDS + ${2:-5}))
	while curl -s --max-time 0.5 "http://127.0.0.1:${SLOT_PORT[$1]}/healthz" >/dev/null 2>&1; do
		[ "$SECONDS" -lt "$end" ] ||
			fail "agent $1 kept answering /healthz with its store locked: it did not try to record the second wave"
		sleep 0.05
	done
}

now_ms()
{
	python3 -c 'import time; print(int(time.time() * 1000))'
}

# ---------------------------------------------------------------- the test

say "starting a private broker"
private_kafka_start 0
broker_port=${KAFKA_BROKERS##*:}

write_pipeline mark <<'EOF'
name: mark
on:
  push: { branches: [master] }
checkout: false
stages:
  - name: mark
    uses: shell
    with:
      run: |
        id=$(python3 -c 'import json, os; print(json.load(open(os.environ["DROVER_EVENT_FILE"]))["id"])')
        case "$DROVER_WORKSPACE" in
        @T@/state-a/*) who=A ;;
        @T@/state-b/*) who=B ;;
        *) who="?$DROVER_WORKSPACE" ;;
        esac
        echo "$id $who" >> @T@/marks
EOF
KAFKA_PROPS=("session.timeout.ms: 6000" "heartbeat.interval.ms: 1000")
slot_configure A a "stop_grace: 5s"
slot_configure B b "stop_grace: 5s"

say "... two agents in group $KAFKA_GROUP"
slot_start A
slot_start B
slot_wait_split A B

say "... first wave: $N_W1 events over $N_REPOS repositories"
produce w1 "$N_W1"
slot_wait_runs "$N_W1" 45 check_exactly_once
[ "$(db_query A "SELECT count(*) FROM events WHERE id LIKE 'w1-%'")" -ge 1 ] ||
	fail "agent A recorded none of the first wave: the repositories' keys do not reach its partitions"
slot_wait_consumed A 30
slot_use A
wait_metric drover_outbox_depth 0 30
wait_metric drover_runs_active 0 30

say "... second wave with A's store locked; the broker is killed once A holds records"
lock_store A
produce w2 "$N_W2"
wait_stuck A 5
sleep 0.3 # librdkafka prefetches the rest of A's share meanwhile
kill -KILL "$(broker_pid)"
cut_ms=$(now_ms)
unlock_store
end=$((SECONDS + 10))
until [ "$(db_query A "SELECT count(*) FROM events WHERE id LIKE 'w2-%'")" -ge 1 ]; do
	[ "$SECONDS" -lt "$end" ] || fail "agent A recorded none of the second wave after its store was unlocked"
	sleep 0.05
done
sleep 1 # what A does with them without an acknowledged commit (today: runs them)
slot_kill A
db_query A "SELECT id FROM events WHERE id LIKE 'w2-%' ORDER BY id" >"$T/a-recorded"
n_held=$(wc -l <"$T/a-recorded")
early=$(db_query A "SELECT count(*) FROM events WHERE id LIKE 'w2-%' AND received_at < $cut_ms")
assert_eq "$early" 0 "second-wave events A recorded before the broker died"
say "A recorded $n_held event(s) of the second wave with the broker dead, then was killed;" \
	"of which A ran $(grep -c '^w2-[0-9]* A$' "$T/marks" || true) before the kill"

say "... broker restarted; B must take A's partitions and consume them again"
private_kafka_start "$broker_port"
slot_wait_owns B 4 60
slot_wait_consumed B 45 # all 4: B holds them all
missing=$(LC_ALL=C comm -23 "$T/a-recorded" <(db_query B "SELECT id FROM events WHERE id LIKE 'w2-%' ORDER BY id"))
[ -z "$missing" ] ||
	fail "B never consumed these events A had recorded (so no uncommitted hand-over happened): $missing"
say "B consumed again all $n_held event(s) A had recorded"

say "... A restarted on its state directory"
slot_start A
slot_wait_split A B
produce w3 "$N_W3"
slot_wait_runs $((N_W1 + N_W2 + N_W3)) 45 check_exactly_once

say "... checking every event ran exactly once"
summary=$(check_exactly_once) # an assignment: a failure inside ends the test
say "$summary"
