#!/usr/bin/env bash
# A push event becomes a run that checks out exactly the pushed commit (not
# the branch tip), gives its stages the DROVER_* environment and the event
# file, passes outputs from one stage to the next, and shows up in
# `drover runs`, `drover show` and `drover logs` (text and --json). A second
# push to the same repository fetches into the repository cache instead of
# cloning again.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

c1=$(make_repo hello)
c2=$(repo_commit hello v2) # the branch tip moves on: the run must still build c1
add_repo Codertocat/Hello-World "$(repo_url hello)"
write_pipeline build <<'EOF'
name: build
on:
  push: { branches: [master] }
stages:
  - name: build
    uses: shell
    with:
      run: |
        echo "HEAD=$(git rev-parse HEAD)"
        echo "DATA=$(cat data.txt)"
        echo "DROVER_SHA=$DROVER_SHA"
        echo "DROVER_BRANCH=$DROVER_BRANCH"
        echo "DROVER_REPO=$DROVER_REPO"
        echo "DROVER_PIPELINE=$DROVER_PIPELINE"
        echo "DROVER_STAGE=$DROVER_STAGE"
        echo "DROVER_ATTEMPT=$DROVER_ATTEMPT"
        echo "DROVER_RUN_ID=$DROVER_RUN_ID"
        echo "DROVER_EVENT_KIND=$DROVER_EVENT_KIND"
        echo "DROVER_EVENT_ACTION=$DROVER_EVENT_ACTION"
        echo "CWD_IS_WORKSPACE=$([ "$(pwd -P)" = "$(cd "$DROVER_WORKSPACE" && pwd -P)" ] && echo yes || echo no)"
        python3 -c 'import json, os; e = json.load(open(os.environ["DROVER_EVENT_FILE"])); print("EVENT_FILE=" + e["kind"] + " " + e["repo"] + " " + e["sha"] + " " + e["branch"])'
        echo "greeting=hello from build" >> "$DROVER_OUTPUTS"
        echo "built_sha=$(git rev-parse HEAD)" >> "$DROVER_OUTPUTS"
  - name: report
    uses: shell
    needs: [build]
    with:
      run: |
        echo "GOT_GREETING=$DROVER_OUTPUT_BUILD_GREETING"
        echo "GOT_SHA=$DROVER_OUTPUT_BUILD_BUILT_SHA"
EOF
write_config
start_agent

say "push of $c1 (branch tip is already $c2)"
push_event "$T/events/push1.json" "$c1"
emit_github push "$T/events/push1.json" delivery-1
run1=$(run_of_event delivery-1)
wait_run_status "$run1" succeeded 30

say "checking the run record (drover show --json)"
j=$(run_json "$run1")
assert_eq "$(json_get pipeline <<<"$j")" build "pipeline"
assert_eq "$(json_get repo <<<"$j")" Codertocat/Hello-World "repo"
assert_eq "$(json_get sha <<<"$j")" "$c1" "sha"
assert_eq "$(json_get branch <<<"$j")" master "branch"
assert_eq "$(json_get event_id <<<"$j")" delivery-1 "event_id"
assert_eq "$(json_get event_kind <<<"$j")" push "event_kind"
assert_eq "$(json_get stages.0.name <<<"$j")" build "first stage"
assert_eq "$(json_get stages.@build.status <<<"$j")" succeeded "build status"
assert_eq "$(json_get stages.@build.exit_code <<<"$j")" 0 "build exit code"
assert_eq "$(json_get stages.@build.attempt <<<"$j")" 1 "build attempt"
assert_eq "$(json_get stages.@report.status <<<"$j")" succeeded "report status"
assert_ne "$(json_get created_at <<<"$j")" null "created_at"
assert_ne "$(json_get finished_at <<<"$j")" null "finished_at"

