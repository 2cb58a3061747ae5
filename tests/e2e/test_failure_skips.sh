#!/usr/bin/env bash
# A failing stage fails the run: the stages that need it (directly or not)
# are skipped with a summary naming the need, a stage on an independent
# branch of the graph still starts and succeeds after the failure, and the
# failing stage's exit code is recorded.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

c1=$(make_repo hello)
add_repo Codertocat/Hello-World "$(repo_url hello)"
write_pipeline ci <<'EOF'
name: ci
on:
  push: {}
stages:
  - name: lint
    uses: shell
    with: { run: "sleep 1; echo lint ok" }
  - name: test
    uses: shell
    with: { run: "echo 'tests are failing'; exit 3" }
  - name: package
    uses: shell
    needs: [test]
    with: { run: "echo packaged > @T@/package-ran" }
  - name: publish
    uses: shell
    needs: [package]
    with: { run: "echo published > @T@/publish-ran" }
  - name: docs
    uses: shell
    needs: [lint]
    with: { run: "echo docs built" }
EOF
write_config
start_agent

push_event "$T/events/push.json" "$c1"
emit_github push "$T/events/push.json" fail-1
run=$(run_of_event fail-1)
wait_run_status "$run" failed 30
j=$(run_json "$run")

say "checking the failing stage"
assert_eq "$(json_get stages.@test.status <<<"$j")" failed "test status"
assert_eq "$(json_get stages.@test.exit_code <<<"$j")" 3 "test exit code"
assert_contains "$(json_get stages.@test.summary <<<"$j")" "3" "test summary"
log=$(dv logs -c "$CFG" "$run" test) || fail "drover logs $run test failed"
assert_contains "$log" "tests are failing" "test log"

say "checking the skipped dependents"
assert_eq "$(json_get stages.@package.status <<<"$j")" skipped "package status"
assert_contains "$(json_get stages.@package.summary <<<"$j")" "test" "package summary"
assert_eq "$(json_get stages.@publish.status <<<"$j")" skipped "publish status"
assert_contains "$(json_get stages.@publish.summary <<<"$j")" "package" "publish summary"
[ ! -e "$T/package-ran" ] || fail "package ran although test failed"
[ ! -e "$T/publish-ran" ] || fail "publish ran although package was skipped"

say "checking the independent branch ran to the end"
assert_eq "$(json_get stages.@lint.status <<<"$j")" succeeded "lint status"
assert_eq "$(json_get stages.@docs.status <<<"$j")" succeeded "docs status"
assert_eq "$(json_get stages.@docs.exit_code <<<"$j")" 0 "docs exit code"
docs_start=$(iso_ms "$(json_get stages.@docs.started_at <<<"$j")")
test_end=$(iso_ms "$(json_get stages.@test.finished_at <<<"$j")")
assert_ge "$docs_start" "$test_end" "docs started_at (ms) vs test finished_at"
run_end=$(iso_ms "$(json_get finished_at <<<"$j")")
docs_end=$(iso_ms "$(json_get stages.@docs.finished_at <<<"$j")")
assert_ge "$run_end" "$docs_end" "run finished_at vs docs finished_at"

out=$(dv runs -c "$CFG" --status failed --json) || fail "drover runs --status failed"
assert_eq "$(json_get 0.id <<<"$out")" "$run" "runs --status failed"
out=$(dv runs -c "$CFG" --status succeeded --json) || fail "drover runs --status succeeded"
assert_eq "$out" "[]" "runs --status succeeded"

stop_agent
