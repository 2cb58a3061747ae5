#!/usr/bin/env bash
# Hostile input. Branch names, commit messages and event ids with $(...),
# backticks, quotes, a newline, an option-like name and a 10 KB name reach
# stages only as data: nothing is executed, each run records the branch byte
# for byte, and the agent log stays one line per message. Also: a body over
# max_event_bytes is dead-lettered, an event of a repository not in repos:
# is refused without a run, and a pipeline file with a YAML syntax error is
# reported with file:line while the good pipelines load and run.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

M=/tmp/pwned-$$-$RANDOM # every payload tries to create a file named $M-*
if compgen -G "$M-*" >/dev/null; then
	fail "marker files $M-* exist before the test"
fi
msg=$'release $(touch '"$M"$'-msg)\n\n`touch '"$M"$'-msgtick` "quoted" \'single\' \\ back\\slash'

c1=$(make_repo hello)
c2=$(repo_commit hello v2 "$msg")
add_repo Codertocat/Hello-World "$(repo_url hello)"
write_pipeline hostile <<'EOF'
name: hostile
on:
  push: {}
concurrency: { group: "b-{branch}", cancel_in_progress: true }
stages:
  - name: build
    uses: shell
    with:
      run: |
        printf '%s' "$DROVER_BRANCH" > "@T@/out/$DROVER_RUN_ID.branch"
        echo "building branch: $DROVER_BRANCH"
        echo "commit message: $(git log -1 --format=%B)"
        sleep 1
EOF
write_pipeline strict <<'EOF'
name: strict
on:
  push: { branches: [master] }
stages:
  - name: only-master
    uses: shell
    with: { run: "echo master" }
EOF
# A YAML syntax error on line 8, next to the good pipelines.
cat >"$T/pipelines/broken.yml" <<'EOF'
name: broken
on:
  push: {}
stages:
  - name: a
    uses: shell
    with: { run: echo }
  - name: b: c
    uses: shell
EOF
mkdir -p "$T/out" "$T/expect"
ADMIN_EXTRA=("max_body_bytes: 1MiB")
write_config "max_event_bytes: 64KiB"
start_agent DROVER_LOG_LEVEL=debug

say "checking the broken pipeline file is reported with file:line and the others load"
grep -q 'broken.yml:8:' "$AGENT_LOG" || fail "the agent log does not name broken.yml:8"
grep -q 'pipelines: loaded hostile' "$AGENT_LOG" || fail "pipeline hostile did not load"
grep -q 'pipelines: loaded strict' "$AGENT_LOG" || fail "pipeline strict did not load"
assert_eq "$(metric drover_pipelines_refused_total)" 1 "drover_pipelines_refused_total"

long=$(head -c 10240 /dev/zero | tr '\0' a)
declare -A branch=(
	[subst]='$(touch '"$M"'-subst)'
	[tick]='`touch '"$M"'-tick`'
	[newline]=$'line1\nline2 $(touch '"$M"$'-nl)\n2026-01-01T00:00:00.000Z INFO  forged line'
	[long]="$long"'$(touch '"$M"'-long)'
	[option]='--upload-pack=touch '"$M"'-opt'
	[quotes]='x; touch '"$M"'-semi; "dq" '\''sq'\'' \ bs & | > '"$M"'-redir'
	[dots]='../../../../../../tmp/pwned-'"$$"'-dots'
)
ids=()
for k in "${!branch[@]}"; do
	printf '%s' "${branch[$k]}" >"$T/expect/h-$k"
	json_edit "$GITHUB_FIXTURES/push.with-new-branch.payload.json" "$T/events/h-$k.json" '
d["after"] = a[0]
d["ref"] = "refs/heads/" + a[1]
d["created"] = False
d["before"] = "1" * 40
d["head_commit"]["id"] = a[0]
d["head_commit"]["message"] = a[2]
for c in d["commits"]:
    c["id"] = a[0]
    c["message"] = a[2]
' "$c2" "${branch[$k]}" "$msg"
	ids+=("h-$k")
done
say "sending ${#ids[@]} pushes with hostile branch names"
for id in "${ids[@]}"; do
	emit_github push "$T/events/$id.json" "$id"
