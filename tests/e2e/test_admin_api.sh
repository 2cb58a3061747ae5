#!/usr/bin/env bash
# The admin API's rules, on the real agent: paging through 250 runs with
# limit/before (every run exactly once, newest first, the Link and
# X-Next-Before headers leading to the next page and absent on the last,
# filters kept in the link; `drover runs --before`), bad limit/before/status
# answered 400, other methods 405 with Allow, no or a wrong bearer token 401
# (health probes excepted), unknown routes 404 as JSON, a body over
# admin.max_body_bytes refused with 413 and headers over
# admin.max_header_bytes refused with 400, the agent serving normally after both,
# /readyz saying "store_writable" and answering 503 while another process
# holds the database's write lock (then 200 again), and the admin socket
# bound to the loopback address it was configured with.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

c1=$(make_repo hello)
add_repo Codertocat/Hello-World "$(repo_url hello)"
write_pipeline ci <<'EOF'
name: ci
on:
  push: { branches: [master] }
checkout: false
stages:
  - name: unit
    uses: shell
    with: { run: "true" }
EOF
write_pipeline rel <<'EOF'
name: rel
on:
  push: { branches: [rel] }
checkout: false
stages:
  - name: ship
    uses: shell
    with: { run: "true" }
EOF
TOKEN=admin-api-token-0123456789
printf '%s\n' "$TOKEN" >"$T/token"
ADMIN_EXTRA=("token_file: \"$T/token\"" "max_body_bytes: 65536" "max_header_bytes: 8192")
write_config "max_parallel: 16"
start_agent
BASE=http://127.0.0.1:$PORT

# lib.sh's metrics, with the token this agent wants.
metrics()
{
	curl -s --max-time 5 -H "Authorization: Bearer $TOKEN" "$BASE/metrics" ||
		fail "GET /metrics failed"
}

# http METHOD PATH [CURL ARGS...]: the status code; body in $T/body, headers in $T/headers.
http()
{
	local method=$1 path=$2
	shift 2
	curl -s -o "$T/body" -D "$T/headers" -w '%{http_code}' --max-time 10 -X "$method" "$@" \
		"$BASE$path" || true
}
# api METHOD PATH [CURL ARGS...]: the same with the token.
api()
{
	local method=$1 path=$2
	shift 2
	http "$method" "$path" -H "Authorization: Bearer $TOKEN" "$@"
}
header()
{
	sed -n "s/^$1: *//Ip" "$T/headers" | tr -d '\r'
}

say "250 push events through POST /api/v1/events (every 5th to branch rel)"
push_event "$T/events/master.json" "$c1"
push_event "$T/events/rel.json" "$c1" refs/heads/rel
python3 - "$BASE" "$TOKEN" "$T/events" <<'EOF' || fail "posting the events failed"
import http.client, sys, urllib.parse
base, token, events = sys.argv[1:4]
url = urllib.parse.urlparse(base)
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
bodies = {name: open("%s/%s.json" % (events, name), "rb").read() for name in ("master", "rel")}
for i in range(250):
    name = "rel" if i % 5 == 4 else "master"
    conn.request("POST", "/api/v1/events", body=bodies[name], headers={
        "Authorization": "Bearer " + token, "Content-Type": "application/json",
        "X-GitHub-Event": "push", "X-GitHub-Delivery": "page-%03d" % i})
    r = conn.getresponse()
    r.read()
    if r.status != 202:
        sys.exit("event %d: HTTP %d" % (i, r.status))
EOF
wait_metric drover_runs_created_total 250 60
wait_metric drover_runs_active 0 60

say "paging: limit/before, Link and X-Next-Before, every run exactly once"
python3 - "$BASE" "$TOKEN" <<'EOF' || fail "paging (above)"
import json, re, sys, urllib.request, urllib.error
base, token = sys.argv[1:3]

def get(path):
    req = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r), r.headers

