/*
 * event: turns one foreign payload (GitHub, GitLab, Azure DevOps, CloudEvents and
 * CDEvents, Databricks SQL alerts, drover's drift JSON) into the canonical
 * event of event.h. Pure and safe on hostile input: no I/O, no globals, no
 * logging; every refusal is an outcome plus one line saying why.
 */
#include "event.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

/* The work of one event_normalize call. */
struct norm {
	const struct event_input *in;
	const struct event_options *opt;
	const char *what; /* "github push", ...: prefixes error lines; may be NULL */
	json_t *ev;	  /* the canonical event being filled */
	char *err;
	size_t err_len;
};

/* A drift alert, whatever shape it arrived in; strings borrowed. */
struct drift {
	const char *model, *environment, *metric, *feature, *severity;
	const json_t *value, *threshold, *window;
	const char *repo, *branch, *clone_url, *actor;
};

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 when invalid. */
static size_t utf8_seq_len(const unsigned char *p, size_t n)
{
	size_t len;
	unsigned min;
	unsigned cp;
	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0)
		len = 2, min = 0x80, cp = p[0] & 0x1f;
	else if ((p[0] & 0xf0) == 0xe0)
		len = 3, min = 0x800, cp = p[0] & 0x0f;
	else if ((p[0] & 0xf8) == 0xf0)
		len = 4, min = 0x10000, cp = p[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/*
 * Writes msg into err as one line: control bytes and bytes that are not
 * valid UTF-8 become \xNN, and a cut never splits a character.
 */
static void err_write(char *err, size_t err_len, const char *msg)
{
	static const char hex[] = "0123456789abcdef";
	if (err == NULL || err_len == 0)
		return;
	const unsigned char *p = (const unsigned char *)msg;
	size_t left = strlen(msg), o = 0;
	while (left > 0) {
		size_t seq = utf8_seq_len(p, left);
		char esc[4];
		const char *src = (const char *)p;
		size_t k = seq;
		if (seq == 0 || (seq == 1 && (*p < 0x20 || *p == 0x7f))) {
			esc[0] = '\\', esc[1] = 'x', esc[2] = hex[*p >> 4], esc[3] = hex[*p & 15];
			src = esc, k = 4, seq = 1;
		}
		if (o + k >= err_len)
			break;
		memcpy(err + o, src, k);
		o += k;
		p += seq;
		left -= seq;
	}
	err[o] = '\0';
}

/* Records why the event was refused (prefixed with n->what) and returns rc. */
static enum event_outcome norm_fail(struct norm *n, enum event_outcome rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum event_outcome norm_fail(struct norm *n, enum event_outcome rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	if (n->what != NULL) {
		char *full = xasprintf("%s: %s", n->what, msg);
		free(msg);
		msg = full;
	}
	err_write(n->err, n->err_len, msg);
	free(msg);
	return rc;
}

/* ---- typed field access: every wrong type is a MALFORMED with the field's name ---- */

static const char *json_kind_name(json_type type)
{
	switch (type) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a number";
	default:
		return "true or false";
	}
}

static bool json_has_kind(const json_t *v, json_type type)
{
	switch (type) {
	case JSON_OBJECT:
		return json_is_object(v);
	case JSON_ARRAY:
		return json_is_array(v);
	case JSON_STRING:
		return json_is_string(v);
	case JSON_INTEGER:
		return json_is_integer(v);
	case JSON_REAL:
		return json_is_number(v);
	default:
		return json_is_boolean(v);
	}
}

/*
 * Looks up obj.key (obj may be NULL: an absent parent). Returns 0 with *out
 * NULL when absent or JSON null, 0 with *out set when of the wanted type
 * (JSON_REAL means any number, JSON_TRUE any boolean), -1 with the error
 * recorded when of another type, or absent/empty while is_required.
 */
static int field_get(struct norm *n, const json_t *obj, const char *path, const char *key,
		     json_type type, bool is_required, json_t **out)
{
	const char *dot = path[0] != '\0' ? "." : "";
	json_t *v = obj != NULL ? json_object_get(obj, key) : NULL;
	*out = NULL;
	if (v == NULL || json_is_null(v)) {
		if (!is_required)
			return 0;
		norm_fail(n, EVENT_MALFORMED, "%s%s%s is missing", path, dot, key);
		return -1;
	}
	if (!json_has_kind(v, type)) {
		norm_fail(n, EVENT_MALFORMED, "%s%s%s is not %s", path, dot, key,
			  json_kind_name(type));
		return -1;
	}
	if (is_required && json_is_string(v) && json_string_length(v) == 0) {
		norm_fail(n, EVENT_MALFORMED, "%s%s%s is empty", path, dot, key);
		return -1;
	}
	*out = v;
	return 0;
}

static int get_str(struct norm *n, const json_t *obj, const char *path, const char *key,
		   bool is_required, const char **out)
{
	json_t *v;
	int rc = field_get(n, obj, path, key, JSON_STRING, is_required, &v);
	*out = v != NULL ? json_string_value(v) : NULL;
	return rc;
}

static int get_obj(struct norm *n, const json_t *obj, const char *path, const char *key,
		   bool is_required, json_t **out)
{
	return field_get(n, obj, path, key, JSON_OBJECT, is_required, out);
}

static int get_arr(struct norm *n, const json_t *obj, const char *path, const char *key,
		   bool is_required, json_t **out)
{
	return field_get(n, obj, path, key, JSON_ARRAY, is_required, out);
}

static int get_bool(struct norm *n, const json_t *obj, const char *path, const char *key, bool *out)
{
	json_t *v;
	int rc = field_get(n, obj, path, key, JSON_TRUE, false, &v);
	*out = v != NULL && json_is_true(v);
	return rc;
}

/* A string member when it is one, else NULL: for optional enrichment only. */
static const char *loose_str(const json_t *obj, const char *key)
{
	json_t *v = obj != NULL ? json_object_get(obj, key) : NULL;
	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* ---- filling the canonical event ---- */

static json_t *event_skeleton(void)
{
	/* clang-format off */
	static const char *const keys[] = {
		"id", "kind", "action", "source", "repo", "clone_url", "ref", "branch", "tag",
		"sha", "before", "pr", "paths", "message", "actor", "drift", "received_at", "kafka",
	};
	/* clang-format on */
	json_t *ev = json_object();
	if (ev == NULL)
		abort(); /* out of memory, as xmalloc would */
	for (size_t i = 0; i < ARRAY_LEN(keys); i++)
		json_object_set_new(ev, keys[i], json_null());
	return ev;
}

/* A JSON string for s, or JSON null for NULL (and for text that is not UTF-8). */
static json_t *json_str_or_null(const char *s)
{
	json_t *v = s != NULL ? json_string(s) : NULL;
	return v != NULL ? v : json_null();
}

static void ev_set(struct norm *n, const char *key, json_t *value)
{
	json_object_set_new(n->ev, key, value != NULL ? value : json_null());
}

static void ev_set_str(struct norm *n, const char *key, const char *s)
{
	ev_set(n, key, json_str_or_null(s));
}

static const char *after_prefix(const char *s, const char *prefix)
{
	size_t len = strlen(prefix);
	return s != NULL && strncmp(s, prefix, len) == 0 ? s + len : NULL;
}

/* refs/heads/x → branch x, refs/tags/v → tag v; any other ref sets neither. */
static void ev_set_ref(struct norm *n, const char *ref)
{
	ev_set_str(n, "ref", ref);
	ev_set_str(n, "branch", after_prefix(ref, "refs/heads/"));
	ev_set_str(n, "tag", after_prefix(ref, "refs/tags/"));
}

static void ev_set_branch_ref(struct norm *n, const char *branch)
{
	char *ref = branch != NULL ? xasprintf("refs/heads/%s", branch) : NULL;
	ev_set_str(n, "ref", ref);
	ev_set_str(n, "branch", branch);
	free(ref);
}

/* "0000…" is git's way of saying "no commit": never something to build. */
static bool is_zero_sha(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (*s != '0')
			return false;
	return true;
}

static const char *buildable_sha(const char *s)
{
	return s != NULL && *s != '\0' && !is_zero_sha(s) ? s : NULL;
}

static json_t *pr_object(json_t *number, const char *base, const char *head, const char *head_sha,
			 const char *title, bool is_merged)
{
	json_t *pr = json_object();
	json_object_set_new(pr, "number", number != NULL ? number : json_null());
	json_object_set_new(pr, "base", json_str_or_null(base));
	json_object_set_new(pr, "head", json_str_or_null(head));
	json_object_set_new(pr, "head_sha", json_str_or_null(head_sha));
	json_object_set_new(pr, "title", json_str_or_null(title));
	json_object_set_new(pr, "merged", json_boolean(is_merged));
	return pr;
}

/* ---- GitHub ---- */

static int github_common(struct norm *n, const json_t *body)
{
	json_t *repo, *sender, *pusher;
	const char *full_name, *clone_url, *login, *pusher_name = NULL;
	if (get_obj(n, body, "", "repository", true, &repo) < 0 ||
	    get_str(n, repo, "repository", "full_name", true, &full_name) < 0 ||
	    get_str(n, repo, "repository", "clone_url", false, &clone_url) < 0 ||
	    get_obj(n, body, "", "sender", false, &sender) < 0 ||
	    get_str(n, sender, "sender", "login", false, &login) < 0)
		return -1;
	if (login == NULL && (get_obj(n, body, "", "pusher", false, &pusher) < 0 ||
			      get_str(n, pusher, "pusher", "name", false, &pusher_name) < 0))
		return -1;
	ev_set_str(n, "repo", full_name);
	ev_set_str(n, "clone_url", clone_url);
	ev_set_str(n, "actor", login != NULL ? login : pusher_name);
	return 0;
}

/*
 * paths = every file added, modified or removed by any commit of the push,
 * each once, in order of first appearance; null when there is no commits
 * array at all. A hash set keeps this linear on hostile commit lists.
 */
static int github_paths(struct norm *n, const json_t *body)
{
	static const char *const lists[] = {"added", "modified", "removed"};
	json_t *commits;
	if (get_arr(n, body, "", "commits", false, &commits) < 0)
		return -1;
	if (commits == NULL)
		return 0;
	json_t *paths = json_array(), *seen = json_object();
	size_t i;
	json_t *commit;
	json_array_foreach(commits, i, commit)
	{
		if (!json_is_object(commit)) {
			norm_fail(n, EVENT_MALFORMED, "commits[%zu] is not an object", i);
			goto fail;
		}
		for (size_t k = 0; k < ARRAY_LEN(lists); k++) {
			json_t *list = json_object_get(commit, lists[k]);
			if (list == NULL || json_is_null(list))
				continue;
			if (!json_is_array(list)) {
				norm_fail(n, EVENT_MALFORMED, "commits[%zu].%s is not an array", i,
					  lists[k]);
				goto fail;
			}
			size_t j;
			json_t *path;
			json_array_foreach(list, j, path)
			{
				if (!json_is_string(path)) {
					norm_fail(n, EVENT_MALFORMED,
						  "commits[%zu].%s[%zu] is not a string", i,
						  lists[k], j);
					goto fail;
				}
				const char *s = json_string_value(path);
				if (json_object_get(seen, s) != NULL)
					continue;
				json_object_set_new(seen, s, json_true());
				json_array_append(paths, path);
			}
		}
	}
	json_decref(seen);
	ev_set(n, "paths", paths);
	return 0;
fail:
	json_decref(seen);
	json_decref(paths);
	return -1;
}

/*
 * A push: branch update ("pushed"), tag ("tag") or deletion of either
 * ("deleted", sha null). The zero sha is never a commit, neither as sha nor
 * as before.
 */
static enum event_outcome github_push(struct norm *n, const json_t *body)
{
	n->what = "github push";
	const char *ref, *before, *after, *message = NULL;
	bool is_deleted;
	json_t *head_commit;
	if (get_str(n, body, "", "ref", true, &ref) < 0 ||
	    get_str(n, body, "", "before", false, &before) < 0 ||
	    get_str(n, body, "", "after", false, &after) < 0 ||
	    get_bool(n, body, "", "deleted", &is_deleted) < 0 ||
	    get_obj(n, body, "", "head_commit", false, &head_commit) < 0 ||
	    get_str(n, head_commit, "head_commit", "message", false, &message) < 0 ||
	    github_common(n, body) < 0 || github_paths(n, body) < 0)
		return EVENT_MALFORMED;
	is_deleted = is_deleted || is_zero_sha(after);
	bool is_tag = after_prefix(ref, "refs/tags/") != NULL;
	ev_set_str(n, "kind", "push");
	ev_set_str(n, "action", is_deleted ? "deleted" : is_tag ? "tag" : "pushed");
	ev_set_ref(n, ref);
	ev_set_str(n, "sha", is_deleted ? NULL : buildable_sha(after));
	ev_set_str(n, "before", buildable_sha(before));
	ev_set_str(n, "message", message);
	return EVENT_OK;
}

/*
 * A pull request: every action passes through, except closed with
 * merged:true, which is "merged" and builds the base branch at the merge
 * commit (head sha when GitHub did not say). An open PR's ref is
 * refs/pull/N/head, the one ref that also exists for forks.
 */
static enum event_outcome github_pull_request(struct norm *n, const json_t *body)
{
	n->what = "github pull_request";
	json_t *pr, *head, *base, *number;
	const char *action, *head_ref, *head_sha, *base_ref, *title, *merge_sha, *before;
	bool is_pr_merged;
	if (get_str(n, body, "", "action", true, &action) < 0 ||
	    get_obj(n, body, "", "pull_request", true, &pr) < 0 ||
	    field_get(n, body, "", "number", JSON_INTEGER, false, &number) < 0 ||
	    (number == NULL &&
	     field_get(n, pr, "pull_request", "number", JSON_INTEGER, true, &number) < 0) ||
	    get_obj(n, pr, "pull_request", "head", true, &head) < 0 ||
	    get_str(n, head, "pull_request.head", "ref", true, &head_ref) < 0 ||
	    get_str(n, head, "pull_request.head", "sha", true, &head_sha) < 0 ||
	    get_obj(n, pr, "pull_request", "base", true, &base) < 0 ||
	    get_str(n, base, "pull_request.base", "ref", true, &base_ref) < 0 ||
	    get_str(n, pr, "pull_request", "title", false, &title) < 0 ||
	    get_str(n, pr, "pull_request", "merge_commit_sha", false, &merge_sha) < 0 ||
	    get_bool(n, pr, "pull_request", "merged", &is_pr_merged) < 0 ||
	    get_str(n, body, "", "before", false, &before) < 0 || github_common(n, body) < 0)
		return EVENT_MALFORMED;
	bool is_merged = strcmp(action, "closed") == 0 && is_pr_merged;
	ev_set_str(n, "kind", "pull_request");
	ev_set_str(n, "action", is_merged ? "merged" : action);
	if (is_merged) {
		ev_set_branch_ref(n, base_ref);
		ev_set_str(n, "sha", buildable_sha(merge_sha) ? merge_sha : head_sha);
	} else {
		char *ref = xasprintf("refs/pull/%" JSON_INTEGER_FORMAT "/head",
				      json_integer_value(number));
		ev_set_str(n, "ref", ref);
		free(ref);
		ev_set_str(n, "branch", head_ref);
		ev_set_str(n, "sha", head_sha);
	}
	ev_set_str(n, "before", buildable_sha(before));
	ev_set(n, "pr",
	       pr_object(json_copy(number), base_ref, head_ref, head_sha, title, is_pr_merged));
	ev_set_str(n, "message", title);
	return EVENT_OK;
}

/* GitHub body for event (X-GitHub-Event or the CloudEvents type); id may be NULL. */
static enum event_outcome github_normalize(struct norm *n, const char *event, const json_t *body,
					   const char *id)
{
	enum event_outcome rc;
	if (strcmp(event, "ping") == 0) {
		n->what = "github ping";
		return norm_fail(n, EVENT_IGNORED, "a webhook test, nothing to build");
	} else if (strcmp(event, "push") == 0) {
		rc = github_push(n, body);
	} else if (strcmp(event, "pull_request") == 0) {
		rc = github_pull_request(n, body);
	} else {
		n->what = "github";
		return norm_fail(n, EVENT_UNKNOWN, "event \"%s\" is not handled", event);
	}
	if (rc == EVENT_OK) {
		ev_set_str(n, "id", id);
		ev_set_str(n, "source", "github");
	}
	return rc;
}

/* ---- Azure DevOps service hooks ---- */

static const char *strip_heads(const char *ref)
{
	const char *branch = after_prefix(ref, "refs/heads/");
	return branch != NULL ? branch : ref;
}

/* repo = "project/repository", clone_url = remoteUrl. */
static int azure_repo(struct norm *n, const json_t *resource)
{
	json_t *repo, *project;
	const char *name, *project_name, *remote_url;
	if (get_obj(n, resource, "resource", "repository", true, &repo) < 0 ||
	    get_str(n, repo, "resource.repository", "name", true, &name) < 0 ||
	    get_obj(n, repo, "resource.repository", "project", true, &project) < 0 ||
	    get_str(n, project, "resource.repository.project", "name", true, &project_name) < 0 ||
	    get_str(n, repo, "resource.repository", "remoteUrl", false, &remote_url) < 0)
		return -1;
	char *full = xasprintf("%s/%s", project_name, name);
	ev_set_str(n, "repo", full);
	free(full);
	ev_set_str(n, "clone_url", remote_url);
	return 0;
}

static int azure_identity(struct norm *n, const json_t *resource, const char *key)
{
	json_t *who;
	const char *unique_name, *display_name;
	char path[64];
	snprintf(path, sizeof path, "resource.%s", key);
	if (get_obj(n, resource, "resource", key, false, &who) < 0 ||
	    get_str(n, who, path, "uniqueName", false, &unique_name) < 0 ||
	    get_str(n, who, path, "displayName", false, &display_name) < 0)
		return -1;
	ev_set_str(n, "actor", unique_name != NULL ? unique_name : display_name);
	return 0;
}

/* git.push: the first ref update is the push (Azure lists one per ref). */
static enum event_outcome azure_push(struct norm *n, const json_t *resource)
{
	n->what = "azure devops git.push";
	json_t *updates, *commits;
	const char *ref, *old_id, *new_id, *message;
	if (get_arr(n, resource, "resource", "refUpdates", true, &updates) < 0)
		return EVENT_MALFORMED;
	json_t *update = json_array_get(updates, 0);
	if (!json_is_object(update))
		return norm_fail(n, EVENT_MALFORMED,
				 "resource.refUpdates[0] is missing or not an object");
	if (get_str(n, update, "resource.refUpdates[0]", "name", true, &ref) < 0 ||
	    get_str(n, update, "resource.refUpdates[0]", "oldObjectId", false, &old_id) < 0 ||
	    get_str(n, update, "resource.refUpdates[0]", "newObjectId", false, &new_id) < 0 ||
	    get_arr(n, resource, "resource", "commits", false, &commits) < 0 ||
	    azure_repo(n, resource) < 0 || azure_identity(n, resource, "pushedBy") < 0)
		return EVENT_MALFORMED;
	json_t *first = json_array_get(commits, 0);
	if (first != NULL && !json_is_object(first))
		return norm_fail(n, EVENT_MALFORMED, "resource.commits[0] is not an object");
	if (get_str(n, first, "resource.commits[0]", "comment", false, &message) < 0)
		return EVENT_MALFORMED;
	bool is_deleted = is_zero_sha(new_id);
	ev_set_str(n, "kind", "push");
	ev_set_str(n, "action",
		   is_deleted				     ? "deleted"
		   : after_prefix(ref, "refs/tags/") != NULL ? "tag"
							     : "pushed");
	ev_set_ref(n, ref);
	ev_set_str(n, "sha", buildable_sha(new_id));
	ev_set_str(n, "before", buildable_sha(old_id));
	ev_set_str(n, "message", message);
	return EVENT_OK;
}

/*
 * git.pullrequest.created → "opened"; updated → "synchronize" while the PR
 * is active, "closed" when abandoned; merged → "merged". Azure also sends
 * "updated" when a PR is completed and "merged" whenever it builds a test
 * merge commit for an active PR: the first is ignored (the merged event
 * reports the completion, so a merge never counts twice), the second too,
 * so that only a completed, successful merge can ever deploy.
 */
static enum event_outcome azure_pull_request(struct norm *n, const char *kind,
					     const json_t *resource)
{
	n->what = strcmp(kind, "created") == 0	 ? "azure devops git.pullrequest.created"
		  : strcmp(kind, "updated") == 0 ? "azure devops git.pullrequest.updated"
						 : "azure devops git.pullrequest.merged";
	json_t *number, *source_commit, *merge_commit;
	const char *source_ref, *target_ref, *title, *status, *merge_status, *head_sha, *merge_sha;
	if (field_get(n, resource, "resource", "pullRequestId", JSON_INTEGER, true, &number) < 0 ||
	    get_str(n, resource, "resource", "sourceRefName", true, &source_ref) < 0 ||
	    get_str(n, resource, "resource", "targetRefName", true, &target_ref) < 0 ||
	    get_str(n, resource, "resource", "title", false, &title) < 0 ||
	    get_str(n, resource, "resource", "status", false, &status) < 0 ||
	    get_str(n, resource, "resource", "mergeStatus", false, &merge_status) < 0 ||
	    get_obj(n, resource, "resource", "lastMergeSourceCommit", false, &source_commit) < 0 ||
	    get_str(n, source_commit, "resource.lastMergeSourceCommit", "commitId", false,
		    &head_sha) < 0 ||
	    get_obj(n, resource, "resource", "lastMergeCommit", false, &merge_commit) < 0 ||
	    get_str(n, merge_commit, "resource.lastMergeCommit", "commitId", false, &merge_sha) <
		0 ||
	    azure_repo(n, resource) < 0 || azure_identity(n, resource, "createdBy") < 0)
		return EVENT_MALFORMED;
	const char *action;
	if (strcmp(kind, "created") == 0) {
		action = "opened";
	} else if (strcmp(kind, "updated") == 0) {
		if (status != NULL && strcmp(status, "completed") == 0)
			return norm_fail(n, EVENT_IGNORED,
					 "pull request %" JSON_INTEGER_FORMAT
					 " completed; git.pullrequest.merged reports the merge",
					 json_integer_value(number));
		action =
		    status != NULL && strcmp(status, "abandoned") == 0 ? "closed" : "synchronize";
	} else {
		if (status != NULL && strcmp(status, "completed") != 0)
			return norm_fail(n, EVENT_IGNORED,
					 "pull request %" JSON_INTEGER_FORMAT
					 " is %s: a test merge commit, not a completed merge",
					 json_integer_value(number), status);
		if (merge_status != NULL && strcmp(merge_status, "succeeded") != 0)
			return norm_fail(n, EVENT_IGNORED,
					 "pull request %" JSON_INTEGER_FORMAT " merge status is %s",
					 json_integer_value(number), merge_status);
		action = "merged";
	}
	bool is_merged = strcmp(action, "merged") == 0;
	ev_set_str(n, "kind", "pull_request");
	ev_set_str(n, "action", action);
	ev_set_str(n, "ref", is_merged ? target_ref : source_ref);
	ev_set_str(n, "branch", strip_heads(is_merged ? target_ref : source_ref));
	ev_set_str(n, "sha", is_merged && buildable_sha(merge_sha) ? merge_sha : head_sha);
	ev_set(n, "pr",
	       pr_object(json_copy(number), strip_heads(target_ref), strip_heads(source_ref),
			 head_sha, title, is_merged));
	ev_set_str(n, "message", title);
	return EVENT_OK;
}

/* A service-hook body of event_type (its eventType or the CloudEvents type suffix). */
static enum event_outcome azure_normalize(struct norm *n, const char *event_type,
					  const json_t *body, const char *id)
{
	n->what = "azure devops";
	const char *pr_kind = after_prefix(event_type, "git.pullrequest.");
	bool is_push = strcmp(event_type, "git.push") == 0;
	bool is_pr =
	    pr_kind != NULL && (strcmp(pr_kind, "created") == 0 ||
				strcmp(pr_kind, "updated") == 0 || strcmp(pr_kind, "merged") == 0);
	if (!is_push && !is_pr)
		return norm_fail(n, EVENT_UNKNOWN, "event type \"%s\" is not handled", event_type);
	json_t *resource;
	if (get_obj(n, body, "", "resource", true, &resource) < 0)
		return EVENT_MALFORMED;
	enum event_outcome rc =
	    is_push ? azure_push(n, resource) : azure_pull_request(n, pr_kind, resource);
	if (rc == EVENT_OK) {
		ev_set_str(n, "id", id);
		ev_set_str(n, "source", "azure-devops");
	}
	return rc;
}

static enum event_outcome azure_raw(struct norm *n, const json_t *body)
{
	n->what = "azure devops";
	const char *event_type, *id;
	if (get_str(n, body, "", "eventType", true, &event_type) < 0 ||
	    get_str(n, body, "", "id", false, &id) < 0)
		return EVENT_MALFORMED;
	return azure_normalize(n, event_type, body, id);
}

/* ---- drift ---- */

/* info | warning | critical, from the words monitoring tools use; NULL if none. */
static const char *severity_normalize(const char *s)
{
	static const struct {
		const char *word, *severity;
	} words[] = {
	    {"info", "info"},	   {"low", "info"},	  {"warning", "warning"},
	    {"warn", "warning"},   {"medium", "warning"}, {"critical", "critical"},
	    {"error", "critical"}, {"high", "critical"},
	};
	for (size_t i = 0; i < ARRAY_LEN(words); i++)
		if (strcasecmp(s, words[i].word) == 0)
			return words[i].severity;
	return NULL;
}

static const struct event_model_map *model_find(const struct event_options *opt, const char *model)
{
	for (size_t i = 0; i < opt->n_models; i++)
		if (opt->models[i].model != NULL && strcmp(opt->models[i].model, model) == 0)
			return &opt->models[i];
	return NULL;
}

/* The model an alert (by name or id) stands for in agent.yaml; NULL if unmapped. */
static const char *alert_model(const struct event_options *opt, const char *name, const char *id)
{
	for (size_t i = 0; i < opt->n_alerts; i++) {
		const char *alert = opt->alerts[i].alert;
		if (alert == NULL)
			continue;
		if ((name != NULL && strcmp(alert, name) == 0) ||
		    (id != NULL && strcmp(alert, id) == 0))
			return opt->alerts[i].model;
	}
	return NULL;
}

static json_t *json_copy_or_null(const json_t *v)
{
	json_t *copy = v != NULL ? json_deep_copy(v) : NULL;
	return copy != NULL ? copy : json_null();
}

/*
 * Emits a drift event. The repository and branch come from the payload,
 * else from the model's entry in agent.yaml (its branch only when the
 * payload named no other repository). Severity defaults to warning.
 */
static enum event_outcome drift_emit(struct norm *n, const struct drift *d, const char *id,
				     const char *source)
{
	const char *severity = d->severity != NULL ? severity_normalize(d->severity) : "warning";
	if (severity == NULL)
		return norm_fail(n, EVENT_MALFORMED,
				 "severity \"%s\" is not one of info, warning, critical "
				 "(or low, medium, high, error)",
				 d->severity);
	const struct event_model_map *m = model_find(n->opt, d->model);
	const char *repo = d->repo != NULL ? d->repo : m != NULL ? m->repo : NULL;
	if (repo == NULL || *repo == '\0') {
		n->what = NULL;
		return norm_fail(n, EVENT_MALFORMED,
				 "drift for model %s names no repository and none is configured",
				 d->model);
	}
	const char *branch = d->branch;
	if (branch == NULL && m != NULL &&
	    (d->repo == NULL || (m->repo != NULL && strcmp(m->repo, d->repo) == 0)))
		branch = m->branch;
	ev_set_str(n, "id", id);
	ev_set_str(n, "kind", "drift");
	ev_set_str(n, "action", "detected");
	ev_set_str(n, "source", source);
	ev_set_str(n, "repo", repo);
	ev_set_str(n, "clone_url", d->clone_url);
	ev_set_branch_ref(n, branch);
	ev_set_str(n, "actor", d->actor);
	json_t *drift = json_object();
	json_object_set_new(drift, "model", json_str_or_null(d->model));
	json_object_set_new(drift, "environment", json_str_or_null(d->environment));
	json_object_set_new(drift, "metric", json_str_or_null(d->metric));
	json_object_set_new(drift, "feature", json_str_or_null(d->feature));
	json_object_set_new(drift, "value", json_copy_or_null(d->value));
	json_object_set_new(drift, "threshold", json_copy_or_null(d->threshold));
	json_object_set_new(drift, "severity", json_string(severity));
	json_object_set_new(drift, "window", json_copy_or_null(d->window));
	ev_set(n, "drift", drift);
	return EVENT_OK;
}

/*
 * drover's own drift JSON: {model, environment, metric, feature, value,
 * threshold, severity, window, repo?, branch?} plus optional id, clone_url
 * and actor. window is a string ("2026-11-01/2026-11-08") or an object.
 */
static enum event_outcome drover_drift(struct norm *n, const json_t *body, const char *id)
{
	n->what = "drift";
	struct drift d = {0};
	json_t *value, *threshold;
	if (get_str(n, body, "", "model", true, &d.model) < 0 ||
	    get_str(n, body, "", "environment", false, &d.environment) < 0 ||
	    get_str(n, body, "", "metric", false, &d.metric) < 0 ||
	    get_str(n, body, "", "feature", false, &d.feature) < 0 ||
	    get_str(n, body, "", "severity", false, &d.severity) < 0 ||
	    field_get(n, body, "", "value", JSON_REAL, false, &value) < 0 ||
	    field_get(n, body, "", "threshold", JSON_REAL, false, &threshold) < 0 ||
	    get_str(n, body, "", "repo", false, &d.repo) < 0 ||
	    get_str(n, body, "", "branch", false, &d.branch) < 0 ||
	    get_str(n, body, "", "clone_url", false, &d.clone_url) < 0 ||
	    get_str(n, body, "", "actor", false, &d.actor) < 0 ||
	    (id == NULL && get_str(n, body, "", "id", false, &id) < 0))
		return EVENT_MALFORMED;
	json_t *window = json_object_get(body, "window");
	if (window != NULL && !json_is_null(window) && !json_is_string(window) &&
	    !json_is_object(window))
		return norm_fail(n, EVENT_MALFORMED, "window is not a string or an object");
	d.value = value;
	d.threshold = threshold;
	d.window = window;
	return drift_emit(n, &d, id, "drover");
}

/*
 * The model an incident's artifactId names. A package URL keeps its last
 * path segment without version, qualifiers or subpath
 * ("pkg:mlflow/acme/churn-model@7?x=y" → "churn-model"); anything else
 * loses only an "@version". Percent-escapes are not decoded. Caller frees.
 */
static char *model_from_artifact(const char *artifact)
{
	size_t len = strcspn(artifact, "?#");
	const char *start = artifact;
	if (strncmp(artifact, "pkg:", 4) == 0) {
		start = artifact + 4;
		for (const char *p = start; p < artifact + len; p++)
			if (*p == '/')
				start = p + 1;
	}
	return xstrndup(start, strcspn(start, "@?#"));
}

/*
 * CDEvents incident.detected as a drift: subject.content.artifactId names
 * the model (an alert name from agent.yaml, else a package URL or a bare
 * model name), environment.id is the environment. customData may add
 * severity (default warning), metric, feature, repo and branch.
 */
static enum event_outcome cdevents_incident(struct norm *n, const json_t *data, const char *id)
{
	n->what = "cdevents incident.detected";
	json_t *subject, *content, *environment;
	const char *artifact;
	struct drift d = {0};
	if (get_obj(n, data, "", "subject", true, &subject) < 0 ||
	    get_obj(n, subject, "subject", "content", true, &content) < 0 ||
	    get_str(n, content, "subject.content", "artifactId", false, &artifact) < 0 ||
	    get_obj(n, content, "subject.content", "environment", false, &environment) < 0 ||
	    get_str(n, environment, "subject.content.environment", "id", false, &d.environment) < 0)
		return EVENT_MALFORMED;
	if (artifact == NULL || *artifact == '\0')
		return norm_fail(n, EVENT_MALFORMED,
				 "subject.content.artifactId is missing: it must name the model");
	json_t *custom = json_object_get(data, "customData");
	if (!json_is_object(custom))
		custom = NULL;
	d.severity = loose_str(custom, "severity");
	d.metric = loose_str(custom, "metric");
	d.feature = loose_str(custom, "feature");
	d.repo = loose_str(custom, "repo");
	d.branch = loose_str(custom, "branch");
	const char *mapped = alert_model(n->opt, artifact, NULL);
	char *model = mapped != NULL ? xstrdup(mapped) : model_from_artifact(artifact);
	enum event_outcome rc;
	if (*model == '\0') {
		rc = norm_fail(n, EVENT_MALFORMED, "artifactId \"%s\" names no model", artifact);
	} else {
		d.model = model;
		rc = drift_emit(n, &d, id, "cloudevents");
	}
	free(model);
	return rc;
}

/* ---- Databricks SQL alerts ---- */

/*
 * The alert's state, wherever this version of the payload keeps it: a
 * "state" member (top level, alert, alert.alert, alert.alert.evaluation),
 * else the summary line "... changed status to TRIGGERED". Written into buf.
 */
static int databricks_state(struct norm *n, const json_t *body, const json_t *alert,
			    const json_t *inner, char *buf, size_t buf_len)
{
	json_t *evaluation;
	const char *state = NULL, *title;
	if (get_str(n, body, "", "state", false, &state) < 0 ||
	    (state == NULL && get_str(n, alert, "alert", "state", false, &state) < 0) ||
	    (state == NULL && get_str(n, inner, "alert.alert", "state", false, &state) < 0) ||
	    get_obj(n, inner, "alert.alert", "evaluation", false, &evaluation) < 0 ||
	    (state == NULL &&
	     get_str(n, evaluation, "alert.alert.evaluation", "state", false, &state) < 0) ||
	    get_str(n, alert, "alert", "title", false, &title) < 0)
		return -1;
	if (state == NULL && title != NULL) {
		const char *p = strstr(title, "changed status to ");
		if (p != NULL) {
			p += strlen("changed status to ");
			size_t len =
			    strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_");
			snprintf(buf, buf_len, "%.*s", (int)(len < buf_len ? len : buf_len - 1), p);
			return 0;
		}
	}
	if (state == NULL) {
		norm_fail(n, EVENT_MALFORMED, "the alert's state is missing");
		return -1;
	}
	snprintf(buf, buf_len, "%s", state);
	return 0;
}

/* An alert id is a string in current payloads and a number in legacy ones. */
static int databricks_id(struct norm *n, const json_t *obj, const char *path, char *buf,
			 size_t buf_len)
{
	json_t *v = obj != NULL ? json_object_get(obj, "id") : NULL;
	buf[0] = '\0';
	if (v == NULL || json_is_null(v))
		return 0;
	if (json_is_string(v))
		snprintf(buf, buf_len, "%s", json_string_value(v));
	else if (json_is_integer(v))
		snprintf(buf, buf_len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else {
		norm_fail(n, EVENT_MALFORMED, "%s.id is not a string or an integer", path);
		return -1;
	}
	return 0;
}

/*
 * alert_state_change: TRIGGERED is a drift of the model the alert is mapped
 * to in agent.yaml (by name or id), severity warning; OK, UNKNOWN and ERROR
 * start nothing. The first evaluation, when present, lends its column name
 * as metric and its threshold.
 */
static enum event_outcome databricks_alert(struct norm *n, const json_t *body)
{
	n->what = "databricks alert";
	json_t *alert, *inner;
	const char *name = NULL;
	char state[32], id[128];
	if (get_obj(n, body, "", "alert", false, &alert) < 0 ||
	    get_obj(n, alert, "alert", "alert", false, &inner) < 0 ||
	    get_str(n, inner, "alert.alert", "name", false, &name) < 0 ||
	    (name == NULL && get_str(n, alert, "alert", "name", false, &name) < 0) ||
	    databricks_id(n, inner, "alert.alert", id, sizeof id) < 0 ||
	    (id[0] == '\0' && databricks_id(n, alert, "alert", id, sizeof id) < 0) ||
	    databricks_state(n, body, alert, inner, state, sizeof state) < 0)
		return EVENT_MALFORMED;
	const char *label = name != NULL ? name : id;
	if (strcasecmp(state, "OK") == 0)
		return norm_fail(n, EVENT_IGNORED, "\"%s\" is back to OK", label);
	if (strcasecmp(state, "TRIGGERED") != 0)
		return norm_fail(n, EVENT_IGNORED, "\"%s\" is %s; only TRIGGERED starts a run",
				 label, state);
	if (name == NULL && id[0] == '\0')
		return norm_fail(n, EVENT_MALFORMED,
				 "alert.alert.name and alert.alert.id are missing");
	const char *model = alert_model(n->opt, name, id[0] != '\0' ? id : NULL);
	if (model == NULL)
		return norm_fail(n, EVENT_MALFORMED,
				 "alert \"%s\" (id %s) is not mapped to a model in agent.yaml",
				 label, id[0] != '\0' ? id : "unknown");
	json_t *evaluation = json_object_get(inner, "evaluation");
	if (!json_is_object(evaluation))
		evaluation = json_array_get(json_object_get(inner, "evaluations"), 0);
	json_t *threshold = json_object_get(
	    json_object_get(json_object_get(evaluation, "threshold"), "value"), "double_value");
	struct drift d = {
	    .model = model,
	    .severity = "warning",
	    .metric = loose_str(json_object_get(evaluation, "source"), "name"),
	    .threshold = json_is_number(threshold) ? threshold : NULL,
	};
	return drift_emit(n, &d, NULL, "databricks");
}

/* ---- CloudEvents / CDEvents ---- */

/* s is base, or base followed by ".<version>". */
static bool type_is_versioned(const char *s, const char *base)
{
	const char *rest = after_prefix(s, base);
	return rest != NULL && (*rest == '\0' || (*rest == '.' && rest[1] != '\0'));
}

/*
 * CDEvents change.<predicate> as a pull request. CDEvents defines only the
 * change id and subject.content.repository.id ("owner/name"), so drover
 * reads the rest from customData by its own convention: head, base, sha
 * (the commit to build), head_sha, title, clone_url, actor. Predicates map
 * to GitHub's words: created → opened, updated → synchronize, merged,
 * abandoned → closed, reviewed. A numeric change id is the PR number; a
 * merged change builds its base branch.
 */
static enum event_outcome cdevents_change(struct norm *n, const char *rest, const json_t *data,
					  const char *id)
{
	static const struct {
		const char *predicate, *action;
	} actions[] = {
	    {"created", "opened"},   {"updated", "synchronize"}, {"merged", "merged"},
	    {"abandoned", "closed"}, {"reviewed", "reviewed"},
	};
	n->what = "cdevents change";
	size_t len = strcspn(rest, ".");
	const char *action = NULL;
	for (size_t i = 0; i < ARRAY_LEN(actions); i++)
		if (strlen(actions[i].predicate) == len &&
		    strncmp(rest, actions[i].predicate, len) == 0)
			action = actions[i].action;
	if (action == NULL)
		return norm_fail(n, EVENT_UNKNOWN, "predicate \"%.*s\" is not handled", (int)len,
				 rest);
	json_t *subject, *content, *repository;
	const char *change_id, *repo;
	if (get_obj(n, data, "", "subject", true, &subject) < 0 ||
	    get_str(n, subject, "subject", "id", true, &change_id) < 0 ||
	    get_obj(n, subject, "subject", "content", true, &content) < 0 ||
	    get_obj(n, content, "subject.content", "repository", true, &repository) < 0 ||
	    get_str(n, repository, "subject.content.repository", "id", true, &repo) < 0)
		return EVENT_MALFORMED;
	json_t *custom = json_object_get(data, "customData");
	if (!json_is_object(custom))
		custom = NULL;
	const char *head = loose_str(custom, "head"), *base = loose_str(custom, "base");
	const char *sha = loose_str(custom, "sha"), *head_sha = loose_str(custom, "head_sha");
	const char *title = loose_str(custom, "title");
	bool is_merged = strcmp(action, "merged") == 0;
	json_t *number = NULL;
	size_t digits = strspn(change_id, "0123456789");
	if (digits > 0 && digits <= 18 && change_id[digits] == '\0')
		number = json_integer((json_int_t)strtoll(change_id, NULL, 10));
	if (head_sha == NULL && !is_merged)
		head_sha = sha;
	ev_set_str(n, "id", id);
	ev_set_str(n, "kind", "pull_request");
	ev_set_str(n, "action", action);
	ev_set_str(n, "source", "cloudevents");
	ev_set_str(n, "repo", repo);
	ev_set_str(n, "clone_url", loose_str(custom, "clone_url"));
	ev_set_branch_ref(n, is_merged ? base : head);
	ev_set_str(n, "sha", buildable_sha(sha));
	ev_set(n, "pr", pr_object(number, base, head, head_sha, title, is_merged));
	ev_set_str(n, "message", title);
	ev_set_str(n, "actor", loose_str(custom, "actor"));
	return EVENT_OK;
}

/* A positive integer member of obj, or -1 with the error recorded. */
static json_int_t get_positive(struct norm *n, const json_t *obj, const char *path, const char *key)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_integer(v) || json_integer_value(v) < 1) {
		norm_fail(n, EVENT_MALFORMED, "%s%s%s is not a positive integer", path,
			  path[0] != '\0' ? "." : "", key);
		return -1;
	}
	return json_integer_value(v);
}

/* Every element of arr is a string (with what = NULL) or an object with a string "name". */
static int check_names(struct norm *n, const json_t *arr, const char *path, bool is_objects)
{
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v)
	{
		const json_t *name = is_objects ? json_object_get(v, "name") : v;
		if (!json_is_string(name) || json_string_length(name) == 0) {
			norm_fail(n, EVENT_MALFORMED, "%s[%zu] is not a stage %s", path, i,
				  is_objects ? "with a name" : "name");
			return -1;
		}
	}
	return 0;
}