done
# The same hostile branch again (its group supersedes the first run), with a
# hostile event id.
cp "$T/expect/h-newline" "$T/expect/h-newline-again"
hostile_id='id-$(touch${IFS}'"$M"'-id)-`id`;ls>'"$M"'-idredir'
emit_github push "$T/events/h-newline.json" "$hostile_id"

say "checking every run recorded the branch byte for byte"
for id in "${ids[@]}"; do
	run=$(run_of_event "$id" hostile)
	st=$(wait_run_done "$run" 30)
	j=$(run_json "$run")
	[ "$id" = h-newline ] && [ "$st" = cancelled ] && continue # superseded: fine
	assert_eq "$st" succeeded "status of run $run ($id)"
	python3 -c '
import json, sys
run = json.loads(sys.argv[1])
want = open(sys.argv[2], "rb").read().decode()
got = open(sys.argv[3], "rb").read().decode()
if run["branch"] != want:
    sys.exit("recorded branch %r..., want %r..." % (run["branch"][:80], want[:80]))
if got != want:
    sys.exit("DROVER_BRANCH %r..., want %r..." % (got[:80], want[:80]))
' "$j" "$T/expect/$id" "$T/out/$run.branch" || fail "run $run ($id) did not keep its branch"
done
run=$(run_of_event "$hostile_id" hostile)
wait_run_status "$run" succeeded 30
cmp -s "$T/out/$run.branch" "$T/expect/h-newline" || fail "run $run: DROVER_BRANCH differs"
log=$(dv logs -c "$CFG" "$run" build) || fail "drover logs $run build failed"
assert_contains "$log" "touch $M-msg" "build log (the commit message, printed as text)"
if dv runs -c "$CFG" --json | grep -q '"strict"'; then
	fail "pipeline strict (branches: [master]) ran for a hostile branch"
fi
# At debug level intake logs why a pipeline did not start (that reason is
# formatted only when it is logged).
grep -q "pipeline strict: push: branch '.*' matches none of \[master\]" "$AGENT_LOG" ||
	fail "the debug log does not say why pipeline strict did not match"

say "a body over max_event_bytes (64 KiB) is dead-lettered"
json_edit "$T/events/h-subst.json" "$T/events/big.json" 'd["padding"] = "x" * 100000'
emit_github push "$T/events/big.json" big-1
wait_metric drover_events_too_large_total 1 20
assert_eq "$(metric drover_events_dead_lettered_total)" 1 "dead letters"
grep -q 'dead-lettered (too_large)' "$AGENT_LOG" || fail "no 'dead-lettered (too_large)' in the log"

say "an event of a repository not in repos: is refused, no run"
push_event "$T/events/other.json" "$c1" refs/heads/master evil/other
emit_github push "$T/events/other.json" other-1
wait_metric drover_events_refused_total 1 20
grep -q "repository 'evil/other' is not configured" "$AGENT_LOG" || fail "no refusal in the log"
out=$(runs_json)
python3 -c '
import json, sys
runs = json.loads(sys.argv[1])
bad = [r["id"] for r in runs if r["event_id"] in ("big-1", "other-1") or r["repo"] == "evil/other"]
if bad:
    sys.exit("runs %s were started for refused events" % bad)
' "$out" || fail "a refused event started a run"
wait_metric drover_outbox_depth 0 20

say "checking nothing was executed"
if compgen -G "$M*" >/dev/null; then
	fail "hostile input was executed: $(ls -d "$M"*)"
fi
[ ! -e "/tmp/pwned-$$-dots" ] || fail "a path from a branch name was written to"

say "checking the agent log is one line per message"
python3 -c '
import re, sys
pat = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO |WARN |ERROR) ")
bad = [(n, l) for n, l in enumerate(open(sys.argv[1], "rb").read().decode("utf-8", "replace").split("\n"), 1)
       if l and not pat.match(l)]
for n, l in bad[:10]:
    print("line %d: %r" % (n, l[:200]))
sys.exit(1 if bad else 0)
' "$AGENT_LOG" || fail "the agent log has lines that do not start with a timestamp and level"
grep -q 'forged line' "$AGENT_LOG" && ! grep -q '\\nline2' "$AGENT_LOG" &&
	fail "the newline branch reached the log without being escaped"

stop_agent
