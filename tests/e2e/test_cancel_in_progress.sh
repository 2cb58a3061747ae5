#!/usr/bin/env bash
# concurrency {group: "pr-{repo}-{pr}", cancel_in_progress: true}: a newer
# event for the same pull request cancels the run still going for the older
# one (its stage process is killed, the run ends cancelled), and the newer
# run starts only after the older one ended, then succeeds. A run for another
# pull request is not touched.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

make_repo hello >/dev/null
# The pull request's head commits live on a feature branch of the repository.
c_slow=$(repo_commit hello slow "first version" feature)
c_fast=$(repo_commit hello fast "second version" feature)
add_repo Codertocat/Hello-World "$(repo_url hello)"
write_pipeline pr <<'EOF'
name: pr
on:
  pull_request: { branches: [master], actions: [opened, synchronize, reopened] }
concurrency: { group: "pr-{repo}-{pr}", cancel_in_progress: true }
stages:
  - name: unit
    uses: shell
    timeout: 2m
    with:
      run: |
        echo "testing $(cat data.txt) of pull request $DROVER_PR at $DROVER_SHA"
        if [ "$(cat data.txt)" = slow ]; then
          sleep 120 &
          echo $! > @T@/pids/slow-$DROVER_PR.pid
          wait
        fi
        echo "pull request $DROVER_PR done"
  - name: integration
    uses: shell
    needs: [unit]
    with: { run: "echo integration of $DROVER_PR" }
EOF
write_config "stage_kill_grace: 2s" "stop_grace: 2s"
start_agent

say "pull request 2 synchronize at $c_slow: a long run"
pr_event "$T/events/pr-a.json" synchronize 2 "$c_slow"
emit_github pull_request "$T/events/pr-a.json" pr-2-a
run_a=$(run_of_event pr-2-a)
wait_stage_status "$run_a" unit running 20
wait_file "$T/pids/slow-2.pid"
slow_pid=$(cat "$T/pids/slow-2.pid")

say "pull request 7 (another group) at $c_slow: must not be cancelled"
pr_event "$T/events/pr-other.json" opened 7 "$c_slow"
emit_github pull_request "$T/events/pr-other.json" pr-7-a
run_other=$(run_of_event pr-7-a)
wait_stage_status "$run_other" unit running 20
wait_file "$T/pids/slow-7.pid"

say "pull request 2 synchronize at $c_fast: cancels run $run_a"
pr_event "$T/events/pr-b.json" synchronize 2 "$c_fast"
emit_github pull_request "$T/events/pr-b.json" pr-2-b
run_b=$(run_of_event pr-2-b)
assert_ne "$run_b" "$run_a" "second run id"
wait_run_status "$run_a" cancelled 15
wait_run_status "$run_b" succeeded 20

say "checking the cancelled run"
ja=$(run_json "$run_a")
assert_eq "$(json_get stages.@unit.status <<<"$ja")" cancelled "unit of the cancelled run"
assert_eq "$(json_get stages.@integration.status <<<"$ja")" cancelled "integration of the cancelled run"
assert_contains "$(json_get stages.@unit.summary <<<"$ja")$(json_get stages.@integration.summary <<<"$ja")" "$run_b" \
	"summaries of the cancelled run (naming the run that superseded it)"
wait_pid_gone "$slow_pid" 5

say "checking the newer run"
jb=$(run_json "$run_b")
assert_eq "$(json_get sha <<<"$jb")" "$c_fast" "sha of the newer run"
assert_eq "$(json_get stages.@unit.status <<<"$jb")" succeeded "unit of the newer run"
assert_eq "$(json_get stages.@integration.status <<<"$jb")" succeeded "integration of the newer run"
log=$(dv logs -c "$CFG" "$run_b" unit) || fail "drover logs $run_b unit failed"
assert_contains "$log" "testing fast of pull request 2 at $c_fast" "unit log of the newer run"
b_start=$(iso_ms "$(json_get stages.@unit.started_at <<<"$jb")")
a_end=$(iso_ms "$(json_get finished_at <<<"$ja")")
assert_ge "$b_start" "$a_end" "newer run's first stage start vs the cancelled run's end (ms)"

say "checking the other pull request's run still runs"
jo=$(run_json "$run_other")
assert_eq "$(json_get status <<<"$jo")" running "run of pull request 7"
assert_eq "$(json_get stages.@unit.status <<<"$jo")" running "unit of pull request 7"
other_pid=$(cat "$T/pids/slow-7.pid")
is_pid_gone "$other_pid" && fail "the sleep of pull request 7 was killed"

say "stop: the still-running stage is killed after stop_grace"
stop_agent 15
is_pid_gone "$other_pid" || fail "the stage of pull request 7 outlived the agent"
