/*
 * pipeline: pipeline YAML → a validated struct pipeline; trigger matching;
 * placeholder expansion; retry arithmetic. Reads files, runs nothing.
 *
 * Every pipeline also keeps its definition as JSON (`definition`), so a run
 * can store exactly what it started with and be rebuilt later by
 * pipeline_from_json() even if the file changed.
 */
#ifndef DROVER_PIPELINE_H
#define DROVER_PIPELINE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "diag.h"

struct glob_list {
	char **items;
	size_t n;
};

enum severity { SEVERITY_INFO, SEVERITY_WARNING, SEVERITY_CRITICAL };

struct trigger_push {
	bool is_enabled;
	struct glob_list branches; /* empty: every branch */
	struct glob_list branches_ignore;
	struct glob_list tags;	/* tag pushes match only when non-empty */
	struct glob_list paths; /* empty: any path */
	struct glob_list paths_ignore;
	bool include_deleted; /* `deleted: true`: branch/tag deletions match too */
};

struct trigger_pull_request {
	bool is_enabled;
	struct glob_list branches; /* the PR's base branch; empty: any */
	struct glob_list actions;  /* empty: opened, synchronize, reopened */
	struct glob_list paths;
	struct glob_list paths_ignore;
};

struct trigger_drift {
	bool is_enabled;
	struct glob_list models;       /* empty: every model */
	struct glob_list environments; /* empty: every environment */
	enum severity min_severity;    /* default warning */
};

struct retry_policy {
	int attempts;	      /* retries after the first try; 0: none */
	int64_t delay_ms;     /* before the first retry */
	double backoff;	      /* delay multiplier per retry, >= 1 (default 2) */
	int64_t max_delay_ms; /* cap (default 10m) */
};

struct pipeline_stage {
	char *name;
	char *uses;   /* plugin name */
	json_t *with; /* object, owned; {} when absent */
	char **needs; /* names */
	size_t n_needs;
	size_t *needs_idx;  /* indexes into pipeline->stages, same order as needs */
	int64_t timeout_ms; /* default 1h */
	struct retry_policy retry;
	int line;
};

struct pipeline {
	char *name;
	char *file; /* where it was read from, or "" */
	struct trigger_push push;
	struct trigger_pull_request pull_request;
	struct trigger_drift drift;
	char *concurrency_group; /* template, or NULL */
	bool cancel_in_progress;
	char *lock;		       /* template, or NULL */
	bool checkout;		       /* default true */
	struct pipeline_stage *stages; /* in file order */
	size_t n_stages;
	json_t *definition; /* owned: the document as JSON */
};

/* Knows which plugins exist, for validation; NULL skips that check. */
struct plugin_catalog {
	bool (*has_plugin)(void *arg, const char *name);
	void *arg;
};

/*
 * Reads and validates one file. Every error found goes to diags as
 * file:line: message (unknown keys, wrong types, bad durations, bad globs,
 * duplicate or unknown stage names in needs, cycles, unknown plugins,
 * unknown placeholders). Returns NULL when there was any error.
 */
struct pipeline *pipeline_load_file(const char *path, const struct plugin_catalog *plugins,
				    struct diags *diags);
/* The same from YAML text already in memory (file is used in messages). */
struct pipeline *pipeline_load_string(const char *yaml, size_t len, const char *file,
				      const struct plugin_catalog *plugins, struct diags *diags);
/* Rebuilds a pipeline from its stored definition. */
struct pipeline *pipeline_from_json(const json_t *definition, const char *file,
				    const struct plugin_catalog *plugins, struct diags *diags);
void pipeline_free(struct pipeline *p);

/* All *.yml and *.yaml in a directory (sorted by name). A file with errors is
 * left out and reported; the others load. Two pipelines with one name: the
 * second is refused. */
struct pipeline_set {
	struct pipeline **items;
	size_t n;
};
int pipeline_set_load_dir(struct pipeline_set *set, const char *dir,
			  const struct plugin_catalog *plugins, struct diags *diags);
void pipeline_set_free(struct pipeline_set *set);
const struct pipeline *pipeline_set_find(const struct pipeline_set *set, const char *name);

/*
 * Does the canonical event start this pipeline? When not, `why` gets one
 * short reason ("pull_request: base branch 'dev' matches none of [master]").
 * With why NULL (or why_len 0) no reason is formatted: the cheap form.
 */
bool pipeline_match(const struct pipeline *p, const json_t *event, char *why, size_t why_len);

/* Expands {repo} {branch} {pr} {sha} {model} {env} from the event; a fact
 * the event lacks expands to "". Caller frees. NULL in, NULL out. */
char *pipeline_expand(const char *tmpl, const json_t *event);

/* Delay before retry number `retry` (1 for the first retry). */
int64_t pipeline_retry_delay_ms(const struct retry_policy *policy, int retry);

/* Stage index by name, or -1. */
int pipeline_stage_index(const struct pipeline *p, const char *name);

#endif
