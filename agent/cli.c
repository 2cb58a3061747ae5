/*
 * cli: the operator subcommands of the drover binary. Owns argument parsing,
 * the blocking libcurl calls to the admin API and the text it prints. Never
 * touches the agent's state directly: only the admin API, the config file
 * and pipeline files; every foreign string is escaped before it reaches a
 * terminal.
 */
#include "cli.h"

#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "diag.h"
#include "event.h"
#include "log.h"
#include "pipeline.h"
#include "status.h"
#include "util.h"

#ifndef DROVER_VERSION
#define DROVER_VERSION "dev"
#endif

enum {
	CLI_CONNECT_TIMEOUT_MS = 5000,
	CLI_TOTAL_TIMEOUT_MS = 60000,
	CLI_MAX_REPLY_BYTES = 64 * 1024 * 1024, /* a JSON answer; logs are streamed instead */
	CLI_ERROR_CHARS = 300,			/* an API error message on one line */
	CLI_RUNS_DEFAULT = 100,			/* drover runs without --limit */
	CLI_RUNS_PAGE = 500,			/* the API's largest page */
};

/* ---------------------------------------------------------------- arguments */

enum cli_command {
	CMD_EMIT,
	CMD_RUNS,
	CMD_SHOW,
	CMD_LOGS,
	CMD_CANCEL,
	CMD_REPLAY,
	CMD_VALIDATE,
	CMD_PLAN,
};

struct cli_command_info {
	const char *name;
	const char *usage;
	size_t min_positionals;
	size_t max_positionals;
	const char *positionals; /* what they are, for "needs ..." errors */
};

static const struct cli_command_info cli_commands[] = {
    [CMD_EMIT] =
	{"emit",
	 "drover emit [-c FILE] [--github-event NAME | --azure | --cloudevent | --drift] [--id ID] "
	 "FILE|-",
	 1, 1, "one event file (or - for stdin)"},
    [CMD_RUNS] = {"runs",
		  "drover runs [-c FILE] [--json] [--pipeline P] [--status S] [--repo R] "
		  "[--limit N] [--before RUN]",
		  0, 0, "no arguments"},
    [CMD_SHOW] = {"show", "drover show [-c FILE] [--json] RUN", 1, 1, "one run id"},
    [CMD_LOGS] = {"logs", "drover logs [-c FILE] [--attempt N] [-f|--follow] RUN STAGE", 2, 2,
		  "a run id and a stage name"},
    [CMD_CANCEL] = {"cancel", "drover cancel [-c FILE] [--reason TEXT] RUN", 1, 1, "one run id"},
    [CMD_REPLAY] = {"replay",
		    "drover replay [-c FILE] [--stage S]... [--downstream] [--all] "
		    "[--latest-pipeline] [--via-kafka [--force]] [--reason TEXT] RUN",
		    1, 1, "one run id"},
    [CMD_VALIDATE] = {"validate", "drover validate [-c FILE] FILE|DIR...", 1, SIZE_MAX,
		      "at least one pipeline file or directory"},
    [CMD_PLAN] =
	{"plan",
	 "drover plan [-c FILE] [--github-event NAME | --azure | --cloudevent | --drift] [--json] "
	 "FILE|-",
	 1, 1, "one event file (or - for stdin)"},
};

enum cli_flag {
	FLAG_CONFIG,
	FLAG_HELP,
	FLAG_STAGE, /* replay */
	FLAG_DOWNSTREAM,
	FLAG_ALL,
	FLAG_LATEST_PIPELINE,
	FLAG_VIA_KAFKA,
	FLAG_FORCE,
	FLAG_GITHUB_EVENT,
	FLAG_AZURE,
	FLAG_CLOUDEVENT,
	FLAG_DRIFT,
	FLAG_ID,
	FLAG_JSON,
	FLAG_PIPELINE,
	FLAG_STATUS,
	FLAG_REPO,
	FLAG_LIMIT,
	FLAG_ATTEMPT,
	FLAG_REASON,
	FLAG_BEFORE,
	FLAG_FOLLOW,
};

#define ON(c) (1u << (c))
#define ON_ALL                                                                                     \
	(ON(CMD_EMIT) | ON(CMD_RUNS) | ON(CMD_SHOW) | ON(CMD_LOGS) | ON(CMD_CANCEL) |              \
	 ON(CMD_REPLAY) | ON(CMD_VALIDATE) | ON(CMD_PLAN))

struct cli_flag_info {
	enum cli_flag flag;
	const char *long_name;
	char short_name; /* 0: none */
	bool has_value;
	unsigned commands; /* ON() mask of the commands that accept it */
};

static const struct cli_flag_info cli_flags[] = {
    {FLAG_CONFIG, "config", 'c', true, ON_ALL},
    {FLAG_HELP, "help", 'h', false, ON_ALL},
    {FLAG_STAGE, "stage", 0, true, ON(CMD_REPLAY)},
    {FLAG_DOWNSTREAM, "downstream", 0, false, ON(CMD_REPLAY)},
    {FLAG_ALL, "all", 0, false, ON(CMD_REPLAY)},
    {FLAG_LATEST_PIPELINE, "latest-pipeline", 0, false, ON(CMD_REPLAY)},
    {FLAG_VIA_KAFKA, "via-kafka", 0, false, ON(CMD_REPLAY)},
    {FLAG_FORCE, "force", 0, false, ON(CMD_REPLAY)},
    {FLAG_GITHUB_EVENT, "github-event", 0, true, ON(CMD_EMIT) | ON(CMD_PLAN)},
    {FLAG_AZURE, "azure", 0, false, ON(CMD_EMIT) | ON(CMD_PLAN)},
    {FLAG_CLOUDEVENT, "cloudevent", 0, false, ON(CMD_EMIT) | ON(CMD_PLAN)},
    {FLAG_DRIFT, "drift", 0, false, ON(CMD_EMIT) | ON(CMD_PLAN)},
    {FLAG_ID, "id", 0, true, ON(CMD_EMIT)},
    {FLAG_JSON, "json", 0, false, ON(CMD_RUNS) | ON(CMD_SHOW) | ON(CMD_PLAN)},
    {FLAG_PIPELINE, "pipeline", 0, true, ON(CMD_RUNS)},
    {FLAG_STATUS, "status", 0, true, ON(CMD_RUNS)},
    {FLAG_REPO, "repo", 0, true, ON(CMD_RUNS)},
    {FLAG_LIMIT, "limit", 0, true, ON(CMD_RUNS)},
    {FLAG_ATTEMPT, "attempt", 0, true, ON(CMD_LOGS)},
    {FLAG_REASON, "reason", 0, true, ON(CMD_CANCEL) | ON(CMD_REPLAY)},
    {FLAG_BEFORE, "before", 0, true, ON(CMD_RUNS)},
    {FLAG_FOLLOW, "follow", 'f', false, ON(CMD_LOGS)},
};

static int cli_command_find(const char *name)
{
	if (name == NULL)
		return -1;
	for (size_t i = 0; i < ARRAY_LEN(cli_commands); i++)
		if (strcmp(cli_commands[i].name, name) == 0)
			return (int)i;
	return -1;
}

bool cli_is_command(const char *name)
{
	return cli_command_find(name) >= 0;
}

/* A flag as the user typed it, for messages: "--limit" or "-c". */
static void cli_flag_spell(const struct cli_flag_info *f, bool is_short, char *buf, size_t len)
{
	if (is_short)
		snprintf(buf, len, "-%c", f->short_name);
	else
		snprintf(buf, len, "--%s", f->long_name);
}

/* Header values must be one visible token: no spaces, no control bytes. */
static bool cli_is_header_token(const char *s)
{
	if (*s == '\0')
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
		if (*p <= 0x20 || *p >= 0x7f)
			return false;
	return true;
}

static int cli_parse_positive(const char *s, long *out)
{
	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	char *end;
	long v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 1 || v > INT_MAX)
		return -1;
	*out = v;
	return 0;
}

static int cli_set_source(struct cli_args *args, enum cli_source source, char *err, size_t len)
{
	if (args->source != CLI_SOURCE_PLAIN && args->source != source) {
		snprintf(err, len, "choose one of --github-event, --azure, --cloudevent, --drift");
		return -1;
	}
	args->source = source;
	return 0;
}