/*
 * drover's own replay command (replay.h): the canonical event carries the
 * facts of the run's stored event (so stages see what they saw the first
 * time), the command's id, and the whole command as "replay". The receiving
 * agent rebuilds and validates the pipeline definition itself.
 */
static enum event_outcome drover_replay(struct norm *n, const json_t *data, const char *id)
{
	n->what = "drover replay command";
	const char *origin, *mode, *pipeline, *repo;
	json_t *stages, *snapshot, *event, *definition, *snap_stages, *outputs;
	if (get_str(n, data, "", "origin_agent", true, &origin) < 0 ||
	    get_positive(n, data, "", "run_id") < 0 || get_positive(n, data, "", "attempt") < 0 ||
	    get_arr(n, data, "", "stages", true, &stages) < 0 ||
	    check_names(n, stages, "stages", false) < 0 ||
	    get_str(n, data, "", "mode", true, &mode) < 0 ||
	    get_obj(n, data, "", "snapshot", true, &snapshot) < 0 ||
	    get_str(n, snapshot, "snapshot", "pipeline", true, &pipeline) < 0 ||
	    get_obj(n, snapshot, "snapshot", "event", true, &event) < 0 ||
	    get_str(n, event, "snapshot.event", "repo", true, &repo) < 0 ||
	    get_obj(n, snapshot, "snapshot", "definition", true, &definition) < 0 ||
	    get_arr(n, snapshot, "snapshot", "stages", true, &snap_stages) < 0 ||
	    check_names(n, snap_stages, "snapshot.stages", true) < 0 ||
	    get_obj(n, snapshot, "snapshot", "outputs", true, &outputs) < 0)
		return EVENT_MALFORMED;
	static const char *const facts[] = {"kind",   "action",	 "repo", "clone_url",
					    "ref",    "branch",	 "tag",	 "sha",
					    "before", "message", "actor"};
	for (size_t i = 0; i < ARRAY_LEN(facts); i++)
		ev_set_str(n, facts[i], loose_str(event, facts[i]));
	if (loose_str(event, "kind") == NULL)
		ev_set_str(n, "kind", "manual");
	static const char *const objects[] = {"pr", "drift"};
	for (size_t i = 0; i < ARRAY_LEN(objects); i++) {
		json_t *v = json_object_get(event, objects[i]);
		ev_set(n, objects[i], json_is_object(v) ? json_deep_copy(v) : NULL);
	}
	json_t *paths = json_object_get(event, "paths");
	ev_set(n, "paths", json_is_array(paths) ? json_deep_copy(paths) : NULL);
	ev_set_str(n, "id", id);
	ev_set_str(n, "source", "drover");
	ev_set(n, "replay", json_deep_copy(data));
	return EVENT_OK;
}

