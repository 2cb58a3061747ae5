#!/usr/bin/env bash
# Webhooks straight from the git hosts (POST /hooks/github, /hooks/gitlab,
# /hooks/azure-devops): a GitHub push signed with the configured secret
# (X-Hub-Signature-256, computed here with openssl) answers 202 once Kafka
# took it, keyed by the repository, and its run checks out the pushed commit
# of a local repository and succeeds. A missing, malformed or wrong signature,
# or the signature of another body, answers 401, is counted per reason on
# /metrics, and produces nothing: a later good push to the same repository
# (same key, same partition, so consumed after anything produced before it)
# is the second and last record the agent receives. A ping answers 200 and
# produces nothing; an event type drover does not build from answers 200
# "ignored"; bad JSON 400; GET 405; a body over admin.max_body_bytes 413.
# GitLab (X-Gitlab-Token) and Azure DevOps (basic auth) are checked the same
# way, right, wrong and missing. A provider without a secret answers 404 until
# it is configured. None of the routes needs the admin bearer token, which
# the rest of the API still requires.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

c1=$(make_repo hello)
c2=$(repo_commit hello v2)
c3=$(repo_commit hello v3)
add_repo Codertocat/Hello-World "$(repo_url hello)"
add_repo acme/platform/widget "$(repo_url hello)"
add_repo Forecasting/churn-model "$(repo_url hello)"
write_pipeline ci <<'EOF'
name: ci
on:
  push: { branches: [master] }
stages:
  - name: build
    uses: shell
    with: { run: "echo BUILT=$(git rev-parse HEAD) FROM=$DROVER_REPO" }
EOF

GH_SECRET='It is a secret to everybody, e2e'
printf '%s\n' "$GH_SECRET" >"$T/github.secret"
printf 'admin-token-e2e\n' >"$T/admin.token"
ADMIN_EXTRA=("token_file: \"$T/admin.token\"" "max_body_bytes: 64KiB")
HOOKS_GH_GL=(
	"hooks:"
	"  github: { secret_file: \"$T/github.secret\" }"
	"  gitlab: { token_env: DROVER_E2E_GITLAB_TOKEN }"
)
export DROVER_E2E_GITLAB_TOKEN=gl-e2e-token # the CLI reads the config too
write_config "${HOOKS_GH_GL[@]}"
start_agent

# hook PROVIDER FILE [CURL ARGS...]: POSTs FILE to /hooks/PROVIDER; prints
# the HTTP status, the body is in $T/hook.out.
hook()
{
	local provider=$1 file=$2
	shift 2
	curl -s -o "$T/hook.out" -w '%{http_code}' --max-time 15 -X POST \
		-H 'Content-Type: application/json' --data-binary "@$file" "$@" \
		"http://127.0.0.1:$PORT/hooks/$provider" || true
}

# sign SECRET FILE: the X-Hub-Signature-256 value of FILE's bytes.
sign()
{
	printf 'sha256=%s\n' "$(openssl dgst -sha256 -hmac "$1" -r <"$2" | cut -d' ' -f1)"
}

# admin_metric NAME: its value on /metrics (with the admin token).
admin_metric()
{
	local text
	text=$(curl -s --max-time 5 -H 'Authorization: Bearer admin-token-e2e' \
		"http://127.0.0.1:$PORT/metrics") || fail "GET /metrics failed"
	awk -v n="$1" '$1 == n { print $2; found = 1 } END { if (!found) exit 1 }' <<<"$text" ||
		fail "no metric $1 on /metrics"
}

hooks_metric()
{
	admin_metric "drover_webhooks_total{provider=\"$1\",outcome=\"$2\"}"
}

unauthorized_metric()
{
	admin_metric "drover_webhooks_unauthorized_total{provider=\"$1\",reason=\"$2\"}"
}

# github_push OUT SHA: GitHub's documented push payload (a tag deletion)
# made a push of SHA to master of Codertocat/Hello-World.
github_push()
{
	json_edit "$GITHUB_FIXTURES/push.payload.json" "$1" '
d["ref"] = "refs/heads/master"
d["after"] = a[0]
d["before"] = "1" * 40
d["created"] = False
d["deleted"] = False
' "$2"
}

say "the admin API still wants its token; the hooks do not"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$PORT/api/v1/runs" || true)
assert_eq "$code" 401 "GET /api/v1/runs without the token"
assert_eq "$(admin_metric drover_events_received_total)" 0 "records received at start"

say "a signed GitHub push of $c1: 202 after Kafka took it, keyed by the repository, and a run"
github_push "$T/events/push1.json" "$c1"
code=$(hook github "$T/events/push1.json" -H "X-GitHub-Event: push" \
	-H "X-GitHub-Delivery: gh-delivery-1" -H "X-Hub-Signature-256: $(sign "$GH_SECRET" "$T/events/push1.json")")