/* Applies one flag and its value; the value has already been found. */
static int cli_apply_flag(struct cli_args *args, const struct cli_flag_info *f, const char *spell,
			  const char *v, char *err, size_t len)
{
	switch (f->flag) {
	case FLAG_CONFIG:
		if (*v == '\0') {
			snprintf(err, len, "%s needs a file name", spell);
			return -1;
		}
		args->config_path = v;
		return 0;
	case FLAG_HELP:
		args->is_help = true;
		return 0;
	case FLAG_STAGE:
		if (*v == '\0') {
			snprintf(err, len, "%s needs a stage name", spell);
			return -1;
		}
		args->stages[args->n_stages++] = v;
		return 0;
	case FLAG_DOWNSTREAM:
		args->is_downstream = true;
		return 0;
	case FLAG_ALL:
		args->is_all = true;
		return 0;
	case FLAG_LATEST_PIPELINE:
		args->is_latest_pipeline = true;
		return 0;
	case FLAG_VIA_KAFKA:
		args->is_via_kafka = true;
		return 0;
	case FLAG_FORCE:
		args->is_force = true;
		return 0;
	case FLAG_GITHUB_EVENT:
		if (!cli_is_header_token(v)) {
			snprintf(err, len, "%s: '%.40s' is not an event name", spell, v);
			return -1;
		}
		args->github_event = v;
		return cli_set_source(args, CLI_SOURCE_GITHUB, err, len);
	case FLAG_AZURE:
		return cli_set_source(args, CLI_SOURCE_AZURE, err, len);
	case FLAG_CLOUDEVENT:
		return cli_set_source(args, CLI_SOURCE_CLOUDEVENT, err, len);
	case FLAG_DRIFT:
		return cli_set_source(args, CLI_SOURCE_DRIFT, err, len);
	case FLAG_ID:
		if (!cli_is_header_token(v)) {
			snprintf(err, len, "%s: an id is one word of visible characters", spell);
			return -1;
		}
		args->id = v;
		return 0;
	case FLAG_JSON:
		args->is_json = true;
		return 0;
	case FLAG_PIPELINE:
		args->pipeline = v;
		return 0;
	case FLAG_STATUS:
		if (status_parse(v) < 0) {
			snprintf(err, len,
				 "%s: unknown status '%.40s' (queued, running, succeeded, failed, "
				 "cancelled, timed_out, error, skipped)",
				 spell, v);
			return -1;
		}
		args->status = v;
		return 0;
	case FLAG_REPO:
		args->repo = v;
		return 0;
	case FLAG_REASON:
		args->reason = v;
		return 0;
	case FLAG_FOLLOW:
		args->is_follow = true;
		return 0;
	case FLAG_LIMIT:
	case FLAG_ATTEMPT:
	case FLAG_BEFORE:
		if (cli_parse_positive(v, f->flag == FLAG_LIMIT	   ? &args->limit
					  : f->flag == FLAG_BEFORE ? &args->before
								   : &args->attempt) != 0) {
			snprintf(err, len, "%s: '%.40s' is not a positive number", spell, v);
			return -1;
		}
		return 0;
	}
	return 0;
}

/* Finds the flag an argument names; *value gets an inline value ("--x=v", "-cFILE"). */
static const struct cli_flag_info *cli_flag_lookup(const char *arg, bool *is_short,
						   const char **value)
{
	*value = NULL;
	if (arg[1] == '-') {
		const char *name = arg + 2;
		const char *eq = strchr(name, '=');
		size_t n = eq != NULL ? (size_t)(eq - name) : strlen(name);
		*is_short = false;
		for (size_t i = 0; i < ARRAY_LEN(cli_flags); i++) {
			const char *ln = cli_flags[i].long_name;
			if (strlen(ln) == n && strncmp(ln, name, n) == 0) {
				if (eq != NULL)
					*value = eq + 1;
				return &cli_flags[i];
			}
		}
		return NULL;
	}
	*is_short = true;
	for (size_t i = 0; i < ARRAY_LEN(cli_flags); i++) {
		if (cli_flags[i].short_name != 0 && cli_flags[i].short_name == arg[1]) {
			if (arg[2] != '\0')
				*value = arg + 2;
			return &cli_flags[i];
		}
	}
	return NULL;
}

int cli_args_parse(int argc, char **argv, struct cli_args *args, char *err, size_t err_len)
{
	memset(args, 0, sizeof *args);
	err[0] = '\0';
	if (argc < 1 || cli_command_find(argv[0]) < 0) {
		snprintf(err, err_len, "unknown command '%.40s'", argc < 1 ? "" : argv[0]);
		return -1;
	}
	int cmd = cli_command_find(argv[0]);
	args->command = cli_commands[cmd].name;
	args->positionals = xcalloc((size_t)argc, sizeof *args->positionals);
	args->stages = xcalloc((size_t)argc, sizeof *args->stages);
	bool is_flags_done = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!is_flags_done && strcmp(a, "--") == 0) {
			is_flags_done = true;
			continue;
		}
		if (is_flags_done || a[0] != '-' || a[1] == '\0') {
			args->positionals[args->n_positionals++] = a;
			continue;
		}
		bool is_short;
		const char *value;
		const struct cli_flag_info *f = cli_flag_lookup(a, &is_short, &value);
		if (f == NULL || (f->commands & ON(cmd)) == 0) {
			snprintf(err, err_len, "unknown flag '%.40s'", a);
			return -1;
		}
		char spell[32];
		cli_flag_spell(f, is_short, spell, sizeof spell);
		if (!f->has_value && value != NULL) {
			snprintf(err, err_len, "%s takes no value", spell);
			return -1;
		}
		if (f->has_value && value == NULL) {
			if (i + 1 >= argc) {
				snprintf(err, err_len, "%s needs a value", spell);
				return -1;
			}
			value = argv[++i];
		}
		if (cli_apply_flag(args, f, spell, value, err, err_len) != 0)
			return -1;
	}
	if (args->is_help)
		return 0;
	const struct cli_command_info *info = &cli_commands[cmd];
	if (args->n_positionals < info->min_positionals ||
	    args->n_positionals > info->max_positionals) {
		snprintf(err, err_len, "expects %s", info->positionals);
		return -1;
	}
	if (args->is_all && args->n_stages > 0) {
		snprintf(err, err_len, "choose --all or --stage, not both");
		return -1;
	}
	if (args->is_downstream && args->n_stages == 0) {
		snprintf(err, err_len, "--downstream goes with --stage");
		return -1;
	}
	if (args->id != NULL && args->source != CLI_SOURCE_GITHUB) {
		snprintf(err, err_len,
			 "--id goes with --github-event (other payloads carry their own id)");
		return -1;
	}
	return 0;
}

void cli_args_free(struct cli_args *args)
{
	free(args->positionals);
	args->positionals = NULL;
	args->n_positionals = 0;
	free(args->stages);
	args->stages = NULL;
	args->n_stages = 0;
}

/* ------------------------------------------------------------ addresses, URLs */

static bool cli_is_host_char(char c, bool is_v6)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	if (c == '.' || c == '-' || c == '_')
		return true;
	return is_v6 && (c == ':' || c == '%');
}

int cli_split_host_port(const char *listen, char **host, char **port)
{
	if (listen == NULL)
		return -1;
	const char *h = "";
	size_t h_len = 0;
	const char *p;
	bool is_v6 = false;
	if (listen[0] == '[') {
		const char *close = strchr(listen, ']');
		if (close == NULL || close[1] != ':')
			return -1;
		h = listen + 1;
		h_len = (size_t)(close - h);
		p = close + 2;
		is_v6 = true;
		if (h_len == 0 || memchr(h, ':', h_len) == NULL)
			return -1;
	} else {
		const char *colon = strrchr(listen, ':');
		if (colon == NULL) {
			p = listen; /* a bare port */
		} else {
			if (strchr(listen, ':') != colon)
				return -1; /* IPv6 needs brackets to carry a port */
			h = listen;
			h_len = (size_t)(colon - listen);
			p = colon + 1;
		}
	}
	bool is_wildcard = h_len == 0 || (h_len == 1 && h[0] == '*');
	for (size_t i = 0; i < h_len && !is_wildcard; i++)
		if (!cli_is_host_char(h[i], is_v6))
			return -1;
	size_t p_len = strlen(p);
	if (p_len == 0 || p_len > 5 || strspn(p, "0123456789") != p_len)
		return -1;
	long port_num = strtol(p, NULL, 10);
	if (port_num < 1 || port_num > 65535)
		return -1;

	char *hs = xstrndup(h, h_len);
	if (is_wildcard || strcmp(hs, "0.0.0.0") == 0) {
		free(hs);
		hs = xstrdup("127.0.0.1");
	} else if (strcmp(hs, "::") == 0 || strcmp(hs, "0:0:0:0:0:0:0:0") == 0) {
		free(hs);
		hs = xstrdup("::1");
	}
	*host = hs;
	*port = xstrndup(p, p_len);
	return 0;
}

char *cli_base_url(const char *listen)
{
	char *host, *port;
	if (cli_split_host_port(listen, &host, &port) != 0)
		return NULL;
	struct strbuf sb;
	strbuf_init(&sb);
	strbuf_adds(&sb, "http://");
	if (strchr(host, ':') != NULL) {
		strbuf_adds(&sb, "[");
		for (const char *c = host; *c != '\0'; c++) {
			if (*c == '%')
				strbuf_adds(&sb, "%25"); /* a zone id, escaped as RFC 6874 asks */
			else
				strbuf_add(&sb, c, 1);
		}
		strbuf_adds(&sb, "]");
	} else {
		strbuf_adds(&sb, host);
	}
	strbuf_addf(&sb, ":%s", port);
	free(host);
	free(port);
	return strbuf_detach(&sb);
}

