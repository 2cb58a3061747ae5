#!/usr/bin/env python3
"""githost.py: a stand-in for the commit-status APIs of GitHub, GitLab and
Azure DevOps, for drover's tests (python3 standard library only).

It follows the published APIs, including their errors:
  GitHub  POST /repos/{owner}/{repo}/statuses/{sha}
          Authorization: Bearer|token <token>; 201 with the status object;
          401 {"message":"Bad credentials",...}; 404 {"message":"Not Found",...};
          422 {"message":"Validation Failed","errors":[...]} for a bad state,
          a description over 140 characters or a sha that is not a commit.
  GitLab  POST /api/v4/projects/{id or url-encoded path}/statuses/{sha}
          PRIVATE-TOKEN (or Authorization: Bearer); 201 with the status;
          401 {"message":"401 Unauthorized"}; 404 {"message":"404 Project Not Found"};
          400 {"error":"state does not have a valid value"} and GitLab's
          "Cannot transition status via :X from :Y" for a repeated unfinished state.
  Azure   POST /{org}/{project}/_apis/git/repositories/{repo}/pullRequests/{id}/statuses
          or .../commits/{sha}/statuses, ?api-version=7.1 required; Basic auth
          with a personal access token as password; 200 with the status;
          401/404/400 with Azure's {"$id","message","typeKey",...} error body.

Tokens and known repositories come from the command line. Failures are
injected on demand (control endpoints, never under an API path):
  POST /_control/fail   {"status": 503|429|403, "count": N, "retry_after": S,
                         "ratelimit_reset_in": S}
                        the next N API calls get that answer (429/403 with
                        Retry-After: S when given, 403 as GitHub's rate limit:
                        x-ratelimit-remaining 0 and x-ratelimit-reset).
                        With "host": only API calls of that host (github,
                        gitlab, azure-devops) take it.
  POST /_control/slow   {"seconds": S, "count": N, "host": H (optional)}
                        the next N API calls (of host H) are answered only
                        after S seconds (a slow or hung git host).
  POST /_control/clear  {"host": H (optional)} forgets the failures and slow
                        calls still pending (of host H): the host recovers.
  GET  /_control/received  every accepted status in order of arrival:
                           [{host, repo, sha, pr, state, context, description,
                             target_url, at}]
  GET  /_control/calls     every API call with its answer: [{host, path, status}]
  GET  /_control/headers   the headers of every API call (to check tokens)

Usage: githost.py --port-file F [--port P] [--fail STATUS:COUNT[:RETRY_AFTER]]... [--github-token T] [--gitlab-token T]
       [--azure-token T] [--repo github:owner/name] [--repo gitlab:group/name]
       [--repo azure-devops:org/project/name]
"""

import argparse
import base64
import datetime
import http.server
import json
import re
import sys
import threading
import time
import os
import urllib.parse

GITHUB_DOCS = "https://docs.github.com/rest/commits/statuses#create-a-commit-status"
GITHUB_STATES = ("error", "failure", "pending", "success")
GITLAB_STATES = ("pending", "running", "success", "failed", "canceled", "skipped")
GITLAB_FINISHED = ("success", "failed", "canceled", "skipped")
# GitLab's event name for moving into each state.
GITLAB_EVENTS = {"pending": "enqueue", "running": "run", "success": "success",
                 "failed": "drop", "canceled": "cancel", "skipped": "skip"}
AZURE_STATES = ("notSet", "pending", "succeeded", "failed", "error", "notApplicable")