assert_eq "$code" 202 "status of a signed push ($(cat "$T/hook.out"))"
assert_eq "$(json_get key <"$T/hook.out")" Codertocat/Hello-World "record key"
assert_eq "$(json_get topic <"$T/hook.out")" "$EVENTS_TOPIC" "topic"
run1=$(run_of_event gh-delivery-1)
wait_run_status "$run1" succeeded 30
log=$(dv logs -c "$CFG" "$run1" build) || fail "drover logs $run1 build failed"
assert_contains "$log" "BUILT=$c1 FROM=Codertocat/Hello-World" "build log of run $run1"
assert_eq "$(hooks_metric github produced)" 1 "github produced"

say "missing, malformed and wrong signatures, and the signature of another body: 401"
github_push "$T/events/push2.json" "$c2"
other_sig=$(sign "$GH_SECRET" "$T/events/push1.json")
code=$(hook github "$T/events/push2.json" -H "X-GitHub-Event: push" -H "X-GitHub-Delivery: bad-1")
assert_eq "$code" 401 "status without a signature"
assert_contains "$(cat "$T/hook.out")" "X-Hub-Signature-256 is missing" "reply without a signature"
code=$(hook github "$T/events/push2.json" -H "X-GitHub-Event: push" -H "X-GitHub-Delivery: bad-2" \
	-H "X-Hub-Signature-256: sha1=0123456789abcdef0123456789abcdef01234567")
assert_eq "$code" 401 "status with a malformed signature"
code=$(hook github "$T/events/push2.json" -H "X-GitHub-Event: push" -H "X-GitHub-Delivery: bad-3" \
	-H "X-Hub-Signature-256: $(sign "another secret" "$T/events/push2.json")")
assert_eq "$code" 401 "status with another secret's signature"
assert_contains "$(cat "$T/hook.out")" "does not match the body" "reply to a wrong signature"
code=$(hook github "$T/events/push2.json" -H "X-GitHub-Event: push" -H "X-GitHub-Delivery: bad-4" \
	-H "X-Hub-Signature-256: $other_sig")
assert_eq "$code" 401 "status with the signature of another body"
assert_eq "$(unauthorized_metric github missing)" 1 "github unauthorized (missing)"
assert_eq "$(unauthorized_metric github malformed)" 1 "github unauthorized (malformed)"
assert_eq "$(unauthorized_metric github mismatch)" 2 "github unauthorized (mismatch)"
assert_eq "$(hooks_metric github unauthorized)" 4 "github unauthorized"

say "ping: 200, nothing produced; issues: 200 ignored; bad JSON or a form: 400; GET: 405"
code=$(hook github "$GITHUB_FIXTURES/ping.payload.json" -H "X-GitHub-Event: ping" \
	-H "X-GitHub-Delivery: ping-1" -H "X-Hub-Signature-256: $(sign "$GH_SECRET" "$GITHUB_FIXTURES/ping.payload.json")")
assert_eq "$code" 200 "status of a ping"
assert_eq "$(json_get status <"$T/hook.out")" pong "reply to a ping"
code=$(hook github "$T/events/push2.json" -H "X-GitHub-Event: issues" \
	-H "X-GitHub-Delivery: issues-1" -H "X-Hub-Signature-256: $(sign "$GH_SECRET" "$T/events/push2.json")")
assert_eq "$code" 200 "status of an issues event"
assert_eq "$(json_get status <"$T/hook.out")" ignored "reply to an issues event"
printf '{"ref": "refs/heads/master", "after": oops' >"$T/events/bad.json"
code=$(hook github "$T/events/bad.json" -H "X-GitHub-Event: push" \
	-H "X-GitHub-Delivery: json-1" -H "X-Hub-Signature-256: $(sign "$GH_SECRET" "$T/events/bad.json")")
assert_eq "$code" 400 "status of bad JSON"
assert_contains "$(cat "$T/hook.out")" "not valid JSON" "reply to bad JSON"
printf 'payload=%%7B%%7D' >"$T/events/form.txt"
code=$(curl -s -o "$T/hook.out" -w '%{http_code}' --max-time 15 -X POST --data-binary "@$T/events/form.txt" \
	-H "Content-Type: application/x-www-form-urlencoded" -H "X-GitHub-Event: push" \
	-H "X-Hub-Signature-256: $(sign "$GH_SECRET" "$T/events/form.txt")" \
	"http://127.0.0.1:$PORT/hooks/github" || true)
assert_eq "$code" 400 "status of a form-encoded body"
assert_contains "$(cat "$T/hook.out")" "content type to application/json" "reply to a form-encoded body"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$PORT/hooks/github" || true)
assert_eq "$code" 405 "status of GET /hooks/github"
python3 -c 'import json; print(json.dumps({"ref": "refs/heads/master", "pad": "x" * 100000}))' \
	>"$T/events/big.json"
code=$(hook github "$T/events/big.json" -H "X-GitHub-Event: push" \
	-H "X-Hub-Signature-256: $(sign "$GH_SECRET" "$T/events/big.json")")
assert_eq "$code" 413 "status of a body over admin.max_body_bytes"
assert_eq "$(hooks_metric github ping)" 1 "github ping"
assert_eq "$(hooks_metric github ignored)" 1 "github ignored"
assert_eq "$(hooks_metric github malformed)" 2 "github malformed"
assert_eq "$(hooks_metric github wrong_method)" 1 "github wrong_method"

