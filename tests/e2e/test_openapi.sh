#!/usr/bin/env bash
# agent/openapi.yaml is a valid OpenAPI 3.0 document (openapi-spec-validator,
# from the venv of packaging/python-env.sh) and documents every route of
# agent/admin.c's route table with its method; then, on the running agent,
# every documented method of those routes is taken (not 405) and an
# undocumented one gets 405 with an Allow header naming exactly the
# documented methods.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PY=$("$DROVER_SRC/packaging/python-env.sh") || fail "packaging/python-env.sh failed"
write_config
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
routes = re.findall(r'\{"(/[^"]*)", EVHTTP_REQ_([A-Z]+),', source)
if len(routes) < 8:
    sys.exit("only %d routes found in admin.c's table" % len(routes))
problems = []
by_path = {}
for pattern, method in routes:
    by_path.setdefault(pattern, set()).add(method)
    if method.lower() not in paths.get(pattern, {}):
        problems.append("%s %s is served but not in openapi.yaml" % (method, pattern))
port = sys.argv[3]
for pattern, methods in by_path.items():
    documented = {m.upper() for m in paths.get(pattern, {}) if m != "parameters"}
    url = "http://127.0.0.1:%s%s" % (port, pattern.replace("{id}", "1").replace("{name}", "x"))
    for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
        req = urllib.request.Request(url, method=method, data=b"{}" if method != "GET" else None)
        try:
            code, allow = urllib.request.urlopen(req, timeout=10).status, None
        except urllib.error.HTTPError as e:
            code, allow = e.code, e.headers.get("Allow")
        if method in documented and code == 405:
            problems.append("%s %s is documented but answers 405" % (method, pattern))
        if method not in documented:
            if code != 405:
                problems.append("%s %s is not documented but answers %d" % (method, pattern, code))
            elif set((allow or "").split(", ")) != documented:
                problems.append("%s %s: Allow %r, documented %s" % (method, pattern, allow,
                                                                    sorted(documented)))
if problems:
    sys.exit("\n".join(problems))
print("openapi.yaml: valid; %d routes of the table documented, 405/Allow as documented"
      % len(routes))
PYEOF
	fail "openapi.yaml and the agent disagree (above)"
