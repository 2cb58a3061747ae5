#!/usr/bin/env bash
# demo: sets everything up and runs drover on its embedded default, with a
# sample event flowing through it.
#
#   packaging/demo.sh          install deps, build, start the agent, send a push; the
#                              agent keeps running in the foreground (Ctrl-C stops it)
#   packaging/demo.sh --once   the same, but stop the agent when the run is over
#
# The agent runs with no -c: the embedded default (kafka.brokers: embedded,
# pipelines ./pipelines, plugins ./build/plugins, state ./state, admin on
# 127.0.0.1:8470). The sample event is GitHub's push fixture, pointed at a
# local git repository made from examples/ (a small deploy-code ML project),
# so the release pipeline deploys its job specs, trains, validates, promotes.
set -euo pipefail
cd "$(dirname "$0")/.."

is_once=false
[ "${1:-}" = "--once" ] && is_once=true

packaging/install-deps.sh
gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
cmake -S . -B build "${gen[@]}" >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)" --target drover drover_plugins
drover=build/drover

# The project the event is about: examples/, committed to a local repository.
demo=state/demo
rm -rf "$demo/ml-project"
mkdir -p "$demo"
cp -r examples "$demo/ml-project"
git -C "$demo/ml-project" init -q -b master
git -C "$demo/ml-project" add -A
git -C "$demo/ml-project" -c user.name=demo -c user.email=demo@example.com \
	commit -q -m "Train a better model"
sha=$(git -C "$demo/ml-project" rev-parse HEAD)
repo_path=$(cd "$demo/ml-project" && pwd)

python3 - "$repo_path" "$sha" "$demo/push.json" <<'PY'
import json, subprocess, sys
repo, sha, out = sys.argv[1:]
body = json.load(open("tests/fixtures/github/push.with-new-branch.payload.json"))
files = subprocess.run(["git", "-C", repo, "ls-files"], capture_output=True, text=True,
                       check=True).stdout.split()
body["after"] = sha
body["repository"]["clone_url"] = repo
body["head_commit"]["id"] = sha
body["head_commit"]["added"] = files
body["commits"] = [dict(body["head_commit"])]
json.dump(body, open(out, "w"), indent=1)
PY

"$drover" agent &
agent=$!
trap 'kill -TERM $agent 2>/dev/null || true; wait $agent 2>/dev/null || true' EXIT

echo "demo: waiting for the agent to join its consumer group..." >&2
for _ in $(seq 1 60); do
	if curl -sf http://127.0.0.1:8470/healthz 2>/dev/null | grep -q '"kafka_assigned": *true'; then
		break
	fi
	sleep 0.5
done

event_id="demo-$(date +%s)"
echo "demo: sending a GitHub push for $sha" >&2
"$drover" emit --github-event push --id "$event_id" "$demo/push.json"

run=""
for _ in $(seq 1 240); do
	run=$("$drover" runs --json | python3 -c '
import json, sys
runs = [r for r in json.load(sys.stdin) if r["event_id"] == sys.argv[1]]
print(runs[0]["id"] if runs else "")' "$event_id")
	if [ -n "$run" ]; then
		status=$("$drover" show "$run" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
		case "$status" in queued | running) ;; *) break ;; esac
	fi
	sleep 0.5
done
echo >&2
"$drover" runs
echo >&2
"$drover" show "$run"
echo >&2
echo "demo: the train stage's log (drover logs $run train):" >&2
"$drover" logs "$run" train
if $is_once; then
	exit 0
fi
echo >&2
echo "demo: the agent keeps running; try: $drover runs, $drover show $run, $drover logs $run promote" >&2
echo "demo: Ctrl-C stops it" >&2
trap - EXIT
wait $agent