def walk(first, want_limit):
    path, pages, seen = first, [], []
    while path is not None:
        runs, headers = get(path)
        if not isinstance(runs, list):
            sys.exit("%s: the body is not an array" % path)
        pages.append(len(runs))
        ids = [r["id"] for r in runs]
        if ids != sorted(ids, reverse=True):
            sys.exit("%s: not newest first: %s" % (path, ids))
        seen += ids
        link, nxt = headers.get("Link"), headers.get("X-Next-Before")
        if link is None:
            if nxt is not None:
                sys.exit("%s: X-Next-Before without Link" % path)
            path = None
            continue
        m = re.fullmatch(r"<([^>]+)>; rel=\"next\"", link)
        if m is None:
            sys.exit("%s: Link header %r" % (path, link))
        if nxt != str(ids[-1]) or ("before=%s" % nxt) not in m.group(1):
            sys.exit("%s: next page %r / %r does not start after the last id %d"
                     % (path, link, nxt, ids[-1]))
        if "limit=%d" % want_limit not in m.group(1):
            sys.exit("%s: the link %r lost limit=%d" % (path, link, want_limit))
        path = m.group(1)
    return pages, seen

everything, headers = get("/api/v1/runs?limit=500")
if len(everything) != 250 or headers.get("Link") or headers.get("X-Next-Before"):
    sys.exit("limit=500: %d runs, Link %r" % (len(everything), headers.get("Link")))
all_ids = [r["id"] for r in everything]
for first, limit, want_pages in (("/api/v1/runs?limit=100", 100, [100, 100, 50]),
                                 ("/api/v1/runs", 100, [100, 100, 50]),
                                 ("/api/v1/runs?limit=7", 7, [7] * 35 + [5]),
                                 ("/api/v1/runs?limit=250", 250, [250])):
    pages, seen = walk(first, limit)
    if pages != want_pages:
        sys.exit("%s: pages of %s, not %s" % (first, pages, want_pages))
    if seen != all_ids:
        sys.exit("%s: the pages hold %d runs (%d distinct), not the 250 once each"
                 % (first, len(seen), len(set(seen))))
pages, seen = walk("/api/v1/runs?pipeline=rel&limit=20&status=succeeded", 20)
rel = [r["id"] for r in everything if r["pipeline"] == "rel"]
if pages != [20, 20, 10] or seen != rel:
    sys.exit("pipeline=rel: pages %s, %d runs, want [20, 20, 10] and the 50 rel runs"
             % (pages, len(seen)))
runs, _ = get("/api/v1/runs?pipeline=rel&limit=20&status=succeeded")
_, headers = get("/api/v1/runs?pipeline=rel&limit=20&status=succeeded")
if "pipeline=rel" not in headers["Link"] or "status=succeeded" not in headers["Link"]:
    sys.exit("the next link %r lost the filters" % headers["Link"])
pivot = all_ids[9]
runs, _ = get("/api/v1/runs?before=%d&limit=5" % pivot)
if [r["id"] for r in runs] != all_ids[10:15]:
    sys.exit("before=%d: %s, want %s" % (pivot, [r["id"] for r in runs], all_ids[10:15]))
print("paging: 250 runs, each once, in every page size")
EOF

say "drover runs --before and --limit page the same way"
newest=$(runs_json --limit 1 | json_get 0.id)
out=$(runs_json --before "$((newest - 10))" --limit 30)
python3 -c '
import json, sys
ids = [r["id"] for r in json.loads(sys.argv[1])]
top = int(sys.argv[2]) - 10
if ids != list(range(top - 1, top - 31, -1)):
    sys.exit("drover runs --before %d --limit 30 gave %s" % (top, ids))
' "$out" "$newest" || fail "drover runs --before"
assert_eq "$(runs_json --limit 250 | json_get 249.id)" "$((newest - 249))" "the 250th run of drover runs --limit 250"