char *cli_escape(const char *s)
{
	size_t len = strlen(s);
	if (len > INT_MAX) {
		fprintf(stderr, "drover: a %zu-byte string is too long for a URL\n", len);
		abort();
	}
	char *e = curl_easy_escape(NULL, s, (int)len);
	if (e == NULL) {
		fprintf(stderr, "drover: out of memory escaping a URL\n");
		abort();
	}
	char *copy = xstrdup(e);
	curl_free(e);
	return copy;
}

char *cli_build_url(const char *base, const char *path, const struct cli_query_param *params,
		    size_t n_params)
{
	struct strbuf sb;
	strbuf_init(&sb);
	strbuf_adds(&sb, base);
	strbuf_adds(&sb, path);
	char sep = '?';
	for (size_t i = 0; i < n_params; i++) {
		if (params[i].value == NULL)
			continue;
		char *name = cli_escape(params[i].name);
		char *value = cli_escape(params[i].value);
		strbuf_addf(&sb, "%c%s=%s", sep, name, value);
		free(name);
		free(value);
		sep = '&';
	}
	return strbuf_detach(&sb);
}

/* ------------------------------------------------------------ times, durations */

static int cli_parse_digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return -1;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

int cli_parse_time_ms(const char *s, int64_t *out_ms)
{
	if (s == NULL)
		return -1;
	const char *p = s;
	int year, mon, day, hour, min, sec;
	if (cli_parse_digits(&p, 4, &year) != 0 || *p++ != '-' ||
	    cli_parse_digits(&p, 2, &mon) != 0 || *p++ != '-' || cli_parse_digits(&p, 2, &day) != 0)
		return -1;
	if (*p != 'T' && *p != 't' && *p != ' ')
		return -1;
	p++;
	if (cli_parse_digits(&p, 2, &hour) != 0 || *p++ != ':' ||
	    cli_parse_digits(&p, 2, &min) != 0 || *p++ != ':' || cli_parse_digits(&p, 2, &sec) != 0)
		return -1;
	if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
		return -1;
	int ms = 0;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		for (int scale = 100; *p >= '0' && *p <= '9'; p++, scale /= 10)
			ms += (*p - '0') * scale;
	}
	int offset_min = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p++ == '-' ? -1 : 1;
		int oh, om;
		if (cli_parse_digits(&p, 2, &oh) != 0)
			return -1;
		if (*p == ':')
			p++;
		if (cli_parse_digits(&p, 2, &om) != 0 || oh > 23 || om > 59)
			return -1;
		offset_min = sign * (oh * 60 + om);
	}
	if (*p != '\0')
		return -1;
	struct tm tm = {
	    .tm_year = year - 1900,
	    .tm_mon = mon - 1,
	    .tm_mday = day,
	    .tm_hour = hour,
	    .tm_min = min,
	    .tm_sec = sec,
	};
	time_t t = timegm(&tm);
	*out_ms = ((int64_t)t - (int64_t)offset_min * 60) * 1000 + ms;
	return 0;
}

void cli_format_duration(int64_t ms, char *buf, size_t buf_len)
{
	if (ms < 0)
		snprintf(buf, buf_len, "-");
	else
		duration_format(ms, buf, buf_len);
}

/* ------------------------------------------------------------ terminal-safe text */

char *cli_cell(const char *s, size_t max_chars)
{
	struct strbuf out;
	strbuf_init(&out);
	size_t width = 0;
	size_t keep_len = 0; /* bytes of out that fit with room for "..." */
	size_t room = max_chars > 3 ? max_chars - 3 : 0;
	const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
	while (*p != '\0') {
		char unit[16];
		size_t unit_len;
		size_t n = log_escape_unit(p, unit, &unit_len);
		/* A character kept as it is takes one cell; an escape takes its length. */
		size_t unit_width = unit_len == n ? 1 : unit_len;
		p += n;
		strbuf_add(&out, unit, unit_len);
		width += unit_width;
		if (max_chars == 0)
			continue;
		if (width <= room)
			keep_len = out.len;
		if (width > max_chars) {
			out.len = keep_len;
			out.data[out.len] = '\0';
			strbuf_adds(&out, "...");
			break;
		}
	}
	return strbuf_detach(&out);
}

/* Characters on screen of a cell made by cli_cell (valid UTF-8, nothing invisible). */
static size_t cli_cell_width(const char *s)
{
	size_t w = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
		if ((*p & 0xc0) != 0x80)
			w++;
	return w;
}

/* ------------------------------------------------------------ tables */

/* Rows of owned, already escaped cells, printed in aligned columns. */
struct cli_table {
	size_t n_cols;
	char **cells;
	size_t n_cells;
};

static void cli_table_add(struct cli_table *t, char *cell)
{
	t->cells = xrealloc(t->cells, (t->n_cells + 1) * sizeof *t->cells);
	t->cells[t->n_cells++] = cell;
}

/* Columns two spaces apart, the last one unpadded, each line after indent. */
static void cli_table_render(const struct cli_table *t, const char *indent, struct strbuf *out)
{
	size_t *widths = xcalloc(t->n_cols, sizeof *widths);
	for (size_t i = 0; i < t->n_cells; i++) {
		size_t w = cli_cell_width(t->cells[i]);
		if (w > widths[i % t->n_cols])
			widths[i % t->n_cols] = w;
	}
	for (size_t i = 0; i < t->n_cells; i++) {
		size_t col = i % t->n_cols;
		if (col == 0)
			strbuf_adds(out, indent);
		strbuf_adds(out, t->cells[i]);
		if (col + 1 == t->n_cols || i + 1 == t->n_cells) {
			strbuf_adds(out, "\n");
			continue;
		}
		for (size_t pad = cli_cell_width(t->cells[i]); pad < widths[col] + 2; pad++)
			strbuf_add(out, " ", 1);
	}
	free(widths);
}

static void cli_table_free(struct cli_table *t)
{
	for (size_t i = 0; i < t->n_cells; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
	t->n_cells = 0;
}

/* A JSON scalar as a cell; "-" for null, absent or empty. */
static char *cli_json_cell(const json_t *v, size_t max_chars)
{
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		return *s == '\0' ? xstrdup("-") : cli_cell(s, max_chars);
	}
	if (json_is_integer(v))
		return xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
	if (json_is_real(v))
		return xasprintf("%g", json_real_value(v));
	if (json_is_boolean(v))
		return xstrdup(json_is_true(v) ? "true" : "false");
	if (v == NULL || json_is_null(v))
		return xstrdup("-");
	return xstrdup("?");
}

/* A time from the API as "2026-11-29T08:35:00Z", or the raw text when it is not one. */
static char *cli_time_cell(const json_t *v)
{
	int64_t ms;
	if (cli_parse_time_ms(json_string_value(v), &ms) != 0)
		return cli_json_cell(v, 32);
	time_t secs = (time_t)(ms / 1000);
	if (ms < 0 && ms % 1000 != 0)
		secs--;
	struct tm tm;
	gmtime_r(&secs, &tm);
	char buf[32];
	strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return xstrdup(buf);
}

/* The time from one API time to another, or "-" when either is missing. */
static char *cli_duration_cell(const json_t *from, const json_t *to)
{
	int64_t a, b;
	if (cli_parse_time_ms(json_string_value(from), &a) != 0 ||
	    cli_parse_time_ms(json_string_value(to), &b) != 0)
		return xstrdup("-");
	char buf[32];
	cli_format_duration(b - a, buf, sizeof buf);
	return xstrdup(buf);
}

static char *cli_sha_cell(const json_t *v, size_t n)
{
	const char *s = json_string_value(v);
	if (s == NULL || *s == '\0')
		return xstrdup("-");
	char *cut = xstrndup(s, n);
	char *cell = cli_cell(cut, 0);
	free(cut);
	return cell;
}

char *cli_format_runs_table(const json_t *runs)
{
	if (!json_is_array(runs))
		return NULL;
	if (json_array_size(runs) == 0)
		return xstrdup("no runs\n");
	struct cli_table t = {.n_cols = 8};
	static const char *const head[] = {"ID",     "PIPELINE", "STATUS",  "REPO",
					   "BRANCH", "SHA",	 "CREATED", "DURATION"};
	for (size_t i = 0; i < ARRAY_LEN(head); i++)
		cli_table_add(&t, xstrdup(head[i]));
	size_t i;
	json_t *run;
	json_array_foreach(runs, i, run)
	{
		cli_table_add(&t, cli_json_cell(json_object_get(run, "id"), 24));
		cli_table_add(&t, cli_json_cell(json_object_get(run, "pipeline"), 30));
		cli_table_add(&t, cli_json_cell(json_object_get(run, "status"), 12));
		cli_table_add(&t, cli_json_cell(json_object_get(run, "repo"), 40));
		cli_table_add(&t, cli_json_cell(json_object_get(run, "branch"), 40));
		cli_table_add(&t, cli_sha_cell(json_object_get(run, "sha"), 10));
		cli_table_add(&t, cli_time_cell(json_object_get(run, "created_at")));
		cli_table_add(&t, cli_duration_cell(json_object_get(run, "created_at"),
						    json_object_get(run, "finished_at")));
	}
	struct strbuf out;
	strbuf_init(&out);
	cli_table_render(&t, "", &out);
	cli_table_free(&t);
	return strbuf_detach(&out);
}