/* Routes a CloudEvent by type; data is its (object) data, id its id. */
static enum event_outcome cloudevent_dispatch(struct norm *n, const char *type, const char *id,
					      const json_t *data)
{
	const char *rest;
	if ((rest = after_prefix(type, "com.github.")) != NULL && *rest != '\0')
		return github_normalize(n, rest, data, id);
	if ((rest = after_prefix(type, "com.azure.devops.")) != NULL && *rest != '\0')
		return azure_normalize(n, rest, data, id);
	if ((rest = after_prefix(type, "dev.cdevents.change.")) != NULL && *rest != '\0')
		return cdevents_change(n, rest, data, id);
	if (type_is_versioned(type, "dev.cdevents.incident.detected"))
		return cdevents_incident(n, data, id);
	if (type_is_versioned(type, "dev.cdeventsx.drover-drift.detected"))
		return drover_drift(n, data, id);
	if (type_is_versioned(type, "dev.cdeventsx.drover-replay.requested"))
		return drover_replay(n, data, id);
	n->what = "cloudevent";
	return norm_fail(n, EVENT_UNKNOWN, "type \"%s\" is not handled", type);
}

/*
 * A header's value as a JSON string (absent or empty: *out NULL). A NUL
 * byte or text that is not UTF-8 is malformed: ids and types are text.
 */
