#!/usr/bin/env bash
# `drover logs -f` and GET .../log?follow=1 with the real binary. Proves:
# (a) the stream is live: a stage prints "line 1" and waits for a marker;
#     the follower shows "line 1" while the stage still waits, gets the rest
#     once the marker exists, exits 0 when the attempt ends, and its output
#     is the stored log byte for byte (the agent's last "[drover] ... succeeded"
#     line included); a follower of a stage that has not started yet waits
#     for it and gets its whole log too;
# (c) the follower cap: with admin.max_log_followers 2 and two followers, a
#     third gets 503 (the CLI exits 1 saying so), counted on /metrics;
# (d) following a finished stage gives its whole log and ends;
# (e) --attempt N follows an older attempt (a stage that failed once);
# (b) a slow client: a Python client opens a follow, sends 16 MiB of junk
#     after its request, and reads nothing while a stage writes 32 MiB of
#     log; the agent's VmRSS stays within 8 MiB of what it was (a follower
#     holds one 64 KiB chunk and 16 KiB of what its client sends; one that
#     buffered the log or the junk would hold most of 32 or 16 MiB, which
#     this test was seen to catch), /healthz keeps
#     answering meanwhile, the follower is counted while the client stalls,
#     and when the client goes away the agent frees it (gauge back to 0);
# (f) Ctrl-C stops `drover logs -f` (and the agent frees the follower); an
#     agent stopped while a client follows a stage that never started
#     exits 0 (nothing leaked under ASan) and the client exits 1.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# A stage of the talk pipeline: "line 1", then waits for $T/marker (60 s at most).
write_pipeline talk <<'EOF2'
name: talk
on:
  push: { branches: [talk] }
