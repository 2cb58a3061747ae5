#!/usr/bin/env bash
# python-env: the Python virtual environment of the tests, for tools Debian
# does not package: prometheus_client (the Prometheus project's own Python
# client, whose text-format parser tests/e2e/test_metrics.sh reads /metrics
# with) and openapi-spec-validator (tests/e2e/test_openapi.sh checks
# agent/openapi.yaml with it). Created once in ~/.cache/drover/venv (DROVER_VENV overrides) with
# the pinned versions below; pip's download cache stays in
# ~/.cache/drover/pip, so a rebuilt venv downloads nothing. Prints the
# venv's python on stdout; everything else goes to stderr. Safe to run from
# several tests at once (flock).
#
#   packaging/python-env.sh        create when missing or stale, print the python
set -euo pipefail

requirements=(
	prometheus_client==0.21.1
	openapi-spec-validator==0.7.1
)

cache=${XDG_CACHE_HOME:-$HOME/.cache}/drover
venv=${DROVER_VENV:-$cache/venv}
mkdir -p "$cache" "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9

stamp="$venv/.drover-requirements"
want=$(printf '%s\n' "${requirements[@]}")
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] &&
	"$venv/bin/python" -c 'import prometheus_client, openapi_spec_validator' 2>/dev/null; then
	printf '%s\n' "$venv/bin/python"
	exit 0
fi

echo "python-env: creating $venv (${requirements[*]})" >&2
rm -rf "$venv"
python3 -m venv "$venv" >&2 ||
	{ echo "python-env: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
PIP_CACHE_DIR=$cache/pip "$venv/bin/python" -m pip install --disable-pip-version-check -q \
	"${requirements[@]}" >&2 ||
	{ echo "python-env: pip could not install ${requirements[*]}" >&2; exit 1; }
printf '%s\n' "$want" >"$stamp"
printf '%s\n' "$venv/bin/python"
