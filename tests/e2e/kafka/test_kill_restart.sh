#!/usr/bin/env bash
# Restart after kill -9 on a real broker: nothing lost, nothing run twice, no
# stage process left behind.
#
# 240 events (CloudEvents and raw GitHub webhooks with X-GitHub-Delivery,
# four repositories; pushes to master, release and two "long" branches that
# pipelines take, and pushes to docs that none takes) are produced in five
# rounds while the agent works. In every round the agent is killed with
# SIGKILL at a random moment (in odd rounds while two long stages surely run,
# in even ones soon after the round was produced, often before or while it
# is recorded) and started again at once (static group membership, so the
# new process rejoins the group without waiting for a session timeout). The
# even rounds' webhooks are produced while no agent runs. A killed agent
# leaves events recorded whose offset commit it never saw acknowledged: their
# runs were held, and the restarted agent decides each from the committed
# offset and the ownership history (run it, or forget it and record it again
# when it is redelivered), while unmatched ones are simply redelivered and
# recognised. Then:
# - the events table holds every produced id exactly once, with the outcome
#   its branch calls for (accepted or unmatched), and no other;
# - every matching event has exactly one run of the one pipeline it matches
#   (the store and `drover runs --json` agree); no run, stage or attempt is
#   left queued or running;
# - an attempt cut short by a kill is recorded as "error: interrupted..." and
#   followed by a new attempt while the retry policy allows (ci.build and
#   long.wait: retry 1), else its run fails (release.deploy, stuck.wait: no
#   retry); both outcomes happen (long and stuck stages run at every kill);
# - every attempt recorded succeeded really ran to its end (its marker);
# - no stage process of a killed agent survives its restart: after each
#   restart every stage process that was alive at the kill is gone (the long
#   stages would sleep 60 s more) and the agent logs what it killed; at the
#   end no stage process is alive. Stages record their pid and its start time
#   (/proc/PID/stat field 22), so a reused pid is never taken for a stage.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_real_kafka

ROUNDS=5     # odd rounds kill while long stages surely run, even ones soon after producing
PER_ROUND=48 # events per round: ROUNDS * PER_ROUND >= 200
: >"$T/expected"

# ---------------------------------------------------------------- stages

write_stage_script 1 # $T/stage.sh: short stages sleep 0.1-0.4 s

write_pipeline ci <<'EOF'
name: ci
on:
  push: { branches: [master] }
checkout: false
stages:
  - name: build
    uses: shell
    retry: { attempts: 1, delay: 100ms }
    with: { run: "exec @T@/stage.sh short" }
  - name: check
    uses: shell
    needs: [build]
    with: { run: "exec @T@/stage.sh short" }
EOF
write_stage_pipeline release release deploy short
write_stage_pipeline long long wait long 1
write_stage_pipeline stuck stuck wait stuck

# ---------------------------------------------------------------- events

