#!/usr/bin/env bash
# `drover validate` and `drover plan` work offline (no agent): validate
# exits 0 on good files and directories, 1 on bad ones, naming file:line of
# every error; plan says which pipelines and stages an event would start,
# and why a pipeline does not match.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

write_pipeline release <<'EOF'
name: release
on:
  push: { branches: [master, "release/*"] }
lock: "deploy-{repo}"
stages:
  - name: test
    uses: shell
    with: { run: "echo test" }
  - name: deploy
    uses: shell
    needs: [test]
    with: { run: "echo deploy" }
  - name: train
    uses: shell
    needs: [deploy]
    with: { run: "echo train" }
EOF
write_pipeline pr <<'EOF'
name: pr
on:
  pull_request: { branches: [master] }
stages:
  - name: unit
    uses: shell
    with: { run: "echo unit" }
EOF
mkdir -p "$T/bad"
# A YAML syntax error on line 8.
cat >"$T/bad/syntax.yml" <<'EOF'
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
# Valid YAML, wrong pipeline: an unknown plugin (line 6), an unknown need
# (line 7), a bad duration (line 8), an unknown key (line 10).
cat >"$T/bad/semantic.yml" <<'EOF'
name: semantic
on:
  push: {}
stages:
  - name: a
    uses: nosuchplugin
    needs: [zzz]
    timeout: 5 parsecs
    with: { run: "echo" }
    colour: blue
EOF
write_config

say "validate: good files and the directory"
out=$(dv validate -c "$CFG" "$T/pipelines/release.yml") || fail "validate of a good file failed: $out"
assert_contains "$out" "ok" "validate output"
out=$(dv validate -c "$CFG" "$T/pipelines") || fail "validate of a good directory failed: $out"
assert_contains "$out" "2 pipelines" "validate output for the directory"

say "validate: a YAML syntax error names its line"
rc=0
out=$(dv validate -c "$CFG" "$T/bad/syntax.yml" 2>&1) || rc=$?
assert_eq "$rc" 1 "exit code of validate on a syntax error"
assert_contains "$out" "syntax.yml:8:" "validate output"

say "validate: every semantic error names its line"
rc=0
out=$(dv validate -c "$CFG" "$T/bad/semantic.yml" 2>&1) || rc=$?
assert_eq "$rc" 1 "exit code of validate on a bad pipeline"
for l in 6 7 8 10; do
	assert_contains "$out" "semantic.yml:$l:" "validate output"
done
assert_contains "$out" "nosuchplugin" "validate output"
assert_contains "$out" "zzz" "validate output"
assert_contains "$out" "colour" "validate output"

say "validate: a good and a bad file together fail, naming only the bad one"
rc=0
out=$(dv validate -c "$CFG" "$T/pipelines/pr.yml" "$T/bad/syntax.yml" 2>&1) || rc=$?
assert_eq "$rc" 1 "exit code of validate on good + bad"
assert_contains "$out" "syntax.yml:8:" "validate output"
assert_not_contains "$out" "pr.yml:" "validate output"
rc=0
out=$(dv validate -c "$CFG" "$T/no/such/file.yml" 2>&1) || rc=$?
assert_eq "$rc" 1 "exit code of validate on a missing file"

say "plan: a push to master starts release, in stage order"
sha=6113728f27ae82c7b1a177c8d03f9e96e0adf246
push_event "$T/events/master.json" "$sha" refs/heads/master
out=$(dv plan -c "$CFG" --github-event push "$T/events/master.json") || fail "plan failed: $out"
assert_contains "$out" "pipeline release: would start" "plan output"
assert_contains "$out" "pipeline pr: no match" "plan output"
assert_contains "$out" "$sha" "plan output"
order=$(awk '$1 == "test" || $1 == "deploy" || $1 == "train" { printf "%s ", $1 }' <<<"$out")
assert_eq "$order" "test deploy train " "stage order in the plan"
json=$(dv plan -c "$CFG" --github-event push --json "$T/events/master.json") || fail "plan --json failed"
python3 -c '
import json, sys
d = json.loads(sys.argv[1])
p = {x["name"]: x for x in d["pipelines"]}
assert p["release"]["matched"] is True, p
assert [s["name"] for s in p["release"]["stages"]] == ["test", "deploy", "train"], p
assert p["pr"]["matched"] is False and p["pr"]["why"], p
assert d["event"]["sha"] == sys.argv[2], d["event"]
' "$json" "$sha" || fail "plan --json is not as expected:"$'\n'"$json"

say "plan: a push to another branch starts nothing, and says why"
push_event "$T/events/feature.json" "$sha" refs/heads/feature/x
rc=0
out=$(dv plan -c "$CFG" --github-event push "$T/events/feature.json") || rc=$?
assert_eq "$rc" 0 "exit code of plan without a match"
assert_contains "$out" "pipeline release: no match" "plan output"
assert_contains "$out" "feature/x" "plan output (the reason names the branch)"
assert_contains "$out" "nothing would run" "plan output"

say "plan: a pull request matches pr"
pr_event "$T/events/pr.json" opened 3 "$sha"
out=$(dv plan -c "$CFG" --github-event pull_request "$T/events/pr.json") || fail "plan of a PR failed"
assert_contains "$out" "pipeline pr: would start" "plan output"
assert_contains "$out" "pipeline release: no match" "plan output"

say "plan: an event it cannot read"
printf 'not json' >"$T/events/bad.json"
rc=0
out=$(dv plan -c "$CFG" --github-event push "$T/events/bad.json" 2>&1) || rc=$?
assert_eq "$rc" 1 "exit code of plan on a malformed event"
assert_contains "$out" "malformed" "plan output"
