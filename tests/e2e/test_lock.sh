#!/usr/bin/env bash
# lock: "deploy": one run holds the lock at a time. A second push while the
# first run deploys waits queued (its stages do not start) until the first
# run finished; then it runs: its first stage starts no earlier than the
# first run's finished_at. A pipeline without the lock is not held back.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

c1=$(make_repo hello)
c2=$(repo_commit hello v2)
add_repo Codertocat/Hello-World "$(repo_url hello)"
write_pipeline deploy <<'EOF'
name: deploy
on:
  push: { branches: [master] }
lock: deploy
stages:
  - name: deploy
    uses: shell
    with:
      run: |
        echo "deploying $DROVER_SHA"
        echo "start $DROVER_RUN_ID" >> @T@/deploys
        sleep 3
        echo "end $DROVER_RUN_ID" >> @T@/deploys
  - name: smoke
    uses: shell
    needs: [deploy]
    with: { run: "echo smoke test $DROVER_SHA" }
EOF
write_pipeline notify <<'EOF'
name: notify
on:
  push: { branches: [master] }
stages:
  - name: say
    uses: shell
    with: { run: "echo push of $DROVER_SHA" }
EOF
write_config
start_agent

say "two pushes in a row"
push_event "$T/events/push1.json" "$c1"
push_event "$T/events/push2.json" "$c2"
emit_github push "$T/events/push1.json" lock-1
run1=$(run_of_event lock-1 deploy)
wait_stage_status "$run1" deploy running 20
emit_github push "$T/events/push2.json" lock-2
run2=$(run_of_event lock-2 deploy)

say "checking run $run2 waits queued while run $run1 holds the lock"
notify2=$(run_of_event lock-2 notify)
wait_run_status "$notify2" succeeded 20
checked=0
for _ in 1 2 3 4 5; do
	# run2 is read first: when run1 still runs after that, run2 had to wait then.
	j2=$(run_json "$run2")
	j1=$(run_json "$run1")
	[ "$(json_get status <<<"$j1")" = running ] || break
	checked=$((checked + 1))
	assert_eq "$(json_get status <<<"$j2")" queued "status of run $run2 while run $run1 runs"
	assert_eq "$(json_get stages.@deploy.status <<<"$j2")" queued "deploy of run $run2 while run $run1 runs"
	assert_eq "$(json_get stages.@deploy.started_at <<<"$j2")" null "deploy start of run $run2 while run $run1 runs"
	sleep 0.3
done
assert_ge "$checked" 1 "times run $run2 was seen waiting while run $run1 ran"

wait_run_status "$run1" succeeded 20
wait_run_status "$run2" succeeded 20

say "checking the order"
j1=$(run_json "$run1")
j2=$(run_json "$run2")
end1=$(iso_ms "$(json_get finished_at <<<"$j1")")
start2=$(iso_ms "$(json_get stages.@deploy.started_at <<<"$j2")")
assert_ge "$start2" "$end1" "run $run2's first stage started_at vs run $run1's finished_at (ms)"
assert_eq "$(tr '\n' ' ' <"$T/deploys")" "start $run1 end $run1 start $run2 end $run2 " "order of deploys"
assert_eq "$(json_get sha <<<"$j2")" "$c2" "sha of run $run2"

stop_agent