# make_round R: writes $T/round.R.ce (key TAB CloudEvent per line) and
# $T/round.R.gh (key TAB delivery id TAB GitHub body per line), and appends
# "id pipeline-or-- " lines to $T/expected. The long and stuck events come
# first so their stages start early in the round.
make_round()
{
	python3 -c '
import json, sys
r, per, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
repos = ["acme/one", "acme/two", "acme/three", "acme/four"]
def body(i, repo, branch):
    sha = "%040x" % (0xbeef0000 + r * 1000 + i)
    return {"ref": "refs/heads/" + branch, "before": "0" * 40, "after": sha,
            "repository": {"name": repo.split("/")[1], "full_name": repo,
                           "clone_url": "file:///nonexistent/%s.git" % repo},
            "pusher": {"name": "e2e"}, "created": False, "deleted": False, "commits": [],
            "head_commit": {"id": sha, "message": "change %d.%d" % (r, i)}}
pipeline = {"master": "ci", "release": "release", "long": "long", "stuck": "stuck", "docs": "-"}
n = per - 6
branches = ["long", "stuck"] + ["master"] * (n * 6 // 10) + ["release"] * (n * 15 // 100)
branches += ["docs"] * (per - 4 - len(branches)) + ["master", "docs"] * 2
with open("%s/round.%d.ce" % (out, r), "w") as ce, open("%s/round.%d.gh" % (out, r), "w") as gh, \
     open("%s/expected" % out, "a") as exp:
    for i, branch in enumerate(branches):
        repo = repos[i % len(repos)]
        raw = i >= per - 4
        eid = "kr-%s-%d-%d" % ("gh" if raw else "ce", r, i)
        b = json.dumps(body(i, repo, branch), separators=(",", ":"))
        if raw:
            gh.write("%s\t%s\t%s\n" % (repo, eid, b))
        else:
            ev = {"specversion": "1.0", "type": "com.github.push", "source": "e2e",
                  "id": eid, "datacontenttype": "application/json", "data": json.loads(b)}
            ce.write("%s\t%s\n" % (repo, json.dumps(ev, separators=(",", ":"))))
        exp.write("%s %s\n" % (eid, pipeline[branch]))
' "$1" "$PER_ROUND" "$T"
}

# produce_cloudevents R: the round's CloudEvents, in one kcat call.
produce_cloudevents()
{
	kafka_produce_keyed "round $1" <"$T/round.$1.ce"
}

# produce_webhooks R: each raw GitHub webhook of the round, with its own
# X-GitHub-Event and X-GitHub-Delivery headers.
produce_webhooks()
{
	kafka_produce_webhooks "$T/round.$1.gh"
}

# ---------------------------------------------------------------- processes

# alive_stages: the tags of every stage process alive now.
alive_stages()
{
	local f tag
	for f in "$T"/starts/*; do
		[ -f "$f" ] || continue
		tag=$(basename "$f")
		if is_stage_alive "$tag"; then
			printf '%s\n' "$tag"
		fi
	done
}

# wait_stages_gone TIMEOUT TAG...: until none of them is alive.
wait_stages_gone()
{
	local timeout=$1 end tag left
	shift
	end=$((SECONDS + timeout))
	while :; do
		left=()
		for tag in "$@"; do
			if is_stage_alive "$tag"; then
				left+=("$tag")
			fi
		done
		[ "${#left[@]}" -gt 0 ] || return 0
		[ "$SECONDS" -lt "$end" ] ||
			fail "${#left[@]} stage process(es) of the killed agent still run ${timeout} s after the restart: ${left[*]}"
		sleep 0.2
	done
}

# wait_long_stages R: the long and the stuck stage of round R (its events 0
# and 1) both run their first attempt and have recorded their process.
wait_long_stages()
{
	local end=$((SECONDS + 40)) runs run ready
	while :; do
		runs=$(db "SELECT r.id FROM runs r JOIN stages s ON s.run_id = r.id
			WHERE r.event_id IN ('kr-ce-$1-0', 'kr-ce-$1-1')
			AND s.status = 'running' AND s.attempt = 1")
		ready=0
		for run in $runs; do
			[ ! -f "$T/starts/$run.wait.1" ] || ready=$((ready + 1))
		done
		[ "$ready" != 2 ] || return 0
		[ "$SECONDS" -lt "$end" ] || fail "the long stages of round $1 did not start within 40 s"
		sleep 0.1
	done
}

kill_agent()
{
	kill -KILL "$AGENT_PID"
	wait "$AGENT_PID" 2>/dev/null || true
	AGENT_PID=""
}

# ---------------------------------------------------------------- the test

KAFKA_PROPS+=("group.instance.id: \"$KAFKA_GROUP.member\"" 'session.timeout.ms: "6000"')
write_config "max_parallel: 16" "stage_kill_grace: 2s"
for r in $(seq 1 "$ROUNDS"); do
	make_round "$r"
done
total=$(wc -l <"$T/expected")
start_agent

killed_total=0
for r in $(seq 1 "$ROUNDS"); do
	say "round $r: producing $PER_ROUND events"
	produce_cloudevents "$r"
	if [ $((r % 2)) = 1 ]; then
		produce_webhooks "$r"
		wait_long_stages "$r"
		sleep "0.$((RANDOM % 10))$((RANDOM % 10))"
	else
		# Killed while the round is being recorded; its webhooks wait in
		# Kafka while no agent runs.
		sleep "0.$((RANDOM % 2))$((RANDOM % 10))"
	fi
	mapfile -t alive < <(alive_stages)
	if [ $((r % 2)) = 1 ]; then
		n=$(printf '%s\n' "${alive[@]}" | grep -c '\.wait\.1$' || true)
		assert_ge "$n" 2 "long and stuck stage processes alive at the kill (round $r)"
	fi
	recorded_at_kill=$(db "SELECT count(*) FROM events")
	say "round $r: kill -9 with $recorded_at_kill/$total events recorded, ${#alive[@]} stage process(es) alive"
	kill_agent
	[ $((r % 2)) = 1 ] || produce_webhooks "$r"
	start_agent
	# The restarted agent has taken up its runs (it is consuming again): the
	# processes of the killed one must be gone (or end at once: SIGTERM).
	wait_stages_gone 10 "${alive[@]}"
	n=$(grep -c 'outlived the previous agent: killed' "$AGENT_LOG" || true)
	[ $((r % 2)) = 0 ] ||
		assert_ge "$n" 2 "process groups the restarted agent says it killed (round $r)"
	killed_total=$((killed_total + n))
done

say "waiting for all $total events to be recorded and every run to finish"
end=$((SECONDS + 60))
while :; do
	recorded=$(db "SELECT count(*) FROM events")
	open=$(db "SELECT count(*) FROM runs WHERE status IN ('queued', 'running')")
	[ "$recorded" -lt "$total" ] || [ "$open" != 0 ] || break
	[ "$SECONDS" -lt "$end" ] ||
		fail "after 60 s: $recorded of $total events recorded, $open run(s) not finished"
	sleep 0.5
done
runs=$(runs_json --limit 1000)
printf '%s\n' "$runs" >"$T/runs.json"
stop_agent

duplicates=$(cat "$T"/agent.*.log | grep -c 'seen before: nothing new started' || true)
decided=$(cat "$T"/agent.*.log | grep -c 'offsets: held event' || true)
say "$decided held event(s) decided after a kill"

say "checking events, runs, stages and attempts ($killed_total groups killed, $duplicates redeliveries recognised)"
db "SELECT id, outcome FROM events" >"$T/events.txt"
db "SELECT id, event_id, pipeline, status FROM runs" >"$T/runs.txt"
db "SELECT run_id, name, status, attempt FROM stages" >"$T/stages.txt"
db "SELECT run_id, stage, attempt, status, coalesce(summary, '') FROM stage_attempts" >"$T/attempts.txt"
python3 - "$T" <<'EOF' || fail "the store does not hold what was produced (see above)"
import collections, json, sys
t = sys.argv[1]
def rows(name):
    with open("%s/%s" % (t, name)) as f:
        return [line.rstrip("\n").split("|") for line in f if line.strip()]
problems = []
expected = dict(line.split() for line in open(t + "/expected"))
events = rows("events.txt")
seen = collections.Counter(e[0] for e in events)
outcome = {e[0]: e[1] for e in events}
missing = sorted(set(expected) - set(seen))
extra = sorted(set(seen) - set(expected))
if missing:
    problems.append("%d event(s) lost: %s" % (len(missing), missing[:10]))
if extra:
    problems.append("events nobody produced: %s" % extra[:10])
for eid, want in expected.items():
    if eid in outcome and outcome[eid] != ("unmatched" if want == "-" else "accepted"):
        problems.append("event %s: outcome %s (pipeline %s)" % (eid, outcome[eid], want))

runs = rows("runs.txt")
by_event = collections.defaultdict(list)
for rid, eid, pipeline, status in runs:
    by_event[eid].append((rid, pipeline, status))
for eid, want in expected.items():
    got = by_event.get(eid, [])
    if want == "-" and got:
        problems.append("unmatched event %s has runs %s" % (eid, got))
    if want != "-" and [g[1] for g in got] != [want]:
        problems.append("event %s: runs %s, want exactly one of %s" % (eid, got, want))
api = json.load(open(t + "/runs.json"))
if sorted((str(r["id"]), r["event_id"], r["status"]) for r in api) != \
        sorted((r[0], r[1], r[3]) for r in runs):
    problems.append("drover runs --json (%d runs) and the runs table (%d) disagree" % (len(api), len(runs)))
for rid, eid, pipeline, status in runs:
    if status in ("queued", "running"):
        problems.append("run %s (%s) left %s" % (rid, eid, status))

retries = {("ci", "build"): 1, ("long", "wait"): 1}
pipeline_of = {r[0]: r[1:] for r in runs}
done = set(tuple(l.split()) for l in open(t + "/done"))
attempts = collections.defaultdict(list)
for rid, stage, attempt, status, summary in rows("attempts.txt"):
    attempts[(rid, stage)].append((int(attempt), status, summary))
stages = rows("stages.txt")
stage_status = collections.defaultdict(dict)
retried = failed = interrupted = 0
for rid, name, status, attempt in stages:
    eid, pipeline, run_status = pipeline_of[rid]
    stage_status[rid][name] = status
    att = sorted(attempts.get((rid, name), []))
    where = "run %s (%s) stage %s" % (rid, pipeline, name)
    if status in ("queued", "running"):
        problems.append("%s left %s" % (where, status))
        continue
    if not att:
        if status != "skipped":
            problems.append("%s is %s without any attempt" % (where, status))
        continue
    if [a[0] for a in att] != list(range(1, len(att) + 1)) or int(attempt) != len(att):
        problems.append("%s: attempts %s, stage says attempt %s" % (where, att, attempt))
    limit = 1 + retries.get((pipeline, name), 0)
    if len(att) > limit:
        problems.append("%s: %d attempts, the policy allows %d" % (where, len(att), limit))
    for a in att[:-1]:
        if a[1] != "error" or not a[2].startswith("interrupted"):
            problems.append("%s attempt %d was retried after %s %r" % (where, a[0], a[1], a[2]))
    interrupted += sum(1 for a in att if a[2].startswith("interrupted"))
    last = att[-1]
    if last[1] != status:
        problems.append("%s is %s, its last attempt %s" % (where, status, last[1]))
    if last[1] == "succeeded":
        if (rid, name, str(last[0])) not in done:
            problems.append("%s attempt %d succeeded but never ran to its end" % (where, last[0]))
        retried += len(att) > 1
    elif last[1] == "error" and last[2].startswith("interrupted"):
        if len(att) < limit:
            problems.append("%s interrupted on attempt %d of %d and not retried" % (where, len(att), limit))
        failed += 1
    else:
        problems.append("%s ended %s %r" % (where, last[1], last[2]))
for rid, (eid, pipeline, status) in pipeline_of.items():
    want = "succeeded" if all(s == "succeeded" for s in stage_status[rid].values()) else "error"
    if status != want:
        problems.append("run %s (%s) is %s with stages %s" % (rid, pipeline, status, stage_status[rid]))
if retried == 0:
    problems.append("no interrupted attempt was retried and succeeded")
if failed == 0:
    problems.append("no interrupted stage failed for want of retries")
for p in problems[:30]:
    print(p, file=sys.stderr)
if problems:
    sys.exit(1)
print("[test_kill_restart] %d events, %d runs, %d interrupted attempts: %d stages retried and succeeded, %d failed with no retry left"
      % (len(events), len(runs), interrupted, retried, failed))
EOF

say "checking no stage process is left"
mapfile -t alive < <(alive_stages)
[ "${#alive[@]}" -eq 0 ] || fail "stage processes still alive at the end: ${alive[*]}"
