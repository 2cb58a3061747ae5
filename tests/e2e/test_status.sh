#!/usr/bin/env bash
# Commit statuses (plugin `status`) reach the git host the event came from,
# through tests/standin/githost.py, a stand-in that follows the published
# GitHub and Azure DevOps status APIs (paths, auth, errors, throttling).
#
# How: a GitHub push runs two pipelines (one succeeds, one fails) while the
# git host is down (connection refused): the runs finish anyway. Then the
# stand-in starts, refusing the first calls with 503 and throttling the next
# with 429 + Retry-After and GitHub's 403 rate limit. Then a GitHub pull
# request, an Azure DevOps pull request and an Azure DevOps push run, and a
# push of a repository the host does not know (404: dropped, not retried).
# Proven: every status arrives exactly once, per commit and context in the
# order pending → success/failure, the run's pending before its stages' and
# its result after theirs; Azure PR statuses go to the pull request, push
# statuses to the commit; the host's tokens never appear in the agent's log.
# GitLab: a push hook (POST /api/v1/events with X-Gitlab-Event) reports to
# the project's commit statuses with GitLab's states (running, failed).
# Metrics: while the host is down the 10 statuses show as the queue depth;
# at the end, read with prometheus_client's parser, the plugin's counters per
# host equal what the stand-in answered (delivered = its 2xx, throttled = its
# 429 and 403, refused = its 404, retried = its 503 plus, for GitHub, the
# connection errors while it was down), and the queue is empty.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

GH_TOKEN="ghp_e2eSecretToken$$x"
AZ_TOKEN="azpat-e2e-secret-$$"
GL_TOKEN="glpat-e2e-secret-$$"
HOST_PORT=$(free_port)
HOST="http://127.0.0.1:$HOST_PORT"

c1=$(make_repo hello)
add_repo Codertocat/Hello-World "$(repo_url hello)"
add_repo Codertocat/Unknown "$(repo_url hello)"
add_repo Forecasting/churn-model "$(repo_url hello)"
add_repo acme-ml/widget "$(repo_url hello)"
for p in ci lint; do
	if [ "$p" = ci ]; then run='echo tests pass'; else run='echo "style error"; exit 3'; fi
	write_pipeline "$p" <<EOF
name: $p
on:
  push: {}
  pull_request: {}
stages:
  - name: check
    uses: shell
    with: { run: '$run' }
EOF
done
printf '%s\n' "$GL_TOKEN" >"$T/gitlab.token"
write_config \
	"plugin_config:" \
	"  status:" \
	"    target_url: \"https://drover.example/runs/{run}\"" \
	"    retry_initial_ms: 200" \
	"    retry_max_ms: 1000" \
	"    timeout_ms: 3000" \
	"    github: { api_url: \"$HOST\", token_env: E2E_GITHUB_TOKEN }" \
	"    gitlab: { api_url: \"$HOST\", token_file: \"$T/gitlab.token\" }" \
	"    azure-devops: { api_url: \"$HOST/acme-ml\", token_env: E2E_AZURE_TOKEN }"
start_agent E2E_GITHUB_TOKEN="$GH_TOKEN" E2E_AZURE_TOKEN="$AZ_TOKEN"

# count_of WHAT [GREP]: how many entries /_control/WHAT lists (whose path
# contains GREP, when given).
count_of()
{
	curl -s --max-time 5 "$HOST/_control/$1" | python3 -c '
import json, sys
print(len([x for x in json.load(sys.stdin) if sys.argv[1] in x.get("path", "")]))' "${2:-}" ||
		fail "the stand-in does not answer"
}

# wait_count WHAT COUNT [GREP]: until count_of WHAT GREP reaches COUNT (45 s).
wait_count()
{
	local end=$((SECONDS + 45)) n
	while :; do
		n=$(count_of "$1" "${3:-}")
		[ "$n" -ge "$2" ] && return 0
		[ "$SECONDS" -lt "$end" ] || fail "the stand-in has $n of $2 $1${3:+ for $3} after 45 s"
		sleep 0.3
	done
}

say "a GitHub push while the git host is down: the runs do not wait for it"
push_event "$T/events/push.json" "$c1"
emit_github push "$T/events/push.json" status-push-1
run_ci=$(run_of_event status-push-1 ci)
run_lint=$(run_of_event status-push-1 lint)
wait_run_status "$run_ci" succeeded 30
wait_run_status "$run_lint" failed 30
curl -s --max-time 2 "$HOST/_control/received" >/dev/null 2>&1 && fail "something answers on the stand-in's port already"
grep -q "status: github: .*retrying in" "$AGENT_LOG" ||
	fail "the agent's log does not show a failed delivery being retried"
wait_metric drover_plugin_status_queue_depth 10
assert_eq "$(metric 'drover_plugin_status_queued_total{host="github"}')" 10 "statuses queued for GitHub"
assert_eq "$(metric 'drover_plugin_status_deliveries_total{host="github",outcome="delivered"}')" 0 \
	"statuses delivered while the host is down"