say "GitLab: a wrong and a missing token are 401, the right one a run"
json_edit "$DROVER_FIXTURES/events/gitlab.push.json" "$T/events/gl.json" '
d["ref"] = "refs/heads/master"
d["after"] = d["checkout_sha"] = a[0]
d["commits"][-1]["id"] = a[0]
' "$c2"
code=$(hook gitlab "$T/events/gl.json" -H "X-Gitlab-Event: Push Hook" -H "X-Gitlab-Token: nope")
assert_eq "$code" 401 "status with a wrong GitLab token"
code=$(hook gitlab "$T/events/gl.json" -H "X-Gitlab-Event: Push Hook")
assert_eq "$code" 401 "status without a GitLab token"
code=$(hook gitlab "$T/events/gl.json" -H "X-Gitlab-Event: Push Hook" \
	-H "X-Gitlab-Event-UUID: gl-uuid-1" -H "X-Gitlab-Token: gl-e2e-token")
assert_eq "$code" 202 "status with the GitLab token ($(cat "$T/hook.out"))"
assert_eq "$(json_get key <"$T/hook.out")" acme/platform/widget "GitLab record key"
run2=$(run_of_event gl-uuid-1)
wait_run_status "$run2" succeeded 30
log=$(dv logs -c "$CFG" "$run2" build) || fail "drover logs $run2 build failed"
assert_contains "$log" "BUILT=$c2 FROM=acme/platform/widget" "build log of run $run2"
assert_eq "$(unauthorized_metric gitlab mismatch)" 1 "gitlab unauthorized (mismatch)"
assert_eq "$(unauthorized_metric gitlab missing)" 1 "gitlab unauthorized (missing)"

say "Azure DevOps is not configured yet: 404; an unknown provider: 404"
code=$(hook azure-devops "$DROVER_FIXTURES/events/azure.git.push.json" -u drover:pw)
assert_eq "$code" 404 "status of an unconfigured provider"
assert_contains "$(cat "$T/hook.out")" "webhook not configured" "reply of an unconfigured provider"
code=$(hook bitbucket "$T/events/push1.json")
assert_eq "$code" 404 "status of an unknown provider"

say "a second signed GitHub push: the refused requests produced nothing before it"
code=$(hook github "$T/events/push2.json" -H "X-GitHub-Event: push" \
	-H "X-GitHub-Delivery: gh-delivery-2" -H "X-Hub-Signature-256: $(sign "$GH_SECRET" "$T/events/push2.json")")
assert_eq "$code" 202 "status of the second signed push"
run3=$(run_of_event gh-delivery-2)
wait_run_status "$run3" succeeded 30
assert_eq "$(admin_metric drover_events_received_total)" 3 "records the agent received"
assert_eq "$(runs_json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')" 3 "runs"

say "Azure DevOps configured (basic auth): wrong, missing and non-Basic are 401, right is a run"
stop_agent
printf 'az-e2e-password\n' >"$T/azure.password"
write_config "${HOOKS_GH_GL[@]}" \
	"  azure_devops: { username: drover, password_file: \"$T/azure.password\" }"
start_agent
json_edit "$DROVER_FIXTURES/events/azure.git.push.json" "$T/events/az.json" '
d["id"] = "az-event-1"
d["resource"]["refUpdates"][0]["name"] = "refs/heads/master"
d["resource"]["refUpdates"][0]["newObjectId"] = a[0]
' "$c3"
code=$(hook azure-devops "$T/events/az.json" -u drover:wrong)
assert_eq "$code" 401 "status with a wrong Azure password"
code=$(hook azure-devops "$T/events/az.json")
assert_eq "$code" 401 "status without Azure credentials"
code=$(hook azure-devops "$T/events/az.json" -H "Authorization: Bearer admin-token-e2e")
assert_eq "$code" 401 "status with a bearer token instead of basic auth"
code=$(hook azure-devops "$T/events/az.json" -u drover:az-e2e-password)
assert_eq "$code" 202 "status with the Azure credentials ($(cat "$T/hook.out"))"
assert_eq "$(json_get key <"$T/hook.out")" Forecasting/churn-model "Azure record key"
run4=$(run_of_event az-event-1)
wait_run_status "$run4" succeeded 30
log=$(dv logs -c "$CFG" "$run4" build) || fail "drover logs $run4 build failed"
assert_contains "$log" "BUILT=$c3 FROM=Forecasting/churn-model" "build log of run $run4"
assert_eq "$(unauthorized_metric azure-devops mismatch)" 1 "azure unauthorized (mismatch)"
assert_eq "$(unauthorized_metric azure-devops missing)" 1 "azure unauthorized (missing)"
assert_eq "$(unauthorized_metric azure-devops malformed)" 1 "azure unauthorized (malformed)"
assert_eq "$(hooks_metric azure-devops produced)" 1 "azure produced"

say "no secret in the agent's logs"
for f in "$T"/agent.*.log; do
	! grep -qF -e "$GH_SECRET" -e gl-e2e-token -e az-e2e-password "$f" || fail "a secret is in $f"
done