/* A stage's attempts as "1:failed 2:succeeded" (TRIED column); "-" when none. */
static char *cli_stage_attempts_cell(const json_t *attempts)
{
	if (json_array_size(attempts) == 0)
		return xstrdup("-");
	struct strbuf sb;
	strbuf_init(&sb);
	size_t i;
	json_t *a;
	json_array_foreach(attempts, i, a)
	{
		char *status = cli_json_cell(json_object_get(a, "status"), 12);
		strbuf_addf(&sb, "%s%lld:%s", i > 0 ? " " : "",
			    (long long)json_integer_value(json_object_get(a, "attempt")), status);
		free(status);
	}
	char *cell = cli_cell(sb.data, 60);
	strbuf_free(&sb);
	return cell;
}

/* The run's attempts (who asked, when, why, what they re-ran) after the stages. */
static void cli_format_attempts(const json_t *attempts, struct strbuf *out)
{
	if (json_array_size(attempts) == 0)
		return;
	struct cli_table t = {.n_cols = 6};
	static const char *const cols[] = {"ATTEMPT", "REQUESTED", "BY",
					   "MODE",    "STAGES",	   "REASON"};
	for (size_t i = 0; i < ARRAY_LEN(cols); i++)
		cli_table_add(&t, xstrdup(cols[i]));
	size_t i;
	json_t *a;
	json_array_foreach(attempts, i, a)
	{
		cli_table_add(&t, cli_json_cell(json_object_get(a, "attempt"), 8));
		cli_table_add(&t, cli_time_cell(json_object_get(a, "requested_at")));
		cli_table_add(&t, cli_json_cell(json_object_get(a, "requested_by"), 40));
		const char *mode = json_string_value(json_object_get(a, "mode"));
		bool is_latest = json_is_true(json_object_get(a, "latest_pipeline"));
		const json_t *origin = json_object_get(a, "origin");
		char *from =
		    json_is_object(origin)
			? xasprintf(" (from run %lld of agent %s)",
				    (long long)json_integer_value(json_object_get(origin, "run")),
				    json_string_value(json_object_get(origin, "agent")) ?: "?")
			: xstrdup("");
		char *m = xasprintf("%s%s%s", mode != NULL ? mode : "-",
				    is_latest ? " (latest pipeline)" : "", from);
		free(from);
		cli_table_add(&t, cli_cell(m, 100));
		free(m);
		const json_t *names = json_object_get(a, "stages");
		if (!json_is_array(names)) {
			cli_table_add(&t, xstrdup("all"));
		} else {
			struct strbuf sb;
			strbuf_init(&sb);
			size_t k;
			json_t *v;
			json_array_foreach(names, k, v)
			    strbuf_addf(&sb, "%s%s", k > 0 ? "," : "", json_string_value(v) ?: "");
			cli_table_add(&t, cli_cell(sb.data != NULL ? sb.data : "", 60));
			strbuf_free(&sb);
		}
		cli_table_add(&t, cli_json_cell(json_object_get(a, "reason"), 80));
	}
	strbuf_adds(out, "\n");
	cli_table_render(&t, "", out);
	cli_table_free(&t);
}

static void cli_table_add_pair(struct cli_table *t, const char *key, char *value)
{
	cli_table_add(t, xstrdup(key));
	cli_table_add(t, value);
}

char *cli_format_run(const json_t *run)
{
	if (!json_is_object(run))
		return NULL;
	struct cli_table head = {.n_cols = 2};
	cli_table_add_pair(&head, "run", cli_json_cell(json_object_get(run, "id"), 0));
	cli_table_add_pair(&head, "pipeline", cli_json_cell(json_object_get(run, "pipeline"), 0));
	cli_table_add_pair(&head, "status", cli_json_cell(json_object_get(run, "status"), 0));
	cli_table_add_pair(&head, "repo", cli_json_cell(json_object_get(run, "repo"), 200));
	cli_table_add_pair(&head, "branch", cli_json_cell(json_object_get(run, "branch"), 200));
	cli_table_add_pair(&head, "sha", cli_sha_cell(json_object_get(run, "sha"), 64));
	char *event_id = cli_json_cell(json_object_get(run, "event_id"), 200);
	char *kind = cli_json_cell(json_object_get(run, "event_kind"), 40);
	cli_table_add_pair(&head, "event", xasprintf("%s (%s)", event_id, kind));
	free(event_id);
	free(kind);
	if (json_is_integer(json_object_get(run, "attempt")))
		cli_table_add_pair(&head, "attempt",
				   cli_json_cell(json_object_get(run, "attempt"), 0));
	cli_table_add_pair(&head, "created", cli_time_cell(json_object_get(run, "created_at")));
	cli_table_add_pair(&head, "finished", cli_time_cell(json_object_get(run, "finished_at")));
	cli_table_add_pair(&head, "duration",
			   cli_duration_cell(json_object_get(run, "created_at"),
					     json_object_get(run, "finished_at")));
	struct strbuf out;
	strbuf_init(&out);
	cli_table_render(&head, "", &out);
	cli_table_free(&head);
	strbuf_adds(&out, "\n");

	const json_t *stages = json_object_get(run, "stages");
	if (json_array_size(stages) == 0) {
		strbuf_adds(&out, "no stages\n");
		return strbuf_detach(&out);
	}
	struct cli_table t = {.n_cols = 8};
	static const char *const cols[] = {"STAGE", "STATUS", "ATTEMPT",  "RUN",
					   "TRIED", "EXIT",   "DURATION", "SUMMARY"};
	for (size_t i = 0; i < ARRAY_LEN(cols); i++)
		cli_table_add(&t, xstrdup(cols[i]));
	size_t i;
	json_t *st;
	json_array_foreach(stages, i, st)
	{
		cli_table_add(&t, cli_json_cell(json_object_get(st, "name"), 40));
		cli_table_add(&t, cli_json_cell(json_object_get(st, "status"), 12));
		cli_table_add(&t, cli_json_cell(json_object_get(st, "attempt"), 8));
		cli_table_add(&t, cli_json_cell(json_object_get(st, "run_attempt"), 8));
		cli_table_add(&t, cli_stage_attempts_cell(json_object_get(st, "attempts")));
		cli_table_add(&t, cli_json_cell(json_object_get(st, "exit_code"), 8));
		cli_table_add(&t, cli_duration_cell(json_object_get(st, "started_at"),
						    json_object_get(st, "finished_at")));
		cli_table_add(&t, cli_json_cell(json_object_get(st, "summary"), 80));
	}
	cli_table_render(&t, "", &out);
	cli_table_free(&t);
	cli_format_attempts(json_object_get(run, "attempts"), &out);
	char *id = cli_json_cell(json_object_get(run, "id"), 24);
	strbuf_addf(&out, "\nlogs: drover logs %s STAGE --attempt N\n", id);
	free(id);
	return strbuf_detach(&out);
}

/* ------------------------------------------------------------ stage order */

int cli_stage_order(const struct pipeline *p, size_t *order)
{
	size_t n = p->n_stages;
	bool *is_placed = xcalloc(n, sizeof *is_placed);
	for (size_t k = 0; k < n; k++) {
		bool is_found = false;
		for (size_t i = 0; i < n && !is_found; i++) {
			if (is_placed[i])
				continue;
			bool is_ready = true;
			for (size_t d = 0; d < p->stages[i].n_needs && is_ready; d++) {
				size_t j = 0;
				while (j < n &&
				       strcmp(p->stages[j].name, p->stages[i].needs[d]) != 0)
					j++;
				if (j == n) {
					free(is_placed);
					return -1; /* needs a stage that does not exist */
				}
				is_ready = is_placed[j];
			}
			if (is_ready) {
				order[k] = i;
				is_placed[i] = true;
				is_found = true;
			}
		}
		if (!is_found) {
			free(is_placed);
			return -1; /* what is left waits on itself */
		}
	}
	free(is_placed);
	return 0;
}

/* ------------------------------------------------------------ input files */

static char *cli_read_fd(int fd, size_t max_bytes, size_t *out_len)
{
	struct strbuf sb;
	strbuf_init(&sb);
	char buf[65536];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int saved = errno;
			strbuf_free(&sb);
			errno = saved;
			return NULL;
		}
		if (n == 0)
			break;
		strbuf_add(&sb, buf, (size_t)n);
		if (max_bytes > 0 && sb.len > max_bytes) {
			strbuf_free(&sb);
			errno = EFBIG;
			return NULL;
		}
	}
	*out_len = sb.len;
	return strbuf_detach(&sb);
}

/*
 * Reads an event body from a file or "-" (stdin), refusing more than
 * max_bytes (named by `setting` in the message) and empty input. Prints why
 * and returns NULL on failure.
 */
