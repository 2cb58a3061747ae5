#!/usr/bin/env bash
# Commit statuses still queued when the agent stops get plugin_config.status.
# stop_flush_ms to go out, and the stop never waits longer than that.
#
# How: tests/standin/githost.py refuses every GitHub call (503) and holds
# every GitLab call (a hung host). A GitHub push and a GitLab push each run
# a one-stage pipeline, so 5 statuses per host wait in the queue
# (drover_plugin_status_queue_depth 10). The agent gets SIGTERM; once it says
# it waits for them, GitHub recovers. Proven: the 5 GitHub statuses arrive,
# in order, during the grace; GitLab's request is still hung when the grace
# (6 s) is over, and the agent stops anyway, well before the request's own
# 60 s timeout, saying 5 statuses could not be delivered. Then a plugin
# grace longer than the agent's stop_grace: stop_grace bounds it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

GH_TOKEN="ghp_e2eStopToken$$x"
GL_TOKEN="glpat-e2e-stop-$$"
HOST_PORT=$(free_port)
HOST="http://127.0.0.1:$HOST_PORT"

c1=$(make_repo hello)
add_repo Codertocat/Hello-World "$(repo_url hello)"
add_repo acme-ml/widget "$(repo_url hello)"
write_pipeline ci <<EOF
name: ci
on:
  push: {}
stages:
  - name: check
    uses: shell
    with: { run: 'echo tests pass' }
EOF
write_config \
	"plugin_config:" \
	"  status:" \
	"    retry_initial_ms: 200" \
	"    retry_max_ms: 400" \
	"    timeout_ms: 60000" \
	"    stop_flush_ms: 6000" \
	"    github: { api_url: \"$HOST\", token_env: E2E_GITHUB_TOKEN }" \
	"    gitlab: { api_url: \"$HOST\", token_env: E2E_GITLAB_TOKEN }"

say "the git host: GitHub refuses (503), GitLab hangs"
python3 "$DROVER_SRC/tests/standin/githost.py" --port "$HOST_PORT" --port-file "$T/standin.port" \
	--github-token "$GH_TOKEN" --gitlab-token "$GL_TOKEN" \
	--repo github:Codertocat/Hello-World --repo gitlab:acme-ml/widget \
	2>"$T/standin.log" &
EXTRA_PIDS+=($!) # killed at the end
wait_file "$T/standin.port" 10
control()
{
	curl -s --max-time 5 -o /dev/null -w '%{http_code}' --data-binary "$2" "$HOST/_control/$1" |
		grep -q 200 || fail "the stand-in refuses POST /_control/$1 $2"
}
control fail '{"status": 503, "count": 100000, "host": "github"}'
control slow '{"seconds": 120, "count": 100000, "host": "gitlab"}'

start_agent E2E_GITHUB_TOKEN="$GH_TOKEN" E2E_GITLAB_TOKEN="$GL_TOKEN"

say "a GitHub push and a GitLab push run; their statuses wait"
push_event "$T/events/push.json" "$c1"
emit_github push "$T/events/push.json" stop-push-1
c2=$(repo_commit hello v2 "gitlab push" main)
emit_gitlab_push "$c2" acme-ml/widget stop-gl-push-1
wait_run_status "$(run_of_event stop-push-1 ci)" succeeded 30
wait_run_status "$(run_of_event stop-gl-push-1 ci)" succeeded 30
wait_metric drover_plugin_status_queue_depth 10 20
grep -q "status: github: HTTP 503 .*retrying in" "$AGENT_LOG" ||
	fail "the agent's log does not show GitHub's 503 being retried"

say "SIGTERM: the queue gets its grace; GitHub recovers during it"
kill -TERM "$AGENT_PID"
end=$((SECONDS + 20))
until grep -q "status: stopping: 10 status(es) waiting; up to 6000 ms" "$AGENT_LOG"; do
	kill -0 "$AGENT_PID" 2>/dev/null || fail "the agent exited without waiting for its 10 queued statuses"
	[ "$SECONDS" -lt "$end" ] || fail "no 'waiting' line 20 s after SIGTERM"
	sleep 0.1
done
control clear '{"host": "github"}'
# Without the grace's bound the hung GitLab call would hold the stop for
# its 60 s timeout, and then for each retry.
wait_agent_stopped 40

say "checking what the stand-in received and what the agent said"
curl -s --max-time 5 "$HOST/_control/received" >"$T/received.json"
python3 - "$T/received.json" "$c1" <<'EOF' || fail "the statuses received are not right (see above)"
import json, sys
received = json.load(open(sys.argv[1]))
c1 = sys.argv[2]
got = [(r["host"], r["sha"], r["context"], r["state"]) for r in received]
want = [("github", c1, "drover/ci", "pending"), ("github", c1, "drover/ci", "pending"),
        ("github", c1, "drover/ci/check", "pending"), ("github", c1, "drover/ci/check", "success"),
        ("github", c1, "drover/ci", "success")]
if got != want:
    print("  got  %s\n  want %s" % (got, want))
    sys.exit(1)
EOF
grep -q "status: stopping: 5 status(es) cannot be delivered within stop_flush_ms (6000 ms)" \
	"$AGENT_LOG" || fail "the agent does not say that GitLab's 5 statuses could not go"
grep -q "status: stopping: 5 status(es) undelivered; delivered 5" "$AGENT_LOG" ||
	fail "the last status line does not count 5 delivered and 5 undelivered"

say "a plugin grace longer than stop_grace: the agent's stop_grace bounds it"
write_config \
	"stop_grace: 2s" \
	"plugin_config:" \
	"  status:" \
	"    timeout_ms: 60000" \
	"    stop_flush_ms: 600000" \
	"    gitlab: { api_url: \"$HOST\", token_env: E2E_GITLAB_TOKEN }"
start_agent E2E_GITLAB_TOKEN="$GL_TOKEN"
emit_gitlab_push "$c2" acme-ml/widget stop-gl-push-2
wait_run_status "$(run_of_event stop-gl-push-2 ci)" succeeded 30
wait_metric drover_plugin_status_queue_depth 5 20
kill -TERM "$AGENT_PID"
# The plugin would wait 600 s and its hung request 60 s; stop_grace is 2 s.
wait_agent_stopped 20
grep -q "agent: plugins did not finish flushing within stop_grace (2000 ms)" "$AGENT_LOG" ||
	fail "the agent does not say it stopped without the plugins' flush"
