#!/usr/bin/env bash
# Poison records never stop the intake and reach the dead-letter topic as
# they came (DESIGN §3 "Anything else is sent to the dead-letter topic with
# an x-drover-error header, and the offset moves on"; §4 "Bad input of any
# kind gets a clear error and a counter, never a crash").
#
# kcat writes raw records to ONE partition of the events topic, good ones
# (GitHub pushes with their headers, and a structured CloudEvent with no
# key and no headers at all, known by its body) interleaved with bad ones:
# malformed JSON (with invalid UTF-8 and control bytes), a NUL byte in the
# body, a GitHub event type drover does not handle, a body over
# max_event_bytes (16 KiB here: GitHub's push fixture is 8 KB), a record
# with no headers and no key whose body has no known shape, an
# x-github-event header that is not UTF-8, a binary key (a zero byte first,
# as Confluent's serializers write it), a null value (tombstone), and a
# body of about 1 MB (over max_event_bytes, and over what a librdkafka
# producer takes by default). The bad records carry X-GitHub-Event /
# X-GitHub-Delivery headers plus custom ones: binary bytes, an empty value,
# a null value, a repeated name. The test asserts that
#  - every good record runs, also those after the bad ones (same partition,
#    so the offset really moved past each bad record);
#  - each bad record is on the dead-letter topic exactly once with the
#    original value bytes (or null), the original key (or null) and the
#    original headers in order, plus an x-drover-error header naming the
#    problem; compared byte for byte;
#  - the counters (received, accepted, malformed, unknown, too large, dead
#    lettered) match, no run started for a bad record, the outbox drains.
# Then, with the agent's producer limited to 100 kB (kafka.properties), a
# 200 kB bad record: its dead letter cannot be published as it came, so it
# goes without its value (x-drover-value-omitted says why) instead of
# holding up every result behind it; the next good record still runs.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_real_kafka

CASES=$T/cases
MANIFEST=$CASES/manifest.jsonl
mkdir -p "$CASES"
n_good=0
n_bad=0
GOOD_IDS=() # event ids of the good records

# kcat_produce FILE|- [KCAT OPTION...]: one record to partition 0 of the
# events topic; FILE is its value, "-" a null value.
kcat_produce()
{
	local file=$1 out
	shift
	if [ "$file" = - ]; then
		# An empty line with -Z is a null value.
		out=$(printf '\n' | kcat -b "$KAFKA_BROKERS" -P -t "$EVENTS_TOPIC" -p 0 -Z \
			-X message.max.bytes=1048576 "$@" 2>&1) || fail "kcat produce: $out"
	else
		out=$(kcat -b "$KAFKA_BROKERS" -P -t "$EVENTS_TOPIC" -p 0 \
			-X message.max.bytes=1048576 "$@" "$file" 2>&1) || fail "kcat produce: $out"
	fi
}

# good_record: a push to master (delivery poison-good-N), keyed by the repo.
good_record()
{
	n_good=$((n_good + 1))
	push_event "$CASES/good-$n_good.json" "$sha"
	kcat_produce "$CASES/good-$n_good.json" -k Codertocat/Hello-World \
		-H X-GitHub-Event=push -H "X-GitHub-Delivery=poison-good-$n_good"
	GOOD_IDS+=("poison-good-$n_good")
}

# good_cloudevent: a structured CloudEvent (com.github.push) with no key and
# no headers at all: the body alone says what it is (event id poison-ce-N).
good_cloudevent()
{
	n_good=$((n_good + 1))
	json_edit "$DROVER_FIXTURES/events/cloudevent.github.push.json" "$CASES/good-$n_good.json" \
		'd["id"] = a[0]' "poison-ce-$n_good"
	kcat_produce "$CASES/good-$n_good.json"
	GOOD_IDS+=("poison-ce-$n_good")
}