say "bad paging parameters: 400 with a JSON error"
for q in limit=0 limit=501 limit=-1 limit=abc limit=10x "limit=%205" before=0 before=-3 before=x \
	before=99999999999999999999 status=bogus; do
	code=$(api GET "/api/v1/runs?$q")
	assert_eq "$code" 400 "status of GET /api/v1/runs?$q"
	json_get error <"$T/body" >/dev/null || fail "GET /api/v1/runs?$q: no JSON error: $(cat "$T/body")"
done
assert_eq "$(api GET "/api/v1/runs?limit=500&before=1")" 200 "limit=500&before=1"
assert_eq "$(cat "$T/body")" "[]" "the page before run 1"

say "only the methods each route takes: 405 with Allow"
for spec in "DELETE /api/v1/runs GET" "POST /api/v1/runs GET" "GET /api/v1/events POST" \
	"PUT /api/v1/runs/1/cancel POST" "GET /api/v1/runs/1/cancel POST" "POST /metrics GET" \
	"PATCH /api/v1/runs/1 GET" "POST /api/v1/runs/1/stages/unit/log GET"; do
	read -r method path allow <<<"$spec"
	assert_eq "$(api "$method" "$path")" 405 "status of $method $path"
	assert_eq "$(header Allow)" "$allow" "Allow of $method $path"
done
assert_eq "$(http POST /healthz)" 405 "POST /healthz without a token"
assert_eq "$(header Allow)" GET "Allow of POST /healthz"

say "the bearer token: 401 without it or with a wrong one; health probes need none"
for path in /metrics /api/v1/runs /api/v1/runs/1 /api/v1/runs/1/stages/unit/log /nope; do
	assert_eq "$(http GET "$path")" 401 "GET $path without a token"
	assert_eq "$(header WWW-Authenticate)" Bearer "WWW-Authenticate of GET $path"
done
assert_eq "$(http POST /api/v1/events --data '{}')" 401 "POST /api/v1/events without a token"
for auth in "Bearer ${TOKEN%?}X" "Bearer ${TOKEN}X" "Bearer ${TOKEN%?}" "Bearer " "$TOKEN" \
	"Basic $(printf 'x:%s' "$TOKEN" | base64)" "bearer $TOKEN"; do
	assert_eq "$(http GET /api/v1/runs -H "Authorization: $auth")" 401 "a wrong token ($auth)"
done
assert_eq "$(http GET /healthz)" 200 "/healthz without a token"
assert_eq "$(http GET /readyz)" 200 "/readyz without a token"
unauthorized=$(api GET /metrics >/dev/null && awk '$1 == "drover_api_unauthorized_total" { print $2 }' "$T/body")
assert_ge "$unauthorized" 13 "drover_api_unauthorized_total"

say "unknown routes: 404 as JSON"
for path in /nope /api/v1/runs/abc /api/v1/runs/1/nope /api/v2/runs /api/v1/runs/ /api/v1/runs/0; do
	assert_eq "$(api GET "$path")" 404 "status of GET $path"
	json_get error <"$T/body" >/dev/null || fail "GET $path: no JSON error: $(cat "$T/body")"
done
assert_eq "$(api GET /api/v1/runs/999999)" 404 "an unknown run"
assert_contains "$(cat "$T/body")" "no run 999999" "the unknown run's error"

say "size limits: a body over 64 KiB gets 413, headers over 8 KiB 400"
head -c 70000 /dev/zero | tr '\0' 'x' >"$T/big.body"
code=$(api POST /api/v1/events -H "X-GitHub-Event: push" --data-binary "@$T/big.body")
assert_eq "$code" 413 "status of a 70,000-byte body"
big_header=$(head -c 9000 /dev/zero | tr '\0' 'y')
assert_eq "$(api GET /api/v1/runs -H "X-Padding: $big_header")" 400 "status of 9,000 bytes of headers"
assert_eq "$(http GET /healthz)" 200 "/healthz after the oversized requests"
push_event "$T/events/after.json" "$c1"
emit_github push "$T/events/after.json" after-limits
wait_run_status "$(run_of_event after-limits ci)" succeeded 30

