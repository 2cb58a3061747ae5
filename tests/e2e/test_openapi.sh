#!/usr/bin/env bash
# agent/openapi.yaml is a valid OpenAPI 3.0 document (openapi-spec-validator,
# from the venv of packaging/python-env.sh) and documents every route of
# agent/admin.c's route table with its method (a receiver that takes every
# method, /hooks/{name}, by the concrete paths it serves); then, on the
# running agent, every documented method of those paths is taken (not 405)
# and an undocumented one gets 405 with an Allow header naming exactly the
# documented methods.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PY=$("$DROVER_SRC/packaging/python-env.sh") || fail "packaging/python-env.sh failed"
# The webhook receivers configured, so that they get as far as the method.
printf 'hook-secret\n' >"$T/hook.secret"
write_config "hooks:" "  github: { secret_file: \"$T/hook.secret\" }" \
	"  gitlab: { token_file: \"$T/hook.secret\" }" \
	"  azure_devops: { username: drover, password_file: \"$T/hook.secret\" }"
start_agent

say "openapi.yaml is valid and documents every route of the table"
"$PY" - "$DROVER_SRC/agent/openapi.yaml" "$DROVER_SRC/agent/admin.c" "$PORT" <<'PYEOF' ||
import re, sys, urllib.request, urllib.error
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

spec, _ = read_from_filename(sys.argv[1])
validate(spec)
paths = spec["paths"]
source = open(sys.argv[2]).read()
routes = re.findall(r'\{"(/[^"]*)", (?:EVHTTP_REQ_([A-Z]+)|(ADMIN_ANY_METHOD)),', source)
if len(routes) < 9:
    sys.exit("only %d routes found in admin.c's table" % len(routes))
problems = []
checks = {}  # concrete path -> documented methods, to try on the agent
for pattern, method, any_method in routes:
    if any_method:
        # A receiver that takes every method and answers 405 itself: each
        # documented path it serves must say which method it takes.
        regex = re.escape(pattern).replace(r"\{name\}", "[^/]+").replace(r"\{id\}", "[0-9]+")
        served = [p for p in paths if re.fullmatch(regex, p)]
        if not served:
            problems.append("%s (every method) is served but not in openapi.yaml" % pattern)
        for p in served:
            checks[p] = {m.upper() for m in paths[p] if m != "parameters"}
        continue
    if method.lower() not in paths.get(pattern, {}):
        problems.append("%s %s is served but not in openapi.yaml" % (method, pattern))
    concrete = pattern.replace("{id}", "1").replace("{name}", "x")
    checks[concrete] = {m.upper() for m in paths.get(pattern, {}) if m != "parameters"}
port = sys.argv[3]
for path, documented in checks.items():
    url = "http://127.0.0.1:%s%s" % (port, path)
    for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
        req = urllib.request.Request(url, method=method, data=b"{}" if method != "GET" else None)
        try:
            code, allow = urllib.request.urlopen(req, timeout=10).status, None
        except urllib.error.HTTPError as e:
            code, allow = e.code, e.headers.get("Allow")
        if method in documented and code == 405:
            problems.append("%s %s is documented but answers 405" % (method, path))
        if method not in documented:
            if code != 405:
                problems.append("%s %s is not documented but answers %d" % (method, path, code))
            elif set((allow or "").split(", ")) != documented:
                problems.append("%s %s: Allow %r, documented %s" % (method, path, allow,
                                                                    sorted(documented)))
if problems:
    sys.exit("\n".join(problems))
print("openapi.yaml: valid; %d routes of the table documented, 405/Allow as documented on %d paths"
      % (len(routes), len(checks)))
PYEOF
	fail "openapi.yaml and the agent disagree (above)"
