#!/usr/bin/env bash
# Replay of a failed run (`drover replay`, POST /api/v1/runs/{id}/replay).
# A run of build -> qa -> deploy fails at qa (tried twice: one retry)
# until a marker file exists (the "QA cluster" is down); build writes an
# output. Each stage appends to its own counter file, so the counters say
# exactly which stages ran and how often. Proves:
#  - after the marker exists, a replay re-runs only qa and deploy (build's
#    counter stays 1), deploy still sees build's output from attempt 1, it
#    checks out the run's commit although master moved on, and the run
#    ends succeeded with 2 attempts recorded (who, why, which stages), qa's
#    attempts numbered on (1 and 2 failed in the first run attempt; in the
#    replay 3 flakes and its retry 4 succeeds: retries count afresh) with
#    every log kept (`drover logs --attempt N`);
#  - --stage S re-runs exactly S, --stage S --downstream S and its
#    dependents, --all everything (build's output is then replaced);
#  - --latest-pipeline runs today's definition after the file changed and
#    SIGHUP (a plain replay keeps the stored one), refused when a kept stage
#    is gone from it or the pipeline is gone;
#  - a run of a pipeline without checkout replays too (nothing to check);
#  - (real broker) the CDEvents of run attempt 2 are published, their ids
#    carrying the run and stage attempts, and none for build;
#  - refusals: unknown run (404), unknown stage (400), nothing to re-run,
#    a run in progress, and a run whose commit no longer exists in the
#    repository after a force-push and `git gc --prune=now` (409), the
#    run untouched by each.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

c1=$(make_repo hello)
add_repo Codertocat/Hello-World "$(repo_url hello)"
# deliver_pipeline VERSION [WITHOUT_BUILD]: the pipeline under test; deploy
# writes VERSION, so a run shows which definition it ran.
deliver_pipeline()
{
	local version=$1 without_build=${2:-}
	{
		cat <<'EOF'
name: deliver
on:
  push:
    branches: [master]
stages:
EOF
		if [ -z "$without_build" ]; then
			cat <<'EOF'
  - name: build
    uses: shell
    with:
      run: |
        echo "$DROVER_RUN_ID" >> @T@/build.count
        echo "artifact=built-$DROVER_ATTEMPT" >> "$DROVER_OUTPUTS"
EOF
		fi
		cat <<'EOF'
  - name: qa
    uses: shell
EOF
		[ -n "$without_build" ] || echo "    needs: [build]"
		cat <<'EOF'
    retry: { attempts: 1, delay: 100ms }
    with:
      run: |
        echo "$DROVER_RUN_ID" >> @T@/qa.count
        [ -e @T@/qa-up ] || { echo "QA cluster is down"; exit 1; }
        if [ -e @T@/qa-flaky ]; then rm @T@/qa-flaky; echo "QA flaked"; exit 1; fi
        echo "QA passed"
  - name: deploy
    uses: shell
    needs: [qa]
    with:
      run: |
        echo "$DROVER_RUN_ID" >> @T@/deploy.count
        echo "${DROVER_OUTPUT_BUILD_ARTIFACT:-}" > @T@/deploy.saw
        git rev-parse HEAD > @T@/deploy.sha
EOF
		echo "        echo $version > @T@/deploy.version"
		[ -z "$version" ] || [ "$version" = v1 ] || cat <<'EOF'
  - name: notify
    uses: shell
    needs: [deploy]
    with: { run: "echo \"$DROVER_RUN_ID\" >> @T@/notify.count" }
EOF
	} | write_pipeline deliver
}
deliver_pipeline v1
write_pipeline slow <<'EOF'
name: slow
on:
  push:
    branches: [slow]
checkout: false
stages:
  - name: wait
    uses: shell
    with:
      run: |
        for i in $(seq 1 300); do [ -e @T@/release ] && exit 0; sleep 0.1; done
        exit 1
EOF
write_config
start_agent

count()
{
	if [ -e "$T/$1.count" ]; then wc -l <"$T/$1.count" | tr -d ' '; else echo 0; fi
}

# counts: "build qa deploy" as a line.
counts()
{
	echo "$(count build) $(count qa) $(count deploy)"
}