say "/readyz: the store must take a write"
ready=$(curl -s --max-time 10 "$BASE/readyz")
assert_eq "$(json_get store_writable <<<"$ready")" true "store_writable while healthy"
assert_eq "$(json_get ready <<<"$ready")" true "ready while healthy"
wait_metric drover_outbox_depth 0 20
python3 - "$STATE_DIR/drover.db" "$T" <<'EOF' &
import os, sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
db.execute("BEGIN IMMEDIATE")  # the write lock, as a stuck process would hold it
open(sys.argv[2] + "/locked", "w").write("locked\n")
end = time.time() + 30
while not os.path.exists(sys.argv[2] + "/release") and time.time() < end:
    time.sleep(0.05)
db.execute("ROLLBACK")
EOF
locker=$!
EXTRA_PIDS+=("$locker")
wait_file "$T/locked" 10
code=$(http GET /readyz)
assert_eq "$code" 503 "/readyz while another process holds the write lock"
assert_eq "$(json_get store_writable <"$T/body")" false "store_writable while locked"
assert_contains "$(json_get store_error <"$T/body")" locked "store_error while locked"
assert_eq "$(json_get kafka_assigned <"$T/body")" true "kafka_assigned while locked"
assert_eq "$(http GET /healthz)" 200 "/healthz while locked (alive, only not ready)"
touch "$T/release"
wait "$locker" || fail "the process holding the lock failed"
assert_eq "$(http GET /readyz)" 200 "/readyz after the lock is released"
assert_eq "$(json_get store_writable <"$T/body")" true "store_writable after the release"

say "the admin socket is bound to the configured loopback address only"
port_hex=$(printf '%04X' "$PORT")
listeners=$(awk -v p=":$port_hex" '$2 ~ p"$" && $4 == "0A" { print $2 }' /proc/net/tcp /proc/net/tcp6)
assert_eq "$listeners" "0100007F:$port_hex" "listening sockets on port $PORT"

say "without admin.listen an agent listens on 127.0.0.1:8470, loopback only"
if python3 -c 'import socket; socket.socket().bind(("0.0.0.0", 8470))' 2>/dev/null; then
	mkdir -p "$T/no-pipelines"
	{
		echo "state_dir: \"$T/state-default\""
		echo "pipelines: \"$T/no-pipelines\"" # it only has to listen: it runs nothing
		echo "plugins: \"$DROVER_BUILD/plugins\""
		echo "kafka:"
		echo "  brokers: \"$KAFKA_BROKERS\""
		echo "  group: \"$KAFKA_GROUP.default-listen\""
		echo "  events_topic: \"$EVENTS_TOPIC\""
		echo "  results_topic: \"$RESULTS_TOPIC\""
		echo "  dead_letter_topic: \"$DEAD_LETTER_TOPIC\""
	} >"$T/default.yaml"
	"$DROVER_BIN" agent -c "$T/default.yaml" >"$T/agent.default.log" 2>&1 &
	default_pid=$!
	EXTRA_PIDS+=("$default_pid")
	end=$((SECONDS + 30))
	until curl -s --max-time 2 http://127.0.0.1:8470/healthz | grep -q kafka_connected; do
		kill -0 "$default_pid" 2>/dev/null ||
			fail "the agent without admin.listen exited: $(tail -n 5 "$T/agent.default.log")"
		[ "$SECONDS" -lt "$end" ] || fail "no /healthz on 127.0.0.1:8470 within 30 s"
		sleep 0.2
	done
	listeners=$(awk '$2 ~ /:2116$/ && $4 == "0A" { print $2 }' /proc/net/tcp /proc/net/tcp6)
	assert_eq "$listeners" "0100007F:2116" "listening sockets on port 8470"
	kill -TERM "$default_pid"
	wait "$default_pid" || fail "the agent without admin.listen did not stop cleanly"
else
	say "(skipped: port 8470 is taken on this machine; tests/unit/test_config.c checks the default)"
fi