static char *cli_read_body(const char *path, size_t max_bytes, const char *setting, size_t *out_len)
{
	bool is_stdin = strcmp(path, "-") == 0;
	const char *name = is_stdin ? "stdin" : path;
	size_t len = 0;
	char *body = is_stdin ? cli_read_fd(STDIN_FILENO, max_bytes, &len)
			      : file_read_all(path, max_bytes, &len);
	if (body == NULL && errno == EFBIG) {
		fprintf(stderr, "drover: %s is larger than %zu bytes (%s)\n", name, max_bytes,
			setting);
		return NULL;
	}
	if (body == NULL) {
		fprintf(stderr, "drover: cannot read %s: %s\n", name, strerror(errno));
		return NULL;
	}
	if (len == 0) {
		fprintf(stderr, "drover: %s is empty\n", name);
		free(body);
		return NULL;
	}
	*out_len = len;
	return body;
}

/* ------------------------------------------------------------ HTTP */

struct cli_client {
	char *base_url;
	char *auth_header; /* "Authorization: Bearer ..." or NULL */
};

/* One answer: its status and body, or the body streamed to `stream` when 2xx. */
struct cli_reply {
	long status;
	struct strbuf body;
	FILE *stream;
	CURL *curl;
	bool has_started;
	bool is_streaming;
	bool is_too_large;
	int write_errno;
};

static int cli_client_init(struct cli_client *c, const struct config *cfg)
{
	memset(c, 0, sizeof *c);
	c->base_url = cli_base_url(cfg->admin.listen);
	if (c->base_url == NULL) {
		char *shown = cli_cell(cfg->admin.listen, 80);
		fprintf(stderr, "drover: admin.listen '%s' is not host:port\n", shown);
		free(shown);
		return -1;
	}
	const char *token = cfg->admin.token;
	if (token != NULL && *token != '\0') {
		if (!cli_is_header_token(token)) {
			fprintf(stderr,
				"drover: the admin token (admin.token_file) holds spaces or "
				"control characters\n");
			free(c->base_url);
			return -1;
		}
		c->auth_header = xasprintf("Authorization: Bearer %s", token);
	}
	return 0;
}

static void cli_client_free(struct cli_client *c)
{
	free(c->base_url);
	free(c->auth_header);
}

static struct curl_slist *cli_header_add(struct curl_slist *list, const char *line)
{
	struct curl_slist *l = curl_slist_append(list, line);
	if (l == NULL) {
		fprintf(stderr, "drover: out of memory adding a header\n");
		abort();
	}
	return l;
}

static size_t cli_reply_write(char *data, size_t size, size_t nmemb, void *arg)
{
	struct cli_reply *r = arg;
	size_t len = size * nmemb;
	if (!r->has_started) {
		r->has_started = true;
		long code = 0;
		curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &code);
		r->is_streaming = r->stream != NULL && code >= 200 && code < 300;
	}
	if (r->is_streaming) {
		errno = 0;
		if (fwrite(data, 1, len, r->stream) != len) {
			r->write_errno = errno != 0 ? errno : EIO;
			return 0;
		}
		return len;
	}
	if (r->body.len + len > CLI_MAX_REPLY_BYTES) {
		r->is_too_large = true;
		return 0;
	}
	strbuf_add(&r->body, data, len);
	return len;
}

/*
 * One blocking request to the agent (POST when body is not NULL). Takes
 * ownership of headers. Returns 0 when an answer arrived, whatever its
 * status; -1 after printing why there was none.
 */
static int cli_request(const struct cli_client *c, const char *url, struct curl_slist *headers,
		       const char *body, size_t body_len, bool is_unbounded,
		       struct cli_reply *reply)
{
	CURL *curl = curl_easy_init();
	if (curl == NULL) {
		fprintf(stderr, "drover: cannot start libcurl\n");
		curl_slist_free_all(headers);
		return -1;
	}
	char errbuf[CURL_ERROR_SIZE] = "";
	if (c->auth_header != NULL)
		headers = cli_header_add(headers, c->auth_header);
	headers = cli_header_add(headers, "Expect:"); /* no 100-continue round trip */
	reply->curl = curl;
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)CLI_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, is_unbounded ? 0L : (long)CLI_TOTAL_TIMEOUT_MS);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "drover/" DROVER_VERSION);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, cli_reply_write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, reply);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	if (body != NULL) {
		curl_easy_setopt(curl, CURLOPT_POST, 1L);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
	}
	CURLcode rc = curl_easy_perform(curl);
	long answered = 0; /* the status line arrived: the agent was reached */
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &answered);
	int result = 0;
	if (rc == CURLE_OK) {
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply->status);
	} else if (reply->write_errno != 0) {
		fprintf(stderr, "drover: writing the answer failed: %s\n",
			strerror(reply->write_errno));
		result = -1;
	} else if (reply->is_streaming || answered != 0) {
		fprintf(stderr, "drover: the agent's answer broke off: %s\n",
			errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc));
		result = -1;
	} else if (reply->is_too_large) {
		fprintf(stderr, "drover: the agent's answer is larger than %d bytes\n",
			CLI_MAX_REPLY_BYTES);
		result = -1;
	} else {
		fprintf(stderr, "drover: cannot reach the agent at %s: %s\n", c->base_url,
			errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc));
		result = -1;
	}
	curl_easy_cleanup(curl);
	curl_slist_free_all(headers);
	reply->curl = NULL;
	return result;
}

static bool cli_is_success(long status)
{
	return status >= 200 && status < 300;
}

/* The API's {"error": "..."} (or the bare status) as one line on stderr. */
static void cli_print_api_error(const struct cli_client *c, const struct cli_reply *r)
{
	json_t *doc = json_loadb(r->body.data != NULL ? r->body.data : "", r->body.len, 0, NULL);
	const char *msg = json_string_value(json_object_get(doc, "error"));
	const char *hint = "";
	if (r->status == 401 && c->auth_header == NULL)
		hint = "; no admin token is configured (admin.token_file in -c FILE)";
	if (msg != NULL) {
		char *shown = cli_cell(msg, CLI_ERROR_CHARS);
		fprintf(stderr, "drover: %s (HTTP %ld%s)\n", shown, r->status, hint);
		free(shown);
	} else {
		fprintf(stderr, "drover: the agent answered HTTP %ld%s\n", r->status, hint);
	}
	json_decref(doc);
}

/* Parses a JSON answer; prints why and returns NULL when it is not JSON. */
static json_t *cli_reply_json(const struct cli_reply *r)
{
	json_error_t jerr;
	json_t *doc = json_loadb(r->body.data != NULL ? r->body.data : "", r->body.len, 0, &jerr);
	if (doc == NULL) {
		char *shown = cli_cell(jerr.text, 120);
		fprintf(stderr, "drover: the agent's answer is not JSON: %s\n", shown);
		free(shown);
	}
	return doc;
}

static int cli_print_json(const json_t *doc)
{
	char *text = json_dumps(doc, JSON_INDENT(2));
	if (text == NULL) {
		fprintf(stderr, "drover: cannot print the answer as JSON\n");
		return 1;
	}
	printf("%s\n", text);
	free(text);
	return 0;
}

/* ------------------------------------------------------------ commands */

/* POST the body to /api/v1/events; "queued topic[partition]@offset" once Kafka has it. */
static int cmd_emit(const struct cli_args *args, const struct config *cfg)
{
	size_t len;
	char *body = cli_read_body(args->positionals[0], cfg->admin.max_body_bytes,
				   "admin.max_body_bytes", &len);
	if (body == NULL)
		return 1;
	struct cli_client c;
	if (cli_client_init(&c, cfg) != 0) {
		free(body);
		return 1;
	}
	struct curl_slist *headers = NULL;
	headers = cli_header_add(headers, "Accept: application/json");
	if (args->source == CLI_SOURCE_CLOUDEVENT) {
		headers = cli_header_add(headers, "Content-Type: application/cloudevents+json");
	} else {
		headers = cli_header_add(headers, "Content-Type: application/json");
	}
	if (args->source == CLI_SOURCE_DRIFT)
		headers = cli_header_add(headers, "X-Drover-Event: drift");
	if (args->source == CLI_SOURCE_GITHUB) {
		char *h = xasprintf("X-GitHub-Event: %s", args->github_event);
		headers = cli_header_add(headers, h);
		free(h);
		if (args->id != NULL) {
			h = xasprintf("X-GitHub-Delivery: %s", args->id);
			headers = cli_header_add(headers, h);
			free(h);
		}
	}
	char *url = cli_build_url(c.base_url, "/api/v1/events", NULL, 0);
	struct cli_reply r = {0};
	int rc = 1;
	if (cli_request(&c, url, headers, body, len, false, &r) != 0)
		goto out;
	if (!cli_is_success(r.status)) {
		cli_print_api_error(&c, &r);
		goto out;
	}
	rc = 0;
	json_t *receipt = json_loadb(r.body.data != NULL ? r.body.data : "", r.body.len, 0, NULL);
	const json_t *topic = json_object_get(receipt, "topic");
	const json_t *partition = json_object_get(receipt, "partition");
	const json_t *offset = json_object_get(receipt, "offset");
	if (json_is_string(topic) && json_is_integer(partition) && json_is_integer(offset)) {
		char *t = cli_cell(json_string_value(topic), 0);
		printf("queued %s[%" JSON_INTEGER_FORMAT "]@%" JSON_INTEGER_FORMAT "\n", t,
		       json_integer_value(partition), json_integer_value(offset));
		free(t);
	} else {
		printf("queued (HTTP %ld, the agent sent no receipt)\n", r.status);
	}
	json_decref(receipt);
out:
	strbuf_free(&r.body);
	free(url);
	free(body);
	cli_client_free(&c);
	return rc;
}

