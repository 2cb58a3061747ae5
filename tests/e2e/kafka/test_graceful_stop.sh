#!/usr/bin/env bash
# Graceful stop on a real broker: SIGTERM lets running stages finish within
# stop_grace, kills the rest at its end and records them, commits the offsets
# and exits 0; an agent started again in the same group neither loses nor
# re-reads an event.
#
# Offsets are auto-committed only hourly here, so the only commit of the first
# agent is the one at its stop. Batch A (36 events: CloudEvents and raw
# GitHub webhooks, three repositories, pipelines ci / gate / long / stuck and
# unmatched pushes) is produced; once every event of A is recorded and the
# gate stage (until released just after the SIGTERM), the long stage (60 s,
# retry 1) and the stuck stage (60 s,
# no retry) run, the agent gets SIGTERM (stop_grace 5 s, max_parallel 4, so
# ci stages still wait for a slot). Then:
# - the agent exits 0; every stage running at the SIGTERM either finished and
#   is recorded succeeded after the signal (the gate stage among them) or
#   was killed no earlier than stop_grace after it and is recorded error
#   (long, stuck; their logs say the agent was stopping); no stage process
#   is alive; nothing is recorded running; no process group is left recorded;
# - batch B (16 events) is produced while no agent runs, the agent is started
#   again (same state, same group), and a sentinel is produced to each of the
#   4 partitions: once the sentinels are recorded every earlier record was
#   delivered, and the agent must have received exactly B and the sentinels
#   (drover_events_received_total) and recognised no duplicate
#   (drover_events_duplicate_total 0): A's offsets were committed at the stop;
# - every event of A and B is in the store exactly once and every matching
#   event has exactly one run; the runs left unfinished were taken up and
#   succeeded;
#   the long stage ran again as attempt 2 and succeeded, the stuck run failed.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_real_kafka

STOP_GRACE_MS=5000
: >"$T/expected"

write_stage_script 2 # $T/stage.sh: short stages sleep 0.2-0.5 s

write_pipeline ci <<'EOF'
name: ci
on:
  push: { branches: [master] }
checkout: false
stages:
  - name: build
    uses: shell
    with: { run: "exec @T@/stage.sh short" }
  - name: check
    uses: shell
    needs: [build]
    with: { run: "exec @T@/stage.sh short" }
EOF
write_stage_pipeline gate gate finish gate
write_stage_pipeline long long wait long 1
write_stage_pipeline stuck stuck wait stuck

# make_batch NAME BRANCH...: $T/NAME.ce (key TAB CloudEvent per line) and
# $T/NAME.gh (key TAB delivery id TAB GitHub body) with one push per branch
# given (the last RAW, default 2, as raw webhooks); "id pipeline-or--" lines
# go to $T/expected.
make_batch()
{
	python3 -c '
import json, sys
name, out, n_raw, branches = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
repos = ["acme/one", "acme/two", "acme/three"]
pipeline = {"master": "ci", "gate": "gate", "long": "long", "stuck": "stuck", "docs": "-"}
with open("%s/%s.ce" % (out, name), "w") as ce, open("%s/%s.gh" % (out, name), "w") as gh, \
     open(out + "/expected", "a") as exp:
    for i, branch in enumerate(branches):
        repo = repos[i % len(repos)]
        raw = i >= len(branches) - n_raw
        eid = "gs-%s-%s-%d" % (name, "gh" if raw else "ce", i)
        sha = "%040x" % ((0xfeed << 32) + ord(name[0]) * 1000 + i)
        body = {"ref": "refs/heads/" + branch, "before": "0" * 40, "after": sha,
                "repository": {"name": repo.split("/")[1], "full_name": repo,
                               "clone_url": "file:///nonexistent/%s.git" % repo},
                "pusher": {"name": "e2e"}, "created": False, "deleted": False,
                "commits": [], "head_commit": {"id": sha, "message": "%s %d" % (name, i)}}
        if raw:
            gh.write("%s\t%s\t%s\n" % (repo, eid, json.dumps(body, separators=(",", ":"))))
        else:
            ev = {"specversion": "1.0", "type": "com.github.push", "source": "e2e",
                  "id": eid, "datacontenttype": "application/json", "data": body}
            ce.write("%s\t%s\n" % (repo, json.dumps(ev, separators=(",", ":"))))
        exp.write("%s %s\n" % (eid, pipeline[branch]))
' "$1" "$T" "${RAW:-2}" "${@:2}"
}