static int header_string(struct norm *n, const char *name, const char *alt, json_t **out)
{
	const struct event_header *h = event_header_find(n->in, name);
	if (h == NULL && alt != NULL)
		h = event_header_find(n->in, alt);
	*out = NULL;
	if (h == NULL || h->value == NULL || h->value_len == 0)
		return 0;
	if (memchr(h->value, '\0', h->value_len) != NULL) {
		norm_fail(n, EVENT_MALFORMED, "header %s contains a NUL byte", name);
		return -1;
	}
	*out = json_stringn(h->value, h->value_len);
	if (*out == NULL) {
		norm_fail(n, EVENT_MALFORMED, "header %s is not valid UTF-8", name);
		return -1;
	}
	return 0;
}

/* Binary mode: ce_* (or ce-*) headers carry the attributes, the payload is data. */
static enum event_outcome cloudevent_binary(struct norm *n, const char *type, const json_t *data)
{
	static const char *const required[][2] = {
	    {"ce_id", "ce-id"}, {"ce_source", "ce-source"}, {"ce_specversion", "ce-specversion"}};
	json_t *values[ARRAY_LEN(required)] = {NULL};
	enum event_outcome rc = EVENT_MALFORMED;
	n->what = "cloudevent";
	for (size_t i = 0; i < ARRAY_LEN(required); i++) {
		if (header_string(n, required[i][0], required[i][1], &values[i]) < 0)
			goto done;
		if (values[i] == NULL) {
			norm_fail(n, EVENT_MALFORMED, "header %s is missing", required[i][0]);
			goto done;
		}
	}
	rc = cloudevent_dispatch(n, type, json_string_value(values[0]), data);
done:
	for (size_t i = 0; i < ARRAY_LEN(required); i++)
		json_decref(values[i]);
	return rc;
}