say "the git host comes back: 3 x 503, then 2 x 429 (Retry-After: 1), then a 403 rate limit"
python3 "$DROVER_SRC/tests/standin/githost.py" --port "$HOST_PORT" --port-file "$T/standin.port" \
	--github-token "$GH_TOKEN" --gitlab-token "$GL_TOKEN" --azure-token "$AZ_TOKEN" \
	--repo github:Codertocat/Hello-World --repo azure-devops:acme-ml/Forecasting/churn-model --repo gitlab:acme-ml/widget \
	--fail 503:3 --fail 429:2:1 --fail 403:1 \
	2>"$T/standin.log" &
EXTRA_PIDS+=($!) # killed at the end
wait_file "$T/standin.port" 10
# Per run: the pipeline's pending (queued), pending (started) and result,
# the stage's pending and result.
wait_count received 10

say "a GitHub pull request and an Azure DevOps pull request and push"
c2=$(repo_commit hello v2 "feature work" changes)
pr_event "$T/events/pr.json" synchronize 7 "$c2"
emit_github pull_request "$T/events/pr.json" status-pr-1
c3=$(repo_commit hello v3 "azure pr" feature/drift-thresholds)
json_edit "$DROVER_FIXTURES/events/azure.git.pullrequest.created.json" "$T/events/az-pr.json" '
d["id"] = "status-az-pr-1"
d["resource"]["lastMergeSourceCommit"]["commitId"] = a[0]
d["resource"]["lastMergeCommit"]["commitId"] = a[0]
' "$c3"
dv emit -c "$CFG" --azure "$T/events/az-pr.json" >/dev/null ||
	fail "drover emit --azure (pull request) failed"
c4=$(repo_commit hello v4 "azure push" main)
json_edit "$DROVER_FIXTURES/events/azure.git.push.json" "$T/events/az-push.json" '
d["id"] = "status-az-push-1"
d["resource"]["refUpdates"][0]["newObjectId"] = a[0]
for c in d["resource"].get("commits", []):
    c["commitId"] = a[0]
' "$c4"
dv emit -c "$CFG" --azure "$T/events/az-push.json" >/dev/null ||
	fail "drover emit --azure (push) failed"
c5=$(repo_commit hello v5 "gitlab push" main)
emit_gitlab_push "$c5" acme-ml/widget status-gl-push-1
say "and a push of a repository the git host does not know (404)"
push_event "$T/events/unknown.json" "$c1" refs/heads/master Codertocat/Unknown
emit_github push "$T/events/unknown.json" status-unknown-1

for ev in status-pr-1 status-az-pr-1 status-az-push-1 status-gl-push-1 status-unknown-1; do
	for p in ci lint; do
		r=$(run_of_event "$ev" "$p")
		wait_run_done "$r" 30 >/dev/null
	done
done
wait_count received 50
wait_count calls 10 /repos/Codertocat/Unknown/

say "checking what the stand-in received"
curl -s --max-time 5 "$HOST/_control/received" >"$T/received.json"
curl -s --max-time 5 "$HOST/_control/calls" >"$T/calls.json"
python3 - "$T/received.json" "$T/calls.json" "$c1" "$c2" "$c3" "$c4" "$c5" <<'EOF' || fail "the statuses received are not right (see above)"
import collections, json, sys
received = json.load(open(sys.argv[1]))
calls = json.load(open(sys.argv[2]))
c1, c2, c3, c4, c5 = sys.argv[3:8]
bad = []
def check(ok, why):
    if not ok:
        bad.append(why)

expect = {  # (host, sha) -> {context: [states]}
    ("github", c1): ("github", "pending", "success", "failure"),
    ("github", c2): ("github", "pending", "success", "failure"),
    ("azure-devops", c3): ("azure-devops", "pending", "succeeded", "failed"),
    ("azure-devops", c4): ("azure-devops", "pending", "succeeded", "failed"),
    ("gitlab", c5): ("gitlab", "pending", "success", "failed"),
}
by_sha = collections.defaultdict(list)
for r in received:
    by_sha[(r["host"], r["sha"] if r["pr"] is None else r["pr"])].append(r)
    check(r["description"] is not None and len(r["description"]) <= 140,
          "description too long or missing: %r" % r)
    check(r["target_url"].startswith("https://drover.example/runs/"),
          "target_url %r" % r["target_url"])
check(len(received) == 50, "%d statuses received, 50 expected" % len(received))
for (host, sha), (_, pending, ok, failed) in expect.items():
    key = (host, 52) if sha == c3 else (host, sha)
    got = by_sha.get(key, [])
    check(len(got) == 10, "%s %s: %d statuses, 10 expected" % (host, sha[:8], len(got)))
    prefix = "drover/" if host == "github" else "drover/"
    for p, result in (("ci", ok), ("lint", failed)):
        run_ctx, stage_ctx = prefix + p, prefix + p + "/check"
        seq = [g for g in got if g["context"] in (run_ctx, stage_ctx)]
        states = [(g["context"], g["state"]) for g in seq]
        started = "running" if host == "gitlab" else pending  # GitLab: started is running
        want = [(run_ctx, pending), (run_ctx, started), (stage_ctx, started),
                (stage_ctx, result), (run_ctx, result)]
        check(states == want, "%s %s %s: got %s, want %s" % (host, sha[:8], p, states, want))