# produce_batch NAME: its CloudEvents in one kcat call, then each webhook
# with its own X-GitHub-Event and X-GitHub-Delivery headers.
produce_batch()
{
	kafka_produce_keyed "batch $1" <"$T/$1.ce"
	kafka_produce_webhooks "$T/$1.gh"
}

# wait_db SQL WANT WHAT [TIMEOUT]: until the query prints WANT.
wait_db()
{
	local sql=$1 want=$2 what=$3 timeout=${4:-30} end got
	end=$((SECONDS + timeout))
	while :; do
		got=$(db "$sql")
		[ "$got" = "$want" ] && return 0
		[ "$SECONDS" -lt "$end" ] || fail "$what: '$got', not '$want', after $timeout s"
		sleep 0.1
	done
}

run_id_of()
{
	db "SELECT id FROM runs WHERE event_id = '$1'"
}

# ---------------------------------------------------------------- batch A

KAFKA_PROPS+=('auto.commit.interval.ms: "3600000"')
write_config "stop_grace: ${STOP_GRACE_MS}ms" "stage_kill_grace: 1s" "max_parallel: 4"
RAW=0 make_batch a0 gate long stuck
branches_a=()
for i in $(seq 1 24); do branches_a+=(master); done
branches_a+=(docs docs docs docs docs master docs master docs)
make_batch a "${branches_a[@]}"
n_a=$(wc -l <"$T/expected")
start_agent

say "producing batch A ($n_a events): first the gate, long and stuck pushes"
produce_batch a0
wait_db "SELECT count(*) FROM events" 3 "gate, long and stuck events recorded"
run_gate=$(run_id_of gs-a0-ce-0)
run_long=$(run_id_of gs-a0-ce-1)
run_stuck=$(run_id_of gs-a0-ce-2)
for tag in "$run_gate.finish.1" "$run_long.wait.1" "$run_stuck.wait.1"; do
	wait_file "$T/starts/$tag" 30
done
produce_batch a
wait_db "SELECT count(*) FROM events" "$n_a" "events of batch A recorded"
running=$(db "SELECT run_id || '.' || name || '.' || attempt FROM stages WHERE status = 'running'" |
	tr '\n' ' ')
queued=$(db "SELECT count(*) FROM stages WHERE status = 'queued'")
assert_ge "$queued" 1 "stages waiting to start at the stop"
say "SIGTERM with $(wc -w <<<"$running") stage(s) running and $queued waiting to start"
t_sig=$(date +%s%3N)
kill -TERM "$AGENT_PID"
touch "$T/release"
wait_agent_stopped 60
t_stopped=$(date +%s%3N)
say "the agent stopped $((t_stopped - t_sig)) ms after SIGTERM (stop_grace ${STOP_GRACE_MS} ms)"

say "checking what ran at the stop is recorded"
for tag in $running; do
	! is_stage_alive "$tag" || fail "stage process $tag outlived the agent's stop"
done
assert_contains " $running " " $run_gate.finish.1 " "stages running at the SIGTERM"
assert_contains " $running " " $run_long.wait.1 " "stages running at the SIGTERM"
assert_contains " $running " " $run_stuck.wait.1 " "stages running at the SIGTERM"
for tag in $running; do
	IFS=. read -r run stage attempt <<<"$tag"
	row=$(db "SELECT status || ' ' || coalesce(finished_at, 0) FROM stage_attempts
		WHERE run_id = $run AND stage = '$stage' AND attempt = $attempt")
	read -r status finished <<<"$row"
	case $run in
	"$run_long" | "$run_stuck")
		assert_eq "$status" error "stage $tag killed at the end of the grace"
		# Not before the grace was over (50 ms for libevent's coarse clock).
		assert_ge "$finished" $((t_sig + STOP_GRACE_MS - 50)) "finished_at of $tag (SIGTERM at $t_sig)"
		grep -q 'the agent is stopping: killing the stage' \
			"$STATE_DIR/logs/$run/$stage.$attempt.log" ||
			fail "the log of $tag does not say the agent killed it"
		;;
	*)
		assert_eq "$status" succeeded "stage $tag, running at the SIGTERM"
		grep -qx "$run $stage $attempt" "$T/done" || fail "stage $tag did not run to its end"
		;;
	esac
done
read -r status finished <<<"$(db "SELECT status || ' ' || finished_at FROM stage_attempts
	WHERE run_id = $run_gate AND stage = 'finish'")"