say "checking the checkout and the stage environment (drover logs)"
log=$(dv logs -c "$CFG" "$run1" build) || fail "drover logs $run1 build failed"
assert_contains "$log" "HEAD=$c1" "build log (checked-out commit)"
assert_contains "$log" "DATA=v1" "build log (file from the repository)"
assert_contains "$log" "DROVER_SHA=$c1" "build log"
assert_contains "$log" "DROVER_BRANCH=master" "build log"
assert_contains "$log" "DROVER_REPO=Codertocat/Hello-World" "build log"
assert_contains "$log" "DROVER_PIPELINE=build" "build log"
assert_contains "$log" "DROVER_STAGE=build" "build log"
assert_contains "$log" "DROVER_ATTEMPT=1" "build log"
assert_contains "$log" "DROVER_RUN_ID=$run1" "build log"
assert_contains "$log" "DROVER_EVENT_KIND=push" "build log"
assert_contains "$log" "DROVER_EVENT_ACTION=pushed" "build log"
assert_contains "$log" "CWD_IS_WORKSPACE=yes" "build log"
assert_contains "$log" "EVENT_FILE=push Codertocat/Hello-World $c1 master" "build log (DROVER_EVENT_FILE)"
[ -f "$T/state/logs/$run1/build.1.log" ] || fail "no log file state/logs/$run1/build.1.log"

say "checking outputs passed from build to report"
log=$(dv logs -c "$CFG" "$run1" report) || fail "drover logs $run1 report failed"
assert_contains "$log" "GOT_GREETING=hello from build" "report log"
assert_contains "$log" "GOT_SHA=$c1" "report log"

say "checking the first checkout cloned"
checkout1=$(cat "$T/state/logs/$run1/checkout.log")
assert_contains "$checkout1" "cloning" "checkout log of run $run1"

say "checking drover runs / show text output"
out=$(dv runs -c "$CFG") || fail "drover runs failed"
assert_contains "$out" "ID" "drover runs header"
line=$(grep -E "^$run1 " <<<"$out") || fail "drover runs has no line for run $run1:"$'\n'"$out"
assert_contains "$line" "build" "drover runs line"
assert_contains "$line" "succeeded" "drover runs line"
assert_contains "$line" "Codertocat/Hello-World" "drover runs line"
assert_contains "$line" "master" "drover runs line"
out=$(runs_json)
assert_eq "$(json_get 0.id <<<"$out")" "$run1" "drover runs --json id"
assert_eq "$(json_get 0.status <<<"$out")" succeeded "drover runs --json status"
out=$(dv show -c "$CFG" "$run1") || fail "drover show failed"
assert_contains "$out" "$c1" "drover show"
assert_contains "$out" "succeeded" "drover show"
grep -Eq '^build +succeeded' <<<"$out" || fail "drover show has no 'build succeeded' stage row:"$'\n'"$out"
grep -Eq '^report +succeeded' <<<"$out" || fail "drover show has no 'report succeeded' stage row:"$'\n'"$out"
if dv show -c "$CFG" 999999 >/dev/null 2>&1; then
	fail "drover show of a run that does not exist succeeded"
fi
if dv logs -c "$CFG" "$run1" nosuchstage >/dev/null 2>&1; then
	fail "drover logs of a stage that does not exist succeeded"
fi

say "a second push (a commit the cache has not seen) fetches, not clones"
c3=$(repo_commit hello v3)
push_event "$T/events/push2.json" "$c3"
emit_github push "$T/events/push2.json" delivery-2
run2=$(run_of_event delivery-2)
assert_ne "$run2" "$run1" "second run id"
wait_run_status "$run2" succeeded 30
log=$(dv logs -c "$CFG" "$run2" build) || fail "drover logs $run2 build failed"
assert_contains "$log" "HEAD=$c3" "build log of run $run2"
assert_contains "$log" "DATA=v3" "build log of run $run2"
checkout2=$(cat "$T/state/logs/$run2/checkout.log")
assert_contains "$checkout2" "fetching" "checkout log of run $run2"
assert_not_contains "$checkout2" "cloning" "checkout log of run $run2"
n=$(runs_json | json_get "" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
assert_eq "$n" 2 "number of runs"

stop_agent