# Azure: the pull request's statuses went to the pull request, the push's to the commit.
az_pr = [c for c in calls if c["host"] == "azure-devops" and "/pullRequests/52/" in c["path"]]
az_commit = [c for c in calls if c["host"] == "azure-devops" and "/commits/%s/" % c4 in c["path"]]
check(len([c for c in az_pr if c["status"] == 200]) == 10, "Azure PR calls: %s" % az_pr)
check(len([c for c in az_commit if c["status"] == 201]) == 10, "Azure commit calls: %s" % az_commit)
# The failures happened, and each unknown-repo status was refused once, never retried.
statuses = collections.Counter(c["status"] for c in calls)
check(statuses[503] == 3 and statuses[429] == 2 and statuses[403] == 1,
      "injected failures answered: %s" % dict(statuses))
unknown = [c for c in calls if "/repos/Codertocat/Unknown/" in c["path"]]
check(len(unknown) == 10 and all(c["status"] == 404 for c in unknown),
      "unknown repository: %d calls %s" % (len(unknown), collections.Counter(c["status"] for c in unknown)))
for b in bad:
    print("  " + b)
sys.exit(1 if bad else 0)
EOF

say "the plugin's counters on /metrics (prometheus_client's parser) against the stand-in's answers"
PY=$("$DROVER_SRC/packaging/python-env.sh") || fail "packaging/python-env.sh failed"
wait_metric drover_plugin_status_queue_depth 0
metrics >"$T/metrics.txt"
"$PY" - "$T/metrics.txt" "$T/calls.json" <<'EOF' || fail "the status counters on /metrics do not match the stand-in (see above)"
import collections, json, sys
from prometheus_client.parser import text_string_to_metric_families
samples = {}
for fam in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in fam.samples:
        samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
calls = json.load(open(sys.argv[2]))
def got(name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))
bad = []
for host in ("github", "gitlab", "azure-devops"):
    answers = collections.Counter(c["status"] for c in calls if c["host"] == host)
    ok = sum(n for st, n in answers.items() if 200 <= st < 300)
    throttled = answers[429] + answers[403]
    refused = sum(n for st, n in answers.items() if 400 <= st < 500) - throttled
    failed = sum(n for st, n in answers.items() if st >= 500)
    d = lambda outcome: got("drover_plugin_status_deliveries_total", host=host, outcome=outcome)
    for outcome, n in (("delivered", ok), ("throttled", throttled), ("refused", refused)):
        if d(outcome) != n:
            bad.append("%s %s: %s on /metrics, the stand-in answered %d" % (host, outcome, d(outcome), n))
    # GitHub's retries also count the connection errors while it was down.
    if host == "github" and not (d("retried") is not None and d("retried") > failed):
        bad.append("github retried: %s, more than its %d 503s expected" % (d("retried"), failed))
    if host != "github" and d("retried") != failed:
        bad.append("%s retried: %s, %d expected" % (host, d("retried"), failed))
    q = got("drover_plugin_status_queued_total", host=host)
    if q != ok + refused:
        bad.append("%s queued: %s, %d expected" % (host, q, ok + refused))
for reason in ("superseded", "dropped"):
    n = got("drover_plugin_status_discarded_total", reason=reason)
    if n != 0:
        bad.append("discarded %s: %s, 0 expected" % (reason, n))
if got("drover_plugin_status_queue_depth") != 0:
    bad.append("queue depth %s" % got("drover_plugin_status_queue_depth"))
for b in bad:
    print("  " + b)
sys.exit(1 if bad else 0)
EOF

say "checking the log: throttling honoured, refusals logged, no token anywhere"
grep -q "as the host asked" "$AGENT_LOG" || fail "no delivery waited as the host asked (Retry-After)"
grep -q "github refused drover/.*(HTTP 404: Not Found)" "$AGENT_LOG" ||
	fail "the 404 of the unknown repository is not in the log"
grep -q "github accepts statuses again" "$AGENT_LOG" || fail "no recovery line in the log"
for tok in "$GH_TOKEN" "$AZ_TOKEN" "$GL_TOKEN" "$(printf ':%s' "$AZ_TOKEN" | base64)"; do
	if grep -qF -- "$tok" "$AGENT_LOG"; then
		fail "a token appears in the agent's log"
	fi
done
headers=$(curl -s --max-time 5 "$HOST/_control/headers")
assert_contains "$headers" "Bearer $GH_TOKEN" "headers the stand-in saw"
assert_contains "$headers" "X-GitHub-Api-Version" "headers the stand-in saw"

stop_agent