/*
 * One page of GET /api/v1/runs: at most limit runs older than before (0:
 * from the newest). The array (new reference), or NULL with the reason
 * printed.
 */
static json_t *cli_runs_page(const struct cli_client *c, const struct cli_args *args, long limit,
			     long before)
{
	char limit_text[24], before_text[24];
	snprintf(limit_text, sizeof limit_text, "%ld", limit);
	snprintf(before_text, sizeof before_text, "%ld", before);
	const struct cli_query_param params[] = {
	    {"pipeline", args->pipeline},
	    {"status", args->status},
	    {"repo", args->repo},
	    {"limit", limit_text},
	    {"before", before > 0 ? before_text : NULL},
	};
	char *url = cli_build_url(c->base_url, "/api/v1/runs", params, ARRAY_LEN(params));
	struct curl_slist *headers = cli_header_add(NULL, "Accept: application/json");
	struct cli_reply r = {0};
	json_t *runs = NULL;
	if (cli_request(c, url, headers, NULL, 0, false, &r) != 0)
		goto out;
	if (!cli_is_success(r.status)) {
		cli_print_api_error(c, &r);
		goto out;
	}
	runs = cli_reply_json(&r);
	if (runs != NULL && !json_is_array(runs)) {
		fprintf(stderr, "drover: the agent's answer is not a list of runs\n");
		json_decref(runs);
		runs = NULL;
	}
out:
	strbuf_free(&r.body);
	free(url);
	return runs;
}

/*
 * GET /api/v1/runs with the filters given, page by page (the API gives at
 * most CLI_RUNS_PAGE a request; the next page starts before the last id
 * seen) until --limit runs (default 100) or the oldest: a table, or the
 * array as JSON.
 */
static int cmd_runs(const struct cli_args *args, const struct config *cfg)
{
	struct cli_client c;
	if (cli_client_init(&c, cfg) != 0)
		return 1;
	long want = args->limit > 0 ? args->limit : CLI_RUNS_DEFAULT, before = args->before;
	json_t *runs = json_array();
	int rc = 1;
	while (json_array_size(runs) < (size_t)want) {
		long n = want - (long)json_array_size(runs);
		json_t *page =
		    cli_runs_page(&c, args, n < CLI_RUNS_PAGE ? n : CLI_RUNS_PAGE, before);
		if (page == NULL)
			goto out;
		size_t got = json_array_size(page);
		json_array_extend(runs, page);
		json_decref(page);
		if (got < (size_t)(n < CLI_RUNS_PAGE ? n : CLI_RUNS_PAGE))
			break;
		before = (long)json_integer_value(
		    json_object_get(json_array_get(runs, json_array_size(runs) - 1), "id"));
		if (before <= 1)
			break;
	}
	if (args->is_json) {
		rc = cli_print_json(runs);
	} else {
		char *table = cli_format_runs_table(runs);
		fputs(table, stdout);
		free(table);
		rc = 0;
	}
out:
	json_decref(runs);
	cli_client_free(&c);
	return rc;
}

/*
 * POST /api/v1/runs/RUN/ACTION with the JSON body req (NULL when a text in
 * it is not UTF-8: `what` names it): 0 when the agent answered 202 (r holds
 * its reply), 1 after saying why not.
 */
static int cli_post_run_action(const struct cli_client *c, const char *id, const char *action,
			       const json_t *req, const char *what, struct cli_reply *r)
{
	char *body = req != NULL ? json_dumps(req, JSON_COMPACT) : NULL;
	if (body == NULL) {
		fprintf(stderr, "drover: %s is not valid UTF-8\n", what);
		return 1;
	}
	char *esc = cli_escape(id);
	char *path = xasprintf("/api/v1/runs/%s/%s", esc, action);
	char *url = cli_build_url(c->base_url, path, NULL, 0);
	struct curl_slist *headers = cli_header_add(NULL, "Accept: application/json");
	headers = cli_header_add(headers, "Content-Type: application/json");
	int rc = 1;
	if (cli_request(c, url, headers, body, strlen(body), false, r) == 0) {
		if (r->status == 202)
			rc = 0;
		else
			cli_print_api_error(c, r);
	}
	free(url);
	free(path);
	free(esc);
	free(body);
	return rc;
}

/* POST /api/v1/runs/RUN/cancel (with {"reason"} when given): one line, 0 once it started. */
static int cmd_cancel(const struct cli_args *args, const struct config *cfg)
{
	struct cli_client c;
	if (cli_client_init(&c, cfg) != 0)
		return 1;
	const char *id = args->positionals[0];
	json_t *req =
	    args->reason != NULL ? json_pack("{s:s}", "reason", args->reason) : json_object();
	struct cli_reply r = {0};
	int rc = cli_post_run_action(&c, id, "cancel", req, "the reason", &r);
	json_decref(req);
	if (rc == 0) {
		char *shown = cli_cell(id, 80);
		printf("run %s: cancelling\n", shown);
		free(shown);
	}
	strbuf_free(&r.body);
	cli_client_free(&c);
	return rc;
}

/* Who asks for a replay: $USER@host (or "unknown@host"). Caller frees. */
static char *cli_requested_by(void)
{
	char host[256] = "";
	if (gethostname(host, sizeof host - 1) != 0)
		snprintf(host, sizeof host, "localhost");
	const char *user = getenv("USER") != NULL ? getenv("USER") : getenv("LOGNAME");
	return xasprintf("%s@%s", user != NULL && *user != '\0' ? user : "unknown", host);
}

/*
 * POST /api/v1/runs/RUN/replay: one line naming the new attempt and the
 * stages it re-runs, 0 once it is queued; the server's reason and 1 when
 * refused.
 */
static int cmd_replay(const struct cli_args *args, const struct config *cfg)
{
	struct cli_client c;
	if (cli_client_init(&c, cfg) != 0)
		return 1;
	const char *id = args->positionals[0];
	char *by = cli_requested_by();
	json_t *stages = json_array();
	bool is_text = true; /* jansson refuses text that is not UTF-8 */
	for (size_t i = 0; i < args->n_stages; i++)
		is_text =
		    json_array_append_new(stages, json_string(args->stages[i])) == 0 && is_text;
	json_t *req = json_pack("{s:o,s:b,s:b,s:b,s:s}", "stages", stages, "downstream",
				args->is_downstream, "all", args->is_all, "latest_pipeline",
				args->is_latest_pipeline, "requested_by", by);
	if (req != NULL && args->is_via_kafka)
		json_object_set_new(req, "via_kafka", json_true());
	if (req != NULL && args->is_force)
		json_object_set_new(req, "force", json_true());
	if (req != NULL && args->reason != NULL)
		is_text =
		    json_object_set_new(req, "reason", json_string(args->reason)) == 0 && is_text;
	struct cli_reply r = {0};
	json_t *reply = NULL;
	int rc = cli_post_run_action(&c, id, "replay", is_text ? req : NULL,
				     "a stage name or the reason", &r);
	json_decref(req);
	if (rc != 0)
		goto out;
	rc = 1;
	reply = cli_reply_json(&r);
	if (reply == NULL)
		goto out;
	struct strbuf names;
	strbuf_init(&names);
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(reply, "stages"), i, v)
	{
		char *cell = cli_cell(json_string_value(v), 80);
		strbuf_addf(&names, "%s%s", i > 0 ? ", " : "", cell);
		free(cell);
	}
	char *shown = cli_cell(id, 80);
	const char *command = json_string_value(json_object_get(reply, "command"));
	if (command != NULL) {
		char *shown_command = cli_cell(command, 120);
		printf("run %s: attempt %lld requested through Kafka (command %s), re-running "
		       "%s\n",
		       shown, (long long)json_integer_value(json_object_get(reply, "attempt")),
		       shown_command, names.data != NULL ? names.data : "");
		free(shown_command);
	} else {
		printf("run %s: attempt %lld queued, re-running %s\n", shown,
		       (long long)json_integer_value(json_object_get(reply, "attempt")),
		       names.data != NULL ? names.data : "");
	}
	free(shown);
	strbuf_free(&names);
	rc = 0;
out:
	json_decref(reply);
	strbuf_free(&r.body);
	free(by);
	cli_client_free(&c);
	return rc;
}

