#!/usr/bin/env bash
# A stage over its timeout ends timed_out within timeout + stage_kill_grace
# (plus a little), and its whole process tree goes with it: a grandchild
# sleeping in the background and one that ignores SIGTERM (so only SIGKILL
# after the grace period ends it).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

c1=$(make_repo hello)
add_repo Codertocat/Hello-World "$(repo_url hello)"
write_pipeline slow <<'EOF'
name: slow
on:
  push: {}
stages:
  - name: hang
    uses: shell
    timeout: 2s
    with:
      run: |
        echo $$ > @T@/pids/stage.pid
        sh -c 'sleep 300 & echo $! > @T@/pids/grandchild.pid; wait'  &
        sh -c 'trap "" TERM; sleep 301 & echo $! > @T@/pids/stubborn.pid; wait' &
        sleep 302
  - name: after
    uses: shell
    needs: [hang]
    with: { run: "echo should not run" }
EOF
write_config "stage_kill_grace: 1s"
start_agent

push_event "$T/events/push.json" "$c1"
emit_github push "$T/events/push.json" slow-1
run=$(run_of_event slow-1)
wait_file "$T/pids/stage.pid"
wait_file "$T/pids/grandchild.pid"
wait_file "$T/pids/stubborn.pid"
stage_pid=$(cat "$T/pids/stage.pid")
gc_pid=$(cat "$T/pids/grandchild.pid")
stubborn_pid=$(cat "$T/pids/stubborn.pid")
say "stage pid $stage_pid, grandchildren $gc_pid and $stubborn_pid (ignores SIGTERM)"
t0=$SECONDS

say "checking the run ends timed_out within a few seconds"
wait_run_status "$run" timed_out 12
elapsed=$((SECONDS - t0))
say "ended after ~${elapsed}s"
j=$(run_json "$run")
assert_eq "$(json_get stages.@hang.status <<<"$j")" timed_out "hang status"
assert_eq "$(json_get stages.@after.status <<<"$j")" skipped "after status"
start=$(iso_ms "$(json_get stages.@hang.started_at <<<"$j")")
end=$(iso_ms "$(json_get stages.@hang.finished_at <<<"$j")")
dur=$((end - start))
say "hang ran ${dur} ms (timeout 2 s, kill grace 1 s)"
assert_ge "$dur" 1900 "hang duration (ms)"
[ "$dur" -le 6000 ] || fail "hang took $dur ms to end, more than timeout 2s + grace 1s + 3s"

say "checking the whole process tree is gone"
wait_pid_gone "$stage_pid" 3
wait_pid_gone "$gc_pid" 3
wait_pid_gone "$stubborn_pid" 3
log=$(dv logs -c "$CFG" "$run" hang) || fail "drover logs $run hang failed"
assert_contains "$log" "timed out" "hang log"

stop_agent
