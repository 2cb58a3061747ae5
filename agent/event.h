/*
 * event: turns a foreign payload (a Kafka record's headers and bytes) into
 * drover's one canonical event. The only part that knows the shapes of
 * GitHub, Azure DevOps, GitLab, CloudEvents/CDEvents, Databricks alerts and
 * drover's drift JSON. Pure: no I/O, no globals, safe on hostile input.
 *
 * Canonical event (a JSON object; absent facts are JSON null):
 *   id          source id: CloudEvents id, X-GitHub-Delivery, Azure DevOps id,
 *               GitLab Idempotency-Key or X-Gitlab-Event-UUID;
 *               else "kafka:<topic>:<partition>:<offset>"
 *   kind        "push" | "pull_request" | "drift" | "manual"
 *   action      push: "pushed" (branch updated/created), "tag" (tag pushed),
 *               "deleted" (branch or tag deleted);
 *               pull_request: GitHub's action, except closed+merged → "merged";
 *               Azure created/updated/merged → "opened"/"synchronize"/"merged";
 *               GitLab (X-Gitlab-Event "Merge Request Hook") open/reopen/
 *               merge/close → "opened"/"reopened"/"merged"/"closed", update
 *               → "synchronize" with new commits (oldrev), else "edited";
 *               drift: "detected"
 *   source      "github" | "azure-devops" | "gitlab" | "cloudevents" | "drover" | "databricks"
 *   repo        "owner/name" (Azure DevOps: "project/repository"; GitLab:
 *               project.path_with_namespace, "group/subgroup/project")
 *   clone_url   as the payload gives it
 *   ref         full ref ("refs/heads/master", "refs/tags/v1")
 *   branch      push: the branch; pull_request: the head branch, except
 *               merged: the base branch; drift: the model's branch (may be null)
 *   tag         tag name for tag pushes, else null
 *   sha         the commit to build: push after; PR head sha; merged PR: the
 *               merge commit when known; drift: null (build the branch head)
 *   before      push: the previous sha
 *   pr          {number, base, head, head_sha, title, merged} or null
 *   paths       [changed files] when the payload lists them (union of
 *               added/modified/removed of every commit), else null (also
 *               when GitLab listed only some of the commits)
 *   message     head commit message or PR title, or null
 *   actor       login / display name of who caused it
 *   drift       {model, environment, metric, feature, value, threshold,
 *               severity ("info"|"warning"|"critical"), window} or null
 *   received_at ISO-8601 UTC
 *   kafka       {topic, partition, offset}
 *
 * drover's replay command (dev.cdeventsx.drover-replay.requested, replay.h)
 * carries the facts of the run's stored event (kind, repo, sha, ...), source
 * "drover", the command's id, and one more key: replay, the whole command.
 */
#ifndef DROVER_EVENT_H
#define DROVER_EVENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* A record header; value need not be NUL-terminated. Names compare
 * case-insensitively. */
struct event_header {
	const char *name;
	const char *value;
	size_t value_len;
};

struct event_input {
	const char *topic; /* may be NULL (CLI: plan) */
	int32_t partition;
	int64_t offset;
	const struct event_header *headers;
	size_t n_headers;
	const char *payload;
	size_t payload_len;
	int64_t received_at_ms;
};

/* Maps a Databricks SQL alert or a model named by CDEvents to a model. */
struct event_alert_map {
	const char *alert; /* alert name or id */
	const char *model;
};

/* Where a model's training code lives, for drift events that do not say. */
struct event_model_map {
	const char *model;
	const char *repo;
	const char *branch;
};

struct event_options {
	size_t max_payload_bytes; /* 0: no limit */
	const struct event_alert_map *alerts;
	size_t n_alerts;
	const struct event_model_map *models;
	size_t n_models;
};

enum event_outcome {
	EVENT_OK,	 /* *out is the canonical event */
	EVENT_IGNORED,	 /* understood, nothing to build (GitHub ping, alert back to OK) */
	EVENT_MALFORMED, /* not JSON, or a known shape missing what it needs */
	EVENT_UNKNOWN,	 /* no known source or event type */
	EVENT_TOO_LARGE, /* payload over max_payload_bytes */
};

/*
 * Normalizes one input. On EVENT_OK, *out is a new reference the caller
 * owns; otherwise *out is NULL and err holds one line saying why.
 */
enum event_outcome event_normalize(const struct event_input *in, const struct event_options *opt,
				   json_t **out, char *err, size_t err_len);

/* "ok", "ignored", "malformed", "unknown", "too_large": for counters and logs. */
const char *event_outcome_name(enum event_outcome outcome);

/* Finds a header by name (case-insensitive); NULL when absent. */
const struct event_header *event_header_find(const struct event_input *in, const char *name);

#endif
