/*
 * config: agent.yaml → one immutable struct config. Every key has a default,
 * so no file at all is a valid configuration (the embedded demo). Unknown
 * keys and wrong types are errors with file:line. Relative paths are taken
 * relative to the agent's working directory.
 */
#ifndef DROVER_CONFIG_H
#define DROVER_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "diag.h"
#include "event.h"

struct repo_config {
	char *name; /* "owner/name" as events give it */
	char *url;  /* where to fetch from; overrides the event's clone_url */
};

struct kafka_config {
	char *brokers;		 /* "embedded" or "host:port,..." (default embedded) */
	char *group;		 /* default "drover" */
	char *events_topic;	 /* default "drover.events" */
	char *results_topic;	 /* default "drover.results" */
	char *dead_letter_topic; /* default "drover.dead-letter" */
	json_t *properties;	 /* object of string → string, passed to librdkafka (owned) */
	int embedded_partitions; /* partitions of topics in the embedded broker (default 4) */
};

struct admin_config {
	char *listen;	  /* "127.0.0.1:8470" */
	char *token_file; /* NULL: no token */
	char *token;	  /* read from token_file at load, trailing newline cut; NULL if none */
	size_t max_body_bytes;	 /* default 1 MiB */
	size_t max_header_bytes; /* default 64 KiB */
	int max_log_followers;	 /* clients following stage logs at once, default 32 */
};

/* Webhook receivers (admin_hooks): a provider without its secret answers 404. */
struct hooks_config {
	char *github_secret;  /* key of X-Hub-Signature-256 (HMAC-SHA256), or NULL */
	char *gitlab_token;   /* the X-Gitlab-Token, or NULL */
	char *azure_username; /* basic auth of Azure DevOps service hooks, */
	char *azure_password; /* both or neither */
};

struct config {
	char *path;			  /* the file read, or NULL for the embedded default */
	char *state_dir;		  /* default "./state" */
	char *pipelines_dir;		  /* default "./pipelines" */
	char *plugins_dir;		  /* default "./build/plugins" */
	int max_parallel;		  /* stages running at once, default 8 */
	int max_queued_runs;		  /* high-water mark before intake pauses, default 1000 */
	size_t max_event_bytes;		  /* default 1 MiB */
	size_t max_log_bytes;		  /* per stage attempt, default 10 MiB */
	int64_t stage_kill_grace_ms;	  /* TERM → KILL on timeout/cancel, default 10s */
	int64_t stop_grace_ms;		  /* SIGTERM: let stages finish, default 30s */
	int64_t keep_failed_workspace_ms; /* keep a failed run's checkout, default 1h */
	struct kafka_config kafka;
	struct admin_config admin;
	struct hooks_config hooks;
	struct repo_config *repos;
	size_t n_repos;
	char *
	    *secrets; /* resolved secret values to mask in logs (secrets: entries, hooks secrets) */
	size_t n_secrets;
	struct event_alert_map *alerts; /* drift.alerts: alert → model */
	size_t n_alerts;
	struct event_model_map *models; /* drift.models: model → repo, branch */
	size_t n_models;
	json_t *plugin_config; /* plugin_config: plugin name → its mapping as JSON (owned) */
};

/*
 * Loads path (NULL: defaults only). Returns NULL when anything is wrong,
 * with every problem in diags.
 */
struct config *config_load(const char *path, struct diags *diags);
void config_free(struct config *cfg);

/* The repository entry for an event's repo, or NULL (refused). */
const struct repo_config *config_find_repo(const struct config *cfg, const char *name);

/* Fills event options (the arrays point into cfg). */
void config_event_options(const struct config *cfg, struct event_options *opt);

#endif
