#!/usr/bin/env bash
# The files a run leaves (README, Pipelines): everything of a run is in
# state_dir/logs/<run>/ — event.json ($DROVER_EVENT_FILE), one log per
# attempt, checkout.log, and an outputs file only for the stage that wrote
# one — and there is no state_dir/runs/. A `checkout: false` run gets an
# empty workspace that, left empty, goes to workspaces/.free/ and is the
# next run's workspace (the same inode), also after a restart of the agent;
# a checkout is removed after a success. How: two push events, each starting
# a checkout:false pipeline (stage a records its workspace's inode and
# entries, b writes an output, c reads it) and a checkout pipeline; the
# agent is restarted between them.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

c1=$(make_repo hello)
add_repo Codertocat/Hello-World "$(repo_url hello)"
write_pipeline plain <<'EOF2'
name: plain
on:
  push: {}
checkout: false
stages:
  - name: a
    uses: shell
    with:
      run: |
        test "$PWD" = "$DROVER_WORKSPACE"
        stat -c %i . >> @T@/inodes
        ls -A | wc -l >> @T@/entries
        grep -c '"sha"' "$DROVER_EVENT_FILE" > /dev/null
        echo "a saw $DROVER_EVENT_FILE"
  - name: b
    uses: shell
    needs: [a]
    with: { run: 'echo k=v$DROVER_RUN_ID >> "$DROVER_OUTPUTS"' }
  - name: c
    uses: shell
    needs: [b]
    with: { run: 'echo "$DROVER_OUTPUT_B_K" >> @T@/c.out' }
EOF2
write_pipeline build <<'EOF2'
name: build
on:
  push: {}
stages:
  - name: build
    uses: shell
    with: { run: 'test -d .git && echo built' }
EOF2
write_config
start_agent

# one_event N: emits push event N and waits for both its runs to succeed;
# sets PLAIN and BUILD to their ids.
one_event()
{
	push_event "$T/events/push$1.json" "$c1"
	emit_github push "$T/events/push$1.json" "files-$1"
	PLAIN=$(run_of_event "files-$1" plain)
	BUILD=$(run_of_event "files-$1" build)
	wait_run_status "$PLAIN" succeeded 30
	wait_run_status "$BUILD" succeeded 30
}

one_event 1
say "checking run $PLAIN's files"
names=$(cd "$STATE_DIR/logs/$PLAIN" && ls -A | tr '\n' ' ')
assert_eq "$names" "a.1.log b.1.env b.1.log c.1.log event.json " "files in logs/$PLAIN"
[ ! -e "$STATE_DIR/runs" ] || fail "state_dir/runs exists: $(ls "$STATE_DIR/runs" | head -3)"
assert_contains "$(dv logs -c "$CFG" "$PLAIN" a)" "a saw $STATE_DIR/logs/$PLAIN/event.json" \
	"the event file named in stage a's log"
assert_eq "$(cat "$T/c.out")" "v$PLAIN" "the output stage c read"
assert_eq "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sha"])' \
	"$STATE_DIR/logs/$PLAIN/event.json")" "$c1" "sha in event.json"
say "checking run $BUILD's files and the workspaces"
names=$(cd "$STATE_DIR/logs/$BUILD" && ls -A | tr '\n' ' ')
assert_eq "$names" "build.1.log checkout.log event.json " "files in logs/$BUILD"
assert_eq "$(cd "$STATE_DIR/workspaces" && ls -A | tr '\n' ' ')" ".free " "workspaces/ after run 1"
assert_eq "$(ls -A "$STATE_DIR/workspaces/.free" | wc -l)" 1 "directories in the pool"

stop_agent
start_agent
one_event 2
say "checking run $PLAIN got the pooled workspace"
mapfile -t inodes <"$T/inodes"
mapfile -t entries <"$T/entries"
assert_eq "${#inodes[@]}" 2 "stage a runs"
assert_eq "${inodes[1]}" "${inodes[0]}" "inode of run $PLAIN's workspace (run 1's: ${inodes[0]})"
assert_eq "${entries[0]} ${entries[1]}" "0 0" "entries in the workspaces when stage a started"
assert_eq "$(cd "$STATE_DIR/workspaces" && ls -A | tr '\n' ' ')" ".free " "workspaces/ after run 2"
say "ok"