# bad_record NAME ERROR KEY|- VALUE_FILE|- [HEADER...]: produces one bad
# record (key "-": none, "@FILE": the bytes of FILE; value "-": null; HEADER as kcat -H takes it:
# "name=value", or "name" for a null value) and notes in the manifest what
# its dead letter must be. ERROR is a part of the x-drover-error expected.
# With IS_OMITTED=1 the dead letter is expected without its value (too
# large for the agent's producer) and with an x-drover-value-omitted header.
bad_record()
{
	local name=$1 error=$2 key=$3 value=$4 h
	shift 4
	local opts=()
	[ "$key" = - ] || opts+=(-k "$key")
	for h in "$@"; do
		opts+=(-H "$h")
	done
	local out
	if [ "${key:0:1}" = @ ]; then
		# Key bytes from a file (any bytes but tab and newline): one
		# "key<TAB>value" line, so the value must be one line too.
		out=$({ cat "${key:1}" && printf '\t' && cat "$value" && printf '\n'; } |
			kcat -b "$KAFKA_BROKERS" -P -t "$EVENTS_TOPIC" -p 0 -K '\t' \
				"${opts[@]:2}" 2>&1) || fail "kcat produce: $out"
	elif [ "$value" = - ] && [ "$key" != - ]; then
		# Null value with a key: "key<TAB>" with -K.
		out=$(printf '%s\t\n' "$key" | kcat -b "$KAFKA_BROKERS" -P -t "$EVENTS_TOPIC" \
			-p 0 -Z -K '\t' "${opts[@]:2}" 2>&1) || fail "kcat produce: $out"
	else
		kcat_produce "$value" "${opts[@]}"
	fi
	n_bad=$((n_bad + 1))
	python3 - "$MANIFEST" "${IS_OMITTED:-}" "$name" "$error" "$key" "$value" "$@" <<'EOF'
import base64, json, os, sys
def b64(b):
    return None if b is None else base64.b64encode(b).decode()
manifest, omitted, name, error, key, value, *headers = [os.fsencode(a) for a in sys.argv[1:]]
hs = []
for h in headers:
    n, eq, v = h.partition(b"=")
    hs.append([b64(n), b64(v) if eq else None])
rec = {
    "name": name.decode(), "error": error.decode(),
    "key": None if key == b"-" else b64(open(key[1:], "rb").read()) if key[:1] == b"@" else b64(key),
    "value": None if value == b"-" else b64(open(value, "rb").read()),
    "headers": hs,
    "omitted": bool(omitted),
}
with open(manifest, "a") as f:
    f.write(json.dumps(rec) + "\n")
EOF
}

# check_dead_letters: the dead-letter topic holds exactly one dead letter per
# bad record of the manifest, equal to it byte for byte (value, key, headers
# in order) plus x-drover-error (and x-drover-value-omitted, value null,
# where the manifest says so).
check_dead_letters()
{
	timeout 60 kcat -b "$KAFKA_BROKERS" -C -t "$DEAD_LETTER_TOPIC" -o beginning -e -J -q \
		-X fetch.message.max.bytes=2097152 >"$T/dead.jsonl" 2>"$T/kcat.err" ||
		fail "reading $DEAD_LETTER_TOPIC: $(cat "$T/kcat.err")"
	python3 - "$MANIFEST" "$T/dead.jsonl" <<'EOF' || fail "the dead letters are not the original records"
import base64, json, sys

def raw(s):
    # kcat -J writes bytes that are not UTF-8 as they are: read them back exactly.
    return None if s is None else s.encode("utf-8", "surrogateescape")

def b64d(s):
    return None if s is None else base64.b64decode(s)

want = [json.loads(l) for l in open(sys.argv[1])]
got = [json.loads(l.decode("utf-8", "surrogateescape"))
       for l in open(sys.argv[2], "rb") if l.strip()]
problems = []
if len(got) != len(want):
    problems.append("%d dead letters on the topic, %d bad records produced" % (len(got), len(want)))

def delivery_of(headers):
    return next((v for n, v in headers if n == b"X-GitHub-Delivery"), None)

by_delivery = {}
for rec in got:
    h = rec["headers"] or []
    rec["pairs"] = [(raw(h[i]), raw(h[i + 1])) for i in range(0, len(h), 2)]
    by_delivery.setdefault(delivery_of(rec["pairs"]), []).append(rec)
for w in want:
    hs = [(b64d(n), b64d(v)) for n, v in w["headers"]]
    recs = by_delivery.get(delivery_of(hs), [])
    if len(recs) != 1:
        problems.append("%s: %d dead letters" % (w["name"], len(recs)))
        continue
    rec = recs[0]
    value = None if w["omitted"] else b64d(w["value"])
    if raw(rec["payload"]) != value:
        v = raw(rec["payload"])
        problems.append("%s: value differs (%s bytes, want %s)" % (
            w["name"], None if v is None else len(v), None if value is None else len(value)))
    if raw(rec["key"]) != b64d(w["key"]):
        problems.append("%s: key %r, want %r" % (w["name"], raw(rec["key"]), b64d(w["key"])))
    extra = rec["pairs"][len(hs):]
    names = [b"x-drover-error"] + ([b"x-drover-value-omitted"] if w["omitted"] else [])
    if rec["pairs"][:len(hs)] != hs or [n for n, v in extra] != names:
        problems.append("%s: headers %r, want %r + %r" % (w["name"], rec["pairs"], hs, names))
        continue
    error = extra[0][1]
    if error is None or w["error"].encode() not in error:
        problems.append("%s: x-drover-error is %r, not about %r" % (w["name"], error, w["error"]))
        continue
    print("%-12s x-drover-error: %s" % (w["name"], error.decode()))
    if w["omitted"]:
        print("%-12s x-drover-value-omitted: %s" % (w["name"], extra[1][1].decode()))
if problems:
    sys.exit("\n".join(problems))
EOF
}

sha=$(printf 'c%.0s' $(seq 40))
write_pipeline ci <<'EOF'
name: ci
on:
  push: { branches: [master] }
checkout: false
stages:
  - name: test
    uses: shell
    with: { run: "echo testing $DROVER_SHA" }
EOF
write_config "max_event_bytes: 16KiB"
kafka_topic "$DEAD_LETTER_TOPIC" 1
start_agent
assert_eq "$(metric drover_events_dead_lettered_total)" 0 "dead letters at start"

