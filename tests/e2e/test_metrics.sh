#!/usr/bin/env bash
# GET /metrics read by a real Prometheus parser (prometheus_client's
# text_string_to_metric_families, from the venv of packaging/python-env.sh),
# after events of every outcome and runs that succeed and fail. Proves that
# the text parses with every sample under its family's HELP and TYPE (no
# family comes out "untyped"), that the labelled counters say exactly what
# happened (events per source/kind/outcome: 3 accepted GitHub pushes, one
# unmatched, one duplicate, one ignored ping, one refused Azure DevOps push,
# two dead letters by reason; runs and stage attempts per pipeline and
# outcome), that the stage-duration histogram counted every finished
# attempt (count = drover_stages_finished_total, +Inf = count, buckets
# cumulative, the 0.3 s stages above the 0.25 s bound, sum at least their
# sleep), that the gauges are back at 0 (queued runs, running stages, lag
# per partition), and that the historical unlabelled counters still agree.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

say "the Python venv with prometheus_client (created once, cached)"
PY=$("$DROVER_SRC/packaging/python-env.sh") || fail "packaging/python-env.sh failed"

c1=$(make_repo hello)
add_repo Codertocat/Hello-World "$(repo_url hello)"
write_pipeline ok <<'EOF'
name: ok
on:
  push: { branches: [master] }
checkout: false
stages:
  - name: build
    uses: shell
    with: { run: "sleep 0.3" }
  - name: test
    uses: shell
    needs: [build]
    with: { run: "true" }
EOF
write_pipeline bad <<'EOF'
name: bad
on:
  push: { branches: [broken] }
checkout: false
stages:
  - name: build
    uses: shell
    with: { run: "sleep 0.3; exit 3" }
  - name: deploy
    uses: shell
    needs: [build]
    with: { run: "true" }
EOF
write_config
start_agent

say "events of every outcome"
push_event "$T/events/master.json" "$c1"
emit_github push "$T/events/master.json" ok-1
emit_github push "$T/events/master.json" ok-2
emit_github push "$T/events/master.json" ok-1 # the same delivery again: a duplicate
push_event "$T/events/broken.json" "$c1" refs/heads/broken
emit_github push "$T/events/broken.json" bad-1
push_event "$T/events/elsewhere.json" "$c1" refs/heads/elsewhere
emit_github push "$T/events/elsewhere.json" unmatched-1
emit_github ping "$GITHUB_FIXTURES/ping.payload.json" ping-1
out=$(dv emit -c "$CFG" --azure "$DROVER_FIXTURES/events/azure.git.push.json" 2>&1) ||
	fail "drover emit --azure failed: $out"
printf '{"ref": "refs/heads/master", "after": oops' >"$T/events/malformed.json"
emit_github push "$T/events/malformed.json" malformed-1
json_edit "$GITHUB_FIXTURES/push.with-new-branch.payload.json" "$T/events/issues.json" \
	'd["action"] = "opened"; d["issue"] = {"number": 1}'
emit_github issues "$T/events/issues.json" unknown-1
wait_metric drover_events_received_total 9 30

say "the three runs finish: two succeed, one fails"
for id in ok-1 ok-2; do
	wait_run_status "$(run_of_event "$id" ok)" succeeded 30
done
wait_run_status "$(run_of_event bad-1 bad)" failed 30
wait_metric drover_runs_active 0 20
wait_metric drover_outbox_depth 0 20

say "GET /metrics through prometheus_client's parser"
curl -s -D "$T/metrics.headers" -o "$T/metrics.txt" --max-time 10 \
	"http://127.0.0.1:$PORT/metrics" || fail "GET /metrics failed"
grep -qi '^content-type: text/plain; version=0.0.4' "$T/metrics.headers" ||
	fail "Content-Type is not the 0.0.4 text format: $(cat "$T/metrics.headers")"
"$PY" - "$T/metrics.txt" <<'EOF' || fail "the metrics do not say what happened (above)"
import sys
from prometheus_client.parser import text_string_to_metric_families

text = open(sys.argv[1]).read()
families = {}
for f in text_string_to_metric_families(text):
    if f.name in families:
        sys.exit("family %s appears twice (its samples are not grouped)" % f.name)
    families[f.name] = f
problems = []


def check(what, got, want):
    if got != want:
        problems.append("%s: expected %r, got %r" % (what, want, got))


for f in families.values():
    if f.type == "untyped":
        problems.append("family %s has no TYPE (samples %s)" % (f.name, f.samples[:2]))
    if not f.documentation:
        problems.append("family %s has no HELP" % f.name)