/* Structured mode: the payload is the CloudEvent, its data member an object. */
static enum event_outcome cloudevent_structured(struct norm *n, const json_t *ce)
{
	n->what = "cloudevent";
	const char *specversion, *type, *id, *source;
	json_t *data;
	if (get_str(n, ce, "", "specversion", true, &specversion) < 0 ||
	    get_str(n, ce, "", "id", true, &id) < 0 ||
	    get_str(n, ce, "", "source", true, &source) < 0 ||
	    get_str(n, ce, "", "type", true, &type) < 0)
		return EVENT_MALFORMED;
	if (json_object_get(ce, "data_base64") != NULL)
		return norm_fail(n, EVENT_MALFORMED,
				 "data_base64 is not supported; send JSON data");
	if (get_obj(n, ce, "", "data", true, &data) < 0)
		return EVENT_MALFORMED;
	return cloudevent_dispatch(n, type, id, data);
}

static bool is_cloudevents_content_type(const struct event_input *in)
{
	static const char media[] = "application/cloudevents+json";
	const struct event_header *h = event_header_find(in, "content-type");
	size_t len = sizeof media - 1;
	if (h == NULL || h->value == NULL || h->value_len < len ||
	    strncasecmp(h->value, media, len) != 0)
		return false;
	return h->value_len == len || h->value[len] == ';' || h->value[len] == ' ';
}