class Hub:
    """What the stand-in knows and saw; shared by the handler threads."""

    def __init__(self, args):
        self.lock = threading.Lock()
        self.tokens = {"github": args.github_token, "gitlab": args.gitlab_token,
                       "azure-devops": args.azure_token}
        self.repos = set(args.repo)
        self.received = []
        self.calls = []
        self.headers = []
        self.failures = []  # [{"status", "count", "retry_after", "host", ...}]
        self.slow = []  # [{"seconds", "count", "host"}]
        self.gitlab_last = {}  # (project, sha, name) -> state
        self.next_id = 1


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "githost-standin/1"

    def log_message(self, fmt, *args):
        sys.stderr.write("githost: " + (fmt % args) + "\n")

    @property
    def hub(self):
        return self.server.hub

    def reply(self, status, body, headers=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    # ---------------------------------------------------------------- control

    def do_GET(self):
        with self.hub.lock:
            if self.path == "/_control/received":
                return self.reply(200, self.hub.received)
            if self.path == "/_control/calls":
                return self.reply(200, self.hub.calls)
            if self.path == "/_control/headers":
                return self.reply(200, self.hub.headers)
        self.reply(404, {"message": "Not Found"})

    def do_POST(self):
        raw = self.read_body()
        url = urllib.parse.urlsplit(self.path)
        if url.path in ("/_control/fail", "/_control/slow"):
            spec = json.loads(raw or b"{}")
            with self.hub.lock:
                (self.hub.failures if url.path == "/_control/fail" else self.hub.slow).append(spec)
            return self.reply(200, {"queued": spec})
        if url.path == "/_control/clear":
            host = json.loads(raw or b"{}").get("host")
            with self.hub.lock:
                for specs in (self.hub.failures, self.hub.slow):
                    specs[:] = [x for x in specs if host is not None and x.get("host") != host]
            return self.reply(200, {"cleared": host})
        host, route = self.route(url.path)
        with self.hub.lock:
            spec = self.take(self.hub.slow, host)
        if spec is not None:
            time.sleep(float(spec.get("seconds", 1)))
        with self.hub.lock:
            self.hub.headers.append({"path": self.path, "headers": dict(self.headers.items())})
            injected = self.injected(host)
            if injected is not None:
                status, body, headers = injected
            elif host is None:
                status, body, headers = 404, {"message": "Not Found"}, {}
            else:
                status, body, headers = getattr(self, "api_" + host.replace("-", "_"))(
                    route, urllib.parse.parse_qs(url.query), raw)
            self.hub.calls.append({"host": host, "path": self.path, "status": status})
        self.reply(status, body, headers)

    @staticmethod
    def take(specs, host):
        """The first spec of specs for host (API calls only), one count used."""
        if host is None:
            return None
        for i, spec in enumerate(specs):
            if spec.get("host") in (None, host):
                spec["count"] = spec.get("count", 1) - 1
                if spec["count"] <= 0:
                    specs.pop(i)
                return spec
        return None

    def injected(self, host):
        """The next injected failure, if any is pending (API calls only)."""
        spec = self.take(self.hub.failures, host)
        if spec is None:
            return None
        status = int(spec.get("status", 503))
        headers = {}
        if spec.get("retry_after") is not None:
            headers["Retry-After"] = str(spec["retry_after"])
        if status == 403:
            reset = int(time.time()) + int(spec.get("ratelimit_reset_in", 1))
            headers.update({"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0",
                            "x-ratelimit-used": "5000", "x-ratelimit-reset": str(reset)})
            return status, {"message": "API rate limit exceeded",
                            "documentation_url": GITHUB_DOCS}, headers
        if status == 429:
            return status, {"message": "Too Many Requests"}, headers
        return status, {"message": "Service Unavailable"}, headers

    @staticmethod
    def route(path):
        m = re.fullmatch(r"/repos/([^/]+)/([^/]+)/statuses/([^/]+)", path)
        if m:
            return "github", [urllib.parse.unquote(x) for x in m.groups()]
        m = re.fullmatch(r"/api/v4/projects/([^/]+)/statuses/([^/]+)", path)
        if m:
            return "gitlab", [urllib.parse.unquote(x) for x in m.groups()]
        m = re.fullmatch(r"/([^/]+)/([^/]+)/_apis/git/repositories/([^/]+)/"
                         r"(pullRequests/(\d+)|commits/([^/]+))/statuses", path)
        if m:
            org, project, repo, _, pr, sha = m.groups()
            return "azure-devops", [urllib.parse.unquote(x) if x else x
                                    for x in (org, project, repo, pr, sha)]
        return None, None

    def record(self, host, repo, sha, pr, state, context, description, target_url):
        self.hub.received.append({"host": host, "repo": repo, "sha": sha, "pr": pr,
                                  "state": state, "context": context,
                                  "description": description, "target_url": target_url,
                                  "at": now_iso()})
        self.hub.next_id += 1
        return self.hub.next_id - 1

    # ---------------------------------------------------------------- GitHub

    def api_github(self, route, query, raw):
        owner, name, sha = route
        auth = self.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() not in ("bearer", "token") or token != self.hub.tokens["github"]:
            return 401, {"message": "Bad credentials", "documentation_url": GITHUB_DOCS,
                         "status": "401"}, {}
        if "github:%s/%s" % (owner, name) not in self.hub.repos:
            return 404, {"message": "Not Found", "documentation_url": GITHUB_DOCS,
                         "status": "404"}, {}
        try:
            body = json.loads(raw)
            assert isinstance(body, dict)
        except Exception:
            return 400, {"message": "Problems parsing JSON",
                         "documentation_url": GITHUB_DOCS, "status": "400"}, {}
        errors = []
        if body.get("state") not in GITHUB_STATES:
            errors.append({"resource": "Status", "code": "custom", "field": "state",
                           "message": "state is not included in the list"})
        desc = body.get("description")
        if desc is not None and len(desc) > 140:
            errors.append({"resource": "Status", "code": "custom", "field": "description",
                           "message": "description is too long (maximum is 140 characters)"})
        if errors:
            return 422, {"message": "Validation Failed", "errors": errors,
                         "documentation_url": GITHUB_DOCS, "status": "422"}, {}
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            return 422, {"message": "No commit found for SHA: %s" % sha,
                         "documentation_url": GITHUB_DOCS, "status": "422"}, {}
        context = body.get("context") or "default"
        sid = self.record("github", "%s/%s" % (owner, name), sha, None, body["state"],
                          context, desc, body.get("target_url"))
        ts = now_iso()
        return 201, {"url": "/repos/%s/%s/statuses/%s" % (owner, name, sha), "id": sid,
                     "node_id": "SC_%d" % sid, "state": body["state"],
                     "description": desc, "target_url": body.get("target_url"),
                     "context": context, "created_at": ts, "updated_at": ts,
                     "creator": {"login": "drover-bot", "id": 1, "type": "Bot"}}, {
            "x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4999"}

    # ---------------------------------------------------------------- GitLab

    def api_gitlab(self, route, query, raw):
        project, sha = route
        token = self.headers.get("PRIVATE-TOKEN")
        auth = self.headers.get("Authorization", "")
        if token is None and auth.lower().startswith("bearer "):
            token = auth[7:]
        if token != self.hub.tokens["gitlab"]:
            return 401, {"message": "401 Unauthorized"}, {}
        if "gitlab:%s" % project not in self.hub.repos:
            return 404, {"message": "404 Project Not Found"}, {}
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("application/json"):
            try:
                body = json.loads(raw)
                assert isinstance(body, dict)
            except Exception:
                return 400, {"error": "The provided content-type 'application/json' did "
                                      "not match the body"}, {}
        else:
            body = {k: v[-1] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
        body.update({k: v[-1] for k, v in query.items()})
        state = body.get("state")
        if state is None:
            return 400, {"error": "state is missing"}, {}
        if state not in GITLAB_STATES:
            return 400, {"error": "state does not have a valid value"}, {}
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            return 404, {"message": "404 Commit Not Found"}, {}
        name = body.get("name") or body.get("context") or "default"
        key = (project, sha, name)
        last = self.hub.gitlab_last.get(key)
        if last is not None and last not in GITLAB_FINISHED and (
                last == state or (last == "running" and state == "pending")):
            return 400, {"message": "Cannot transition status via :%s from :%s" % (
                GITLAB_EVENTS[state], last)}, {}
        self.hub.gitlab_last[key] = state
        sid = self.record("gitlab", project, sha, None, state, name,
                          body.get("description"), body.get("target_url"))
        return 201, {"id": sid, "sha": sha, "ref": body.get("ref"), "status": state,
                     "name": name, "target_url": body.get("target_url"),
                     "description": body.get("description"), "created_at": now_iso(),
                     "started_at": None, "finished_at": None, "allow_failure": False,
                     "coverage": None,
                     "author": {"id": 1, "username": "drover-bot", "name": "drover"}}, {}

    # ---------------------------------------------------------------- Azure DevOps

    @staticmethod
    def azure_error(status, type_key, message):
        return status, {"$id": "1", "innerException": None, "message": message,
                        "typeName": "Microsoft.TeamFoundation.%s, "
                                    "Microsoft.TeamFoundation.Framework" % type_key,
                        "typeKey": type_key, "errorCode": 0, "eventId": 3000}, {}

    def api_azure_devops(self, route, query, raw):
        org, project, repo, pr, sha = route
        auth = self.headers.get("Authorization", "")
        password = None
        if auth.startswith("Basic "):
            try:
                password = base64.b64decode(auth[6:]).decode().partition(":")[2]
            except Exception:
                password = None
        if password != self.hub.tokens["azure-devops"]:
            return self.azure_error(401, "UnauthorizedRequestException",
                                    "TF400813: The user '' is not authorized to access "
                                    "this resource.")
        if "api-version" not in query:
            return self.azure_error(400, "VssVersionNotSpecifiedException",
                                    "No api-version was supplied for the \"POST\" request. "
                                    "The version must be supplied either as part of the "
                                    "Accept header or as a query parameter.")
        if "azure-devops:%s/%s/%s" % (org, project, repo) not in self.hub.repos:
            return self.azure_error(404, "GitRepositoryNotFoundException",
                                    "TF401019: The Git repository with name or identifier "
                                    "%s does not exist or you do not have permissions for "
                                    "the operation you are attempting." % repo)
        try:
            body = json.loads(raw)
            assert isinstance(body, dict)
        except Exception:
            return self.azure_error(400, "VssRequestContentException",
                                    "The request content is not valid JSON.")
        context = body.get("context") or {}
        if not isinstance(context, dict) or not context.get("name"):
            return self.azure_error(400, "InvalidArgumentValueException",
                                    "The value specified for the following variable must "
                                    "be non-empty: Context.Name.")
        state = body.get("state", "notSet")
        if state not in AZURE_STATES:
            return self.azure_error(400, "VssPropertyValidationException",
                                    "Invalid value for state: %s" % state)
        ctx = "%s/%s" % (context.get("genre"), context["name"]) if context.get(
            "genre") else context["name"]
        sid = self.record("azure-devops", "%s/%s" % (project, repo), sha,
                          int(pr) if pr else None, state, ctx, body.get("description"),
                          body.get("targetUrl"))
        ts = now_iso()
        return 200 if pr else 201, {
            "id": sid, "state": state, "description": body.get("description"),
            "context": context, "creationDate": ts, "updatedDate": ts,
            "createdBy": {"displayName": "drover", "id": "0000"},
            "targetUrl": body.get("targetUrl")}, {}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port-file", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--github-token")
    p.add_argument("--gitlab-token")
    p.add_argument("--azure-token")
    p.add_argument("--repo", action="append", default=[])
    p.add_argument("--fail", action="append", default=[], metavar="STATUS:COUNT[:RETRY_AFTER]",
                   help="inject from the start, like POST /_control/fail (repeatable, in order)")
    args = p.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.hub = Hub(args)
    for spec in args.fail:
        parts = spec.split(":")
        f = {"status": int(parts[0]), "count": int(parts[1]) if len(parts) > 1 else 1}
        if len(parts) > 2:
            f["retry_after"] = int(parts[2])
        server.hub.failures.append(f)
    with open(args.port_file + ".tmp", "w") as f:
        f.write("%d\n" % server.server_address[1])
    os.replace(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
