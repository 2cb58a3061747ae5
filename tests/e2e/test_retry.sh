#!/usr/bin/env bash
# retry {attempts: 2, delay: 1s}: a stage that fails on attempts 1 and 2 and
# passes on attempt 3 ends succeeded with attempt 3; every attempt keeps its
# own log; the retries wait their delay (1 s, then 2 s with the default
# backoff). A stage that fails on every attempt ends failed after 3 attempts.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

c1=$(make_repo hello)
add_repo Codertocat/Hello-World "$(repo_url hello)"
write_pipeline flaky <<'EOF'
name: flaky
on:
  push: {}
stages:
  - name: flaky
    uses: shell
    retry: { attempts: 2, delay: 1s }
    with:
      run: |
        echo "attempt $DROVER_ATTEMPT at $(date +%s%N)"
        date +%s%N >> @T@/attempts
        [ "$DROVER_ATTEMPT" -ge 3 ] || { echo "failing on purpose"; exit 1; }
        echo "passing at last"
  - name: after
    uses: shell
    needs: [flaky]
    with: { run: "echo after ran" }
EOF
write_pipeline hopeless <<'EOF'
name: hopeless
on:
  push: {}
stages:
  - name: never
    uses: shell
    retry: { attempts: 2, delay: 1s, backoff: 1 }
    with: { run: "echo attempt $DROVER_ATTEMPT; exit 7" }
EOF
write_config
start_agent

push_event "$T/events/push.json" "$c1"
emit_github push "$T/events/push.json" retry-1
run=$(run_of_event retry-1 flaky)
run_hopeless=$(run_of_event retry-1 hopeless)
wait_run_status "$run" succeeded 30

say "checking the flaky stage succeeded on attempt 3"
j=$(run_json "$run")
assert_eq "$(json_get stages.@flaky.status <<<"$j")" succeeded "flaky status"
assert_eq "$(json_get stages.@flaky.attempt <<<"$j")" 3 "flaky attempt"
assert_eq "$(json_get stages.@flaky.exit_code <<<"$j")" 0 "flaky exit code"
assert_eq "$(json_get stages.@after.status <<<"$j")" succeeded "after status"
assert_eq "$(wc -l <"$T/attempts" | tr -d ' ')" 3 "attempts made"

say "checking each attempt has its own log"
for a in 1 2 3; do
	log=$(dv logs -c "$CFG" "$run" flaky --attempt "$a") || fail "drover logs --attempt $a failed"
	assert_contains "$log" "attempt $a at" "log of attempt $a"
	[ -f "$T/state/logs/$run/flaky.$a.log" ] || fail "no state/logs/$run/flaky.$a.log"
done
log=$(dv logs -c "$CFG" "$run" flaky --attempt 1)
assert_contains "$log" "failing on purpose" "log of attempt 1"
log=$(dv logs -c "$CFG" "$run" flaky)
assert_contains "$log" "passing at last" "log of the latest attempt"

say "checking the retry delays"
mapfile -t at <"$T/attempts"
gap1=$(((at[1] - at[0]) / 1000000))
gap2=$(((at[2] - at[1]) / 1000000))
say "gaps between attempts: ${gap1} ms, ${gap2} ms"
assert_ge "$gap1" 900 "delay before retry 1 (ms)"
assert_ge "$gap2" 1900 "delay before retry 2 (ms, backoff 2)"

say "checking a stage failing on every attempt ends failed after 3"
wait_run_status "$run_hopeless" failed 30
j=$(run_json "$run_hopeless")
assert_eq "$(json_get stages.@never.status <<<"$j")" failed "never status"
assert_eq "$(json_get stages.@never.attempt <<<"$j")" 3 "never attempt"
assert_eq "$(json_get stages.@never.exit_code <<<"$j")" 7 "never exit code"
if dv logs -c "$CFG" "$run_hopeless" never --attempt 4 >/dev/null 2>&1; then
	fail "a fourth attempt of 'never' has a log"
fi

stop_agent
