#!/usr/bin/env bash
# Backpressure: with max_queued_runs 4 and max_parallel 2, a burst of 1200
# matching events (each ~64 KiB, ~77 MiB in all, produced at once with kcat)
# whose stage takes a little while must wait in Kafka, not in the agent:
#   - the intake pauses (drover_intake_paused 1, "paused" in the log) and
#     while it is paused the consumer lag (drover_consumer_lag, from
#     librdkafka's statistics) shows the events still in Kafka;
#   - drover_runs_active never exceeds the mark in any sample (the intake
#     checks the mark before every record, so the bound is the mark plus the
#     runs one event can create, minus one: here one pipeline, so the mark);
#   - it resumes as the runs drain ("resumed" in the log, paused 0 again);
#   - the agent's resident memory (VmRSS, sampled every 0.2 s) stays below
#     the idle RSS + 32 MiB. librdkafka's prefetch is capped at 4 MiB
#     (intake_new), a fetch may overshoot it by a partition's worth per
#     partition, and SQLite's page cache adds up to 2 MiB: ~10 MiB over idle
#     in practice. The burst is more than twice the bound, so an agent that
#     pulled it into memory fails (with librdkafka's default 64 MiB prefetch
#     the peak was idle + 57 MiB). It must not grow with the burst either:
#     the peak while the last quarter runs is within 8 MiB of the peak while
#     the first quarter runs (single samples swing by several MiB as fetch
#     buffers come and go, peaks do not), so a leak per event shows;
#   - in the end every event has exactly one run, and all succeeded.
# Each pause/resume cycle takes in only mark/2 events, so this also needs
# the intake to restart fetching at once on resume (intake_wake_fetcher):
# without it librdkafka 2.0 waits up to 1 s per cycle, ~10 minutes here.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_real_kafka

MARK=4
PARALLEL=2
RUNS_PER_EVENT=1 # pipelines an event matches
N_EVENTS=1200
N_REPOS=4 # each repository's runs fit one `drover runs --limit 1000`
PAD_BYTES=65536
RSS_BOUND_KB=$((32 * 1024))
RSS_GROWTH_KB=$((8 * 1024))

write_pipeline slow <<'EOF'
name: slow
on:
  push: {}
checkout: false
stages:
  - name: work
    uses: shell
    with: { run: "sleep 0.03" }
EOF
write_config "max_queued_runs: $MARK" "max_parallel: $PARALLEL"