assert_eq "$status" succeeded "the gate stage"
[ "$finished" -gt "$t_sig" ] || fail "the gate stage finished at $finished, before the SIGTERM at $t_sig"
assert_eq "$(db "SELECT count(*) FROM stages WHERE status = 'running'")" 0 "stages recorded running after the stop"
assert_eq "$(db "SELECT count(*) FROM stage_attempts WHERE status = 'running'")" 0 "attempts recorded running after the stop"
assert_eq "$(db "SELECT count(*) FROM stage_procs")" 0 "process groups still recorded after the stop"
assert_eq "$(db "SELECT status FROM runs WHERE id = $run_stuck")" error "the stuck run"
assert_eq "$(db "SELECT status || ' ' || attempt FROM stages WHERE run_id = $run_long")" \
	"queued 2" "the long stage after the stop (a retry left)"

# ---------------------------------------------------------------- batch B

branches_b=()
for i in $(seq 1 12); do branches_b+=(master); done
branches_b+=(docs docs master docs)
make_batch b "${branches_b[@]}"
n_b=$(($(wc -l <"$T/expected") - n_a))
say "producing batch B ($n_b events) while no agent runs"
produce_batch b

say "starting the agent again in the same group"
start_agent
RAW=0 make_batch sentinel docs docs docs docs
p=0
while IFS=$'\t' read -r key ce; do
	printf '%s\n' "$ce" | kcat -P -b "$KAFKA_BROKERS" -t "$EVENTS_TOPIC" -p "$p" -k "$key" ||
		fail "kcat could not produce the sentinel of partition $p"
	p=$((p + 1))
done <"$T/sentinel.ce"
total=$(wc -l <"$T/expected")
wait_db "SELECT count(*) FROM events" "$total" "events recorded after the restart" 60
assert_eq "$(metric drover_events_received_total)" $((n_b + 4)) \
	"records the restarted agent received (batch B and the sentinels: A was committed at the stop)"
assert_eq "$(metric drover_events_duplicate_total)" 0 "redelivered events on the restarted agent"
wait_db "SELECT count(*) FROM runs WHERE status IN ('queued', 'running')" 0 "unfinished runs" 60
runs=$(runs_json --limit 1000)
printf '%s\n' "$runs" >"$T/runs.json"

say "checking every event once, every matching event one run"
db "SELECT id, outcome FROM events" >"$T/events.txt"
db "SELECT id, event_id, pipeline, status FROM runs" >"$T/runs.txt"
python3 - "$T" <<'EOF' || fail "the store does not hold what was produced (see above)"
import collections, json, sys
t = sys.argv[1]
def rows(name):
    with open("%s/%s" % (t, name)) as f:
        return [line.rstrip("\n").split("|") for line in f if line.strip()]
problems = []
expected = dict(line.split() for line in open(t + "/expected"))
events = dict(rows("events.txt"))
for eid in sorted(set(expected) ^ set(events)):
    problems.append("event %s: %s" % (eid, "lost" if eid in expected else "never produced"))
for eid, want in expected.items():
    if eid in events and events[eid] != ("unmatched" if want == "-" else "accepted"):
        problems.append("event %s: outcome %s, pipeline %s" % (eid, events[eid], want))
by_event = collections.defaultdict(list)
for rid, eid, pipeline, status in rows("runs.txt"):
    by_event[eid].append((pipeline, status))
want_status = {"ci": "succeeded", "gate": "succeeded", "long": "succeeded", "stuck": "error"}
for eid, want in expected.items():
    got = by_event.get(eid, [])
    if want == "-":
        if got:
            problems.append("unmatched event %s has runs %s" % (eid, got))
    elif got != [(want, want_status[want])]:
        problems.append("event %s: runs %s, want one %s run %s" % (eid, got, want, want_status[want]))
api = json.load(open(t + "/runs.json"))
if len(api) != sum(len(v) for v in by_event.values()):
    problems.append("drover runs --json lists %d runs, the store %d" % (len(api), sum(len(v) for v in by_event.values())))
for p in problems[:30]:
    print(p, file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
j=$(run_json "$run_long")
assert_eq "$(json_get stages.@wait.attempt <<<"$j")" 2 "attempt of the long stage after the restart"
assert_eq "$(json_get stages.@wait.status <<<"$j")" succeeded "the long stage after the restart"

stop_agent