/* GET /api/v1/runs/RUN: a header block and one line per stage, or the JSON. */
static int cmd_show(const struct cli_args *args, const struct config *cfg)
{
	struct cli_client c;
	if (cli_client_init(&c, cfg) != 0)
		return 1;
	const char *id = args->positionals[0];
	char *esc = cli_escape(id);
	char *path = xasprintf("/api/v1/runs/%s", esc);
	char *url = cli_build_url(c.base_url, path, NULL, 0);
	struct curl_slist *headers = cli_header_add(NULL, "Accept: application/json");
	struct cli_reply r = {0};
	int rc = 1;
	json_t *run = NULL;
	if (cli_request(&c, url, headers, NULL, 0, false, &r) != 0)
		goto out;
	if (r.status == 404) {
		char *shown = cli_cell(id, 80);
		fprintf(stderr, "drover: no run %s\n", shown);
		free(shown);
		goto out;
	}
	if (!cli_is_success(r.status)) {
		cli_print_api_error(&c, &r);
		goto out;
	}
	run = cli_reply_json(&r);
	if (run == NULL)
		goto out;
	if (!json_is_object(run)) {
		fprintf(stderr, "drover: the agent's answer is not a run\n");
		goto out;
	}
	if (args->is_json) {
		rc = cli_print_json(run);
	} else {
		char *text = cli_format_run(run);
		fputs(text, stdout);
		free(text);
		rc = 0;
	}
out:
	json_decref(run);
	strbuf_free(&r.body);
	free(url);
	free(path);
	free(esc);
	cli_client_free(&c);
	return rc;
}

/* GET a stage attempt's log and copy it to stdout as it arrives, byte for byte; with
 * --follow, while the stage writes it, until the attempt is over. */
static int cmd_logs(const struct cli_args *args, const struct config *cfg)
{
	struct cli_client c;
	if (cli_client_init(&c, cfg) != 0)
		return 1;
	char *run = cli_escape(args->positionals[0]);
	char *stage = cli_escape(args->positionals[1]);
	char *path = xasprintf("/api/v1/runs/%s/stages/%s/log", run, stage);
	char attempt[24];
	snprintf(attempt, sizeof attempt, "%ld", args->attempt);
	const struct cli_query_param params[] = {{"attempt", args->attempt > 0 ? attempt : NULL},
						 {"follow", args->is_follow ? "1" : NULL}};
	char *url = cli_build_url(c.base_url, path, params, ARRAY_LEN(params));
	struct cli_reply r = {.stream = stdout};
	int rc = 1;
	if (args->is_follow)
		setvbuf(stdout, NULL, _IONBF, 0); /* each chunk shows as it arrives */
	if (cli_request(&c, url, NULL, NULL, 0, true, &r) != 0)
		goto out;
	if (!cli_is_success(r.status)) {
		if (r.status == 404 && r.body.len == 0) {
			char *shown_run = cli_cell(args->positionals[0], 80);
			char *shown_stage = cli_cell(args->positionals[1], 80);
			fprintf(stderr, "drover: no log for stage %s of run %s\n", shown_stage,
				shown_run);
			free(shown_run);
			free(shown_stage);
		} else {
			cli_print_api_error(&c, &r);
		}
		goto out;
	}
	if (fflush(stdout) != 0) {
		fprintf(stderr, "drover: writing the log failed: %s\n", strerror(errno));
		goto out;
	}
	rc = 0;
out:
	strbuf_free(&r.body);
	free(url);
	free(path);
	free(run);
	free(stage);
	cli_client_free(&c);
	return rc;
}

/* The plugin catalog of `validate`: a plugin exists when <dir>/<name>.so does. */
static bool cli_has_plugin(void *arg, const char *name)
{
	const char *dir = arg;
	if (name == NULL || name[0] == '\0' || name[0] == '.' || strchr(name, '/') != NULL)
		return false;
	char *path = xasprintf("%s/%s.so", dir, name);
	struct stat st;
	bool has = stat(path, &st) == 0 && S_ISREG(st.st_mode);
	free(path);
	return has;
}

/*
 * Loads every pipeline file named (directories: their *.yml, *.yaml) and
 * prints every file:line problem on stdout; "ok: N pipelines" when none.
 */
static int cmd_validate(const struct cli_args *args, const struct config *cfg)
{
	struct plugin_catalog catalog = {.has_plugin = cli_has_plugin, .arg = cfg->plugins_dir};
	const struct plugin_catalog *plugins = &catalog;
	struct stat st;
	if (cfg->plugins_dir == NULL || stat(cfg->plugins_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr,
			"drover: plugins directory %s not found: plugin names not checked\n",
			cfg->plugins_dir != NULL ? cfg->plugins_dir : "(none)");
		plugins = NULL;
	}
	struct diags diags = {0};
	size_t n_pipelines = 0;
	for (size_t i = 0; i < args->n_positionals; i++) {
		const char *path = args->positionals[i];
		size_t before = diags.n;
		if (stat(path, &st) != 0) {
			diags_add(&diags, path, 0, "%s", strerror(errno));
		} else if (S_ISDIR(st.st_mode)) {
			struct pipeline_set set = {0};
			int rc = pipeline_set_load_dir(&set, path, plugins, &diags);
			n_pipelines += set.n;
			if (rc != 0 && diags.n == before)
				diags_add(&diags, path, 0, "cannot read the directory");
			pipeline_set_free(&set);
		} else {
			struct pipeline *p = pipeline_load_file(path, plugins, &diags);
			if (p != NULL)
				n_pipelines++;
			else if (diags.n == before)
				diags_add(&diags, path, 0, "not a valid pipeline");
			pipeline_free(p);
		}
	}
	int rc = 0;
	if (diags.n > 0) {
		diags_print(&diags, stdout);
		fprintf(stderr, "drover: %zu problem%s found\n", diags.n, diags.n == 1 ? "" : "s");
		rc = 1;
	} else {
		printf("ok: %zu pipelines\n", n_pipelines);
	}
	diags_free(&diags);
	return rc;
}

/* The stages of p in the order they could run, as JSON [{name, uses, needs}]. */
static json_t *cli_plan_stages(const struct pipeline *p)
{
	json_t *stages = json_array();
	size_t *order = xcalloc(p->n_stages, sizeof *order);
	if (cli_stage_order(p, order) != 0)
		for (size_t i = 0; i < p->n_stages; i++)
			order[i] = i; /* cannot happen for a validated pipeline: keep file order */
	for (size_t k = 0; k < p->n_stages; k++) {
		const struct pipeline_stage *s = &p->stages[order[k]];
		json_t *needs = json_array();
		for (size_t d = 0; d < s->n_needs; d++)
			json_array_append_new(needs, json_string(s->needs[d]));
		json_array_append_new(stages, json_pack("{s:s, s:s?, s:o}", "name", s->name, "uses",
							s->uses, "needs", needs));
	}
	free(order);
	return stages;
}

static void cli_plan_print_event(const json_t *ev)
{
	struct cli_table t = {.n_cols = 2};
	char *kind = cli_json_cell(json_object_get(ev, "kind"), 40);
	char *action = cli_json_cell(json_object_get(ev, "action"), 40);
	char *source = cli_json_cell(json_object_get(ev, "source"), 40);
	cli_table_add_pair(&t, "event", xasprintf("%s %s (%s)", kind, action, source));
	free(kind);
	free(action);
	free(source);
	/* An id made up from the Kafka position means nothing before the event is sent. */
	const char *id = json_string_value(json_object_get(ev, "id"));
	if (id != NULL && strncmp(id, "kafka:", 6) != 0)
		cli_table_add_pair(&t, "id", cli_cell(id, 200));
	cli_table_add_pair(&t, "repo", cli_json_cell(json_object_get(ev, "repo"), 200));
	cli_table_add_pair(&t, "branch", cli_json_cell(json_object_get(ev, "branch"), 200));
	cli_table_add_pair(&t, "sha", cli_sha_cell(json_object_get(ev, "sha"), 64));
	const json_t *drift = json_object_get(ev, "drift");
	if (json_is_object(drift)) {
		char *model = cli_json_cell(json_object_get(drift, "model"), 80);
		char *env = cli_json_cell(json_object_get(drift, "environment"), 80);
		char *sev = cli_json_cell(json_object_get(drift, "severity"), 20);
		cli_table_add_pair(
		    &t, "drift",
		    xasprintf("model %s, environment %s, severity %s", model, env, sev));
		free(model);
		free(env);
		free(sev);
	}
	struct strbuf out;
	strbuf_init(&out);
	cli_table_render(&t, "", &out);
	fputs(out.data, stdout);
	strbuf_free(&out);
	cli_table_free(&t);
}