checkout: false
stages:
  - name: talk
    uses: shell
    with:
      run: |
        echo "line 1"
        i=0
        while [ ! -e @T@/marker ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
        echo "line 2"
        seq 1 60000
        echo "last line"
  - name: after
    uses: shell
    needs: [talk]
    with: { run: "echo after ran; seq 1 3000" }
EOF2
write_pipeline flaky <<'EOF2'
name: flaky
on:
  push: { branches: [flaky] }
checkout: false
stages:
  - name: flaky
    uses: shell
    retry: { attempts: 1, delay: 100ms }
    with:
      run: |
        echo "output of attempt $DROVER_ATTEMPT"
        [ "$DROVER_ATTEMPT" -ge 2 ] || exit 3
EOF2
# 32 MiB of log in lines of 4096 bytes, once $T/flood-go exists.
write_pipeline flood <<'EOF2'
name: flood
on:
  push: { branches: [flood] }
checkout: false
stages:
  - name: flood
    uses: shell
    timeout: 5m
    with:
      run: |
        echo "waiting for flood-go"
        i=0
        while [ ! -e @T@/flood-go ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
        head -c 33554432 /dev/zero | tr '\0' x | fold -w 4095
        echo "flood done"
EOF2
# A stage that waits for ever, and one after it that never starts.
write_pipeline hold <<'EOF2'
name: hold
on:
  push: { branches: [hold] }
checkout: false
stages:
  - name: hold
    uses: shell
    with: { run: "while :; do sleep 0.1; done" }
  - name: next
    uses: shell
    needs: [hold]
    with: { run: "echo next" }
EOF2
ADMIN_EXTRA=("max_log_followers: 2")
write_config "max_log_bytes: 64MiB" "stop_grace: 1s"
# Under ASan, freed memory waits in a quarantine (256 MB by default) that
# would count in VmRSS; keep it small so that the bound measures drover.
start_agent ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=1"

start_run()
{
	push_event "$T/events/$1.json" "$(printf '%040d' "$2")" "refs/heads/$1"
	emit_github push "$T/events/$1.json" "follow-$1"
	run_of_event "follow-$1" "$1"
}

# wait_contains FILE TEXT [TIMEOUT]: until FILE holds TEXT.
wait_contains()
{
	local file=$1 text=$2 timeout=${3:-20} end
	end=$((SECONDS + timeout))
	until grep -qF -- "$text" "$file" 2>/dev/null; do
		[ "$SECONDS" -lt "$end" ] || fail "$file has no '$text' after $timeout s: $(head -c 300 "$file")"
		sleep 0.1
	done
}

# wait_exit PID WHAT [TIMEOUT]: waits for a background job; its exit code in EXIT_CODE.
wait_exit()
{
	local pid=$1 what=$2 timeout=${3:-30} end
	end=$((SECONDS + timeout))
	while kill -0 "$pid" 2>/dev/null; do
		[ "$SECONDS" -lt "$end" ] || fail "$what still runs after $timeout s"
		sleep 0.1
	done
	EXIT_CODE=0
	wait "$pid" || EXIT_CODE=$?
}

say "(a) a run whose stage prints 'line 1', then waits for a marker"
run=$(start_run talk 1)
wait_stage_status "$run" talk running 20
dv logs -c "$CFG" -f "$run" talk >"$T/talk.out" 2>"$T/talk.err" &
talk_pid=$!
EXTRA_PIDS+=("$talk_pid")
say "a follower of stage after, which has not started yet"
dv logs -c "$CFG" --follow "$run" after >"$T/after.out" 2>"$T/after.err" &
after_pid=$!
EXTRA_PIDS+=("$after_pid")
wait_contains "$T/talk.out" "line 1"
kill -0 "$talk_pid" 2>/dev/null || fail "the follower exited while the stage still waits: $(cat "$T/talk.err")"
assert_eq "$(json_get stages.@talk.status <<<"$(run_json "$run")")" running "stage talk while 'line 1' is shown"
assert_not_contains "$(cat "$T/talk.out")" "line 2" "the follower's output before the marker"
wait_metric drover_log_followers 2

say "(c) a third follower is refused (max_log_followers 2): 503, counted"
assert_eq "$(metric drover_log_followers_refused_total)" 0 "refused followers before"
rc=0
out=$(dv logs -c "$CFG" -f "$run" talk 2>&1) || rc=$?
assert_eq "$rc" 1 "exit code of a follower over the cap"
assert_contains "$out" "HTTP 503" "drover logs -f over the cap"
assert_contains "$out" "max_log_followers" "drover logs -f over the cap"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
	"http://127.0.0.1:$PORT/api/v1/runs/$run/stages/talk/log?follow=1" || true)
assert_eq "$code" 503 "HTTP status of a follow over the cap"
assert_eq "$(metric drover_log_followers_refused_total)" 2 "refused followers after two refusals"
[ ! -s "$T/after.out" ] || fail "the follower of a stage not started has output: $(head -c 200 "$T/after.out")"

say "the marker: the stage goes on and ends, both followers end"
touch "$T/marker"
wait_exit "$talk_pid" "drover logs -f (talk)"
assert_eq "$EXIT_CODE" 0 "exit code of the talk follower"
wait_exit "$after_pid" "drover logs -f (after)"
assert_eq "$EXIT_CODE" 0 "exit code of the after follower"
wait_run_status "$run" succeeded 30
cmp "$T/talk.out" "$STATE_DIR/logs/$run/talk.1.log" ||
	fail "the followed talk log differs from the stored one"
cmp "$T/after.out" "$STATE_DIR/logs/$run/after.1.log" ||
	fail "the followed after log differs from the stored one"
tail -n 1 "$T/talk.out" | grep -q "attempt 1 succeeded" ||
	fail "the followed log lacks the agent's last line: $(tail -n 1 "$T/talk.out")"
say "followed $(wc -c <"$T/talk.out") and $(wc -c <"$T/after.out") bytes"
wait_metric drover_log_followers 0

say "(d) following a finished stage gives the whole log and ends"
dv logs -c "$CFG" -f "$run" talk >"$T/done.out" || fail "drover logs -f of a finished stage failed"
cmp "$T/done.out" "$STATE_DIR/logs/$run/talk.1.log" || fail "the finished stage's followed log differs"
rc=0
out=$(dv logs -c "$CFG" -f "$run" nosuch 2>&1) || rc=$?
assert_eq "$rc" 1 "exit code of following an unknown stage"
assert_contains "$out" "has no stage 'nosuch'" "drover logs -f of an unknown stage"
rc=0
out=$(dv logs -c "$CFG" -f --attempt 2 "$run" talk 2>&1) || rc=$?
assert_eq "$rc" 1 "exit code of following an attempt that will never run"
assert_contains "$out" "no attempt 2" "drover logs -f --attempt 2 of a finished stage"

say "(e) --attempt 1 follows the older attempt of a stage retried once"
frun=$(start_run flaky 2)
wait_run_status "$frun" succeeded 30
dv logs -c "$CFG" -f --attempt 1 "$frun" flaky >"$T/flaky.1.out" || fail "drover logs -f --attempt 1 failed"
cmp "$T/flaky.1.out" "$STATE_DIR/logs/$frun/flaky.1.log" || fail "attempt 1's followed log differs"
assert_contains "$(cat "$T/flaky.1.out")" "output of attempt 1" "followed attempt 1"
assert_not_contains "$(cat "$T/flaky.1.out")" "output of attempt 2" "followed attempt 1"
dv logs -c "$CFG" -f "$frun" flaky >"$T/flaky.cur.out" || fail "drover logs -f (current attempt) failed"
assert_contains "$(cat "$T/flaky.cur.out")" "output of attempt 2" "followed current attempt"

say "(b) a client that reads nothing while a stage writes 32 MiB"
brun=$(start_run flood 3)
wait_stage_status "$brun" flood running 20
agent_rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$AGENT_PID/status"; }
rss0=$(agent_rss)
python3 - "$PORT" "$brun" "$T" >"$T/slow.out" 2>&1 <<'PY' &
import os, socket, sys, time
port, run, tdir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", port))
s.sendall(("GET /api/v1/runs/%s/stages/flood/log?follow=1 HTTP/1.1\r\nHost: x\r\n\r\n" % run).encode())
got = b""
while b"\r\n\r\n" not in got:
    data = s.recv(1024)
    if not data:
        sys.exit("the agent closed the connection before its answer's headers")
    got += data
print(got.split(b"\r\n")[0].decode(), flush=True)
# Sends 16 MiB of junk the agent has no use for, as far as it takes it (3 s
# at most); the agent must not keep what it reads of it.
s.setblocking(False)
junk, sent, end = b"j" * 65536, 0, time.time() + 3
while sent < 16 << 20 and time.time() < end:
    try:
        sent += s.send(junk)
    except BlockingIOError:
        time.sleep(0.05)
print("junk sent: %d bytes" % sent, flush=True)
# Reads nothing more until told to leave.
while not os.path.exists(os.path.join(tdir, "slow-leave")):
    time.sleep(0.1)
os._exit(0)
PY
slow_pid=$!
EXTRA_PIDS+=("$slow_pid")
wait_contains "$T/slow.out" "HTTP/1.1 200"
wait_contains "$T/slow.out" "junk sent"
wait_metric drover_log_followers 1
touch "$T/flood-go"
log=$STATE_DIR/logs/$brun/flood.1.log
peak=$rss0
answered=0
end=$((SECONDS + 120))
while ! grep -q "flood done" "$log" 2>/dev/null; do
	[ "$SECONDS" -lt "$end" ] || fail "the flood stage did not finish writing within 120 s ($(stat -c %s "$log") bytes)"
	h=$(curl -s --max-time 20 "http://127.0.0.1:$PORT/healthz" || true)
	assert_contains "$h" '"status"' "/healthz while the slow client stalls"
	answered=$((answered + 1))
	r=$(agent_rss)
	[ "$r" -le "$peak" ] || peak=$r
	sleep 0.2
done
wait_run_status "$brun" succeeded 60
r=$(agent_rss)
[ "$r" -le "$peak" ] || peak=$r
size=$(stat -c %s "$log")
say "log $size bytes; agent VmRSS $rss0 kB before, peak $peak kB; /healthz answered $answered times; $(tail -n 1 "$T/slow.out")"
assert_ge "$size" 33554432 "bytes of the flood log"
[ $((peak - rss0)) -le 8192 ] || fail "the agent's VmRSS grew by $((peak - rss0)) kB (more than 8192) while the client stalled"
assert_eq "$(metric drover_log_followers)" 1 "followers while the slow client stalls"
say "the agent answers other requests while the client stalls with 32 MiB to take"
for i in 1 2 3 4 5; do
	h=$(curl -s --max-time 20 "http://127.0.0.1:$PORT/healthz" || true)
	assert_contains "$h" '"status"' "/healthz while the slow client stalls"
done
assert_eq "$(json_get status <<<"$(run_json "$brun")")" succeeded "drover show of the flood run"

say "the slow client goes away: the agent frees its follower"
touch "$T/slow-leave"
wait_exit "$slow_pid" "the slow client"
assert_eq "$EXIT_CODE" 0 "exit code of the slow client"
wait_metric drover_log_followers 0 20
grep -q "follower of run $brun stage flood attempt 1 left" "$AGENT_LOG" ||
	fail "the agent log does not say the slow follower left"

say "(f) a run whose first stage runs for ever"
hrun=$(start_run hold 4)
wait_stage_status "$hrun" hold running 20
say "Ctrl-C stops drover logs -f; the agent frees its follower"
# (a background job of a script starts with SIGINT ignored; a terminal's is not)
env --default-signal=INT "$DROVER_BIN" logs -c "$CFG" -f "$hrun" hold >"$T/hold.out" 2>"$T/hold.err" &
hold_pid=$!
EXTRA_PIDS+=("$hold_pid")
wait_contains "$T/hold.out" "stage hold attempt 1"
wait_metric drover_log_followers 1
kill -INT "$hold_pid"
wait_exit "$hold_pid" "drover logs -f after SIGINT" 10
assert_eq "$EXIT_CODE" 130 "exit code of drover logs -f after SIGINT"
wait_metric drover_log_followers 0
say "the agent stops while a client follows a stage that has not started"
dv logs -c "$CFG" -f "$hrun" next >"$T/next.out" 2>"$T/next.err" &
next_pid=$!
EXTRA_PIDS+=("$next_pid")
wait_metric drover_log_followers 1
stop_agent
wait_exit "$next_pid" "drover logs -f of a stage of a stopped agent"
assert_eq "$EXIT_CODE" 1 "exit code of a follower whose agent stopped"
assert_contains "$(cat "$T/next.err")" "the agent's answer broke off" "the follower's error when the agent stopped"
grep -q "dropping 1 log follower" "$AGENT_LOG" || fail "the agent log does not say it dropped the follower"