# replay_ok ARGS...: `drover replay ARGS` must succeed; prints its line.
replay_ok()
{
	local out
	out=$(dv replay -c "$CFG" "$@" 2>&1) || fail "drover replay $* failed: $out"
	printf '%s\n' "$out"
}

# replay_refused WANT_TEXT ARGS...: `drover replay ARGS` must exit 1 saying WANT_TEXT.
replay_refused()
{
	local want=$1 rc=0 out
	shift
	out=$(dv replay -c "$CFG" "$@" 2>&1) || rc=$?
	assert_eq "$rc" 1 "exit code of drover replay $*"
	assert_contains "$out" "$want" "drover replay $*"
	printf '%s\n' "$out"
}

# attempt_of RUN: the run's attempt.
attempt_of()
{
	json_get attempt <<<"$(run_json "$1")"
}

# wait_attempt_done RUN N: the run is at attempt N and finished succeeded.
wait_attempt_done()
{
	local run=$1 n=$2 end=$((SECONDS + 30))
	until [ "$(attempt_of "$run")" = "$n" ]; do
		[ "$SECONDS" -lt "$end" ] || fail "run $run is not at attempt $n after 30 s"
		sleep 0.2
	done
	wait_run_status "$run" succeeded 30
}

say "a push: build succeeds, qa fails (QA cluster down), deploy is skipped"
push_event "$T/events/push.json" "$c1"
emit_github push "$T/events/push.json" deliver-1
run=$(run_of_event deliver-1)
wait_run_status "$run" failed 30
j=$(run_json "$run")
assert_eq "$(json_get stages.@build.status <<<"$j")" succeeded "build after attempt 1"
assert_eq "$(json_get stages.@qa.status <<<"$j")" failed "qa after attempt 1"
assert_eq "$(json_get stages.@deploy.status <<<"$j")" skipped "deploy after attempt 1"
assert_eq "$(counts)" "1 2 0" "stage counters (build qa deploy) after attempt 1 (qa retried once)"
assert_eq "$(json_get attempts <<<"$j" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" \
	1 "attempts recorded before any replay"

say "refusals: unknown run (404), unknown stage (400), bad use of the API"
out=$(replay_refused "no run 999999" 999999)
assert_contains "$out" "404" "replay of an unknown run"
out=$(replay_refused "has no stage 'nope'" --stage nope "$run")
assert_contains "$out" "400" "replay of an unknown stage"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$PORT/api/v1/runs/$run/replay")
assert_eq "$code" 405 "status of GET on the replay route"
code=$(curl -s -o "$T/api.out" -w '%{http_code}' --max-time 10 -X POST -d '{"stages": "qa"}' \
	"http://127.0.0.1:$PORT/api/v1/runs/$run/replay")
assert_eq "$code" 400 "status of a replay whose stages are not an array"

say "master moves on; the QA cluster comes back; drover replay --reason"
c2=$(repo_commit hello v2)
assert_ne "$c2" "$c1" "the new head of master"
touch "$T/qa-up" "$T/qa-flaky"
out=$(replay_ok --reason "QA cluster back" "$run")
assert_eq "$out" "run $run: attempt 2 queued, re-running qa, deploy" "drover replay's line"
wait_attempt_done "$run" 2

say "only qa and deploy ran again, with build's output and the run's commit"
assert_eq "$(counts)" "1 4 1" "stage counters (build qa deploy) after the replay"
assert_eq "$(cat "$T/deploy.saw")" built-1 "build's output as deploy saw it"
assert_eq "$(cat "$T/deploy.sha")" "$c1" "commit deploy ran on (the run's, not master's)"
assert_eq "$(cat "$T/deploy.version")" v1 "definition deploy ran with"
j=$(run_json "$run")
assert_eq "$(json_get attempt <<<"$j")" 2 "run attempt"
assert_eq "$(json_get attempts.1.reason <<<"$j")" "QA cluster back" "reason of attempt 2"
assert_eq "$(json_get attempts.1.stages <<<"$j")" '["qa","deploy"]' "stages of attempt 2"
assert_eq "$(json_get attempts.1.mode <<<"$j")" failed "mode of attempt 2"
assert_contains "$(json_get attempts.1.requested_by <<<"$j")" "@" "who asked for attempt 2"
assert_eq "$(json_get attempts.0.mode <<<"$j")" original "mode of attempt 1"
assert_eq "$(json_get stages.@build.attempt <<<"$j")" 1 "build's attempt (kept)"
assert_eq "$(json_get stages.@build.run_attempt <<<"$j")" 1 "run attempt of build's result"
assert_eq "$(json_get stages.@qa.attempt <<<"$j")" 4 "qa's attempt"
assert_eq "$(json_get stages.@qa.run_attempt <<<"$j")" 2 "run attempt of qa's result"
assert_eq "$(python3 -c 'import json,sys; print(" ".join("%d:%s:r%d" % (a["attempt"], a["status"], a["run_attempt"]) for a in json.load(sys.stdin)))' \
	<<<"$(json_get stages.@qa.attempts <<<"$j")")" \
	"1:failed:r1 2:failed:r1 3:failed:r2 4:succeeded:r2" "qa's attempts (number:status:run attempt)"