/* ---- GitLab webhooks ---- */

/* repo = project.path_with_namespace, clone_url = git_http_url (else git_ssh_url). */
static int gitlab_project(struct norm *n, const json_t *body)
{
	json_t *project;
	const char *path, *http_url, *ssh_url;
	if (get_obj(n, body, "", "project", true, &project) < 0 ||
	    get_str(n, project, "project", "path_with_namespace", true, &path) < 0 ||
	    get_str(n, project, "project", "git_http_url", false, &http_url) < 0 ||
	    get_str(n, project, "project", "git_ssh_url", false, &ssh_url) < 0)
		return -1;
	ev_set_str(n, "repo", path);
	ev_set_str(n, "clone_url", http_url != NULL ? http_url : ssh_url);
	return 0;
}

/*
 * GitLab lists at most 20 commits of a push (total_commits_count says how
 * many there were): the changed paths are then unknown, not the union of
 * what was listed, so that a paths filter never skips a push by mistake.
 */
static int gitlab_paths(struct norm *n, const json_t *body)
{
	json_t *total;
	if (github_paths(n, body) < 0 ||
	    field_get(n, body, "", "total_commits_count", JSON_INTEGER, false, &total) < 0)
		return -1;
	const json_t *commits = json_object_get(body, "commits");
	if (total != NULL && json_integer_value(total) >= 0 &&
	    (size_t)json_integer_value(total) > json_array_size(commits))
		ev_set(n, "paths", json_null());
	return 0;
}