def samples(family, suffix=""):
    f = families.get(family)
    if f is None:
        problems.append("no family %s" % family)
        return {}
    name = family + suffix
    return {tuple(sorted(s.labels.items())): s.value for s in f.samples if s.name == name}


def value(family, suffix="", **labels):
    return samples(family, suffix).get(tuple(sorted(labels.items())), 0)


def plain(name):  # a historical unlabelled counter
    return value(name[: -len("_total")], "_total")


events = samples("drover_events", "_total")
want_events = {
    ("github", "push", "accepted"): 3,
    ("github", "push", "unmatched"): 1,
    ("github", "push", "duplicate"): 1,
    ("other", "other", "ignored"): 1,  # a ping becomes no canonical event
    ("azure-devops", "push", "refused"): 1,  # its repository is not in repos:
    ("other", "other", "dead_lettered"): 2,  # neither record became an event
}
got_events = {(l["source"], l["kind"], l["outcome"]): v
              for l, v in ((dict(k), v) for k, v in events.items()) if v}
check("drover_events_total by (source, kind, outcome)", got_events, want_events)
check("sum of drover_events_total", sum(events.values()), plain("drover_events_received_total"))
check("dead letters: malformed", value("drover_dead_letters", "_total", reason="malformed"), 1)
check("dead letters: unknown", value("drover_dead_letters", "_total", reason="unknown"), 1)
check("dead letters: too_large", value("drover_dead_letters", "_total", reason="too_large"), 0)
check("drover_events_dead_lettered_total", plain("drover_events_dead_lettered_total"), 2)
check("drover_events_accepted_total", plain("drover_events_accepted_total"), 3)
check("drover_events_duplicate_total", plain("drover_events_duplicate_total"), 1)

runs = {(dict(k)["pipeline"], dict(k)["outcome"]): v
        for k, v in samples("drover_runs", "_total").items()}
check("drover_runs_total", runs, {("ok", "succeeded"): 2, ("bad", "failed"): 1})
check("drover_runs_finished_total", plain("drover_runs_finished_total"), 3)
stages = {(dict(k)["pipeline"], dict(k)["outcome"]): v
          for k, v in samples("drover_stages", "_total").items()}
check("drover_stages_total", stages, {("ok", "succeeded"): 4, ("bad", "failed"): 1})

h = "drover_stage_duration_seconds"
if families.get(h) is not None and families[h].type != "histogram":
    problems.append("%s is a %s, not a histogram" % (h, families[h].type))
counts = {dict(k)["pipeline"]: v for k, v in samples(h, "_count").items()}
check("%s_count by pipeline" % h, counts, {"ok": 4, "bad": 1})
check("%s_count in all" % h, sum(counts.values()), plain("drover_stages_finished_total"))
for pipeline, count in counts.items():
    buckets = sorted((float(dict(k)["le"]), v) for k, v in samples(h, "_bucket").items()
                     if dict(k)["pipeline"] == pipeline)
    check("%s{pipeline=%s} bucket bounds" % (h, pipeline), [b for b, _ in buckets],
          [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf")])
    check("%s{pipeline=%s} +Inf bucket" % (h, pipeline), buckets[-1][1], count)
    if any(a[1] > b[1] for a, b in zip(buckets, buckets[1:])):
        problems.append("%s{pipeline=%s} buckets are not cumulative: %s" % (h, pipeline, buckets))
    sleepers = 2 if pipeline == "ok" else 1  # stages that slept 0.3 s
    le_025 = dict(buckets)[0.25]
    if le_025 > count - sleepers:
        problems.append("%s{pipeline=%s}: %d attempts under 0.25 s, but %d of %d slept 0.3 s"
                        % (h, pipeline, le_025, sleepers, count))
    total = value(h, "_sum", pipeline=pipeline)
    if total < 0.3 * sleepers:
        problems.append("%s_sum{pipeline=%s} is %s, less than %s s of sleep"
                        % (h, pipeline, total, 0.3 * sleepers))

check("drover_runs_queued", value("drover_runs_queued"), 0)
check("drover_stages_running", value("drover_stages_running"), 0)
check("drover_runs_active", value("drover_runs_active"), 0)
lag = samples("drover_consumer_lag")
if not lag:
    problems.append("no drover_consumer_lag series")
for k, v in lag.items():
    if list(dict(k)) != ["partition"] or v != 0:
        problems.append("drover_consumer_lag%s = %s, want {partition} = 0" % (dict(k), v))

if problems:
    print("\n".join(problems))
    sys.exit(1)
print("metrics: %d families, every value as expected" % len(families))
EOF
say "the shell helpers still read the unlabelled counters"
assert_eq "$(metric drover_events_received_total)" 9 "drover_events_received_total"
assert_eq "$(metric drover_runs_created_total)" 3 "drover_runs_created_total"
