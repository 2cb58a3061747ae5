#!/usr/bin/env bash
# History survives a restart: after SIGTERM (exit 0) an agent started again
# on the same state_dir lists the same runs with the same statuses. A stage
# still running at the stop is killed after stop_grace and recorded: with no
# retry left it ends in error (never left "running"); with a retry left the
# restarted agent runs it again as a new attempt.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

c1=$(make_repo hello)
add_repo Codertocat/Hello-World "$(repo_url hello)"
write_pipeline ok <<'EOF'
name: ok
on:
  push: { branches: [master] }
stages:
  - name: test
    uses: shell
    with: { run: "echo fine" }
EOF
write_pipeline bad <<'EOF'
name: bad
on:
  push: { branches: [broken] }
stages:
  - name: test
    uses: shell
    with: { run: "echo broken; exit 4" }
  - name: after
    uses: shell
    needs: [test]
    with: { run: "echo never" }
EOF
write_pipeline long <<'EOF'
name: long
on:
  push: { branches: [long] }
stages:
  - name: wait
    uses: shell
    with: { run: "echo $$ > @T@/pids/long.pid; sleep 120" }
EOF
write_pipeline resume <<'EOF'
name: resume
on:
  push: { branches: [resume] }
stages:
  - name: work
    uses: shell
    retry: { attempts: 1, delay: 1s }
    with:
      run: |
        echo "attempt $DROVER_ATTEMPT"
        if [ "$DROVER_ATTEMPT" = 1 ]; then echo $$ > @T@/pids/resume.pid; sleep 120; fi
        echo "finished on attempt $DROVER_ATTEMPT"
  - name: after
    uses: shell
    needs: [work]
    with: { run: "echo after" }
EOF
write_config "stop_grace: 1s" "stage_kill_grace: 1s"
start_agent

for b in master broken long resume; do
	push_event "$T/events/$b.json" "$c1" "refs/heads/$b"
	emit_github push "$T/events/$b.json" "ev-$b"
done
run_ok=$(run_of_event ev-master)
run_bad=$(run_of_event ev-broken)
run_long=$(run_of_event ev-long)
run_resume=$(run_of_event ev-resume)
wait_run_status "$run_ok" succeeded 20
wait_run_status "$run_bad" failed 20
wait_stage_status "$run_long" wait running 20
wait_stage_status "$run_resume" work running 20
wait_file "$T/pids/long.pid"
wait_file "$T/pids/resume.pid"
before=$(runs_json)
table_before=$(dv runs -c "$CFG" --status succeeded)

say "SIGTERM with two stages running (stop_grace 1s)"
stop_agent 20
is_pid_gone "$(cat "$T/pids/long.pid")" || fail "the long stage outlived the agent"
is_pid_gone "$(cat "$T/pids/resume.pid")" || fail "the resume stage outlived the agent"

say "starting again on the same state_dir"
start_agent
after=$(runs_json)
python3 -c '
import json, sys
before = {r["id"]: r for r in json.loads(sys.argv[1])}
after = {r["id"]: r for r in json.loads(sys.argv[2])}
if sorted(before) != sorted(after):
    sys.exit("runs before the restart %s, after %s" % (sorted(before), sorted(after)))
for i, r in before.items():
    for k in ("pipeline", "repo", "sha", "branch", "event_id", "created_at"):
        if r[k] != after[i][k]:
            sys.exit("run %s: %s was %r, is %r after the restart" % (i, k, r[k], after[i][k]))
' "$before" "$after" || fail "the run list changed across the restart"

say "checking finished runs kept their status and stages"
assert_eq "$(dv runs -c "$CFG" --status succeeded | grep -E "^$run_ok ")" \
	"$(grep -E "^$run_ok " <<<"$table_before")" "drover runs line of run $run_ok"
j=$(run_json "$run_ok")
assert_eq "$(json_get status <<<"$j")" succeeded "run $run_ok after the restart"
j=$(run_json "$run_bad")
assert_eq "$(json_get status <<<"$j")" failed "run $run_bad after the restart"
assert_eq "$(json_get stages.@test.exit_code <<<"$j")" 4 "exit code in run $run_bad after the restart"
assert_eq "$(json_get stages.@after.status <<<"$j")" skipped "skipped stage in run $run_bad after the restart"
log=$(dv logs -c "$CFG" "$run_bad" test) || fail "drover logs of run $run_bad after the restart"
assert_contains "$log" "broken" "log of run $run_bad after the restart"

say "checking the stage killed at the stop is recorded, not left running"
wait_run_status "$run_long" error 20
j=$(run_json "$run_long")
assert_eq "$(json_get stages.@wait.status <<<"$j")" error "stage killed at the stop"
assert_ne "$(json_get stages.@wait.finished_at <<<"$j")" null "finished_at of the stage killed at the stop"

say "checking the stage with a retry left runs again as attempt 2"
wait_run_status "$run_resume" succeeded 20
j=$(run_json "$run_resume")
assert_eq "$(json_get stages.@work.attempt <<<"$j")" 2 "attempt of the resumed stage"
assert_eq "$(json_get stages.@after.status <<<"$j")" succeeded "stage after the resumed one"
log=$(dv logs -c "$CFG" "$run_resume" work) || fail "drover logs $run_resume work failed"
assert_contains "$log" "finished on attempt 2" "log of attempt 2"

stop_agent