/*
 * Push Hook and Tag Push Hook share a shape. after all zeros is a deletion;
 * the commit to build is checkout_sha (for an annotated tag, after is the
 * tag object), else after. message: the listed commit that is after.
 */
static enum event_outcome gitlab_push(struct norm *n, const json_t *body, bool is_tag_hook)
{
	n->what = is_tag_hook ? "gitlab tag push" : "gitlab push";
	const char *ref, *before, *after, *checkout_sha, *username, *name;
	if (get_str(n, body, "", "ref", true, &ref) < 0 ||
	    get_str(n, body, "", "before", false, &before) < 0 ||
	    get_str(n, body, "", "after", false, &after) < 0 ||
	    get_str(n, body, "", "checkout_sha", false, &checkout_sha) < 0 ||
	    get_str(n, body, "", "user_username", false, &username) < 0 ||
	    get_str(n, body, "", "user_name", false, &name) < 0 || gitlab_project(n, body) < 0 ||
	    gitlab_paths(n, body) < 0)
		return EVENT_MALFORMED;
	const char *message = NULL;
	size_t i;
	json_t *commit;
	json_array_foreach(json_object_get(body, "commits"), i, commit)
	{
		const char *id = loose_str(commit, "id");
		if (after != NULL && id != NULL && strcmp(id, after) == 0)
			message = loose_str(commit, "message");
	}
	bool is_deleted = is_zero_sha(after);
	bool is_tag = after_prefix(ref, "refs/tags/") != NULL;
	const char *sha = buildable_sha(checkout_sha) != NULL ? checkout_sha : buildable_sha(after);
	ev_set_str(n, "kind", "push");
	ev_set_str(n, "action", is_deleted ? "deleted" : is_tag ? "tag" : "pushed");
	ev_set_ref(n, ref);
	ev_set_str(n, "sha", is_deleted ? NULL : sha);
	ev_set_str(n, "before", buildable_sha(before));
	ev_set_str(n, "message", message);
	ev_set_str(n, "actor", username != NULL ? username : name);
	return EVENT_OK;
}

/*
 * Merge Request Hook: object_attributes.action open → "opened", reopen →
 * "reopened", update → "synchronize" when commits were added (oldrev
 * present), else "edited" (a title or label change), merge → "merged",
 * close → "closed"; approvals start nothing. The number is the iid (!N);
 * an open MR's ref is refs/merge-requests/N/head; a merged one builds the
 * target branch at merge_commit_sha (the head commit after a fast-forward).
 */
static enum event_outcome gitlab_merge_request(struct norm *n, const json_t *body)
{
	static const struct {
		const char *gitlab, *action;
	} actions[] = {
	    {"open", "opened"},	 {"reopen", "reopened"}, {"update", "synchronize"},
	    {"merge", "merged"}, {"close", "closed"},
	};
	n->what = "gitlab merge request";
	json_t *attrs, *iid, *last_commit, *user;
	const char *gitlab_action, *source, *target, *title, *head_sha, *merge_sha, *oldrev;
	const char *username, *name;
	if (get_obj(n, body, "", "object_attributes", true, &attrs) < 0 ||
	    get_str(n, attrs, "object_attributes", "action", true, &gitlab_action) < 0 ||
	    field_get(n, attrs, "object_attributes", "iid", JSON_INTEGER, true, &iid) < 0 ||
	    get_str(n, attrs, "object_attributes", "source_branch", true, &source) < 0 ||
	    get_str(n, attrs, "object_attributes", "target_branch", true, &target) < 0 ||
	    get_str(n, attrs, "object_attributes", "title", false, &title) < 0 ||
	    get_str(n, attrs, "object_attributes", "merge_commit_sha", false, &merge_sha) < 0 ||
	    get_str(n, attrs, "object_attributes", "oldrev", false, &oldrev) < 0 ||
	    get_obj(n, attrs, "object_attributes", "last_commit", false, &last_commit) < 0 ||
	    get_str(n, last_commit, "object_attributes.last_commit", "id", false, &head_sha) < 0 ||
	    get_obj(n, body, "", "user", false, &user) < 0 ||
	    get_str(n, user, "user", "username", false, &username) < 0 ||
	    get_str(n, user, "user", "name", false, &name) < 0 || gitlab_project(n, body) < 0)
		return EVENT_MALFORMED;
	const char *action = NULL;
	for (size_t i = 0; i < ARRAY_LEN(actions); i++)
		if (strcmp(gitlab_action, actions[i].gitlab) == 0)
			action = actions[i].action;
	if (action == NULL)
		return norm_fail(n, EVENT_IGNORED,
				 "merge request !%" JSON_INTEGER_FORMAT " %s: nothing to build",
				 json_integer_value(iid), gitlab_action);
	if (strcmp(action, "synchronize") == 0 && oldrev == NULL)
		action = "edited";
	bool is_merged = strcmp(action, "merged") == 0;
	ev_set_str(n, "kind", "pull_request");
	ev_set_str(n, "action", action);
	if (is_merged) {
		ev_set_branch_ref(n, target);
		ev_set_str(n, "sha",
			   buildable_sha(merge_sha) ? merge_sha : buildable_sha(head_sha));
	} else {
		char *ref = xasprintf("refs/merge-requests/%" JSON_INTEGER_FORMAT "/head",
				      json_integer_value(iid));
		ev_set_str(n, "ref", ref);
		free(ref);
		ev_set_str(n, "branch", source);
		ev_set_str(n, "sha", buildable_sha(head_sha));
	}
	ev_set_str(n, "before", buildable_sha(oldrev));
	ev_set(n, "pr", pr_object(json_copy(iid), target, source, head_sha, title, is_merged));
	ev_set_str(n, "message", title);
	ev_set_str(n, "actor", username != NULL ? username : name);
	return EVENT_OK;
}