static void cli_plan_print_stages(const json_t *stages)
{
	struct cli_table t = {.n_cols = 3};
	cli_table_add(&t, xstrdup("STAGE"));
	cli_table_add(&t, xstrdup("USES"));
	cli_table_add(&t, xstrdup("NEEDS"));
	size_t i;
	json_t *s;
	json_array_foreach(stages, i, s)
	{
		cli_table_add(&t, cli_json_cell(json_object_get(s, "name"), 0));
		cli_table_add(&t, cli_json_cell(json_object_get(s, "uses"), 0));
		struct strbuf needs;
		strbuf_init(&needs);
		size_t j;
		json_t *n;
		json_array_foreach(json_object_get(s, "needs"), j, n)
		{
			char *cell = cli_cell(json_string_value(n), 0);
			strbuf_addf(&needs, "%s%s", j > 0 ? "," : "", cell);
			free(cell);
		}
		cli_table_add(&t, needs.len > 0 ? strbuf_detach(&needs) : xstrdup("-"));
		strbuf_free(&needs);
	}
	struct strbuf out;
	strbuf_init(&out);
	cli_table_render(&t, "  ", &out);
	fputs(out.data, stdout);
	strbuf_free(&out);
	cli_table_free(&t);
}

/* Matches ev against every pipeline of pipelines_dir; prints the plan. */
static int cli_plan_pipelines(const struct cli_args *args, const struct config *cfg, json_t *ev,
			      json_t *result)
{
	struct stat st;
	if (stat(cfg->pipelines_dir, &st) != 0) {
		fprintf(stderr, "drover: pipelines directory %s: %s\n", cfg->pipelines_dir,
			strerror(errno));
		return 1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "drover: pipelines directory %s is not a directory\n",
			cfg->pipelines_dir);
		return 1;
	}
	struct diags diags = {0};
	struct pipeline_set set = {0};
	pipeline_set_load_dir(&set, cfg->pipelines_dir, NULL, &diags);
	if (diags.n > 0) {
		diags_print(&diags, stderr);
		fprintf(stderr, "drover: pipelines with errors are left out of the plan\n");
	}
	diags_free(&diags);
	json_t *list = json_array();
	size_t n_matched = 0;
	for (size_t i = 0; i < set.n; i++) {
		const struct pipeline *p = set.items[i];
		char why[512] = "";
		bool is_match = pipeline_match(p, ev, why, sizeof why);
		json_t *stages = is_match ? cli_plan_stages(p) : json_array();
		json_array_append_new(list, json_pack("{s:s, s:b, s:o, s:o}", "name", p->name,
						      "matched", is_match, "why",
						      is_match ? json_null() : json_string(why),
						      "stages", stages));
		char *name = cli_cell(p->name, 0);
		if (is_match) {
			n_matched++;
			if (!args->is_json) {
				printf("pipeline %s: would start\n", name);
				cli_plan_print_stages(stages);
			}
		} else if (!args->is_json) {
			char *shown = cli_cell(why, 0);
			printf("pipeline %s: no match: %s\n", name, shown);
			free(shown);
		}
		free(name);
	}
	if (!args->is_json && set.n == 0)
		printf("no pipelines in %s\n", cfg->pipelines_dir);
	if (!args->is_json && n_matched == 0)
		printf("nothing would run\n");
	json_object_set_new(result, "pipelines", list);
	pipeline_set_free(&set);
	return 0;
}

/*
 * Says what an event would start, without the agent: normalises it as the
 * agent would, checks the repository list, matches every pipeline. Exit 1
 * only when the event is not one drover can build.
 */
static int cmd_plan(const struct cli_args *args, const struct config *cfg)
{
	size_t len;
	char *body =
	    cli_read_body(args->positionals[0], cfg->max_event_bytes, "max_event_bytes", &len);
	if (body == NULL)
		return 1;
	struct event_header headers[2];
	size_t n_headers = 0;
	const char *type = args->source == CLI_SOURCE_CLOUDEVENT ? "application/cloudevents+json"
								 : "application/json";
	headers[n_headers++] =
	    (struct event_header){.name = "content-type", .value = type, .value_len = strlen(type)};
	if (args->source == CLI_SOURCE_GITHUB)
		headers[n_headers++] =
		    (struct event_header){.name = "x-github-event",
					  .value = args->github_event,
					  .value_len = strlen(args->github_event)};
	if (args->source == CLI_SOURCE_DRIFT)
		headers[n_headers++] = (struct event_header){
		    .name = "x-drover-event", .value = "drift", .value_len = strlen("drift")};
	struct event_input in = {
	    .topic = NULL,
	    .partition = -1,
	    .offset = -1,
	    .headers = headers,
	    .n_headers = n_headers,
	    .payload = body,
	    .payload_len = len,
	    .received_at_ms = now_ms(),
	};
	struct event_options opt;
	config_event_options(cfg, &opt);
	json_t *ev = NULL;
	char why[512] = "";
	enum event_outcome outcome = event_normalize(&in, &opt, &ev, why, sizeof why);
	free(body);
	if (outcome != EVENT_OK) {
		if (args->is_json) {
			json_t *doc = json_pack("{s:n, s:s, s:s}", "event", "outcome",
						event_outcome_name(outcome), "error", why);
			cli_print_json(doc);
			json_decref(doc);
		} else {
			char *shown = cli_cell(why, 0);
			printf("event %s: %s\n", event_outcome_name(outcome), shown);
			free(shown);
		}
		json_decref(ev);
		return 1;
	}

	const char *repo = json_string_value(json_object_get(ev, "repo"));
	bool is_configured =
	    cfg->n_repos == 0 || (repo != NULL && config_find_repo(cfg, repo) != NULL);
	json_t *result = json_pack("{s:O, s:{s:o, s:b}}", "event", ev, "repository", "name",
				   repo != NULL ? json_string(repo) : json_null(), "is_configured",
				   is_configured);
	int rc = 0;
	if (!args->is_json)
		cli_plan_print_event(ev);
	if (!is_configured) {
		json_object_set_new(result, "pipelines", json_array());
		if (!args->is_json) {
			char *shown = cli_cell(repo != NULL ? repo : "-", 0);
			printf("repository %s is not configured: nothing would run\n", shown);
			free(shown);
		}
	} else {
		rc = cli_plan_pipelines(args, cfg, ev, result);
	}
	if (rc == 0 && args->is_json)
		rc = cli_print_json(result);
	json_decref(result);
	json_decref(ev);
	return rc;
}

/* ------------------------------------------------------------ entry */

static void cli_print_usage(FILE *out, int cmd)
{
	for (size_t i = 0; i < ARRAY_LEN(cli_commands); i++) {
		if (cmd >= 0 && (size_t)cmd != i)
			continue;
		fprintf(out, "%s %s\n", cmd >= 0 || i == 0 ? "usage:" : "      ",
			cli_commands[i].usage);
	}
}

static bool cli_needs_agent(const char *command)
{
	return strcmp(command, "validate") != 0 && strcmp(command, "plan") != 0;
}

int cli_main(int argc, char **argv)
{
	struct cli_args args;
	char err[256];
	if (cli_args_parse(argc, argv, &args, err, sizeof err) != 0) {
		int cmd = argc > 0 ? cli_command_find(argv[0]) : -1;
		fprintf(stderr, "drover%s%s: %s\n", cmd >= 0 ? " " : "",
			cmd >= 0 ? cli_commands[cmd].name : "", err);
		cli_print_usage(stderr, cmd);
		cli_args_free(&args);
		return 2;
	}
	int cmd = cli_command_find(args.command);
	if (args.is_help) {
		cli_print_usage(stdout, cmd);
		cli_args_free(&args);
		return 0;
	}
	struct diags diags = {0};
	struct config *cfg = config_load(args.config_path, &diags);
	if (cfg == NULL) {
		/* validate reports every file:line problem on stdout, the config's too */
		diags_print(&diags, cmd == CMD_VALIDATE ? stdout : stderr);
		fprintf(stderr, "drover: cannot load %s\n",
			args.config_path != NULL ? args.config_path : "the default configuration");
		diags_free(&diags);
		cli_args_free(&args);
		return 1;
	}
	diags_print(&diags, stderr);
	diags_free(&diags);

	bool has_curl = false;
	int rc = 1;
	if (cli_needs_agent(args.command)) {
		CURLcode crc = curl_global_init(CURL_GLOBAL_DEFAULT);
		if (crc != CURLE_OK) {
			fprintf(stderr, "drover: cannot initialise libcurl: %s\n",
				curl_easy_strerror(crc));
			goto out;
		}
		has_curl = true;
	}
	switch (cmd) {
	case CMD_EMIT:
		rc = cmd_emit(&args, cfg);
		break;
	case CMD_RUNS:
		rc = cmd_runs(&args, cfg);
		break;
	case CMD_SHOW:
		rc = cmd_show(&args, cfg);
		break;
	case CMD_LOGS:
		rc = cmd_logs(&args, cfg);
		break;
	case CMD_CANCEL:
		rc = cmd_cancel(&args, cfg);
		break;
	case CMD_REPLAY:
		rc = cmd_replay(&args, cfg);
		break;
	case CMD_VALIDATE:
		rc = cmd_validate(&args, cfg);
		break;
	case CMD_PLAN:
		rc = cmd_plan(&args, cfg);
		break;
	}
out:
	if (has_curl)
		curl_global_cleanup();
	config_free(cfg);
	cli_args_free(&args);
	return rc;
}