assert_eq "$(json_get stages.@deploy.attempt <<<"$j")" 1 "deploy's attempt (never started before)"
text=$(dv show -c "$CFG" "$run") || fail "drover show $run failed"
assert_contains "$text" "QA cluster back" "drover show"
assert_contains "$text" "1:failed 2:failed 3:failed 4:succeeded" "drover show (qa's attempts)"
assert_contains "$text" "drover logs $run STAGE --attempt N" "drover show"
log1=$(dv logs -c "$CFG" --attempt 1 "$run" qa) || fail "drover logs --attempt 1 failed"
log3=$(dv logs -c "$CFG" --attempt 3 "$run" qa) || fail "drover logs --attempt 3 failed"
log4=$(dv logs -c "$CFG" --attempt 4 "$run" qa) || fail "drover logs --attempt 4 failed"
assert_contains "$log1" "QA cluster is down" "log of qa attempt 1"
assert_contains "$log3" "QA flaked" "log of qa attempt 3"
assert_contains "$log4" "QA passed" "log of qa attempt 4"
assert_not_contains "$log4" "QA cluster is down" "log of qa attempt 4"

if is_real_kafka; then
	say "the CDEvents of run attempt 2 are on the results topic (ids carry the attempt)"
	want="drover-run-$run-a2-queued drover-run-$run-a2-started drover-run-$run-a2-finished:success"
	want="$want drover-run-$run-qa-a3-finished:failure drover-run-$run-qa-a4-finished:success"
	want="$want drover-run-$run-deploy-a1-finished:success"
	end=$((SECONDS + 30))
	while :; do
		got=$(timeout 20 kcat -b "$KAFKA_BROKERS" -C -t "$RESULTS_TOPIC" -o beginning -e -q \
			-f '%s\n' 2>/dev/null | python3 -c '
import json, sys
seen = set()
for line in sys.stdin:
    try:
        d = json.loads(line)
    except ValueError:
        continue
    c = d.get("data", d)
    i = c.get("context", {}).get("id", "")
    o = c.get("subject", {}).get("content", {}).get("outcome")
    seen.add(i)
    if o:
        seen.add("%s:%s" % (i, o))
want = sys.argv[1].split()
missing = [w for w in want if w not in seen]
again = [i for i in seen if i.startswith("drover-run-%s-build-a2" % sys.argv[2])]
print("missing=%s again=%s" % (",".join(missing), ",".join(again)))
' "$want" "$run" || true)
		[ "$got" = "missing= again=" ] && break
		[ "$SECONDS" -lt "$end" ] || fail "CDEvents of run $run attempt 2 on $RESULTS_TOPIC: $got"
		sleep 0.5
	done
fi

say "nothing failed any more: a plain replay is refused"
replay_refused "nothing to re-run" "$run" >/dev/null

say "--stage deploy re-runs exactly deploy"
out=$(replay_ok --stage deploy "$run")
assert_eq "$out" "run $run: attempt 3 queued, re-running deploy" "drover replay --stage deploy"
wait_attempt_done "$run" 3
assert_eq "$(counts)" "1 4 2" "stage counters after --stage deploy"

say "--stage qa --downstream re-runs qa and deploy"
replay_ok --stage qa --downstream "$run" >/dev/null
wait_attempt_done "$run" 4
assert_eq "$(counts)" "1 5 3" "stage counters after --stage qa --downstream"

say "--all re-runs everything; build's output is replaced"
replay_ok --all "$run" >/dev/null
wait_attempt_done "$run" 5
assert_eq "$(counts)" "2 6 4" "stage counters after --all"
assert_eq "$(cat "$T/deploy.saw")" built-2 "build's output after build ran again"

say "a run in progress is refused"
push_event "$T/events/slow.json" "$c1" refs/heads/slow
emit_github push "$T/events/slow.json" slow-1
slow=$(run_of_event slow-1)
wait_stage_status "$slow" wait running 20
replay_refused "still running" --all "$slow" >/dev/null
touch "$T/release"
wait_run_status "$slow" succeeded 30
say "a pipeline without checkout replays without a commit check"
out=$(replay_ok --all --reason "again" "$slow")
assert_eq "$out" "run $slow: attempt 2 queued, re-running wait" "drover replay of the run without checkout"
wait_attempt_done "$slow" 2

say "the pipeline file changes; SIGHUP; a plain replay keeps the stored definition"
# hup: SIGHUP and wait until the agent reloaded (it logs every pipeline it loaded).
hup()
{
	local before end=$((SECONDS + 20))
	before=$(grep -c "pipelines: loaded slow" "$AGENT_LOG" || true)
	kill -HUP "$AGENT_PID"
	until [ "$(grep -c "pipelines: loaded slow" "$AGENT_LOG" || true)" -gt "$before" ]; do
		[ "$SECONDS" -lt "$end" ] || fail "the agent did not reload its pipelines within 20 s"
		sleep 0.1
	done
}
deliver_pipeline v2
hup
replay_ok --stage deploy "$run" >/dev/null
wait_attempt_done "$run" 6
assert_eq "$(cat "$T/deploy.version")" v1 "definition of a plain replay"
assert_eq "$(count notify)" 0 "runs of the stage only the new definition has"

say "--latest-pipeline runs today's definition (a new stage runs too)"
out=$(replay_ok --latest-pipeline --stage deploy "$run")
assert_eq "$out" "run $run: attempt 7 queued, re-running deploy, notify" "drover replay --latest-pipeline"
wait_attempt_done "$run" 7
assert_eq "$(cat "$T/deploy.version")" v2 "definition of a --latest-pipeline replay"
assert_eq "$(count notify)" 1 "runs of the new stage"
assert_eq "$(counts)" "2 6 6" "stage counters after --latest-pipeline"
j=$(run_json "$run")
assert_eq "$(json_get attempts.6.latest_pipeline <<<"$j")" true "attempt 7 used the latest pipeline"
assert_eq "$(json_get stages.@notify.status <<<"$j")" succeeded "the new stage"

say "--latest-pipeline is refused when a kept stage is gone from it, or the pipeline is"
deliver_pipeline v3 without-build
hup
replay_refused "has no such stage" --latest-pipeline --stage deploy "$run" >/dev/null
rm "$T/pipelines/deliver.yml"
hup
replay_refused "no longer loaded" --latest-pipeline --stage deploy "$run" >/dev/null
deliver_pipeline v2
hup

say "the commit is gone from the repository (force-push, gc): refused, run untouched"
git -C "$T/git/hello" checkout -q --orphan rewritten
printf 'rewritten\n' >"$T/git/hello/data.txt"
git -C "$T/git/hello" add data.txt
git -C "$T/git/hello" commit -q -m "history rewritten"
git -C "$T/git/hello" push -q -f origin HEAD:master
git -C "$T/git/hello.git" reflog expire --expire=now --all
git -C "$T/git/hello.git" gc -q --prune=now
if git -C "$T/git/hello.git" cat-file -e "$c1^{commit}" 2>/dev/null; then
	fail "commit $c1 is still in the origin after the force-push and gc"
fi
out=$(replay_refused "no longer exists" --stage deploy "$run")
assert_contains "$out" "$c1" "the refusal names the commit"
assert_contains "$out" "409" "the refusal's status"
j=$(run_json "$run")
assert_eq "$(json_get attempt <<<"$j")" 7 "run attempt after the refusals"
assert_eq "$(json_get status <<<"$j")" succeeded "run status after the refusals"
assert_eq "$(counts)" "2 6 6" "stage counters after the refusals"

stop_agent
say "ok"