# produce PREFIX COUNT: COUNT structured CloudEvents (com.github.push), ids
# PREFIX-0.., keyed by repository acme/bp-<i mod N_REPOS>, each padded to
# about PAD_BYTES with a field drover ignores.
produce()
{
	python3 -c '
import json, sys
prefix, count, n_repos, pad = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for i in range(count):
    repo = "acme/bp-%d" % (i % n_repos)
    sha = "%040x" % (0xb0b00000 + i)
    ev = {"specversion": "1.0", "type": "com.github.push", "source": "e2e",
          "id": "%s-%d" % (prefix, i), "datacontenttype": "application/json",
          "data": {"ref": "refs/heads/master", "before": "0" * 40, "after": sha,
                   "repository": {"name": repo.split("/")[1], "full_name": repo,
                                  "clone_url": "file:///nonexistent/%s.git" % repo},
                   "pusher": {"name": "e2e"}, "created": False, "deleted": False,
                   "commits": [], "head_commit": {"id": sha, "message": "change %d" % i},
                   "padding": ("%d." % i) * (pad // (len(str(i)) + 1))}}
    print("%s\t%s" % (repo, json.dumps(ev, separators=(",", ":"))))
' "$1" "$2" "$N_REPOS" "$PAD_BYTES" | kafka_produce_keyed "the burst"
}

rss_kb()
{
	awk '$1 == "VmRSS:" { print $2 }' "/proc/$AGENT_PID/status"
}

# sample_loop: until $T/stop-sampling exists, one line every 0.2 s:
# "seconds active paused lag_sum n_lag_partitions received rss_kb".
sample_loop()
{
	local text
	while [ ! -e "$T/stop-sampling" ]; do
		text=$(curl -s --max-time 2 "http://127.0.0.1:$PORT/metrics" || true)
		if [ -n "$text" ]; then
			awk -v t="$SECONDS" -v rss="$(rss_kb)" '
				$1 == "drover_runs_active" { active = $2 }
				$1 == "drover_intake_paused" { paused = $2 }
				$1 == "drover_events_received_total" { received = $2 }
				$1 ~ /^drover_consumer_lag\{/ { lag += $2; n++ }
				END { print t, active, paused, lag + 0, n + 0, received, rss }
			' <<<"$text" >>"$T/samples"
		fi
		sleep 0.2
	done
}

# runs_all: every run of every repository as one JSON array in $T/runs.json.
runs_all()
{
	local i
	for ((i = 0; i < N_REPOS; i++)); do
		runs_json --repo "acme/bp-$i" --limit 1000 >"$T/runs.$i.json"
	done
	python3 -c '
import json, sys
out = []
for i in range(int(sys.argv[2])):
    out.extend(json.load(open("%s/runs.%d.json" % (sys.argv[1], i))))
json.dump(out, open("%s/runs.json" % sys.argv[1], "w"))
' "$T" "$N_REPOS"
}

start_agent
sleep 2 # let the agent settle (statistics, first commit) before the idle RSS
idle_rss=$(rss_kb)
say "idle RSS ${idle_rss} kB"
sample_loop &
sampler=$!
EXTRA_PIDS+=("$sampler")

say "producing $N_EVENTS events of ~$((PAD_BYTES / 1024)) KiB at once (mark $MARK, max_parallel $PARALLEL)"
produce bp "$N_EVENTS"

say "waiting for the intake to pause"
wait_metric drover_intake_paused 1 30
grep -q 'intake: paused' "$AGENT_LOG" || fail "the log does not say the intake paused"

say "waiting until a quarter of the burst has run"
end=$((SECONDS + 60))
until [ "$(metric drover_events_received_total)" -ge $((N_EVENTS / 4)) ]; do
	[ "$SECONDS" -lt "$end" ] ||
		fail "only $(metric drover_events_received_total) events taken in after 60 s"
	sleep 0.5
done
quarter_rss=$(rss_kb)
say "RSS after a quarter ${quarter_rss} kB"

say "waiting for all $N_EVENTS runs to finish"
end=$((SECONDS + 75))
until [ "$(metric drover_events_received_total)" -ge "$N_EVENTS" ] &&
	[ "$(metric drover_runs_active)" -eq 0 ]; do
	[ "$SECONDS" -lt "$end" ] ||
		fail "after 75 s: $(metric drover_events_received_total) events taken in, $(metric drover_runs_active) runs active"
	sleep 0.5
done
end_rss=$(rss_kb)
touch "$T/stop-sampling"
wait "$sampler" || true
EXTRA_PIDS=()
say "RSS at the end ${end_rss} kB"

say "checking the samples ($(wc -l <"$T/samples") of them)"
summary=$(python3 -c '
import sys
mark, per_event, idle, bound, growth, n = (int(x) for x in sys.argv[2:8])
rows = [l.split() for l in open(sys.argv[1]) if len(l.split()) == 7]
rows = [tuple(int(float(x)) for x in r) for r in rows]
if not rows:
    sys.exit("no samples")
limit = mark + per_event - 1
worst = max(r[1] for r in rows)
if worst > limit:
    sys.exit("drover_runs_active reached %d, over the mark %d (+%d)" % (worst, mark, per_event - 1))
paused = [r for r in rows if r[2] == 1]
if not paused:
    sys.exit("no sample saw drover_intake_paused 1")
waiting = [r for r in paused if r[3] > 0]
if not waiting:
    sys.exit("no paused sample shows consumer lag > 0 (events waiting in Kafka)")
first = rows.index(paused[0])
if not any(r[2] == 0 for r in rows[first:]):
    sys.exit("the intake never resumed after it paused")
top = max(r[6] for r in rows)
if top > idle + bound:
    sys.exit("RSS reached %d kB, over idle %d kB + %d kB" % (top, idle, bound))
early = [r[6] for r in rows if 0 < r[5] <= n // 4]
late = [r[6] for r in rows if r[5] >= n - n // 4]
if not early or not late:
    sys.exit("no RSS samples in the first or the last quarter of the burst")
if max(late) > max(early) + growth:
    sys.exit("RSS grew with the burst: at most %d kB in the first quarter, %d kB in the last"
             % (max(early), max(late)))
print("%d samples: runs active at most %d (mark %d), %d paused, lag up to %d while paused, "
      "RSS at most %d kB (idle %d kB; peak %d kB in the first quarter, %d kB in the last)"
      % (len(rows), worst, mark, len(paused), max(r[3] for r in waiting), top, idle,
         max(early), max(late)))
' "$T/samples" "$MARK" "$RUNS_PER_EVENT" "$idle_rss" "$RSS_BOUND_KB" "$RSS_GROWTH_KB" \
	"$N_EVENTS" 2>&1) ||
	fail "the samples break the backpressure rules: $summary"
say "$summary"

[ "$end_rss" -le $((idle_rss + RSS_BOUND_KB)) ] ||
	fail "RSS at the end ${end_rss} kB, over idle ${idle_rss} kB + ${RSS_BOUND_KB} kB"

n_paused=$(grep -c 'intake: paused' "$AGENT_LOG" || true)
n_resumed=$(grep -c 'intake: resumed' "$AGENT_LOG" || true)
say "the intake paused $n_paused and resumed $n_resumed time(s)"
assert_ge "$n_resumed" 1 "'intake: resumed' lines in the log"
assert_eq "$(metric drover_intake_paused)" 0 "drover_intake_paused once the work drained"

say "checking every event has exactly one run"
runs_all
python3 -c '
import collections, json, sys
runs = json.load(open(sys.argv[1]))
prefix, count = sys.argv[2], int(sys.argv[3])
want = {"%s-%d" % (prefix, i) for i in range(count)}
seen = collections.Counter(r["event_id"] for r in runs)
twice = sorted(k for k, v in seen.items() if v > 1)
lost = sorted(want - set(seen))
extra = sorted(set(seen) - want)
bad = collections.Counter(r["status"] for r in runs if r["status"] != "succeeded")
if twice or lost or extra or bad:
    sys.exit("%d runs for %d events: twice %s, never %s, unknown %s, not succeeded %s"
             % (len(runs), count, twice[:5], lost[:5], extra[:5], dict(bad)))
' "$T/runs.json" bp "$N_EVENTS" || fail "the events were not run exactly once"
assert_eq "$(metric drover_events_accepted_total)" "$N_EVENTS" "events accepted"
assert_eq "$(metric drover_events_duplicate_total)" 0 "duplicate events"

stop_agent