/*
 * A GitLab webhook body of event (its X-Gitlab-Event). id: the
 * Idempotency-Key header (the same on GitLab's retries, since 17.4), else
 * X-Gitlab-Event-UUID.
 */
static enum event_outcome gitlab_normalize(struct norm *n, const char *event, const json_t *body)
{
	enum event_outcome rc;
	if (strcmp(event, "Push Hook") == 0) {
		rc = gitlab_push(n, body, false);
	} else if (strcmp(event, "Tag Push Hook") == 0) {
		rc = gitlab_push(n, body, true);
	} else if (strcmp(event, "Merge Request Hook") == 0) {
		rc = gitlab_merge_request(n, body);
	} else {
		n->what = "gitlab";
		return norm_fail(n, EVENT_UNKNOWN, "event \"%s\" is not handled", event);
	}
	if (rc != EVENT_OK)
		return rc;
	json_t *id;
	if (header_string(n, "idempotency-key", NULL, &id) < 0 ||
	    (id == NULL && header_string(n, "x-gitlab-event-uuid", NULL, &id) < 0))
		return EVENT_MALFORMED;
	ev_set(n, "id", id);
	ev_set_str(n, "source", "gitlab");
	return EVENT_OK;
}

/* ---- the entry point ---- */

/* Decides the shape of root (headers first, then the body) and normalizes it. */
static enum event_outcome normalize_root(struct norm *n, const json_t *root)
{
	json_t *header;
	enum event_outcome rc;
	if (header_string(n, "ce_type", "ce-type", &header) < 0)
		return EVENT_MALFORMED;
	if (header != NULL) {
		rc = cloudevent_binary(n, json_string_value(header), root);
		json_decref(header);
		return rc;
	}
	if (is_cloudevents_content_type(n->in) || json_object_get(root, "specversion") != NULL)
		return cloudevent_structured(n, root);
	if (header_string(n, "x-github-event", NULL, &header) < 0)
		return EVENT_MALFORMED;
	if (header != NULL) {
		json_t *delivery;
		if (header_string(n, "x-github-delivery", NULL, &delivery) < 0) {
			json_decref(header);
			return EVENT_MALFORMED;
		}
		rc = github_normalize(n, json_string_value(header), root,
				      delivery != NULL ? json_string_value(delivery) : NULL);
		json_decref(delivery);
		json_decref(header);
		return rc;
	}
	if (header_string(n, "x-gitlab-event", NULL, &header) < 0)
		return EVENT_MALFORMED;
	if (header != NULL) {
		rc = gitlab_normalize(n, json_string_value(header), root);
		json_decref(header);
		return rc;
	}
	if (header_string(n, "x-drover-event", NULL, &header) < 0)
		return EVENT_MALFORMED;
	if (header != NULL) {
		bool is_drift = strcasecmp(json_string_value(header), "drift") == 0;
		if (!is_drift)
			norm_fail(n, EVENT_UNKNOWN, "x-drover-event \"%s\" is not handled",
				  json_string_value(header));
		json_decref(header);
		return is_drift ? drover_drift(n, root, NULL) : EVENT_UNKNOWN;
	}
	if (json_object_get(root, "eventType") != NULL)
		return azure_raw(n, root);
	const char *event = loose_str(root, "event");
	if (event != NULL && strcmp(event, "alert_state_change") == 0)
		return databricks_alert(n, root);
	return norm_fail(n, EVENT_UNKNOWN,
			 "no known source: not a CloudEvent, no x-github-event or x-drover-event "
			 "header, not an Azure DevOps or Databricks alert body");
}

/* Fills what every event carries: a fallback id, received_at and kafka. */
static void event_finish(struct norm *n)
{
	const struct event_input *in = n->in;
	json_t *topic = in->topic != NULL ? json_string(in->topic) : NULL;
	if (json_is_null(json_object_get(n->ev, "id"))) {
		char *id = xasprintf("kafka:%s:%" PRId32 ":%" PRId64,
				     topic != NULL ? in->topic : "-", in->partition, in->offset);
		ev_set_str(n, "id", id);
		free(id);
	}
	/* Years 0..9999 only: anything else is a caller's bug, not a time. */
	if (in->received_at_ms >= 0 && in->received_at_ms <= INT64_C(253402300799999)) {
		char when[40];
		time_format_iso8601(in->received_at_ms, when, sizeof when);
		ev_set_str(n, "received_at", when);
	}
	json_t *kafka = json_object();
	json_object_set_new(kafka, "topic", topic != NULL ? topic : json_null());
	json_object_set_new(kafka, "partition", json_integer(in->partition));
	json_object_set_new(kafka, "offset", json_integer(in->offset));
	ev_set(n, "kafka", kafka);
}

enum event_outcome event_normalize(const struct event_input *in, const struct event_options *opt,
				   json_t **out, char *err, size_t err_len)
{
	struct event_options no_options = {0};
	struct norm n = {
	    .in = in, .opt = opt != NULL ? opt : &no_options, .err = err, .err_len = err_len};
	if (err != NULL && err_len > 0)
		err[0] = '\0';
	if (out == NULL)
		return norm_fail(&n, EVENT_MALFORMED, "no place for the result");
	*out = NULL;
	if (in == NULL)
		return norm_fail(&n, EVENT_MALFORMED, "no input");
	if (n.opt->max_payload_bytes > 0 && in->payload_len > n.opt->max_payload_bytes)
		return norm_fail(&n, EVENT_TOO_LARGE,
				 "payload of %zu bytes is over the limit of %zu", in->payload_len,
				 n.opt->max_payload_bytes);
	if (in->payload == NULL || in->payload_len == 0)
		return norm_fail(&n, EVENT_MALFORMED, "payload is empty");
	const char *nul = memchr(in->payload, '\0', in->payload_len);
	if (nul != NULL)
		return norm_fail(&n, EVENT_MALFORMED, "payload has a NUL byte at offset %zu",
				 (size_t)(nul - in->payload));
	/* jansson bounds nesting (JSON_PARSER_MAX_DEPTH, 2048) and rejects
	 * invalid UTF-8 and \u0000; duplicate keys would make a payload mean
	 * two things, so they are refused too. */
	json_error_t jerr;
	json_t *root = json_loadb(in->payload, in->payload_len,
				  JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (root == NULL)
		return norm_fail(&n, EVENT_MALFORMED,
				 "payload is not valid JSON: %s (line %d, column %d)", jerr.text,
				 jerr.line, jerr.column);
	if (!json_is_object(root)) {
		json_decref(root);
		return norm_fail(&n, EVENT_MALFORMED, "payload is not a JSON object");
	}
	n.ev = event_skeleton();
	enum event_outcome rc = normalize_root(&n, root);
	json_decref(root);
	if (rc != EVENT_OK) {
		json_decref(n.ev);
		return rc;
	}
	event_finish(&n);
	if (err != NULL && err_len > 0)
		err[0] = '\0';
	*out = n.ev;
	return EVENT_OK;
}

const char *event_outcome_name(enum event_outcome outcome)
{
	switch (outcome) {
	case EVENT_OK:
		return "ok";
	case EVENT_IGNORED:
		return "ignored";
	case EVENT_MALFORMED:
		return "malformed";
	case EVENT_UNKNOWN:
		return "unknown";
	case EVENT_TOO_LARGE:
		return "too_large";
	}
	return "invalid";
}

const struct event_header *event_header_find(const struct event_input *in, const char *name)
{
	if (in == NULL || name == NULL || in->headers == NULL)
		return NULL;
	for (size_t i = 0; i < in->n_headers; i++)
		if (in->headers[i].name != NULL && strcasecmp(in->headers[i].name, name) == 0)
			return &in->headers[i];
	return NULL;
}
