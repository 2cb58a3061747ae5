/*
 * cli: the operator's side of the drover binary (emit, runs, show, logs,
 * validate, plan). Speaks to a running agent only through its admin API;
 * validate and plan work offline from the same config and pipeline files.
 */
#ifndef DROVER_CLI_H
#define DROVER_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline.h"

/* Runs one client subcommand: argv[0] is the subcommand name ("emit", "runs", "show", "logs",
 * "cancel", "replay", "validate", "plan"). Returns the process exit code (0 ok, 1 failure, 2
 * usage). Prints results on stdout, errors on stderr (one clear line). */
int cli_main(int argc, char **argv);
bool cli_is_command(const char *name);

/* What kind of payload emit/plan carry, from --github-event, --azure, --cloudevent, --drift. */
enum cli_source {
	CLI_SOURCE_PLAIN, /* application/json, no hint */
	CLI_SOURCE_GITHUB,
	CLI_SOURCE_AZURE,
	CLI_SOURCE_CLOUDEVENT,
	CLI_SOURCE_DRIFT, /* drover's own drift JSON: X-Drover-Event: drift */
};

/* One parsed command line. Strings point into argv; only positionals is owned. */
struct cli_args {
	const char *command;
	const char *config_path; /* -c; NULL: built-in defaults */
	enum cli_source source;
	const char *github_event;
	const char *id;
	const char *pipeline;
	const char *status;
	const char *repo;
	const char *reason; /* cancel --reason */
	long limit;	    /* 0: not given */
	long attempt;	    /* 0: not given */
	long before;	    /* runs --before: 0: not given */
	bool is_json;
	bool is_help;
	bool is_follow; /* logs -f */
	const char **positionals;
	size_t n_positionals;
	/* replay: --stage names in order (owned array), --downstream, --all,
	 * --latest-pipeline, --via-kafka; --reason is reason above */
	const char **stages;
	size_t n_stages;
	bool is_downstream, is_all, is_latest_pipeline, is_via_kafka;
	bool is_force; /* replay --via-kafka --force */
};

/*
 * Parses argv (argv[0] is the subcommand). Flags may come before or after
 * positionals; "--" ends flags, "-" is a positional (stdin). Returns 0, or -1
 * with one line in err (a usage error: unknown flag, missing or bad value,
 * wrong number of arguments). args must be freed with cli_args_free either way.
 */
int cli_args_parse(int argc, char **argv, struct cli_args *args, char *err, size_t err_len);
void cli_args_free(struct cli_args *args);

/*
 * Splits admin.listen ("host:port", "[v6]:port", ":port", "port") into a
 * host to connect to and a port. A wildcard host (empty, 0.0.0.0, ::) becomes
 * the matching loopback. IPv6 hosts come back without brackets. Returns 0, or
 * -1 for anything malformed (outputs untouched then).
 */
int cli_split_host_port(const char *listen, char **host, char **port);
/* "http://127.0.0.1:8470" (IPv6 hosts bracketed) for admin.listen, or NULL when malformed. */
char *cli_base_url(const char *listen);

/* Percent-escapes everything but RFC 3986 unreserved characters: safe as a
 * path segment or a query value. */
char *cli_escape(const char *s);

struct cli_query_param {
	const char *name;
	const char *value; /* NULL: left out */
};
/* base + path + "?name=value&..." with every name and value escaped. */
char *cli_build_url(const char *base, const char *path, const struct cli_query_param *params,
		    size_t n_params);

/* ISO-8601 ("2026-11-29T08:35:00.123Z", "+02:00" offsets, or no zone = UTC)
 * to epoch milliseconds. Returns 0, or -1 when it is not such a time. */
int cli_parse_time_ms(const char *s, int64_t *out_ms);
/* "850ms", "12s", "3m05s", "2h07m", "3d04h"; "-" for a negative duration. */
void cli_format_duration(int64_t ms, char *buf, size_t buf_len);

/*
 * Makes foreign text safe for one terminal cell: control characters (C0,
 * DEL, C1), bidi overrides, line separators and invalid UTF-8 are escaped
 * (\n, \t, \xNN); text wider than max_chars characters is cut to end in
 * "...". max_chars 0: no limit. Caller frees.
 */
char *cli_cell(const char *s, size_t max_chars);

/* The text table `drover runs` prints for the API's run array. Caller frees. */
char *cli_format_runs_table(const json_t *runs);
/* The text `drover show` prints for the API's run object. Caller frees. */
char *cli_format_run(const json_t *run);

/*
 * Orders p's stages so that each comes after every stage it needs, keeping
 * file order among stages that are free to go. order gets n_stages indexes.
 * Returns 0, or -1 when needs name a missing stage or form a cycle.
 */
int cli_stage_order(const struct pipeline *p, size_t *order);

#endif