say "... producing good and bad records, interleaved, to partition 0"
bin=$(printf 'a\001\377\376\200,=z\303\251')
good_record
printf '{"ref": "refs/heads/master", \377\376 "after": oops\n\001\177' >"$CASES/bad-json"
bad_record bad-json "payload is not valid JSON" k-bad-json "$CASES/bad-json" \
	X-GitHub-Event=push X-GitHub-Delivery=poison-bad-json "x-bin=$bin" x-empty= x-null \
	x-dup=1 x-dup=2
good_record
printf '{"ref": "refs/heads/master", "x": "a\000b"}' >"$CASES/nul"
bad_record nul "payload has a NUL byte" "$bin" "$CASES/nul" \
	X-GitHub-Event=push X-GitHub-Delivery=poison-nul "x-bin=$bin"
json_edit "$GITHUB_FIXTURES/push.with-new-branch.payload.json" "$CASES/issues" \
	'd["action"] = "opened"; d["issue"] = {"number": 1}'
bad_record issues 'event "issues" is not handled' k-issues "$CASES/issues" \
	X-GitHub-Event=issues X-GitHub-Delivery=poison-issues
good_record
push_event "$CASES/large" "$sha"
json_edit "$CASES/large" "$CASES/large" 'd["padding"] = "p" * 20000'
bad_record too-large "over the limit of 16384" k-large "$CASES/large" \
	X-GitHub-Event=push X-GitHub-Delivery=poison-large "x-bin=$bin"
printf '{"hello": "world"}' >"$CASES/no-headers"
bad_record no-headers "no known source" - "$CASES/no-headers"
good_cloudevent
push_event "$CASES/header-utf8" "$sha"
bad_record header-utf8 "header x-github-event is not valid UTF-8" k-header-utf8 \
	"$CASES/header-utf8" "X-GitHub-Event=$(printf 'pu\377sh')" X-GitHub-Delivery=poison-utf8
good_record
# A key as Confluent's serializers write it: a zero magic byte, a schema id.
printf '\000\000\000\000\052repo' >"$CASES/binary-key.key"
printf 'not json' >"$CASES/binary-key"
bad_record binary-key "payload is not valid JSON" "@$CASES/binary-key.key" "$CASES/binary-key" \
	X-GitHub-Event=push X-GitHub-Delivery=poison-binary-key
bad_record tombstone "payload is empty" k-tombstone - \
	X-GitHub-Event=push X-GitHub-Delivery=poison-tombstone
head -c 1000100 /dev/zero | tr '\0' 'x' >"$CASES/huge"
bad_record huge "over the limit of 16384" k-huge "$CASES/huge" \
	X-GitHub-Event=push X-GitHub-Delivery=poison-huge
good_record
n_total=$((n_good + n_bad))

say "... waiting for the $n_good good records to run and the $n_bad bad ones to be dead-lettered"
wait_metric drover_events_received_total "$n_total" 60
for id in "${GOOD_IDS[@]}"; do
	run=$(run_of_event "$id" ci 30)
	wait_run_status "$run" succeeded 30
done
wait_metric drover_events_dead_lettered_total "$n_bad" 30
assert_eq "$(metric drover_events_accepted_total)" "$n_good" "events accepted"
assert_eq "$(metric drover_events_malformed_total)" 5 "malformed counter"
assert_eq "$(metric drover_events_unknown_total)" 2 "unknown counter"
assert_eq "$(metric drover_events_too_large_total)" 2 "too large counter"
n_runs=$(runs_json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
assert_eq "$n_runs" "$n_good" "runs (one per good record, none for a bad one)"
n=$(grep -c 'dead-lettered' "$AGENT_LOG" || true)
assert_eq "$n" "$n_bad" "'dead-lettered' lines in the agent log"

say "... the outbox drains: every dead letter and result reached Kafka"
wait_metric drover_outbox_depth 0 30

say "... a dead letter too large for the agent's producer: sent without its value"
# The producer's limit is lowered so that a record the events topic took
# (200 kB) cannot be published again as it is. The agent starts again on the
# same state and group: consumption goes on where it was.
stop_agent
KAFKA_PROPS+=('message.max.bytes: "100000"')
write_config "max_event_bytes: 16KiB"
start_agent
head -c 200000 /dev/zero | tr '\0' 'y' >"$CASES/too-big"
IS_OMITTED=1 bad_record too-big "over the limit of 16384" k-too-big "$CASES/too-big" \
	X-GitHub-Event=push X-GitHub-Delivery=poison-too-big "x-bin=$bin"
good_record
run=$(run_of_event "poison-good-$n_good" ci 30)
wait_run_status "$run" succeeded 30
wait_metric drover_events_received_total 2 30
wait_metric drover_events_dead_lettered_total 1 30
wait_metric drover_outbox_depth 0 30
grep -q 'report: Kafka refuses dead letter' "$AGENT_LOG" ||
	fail "the log does not say the dead letter was refused"
stop_agent

say "... each dead letter is its original record, byte for byte, plus x-drover-error"
check_dead_letters
