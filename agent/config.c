/*
 * config: reads agent.yaml (libyaml document API) into one immutable struct
 * config, resolving the admin token and secret values at load. Owns every
 * string it hands out; never keeps a config that had any error.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "log.h"
#include "util.h"

/* agent.yaml, a token file and a secret file are small; refuse absurd ones. */
#define CONFIG_MAX_FILE_BYTES (4u * 1024 * 1024)
#define TOKEN_MAX_FILE_BYTES (64u * 1024)
#define SECRET_MAX_FILE_BYTES (1024u * 1024)
#define SECRET_SHORT_CHARS 4

struct loader {
	const char *file;
	yaml_document_t *doc;
	struct diags *diags;
	struct config *cfg;
	size_t n_errors;
	bool has_azure_password; /* hooks.azure_devops names a password (set or not) */
};

enum field_kind {
	FIELD_STRING,	/* non-empty text, char * */
	FIELD_INT,	/* integer in [min, max], int */
	FIELD_SIZE,	/* "1048576", "512KiB", "1MiB", size_t */
	FIELD_DURATION, /* duration_parse_ms, int64_t */
	FIELD_SECTION,	/* a nested mapping described by another table */
	FIELD_CUSTOM,	/* parsed by its own function */
};

struct section;

struct field {
	const char *key;
	enum field_kind kind;
	size_t offset; /* into the base the section is walked with */
	int64_t min, max;
	const struct section *section;
	void (*parse)(struct loader *l, const char *path, yaml_node_t *value);
};

struct section {
	const char *name; /* "" for the top level, else the dotted prefix */
	const struct field *fields;
	size_t n_fields;
};

static void config_error(struct loader *l, const yaml_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void config_error(struct loader *l, const yaml_node_t *node, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	int line = node != NULL ? (int)node->start_mark.line + 1 : 0;
	diags_add(l->diags, l->file, line, "%s", msg);
	free(msg);
	l->n_errors++;
}

static int node_line(const yaml_node_t *node)
{
	return (int)node->start_mark.line + 1;
}

static yaml_node_t *node_at(struct loader *l, int index)
{
	return yaml_document_get_node(l->doc, index);
}

/* A plain scalar spelled the way YAML spells null (including nothing at all). */
static bool node_is_null(const yaml_node_t *node)
{
	if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	const char *s = (const char *)node->data.scalar.value;
	return strcmp(s, "") == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
	       strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

static const char *node_text(const yaml_node_t *node)
{
	return (const char *)node->data.scalar.value;
}

static const char *node_kind_name(const yaml_node_t *node)
{
	if (node_is_null(node))
		return "null";
	switch (node->type) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a list";
	default:
		return "a scalar";
	}
}

static char *path_join(const char *prefix, const char *key)
{
	if (prefix[0] == '\0')
		return xstrdup(key);
	return xasprintf("%s.%s", prefix, key);
}

/*
 * The text of a scalar that must be present and non-empty, or NULL after
 * recording why not.
 */
static const char *scalar_expect(struct loader *l, const char *path, yaml_node_t *node)
{
	if (node->type != YAML_SCALAR_NODE || node_is_null(node)) {
		config_error(l, node, "'%s' must be a value, not %s", path, node_kind_name(node));
		return NULL;
	}
	const char *s = node_text(node);
	if (s[0] == '\0') {
		config_error(l, node, "'%s' must not be empty", path);
		return NULL;
	}
	if (strlen(s) != node->data.scalar.length) {
		config_error(l, node, "'%s' contains a NUL character", path);
		return NULL;
	}
	return s;
}

/*
 * Parses a byte size: a bare number of bytes, or a number followed by B,
 * K/KiB, M/MiB, G/GiB (powers of 1024) or KB/MB/GB (powers of 1000), with
 * an optional space and any letter case. Returns 0, or -1 for anything else
 * (empty, negative, fractional, unknown unit, overflow).
 */
static int size_parse_bytes(const char *s, size_t *out_bytes)
{
	static const struct {
		const char *unit;
		uint64_t factor;
	} units[] = {
	    {"", 1},
	    {"b", 1},
	    {"k", 1024},
	    {"kib", 1024},
	    {"kb", 1000},
	    {"m", 1024 * 1024},
	    {"mib", 1024 * 1024},
	    {"mb", 1000 * 1000},
	    {"g", 1024 * 1024 * 1024},
	    {"gib", 1024 * 1024 * 1024},
	    {"gb", 1000 * 1000 * 1000},
	};
	const char *p = s;
	if (*p < '0' || *p > '9')
		return -1;
	uint64_t n = 0;
	while (*p >= '0' && *p <= '9') {
		unsigned digit = (unsigned)(*p - '0');
		if (n > (UINT64_MAX - digit) / 10)
			return -1;
		n = n * 10 + digit;
		p++;
	}
	if (*p == ' ' && *++p == '\0')
		return -1; /* a space only separates a unit */
	char unit[4];
	size_t len = strlen(p);
	if (len >= sizeof unit)
		return -1;
	for (size_t i = 0; i <= len; i++)
		unit[i] = (char)tolower((unsigned char)p[i]);
	for (size_t i = 0; i < ARRAY_LEN(units); i++) {
		if (strcmp(unit, units[i].unit) != 0)
			continue;
		if (n > UINT64_MAX / units[i].factor || n * units[i].factor > SIZE_MAX)
			return -1;
		*out_bytes = (size_t)(n * units[i].factor);
		return 0;
	}
	return -1;
}

/*
 * Checks "host:port" or "[v6addr]:port": a host is present and the port is
 * 0..65535 (0: any free port). Returns NULL when fine, else why not.
 */
static const char *listen_check(const char *s)
{
	const char *colon;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL || close == s + 1)
			return "the IPv6 address must be written as [addr]:port";
		colon = close + 1;
		if (*colon != ':')
			return "expected host:port";
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return "expected host:port";
		if (colon == s)
			return "the host is missing (use 0.0.0.0 to listen everywhere)";
		if (memchr(s, ':', (size_t)(colon - s)) != NULL)
			return "write an IPv6 address as [addr]:port";
	}
	const char *port = colon + 1;
	size_t len = strlen(port);
	if (len == 0 || len > 5 || strspn(port, "0123456789") != len)
		return "the port must be a number 0..65535";
	if (atoi(port) > 65535)
		return "the port must be a number 0..65535";
	return NULL;
}

static void field_set_string(char **slot, const char *s)
{
	free(*slot);
	*slot = xstrdup(s);
}

/* Applies one scalar field of a table to base; records an error on bad input. */
static void field_apply(struct loader *l, const struct field *f, const char *path, void *base,
			yaml_node_t *value)
{
	char *slot = (char *)base + f->offset;
	if (f->kind == FIELD_CUSTOM) {
		f->parse(l, path, value);
		return;
	}
	const char *s = scalar_expect(l, path, value);
	if (s == NULL)
		return;
	switch (f->kind) {
	case FIELD_STRING:
		field_set_string((char **)slot, s);
		break;
	case FIELD_INT: {
		char *end;
		errno = 0;
		long long n = strtoll(s, &end, 10);
		if (errno != 0 || *end != '\0' || end == s || n < f->min || n > f->max) {
			config_error(l, value, "'%s' must be an integer in %lld..%lld, not '%s'",
				     path, (long long)f->min, (long long)f->max, s);
			break;
		}
		*(int *)slot = (int)n;
		break;
	}
	case FIELD_SIZE: {
		size_t bytes;
		if (size_parse_bytes(s, &bytes) != 0 || bytes == 0) {
			config_error(l, value,
				     "'%s' must be a size above zero such as 1048576, 512KiB or "
				     "10MiB, not '%s'",
				     path, s);
			break;
		}
		*(size_t *)slot = bytes;
		break;
	}
	case FIELD_DURATION: {
		int64_t ms;
		if (duration_parse_ms(s, &ms) != 0) {
			config_error(l, value,
				     "'%s' must be a duration such as 500ms, 30s, 10m or 1h30m, "
				     "not '%s'",
				     path, s);
			break;
		}
		*(int64_t *)slot = ms;
		break;
	}
	default:
		break;
	}
}

static void section_walk(struct loader *l, const struct section *sec, void *base,
			 yaml_node_t *node);

static void section_complain_unknown(struct loader *l, const struct section *sec, yaml_node_t *key)
{
	struct strbuf allowed;
	strbuf_init(&allowed);
	for (size_t i = 0; i < sec->n_fields; i++)
		strbuf_addf(&allowed, "%s%s", i > 0 ? ", " : "", sec->fields[i].key);
	config_error(l, key, "unknown key '%s' (allowed: %s)", node_text(key), allowed.data);
	strbuf_free(&allowed);
}

/*
 * Walks one mapping against a table of fields: every key must be a known,
 * unrepeated scalar; each value is applied to base. A null node is an empty
 * mapping (every field keeps its default).
 */
static void section_walk(struct loader *l, const struct section *sec, void *base, yaml_node_t *node)
{
	if (node_is_null(node))
		return;
	if (node->type != YAML_MAPPING_NODE) {
		if (sec->name[0] == '\0')
			config_error(l, node, "the file must be a mapping of keys, not %s",
				     node_kind_name(node));
		else
			config_error(l, node, "'%s' must be a mapping, not %s", sec->name,
				     node_kind_name(node));
		return;
	}
	yaml_node_pair_t *first = node->data.mapping.pairs.start;
	yaml_node_pair_t *top = node->data.mapping.pairs.top;
	for (yaml_node_pair_t *pair = first; pair < top; pair++) {
		yaml_node_t *key = node_at(l, pair->key);
		yaml_node_t *value = node_at(l, pair->value);
		if (key->type != YAML_SCALAR_NODE) {
			config_error(l, key, "keys must be plain words, not %s",
				     node_kind_name(key));
			continue;
		}
		bool is_duplicate = false;
		for (yaml_node_pair_t *prev = first; prev < pair && !is_duplicate; prev++) {
			yaml_node_t *pk = node_at(l, prev->key);
			is_duplicate = pk->type == YAML_SCALAR_NODE &&
				       strcmp(node_text(pk), node_text(key)) == 0;
		}
		if (is_duplicate) {
			config_error(l, key, "duplicate key '%s'", node_text(key));
			continue;
		}
		const struct field *f = NULL;
		for (size_t i = 0; i < sec->n_fields && f == NULL; i++)
			if (strcmp(sec->fields[i].key, node_text(key)) == 0)
				f = &sec->fields[i];
		if (f == NULL) {
			section_complain_unknown(l, sec, key);
			continue;
		}
		if (f->kind == FIELD_SECTION) {
			section_walk(l, f->section, base, value);
			continue;
		}
		char *path = path_join(sec->name, f->key);
		field_apply(l, f, path, base, value);
		free(path);
	}
}

/* The items of a list (null: none); NULL after recording an error. */
static bool list_expect(struct loader *l, const char *path, yaml_node_t *node,
			yaml_node_item_t **start, yaml_node_item_t **top)
{
	*start = *top = NULL;
	if (node_is_null(node))
		return true;
	if (node->type != YAML_SEQUENCE_NODE) {
		config_error(l, node, "'%s' must be a list, not %s", path, node_kind_name(node));
		return false;
	}
	*start = node->data.sequence.items.start;
	*top = node->data.sequence.items.top;
	return true;
}

static void config_parse_properties(struct loader *l, const char *path, yaml_node_t *node)
{
	json_t *props = l->cfg->kafka.properties;
	json_object_clear(props);
	if (node_is_null(node))
		return;
	if (node->type != YAML_MAPPING_NODE) {
		config_error(l, node, "'%s' must be a mapping of name: value, not %s", path,
			     node_kind_name(node));
		return;
	}
	for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
	     pair < node->data.mapping.pairs.top; pair++) {
		yaml_node_t *key = node_at(l, pair->key);
		yaml_node_t *value = node_at(l, pair->value);
		if (key->type != YAML_SCALAR_NODE || node_is_null(key)) {
			config_error(l, key, "'%s' names must be words, not %s", path,
				     node_kind_name(key));
			continue;
		}
		const char *name = node_text(key);
		if (json_object_get(props, name) != NULL) {
			config_error(l, key, "duplicate key '%s'", name);
			continue;
		}
		char *item = xasprintf("%s.%s", path, name);
		const char *text = scalar_expect(l, item, value);
		free(item);
		if (text != NULL)
			json_object_set_new(props, name, json_string(text));
	}
}

static void config_parse_listen(struct loader *l, const char *path, yaml_node_t *node)
{
	const char *s = scalar_expect(l, path, node);
	if (s == NULL)
		return;
	const char *why = listen_check(s);
	if (why != NULL) {
		config_error(l, node, "'%s' is '%s': %s", path, s, why);
		return;
	}
	field_set_string(&l->cfg->admin.listen, s);
}

/* Cuts trailing bytes of s that are in set; returns the new length. */
static size_t text_trim_trailing(char *s, size_t len, const char *set)
{
	while (len > 0 && strchr(set, s[len - 1]) != NULL)
		s[--len] = '\0';
	return len;
}

/*
 * Sets admin.token_file and reads the token from it now, so that a missing
 * or empty token stops the agent at start, not at the first request.
 */
static void config_parse_token_file(struct loader *l, const char *path, yaml_node_t *node)
{
	struct admin_config *admin = &l->cfg->admin;
	free(admin->token_file);
	free(admin->token);
	admin->token_file = admin->token = NULL;
	if (node_is_null(node))
		return;
	const char *file = scalar_expect(l, path, node);
	if (file == NULL)
		return;
	admin->token_file = xstrdup(file);
	size_t len;
	char *token = file_read_all(file, TOKEN_MAX_FILE_BYTES, &len);
	if (token == NULL) {
		config_error(l, node, "'%s': cannot read '%s': %s", path, file, strerror(errno));
		return;
	}
	if (strlen(token) != len) {
		config_error(l, node, "'%s': '%s' contains a NUL byte", path, file);
		free(token);
		return;
	}
	if (text_trim_trailing(token, len, " \t\r\n\v\f") == 0) {
		config_error(l, node, "'%s': '%s' is empty", path, file);
		free(token);
		return;
	}
	admin->token = token;
}

static const struct field repo_fields[] = {
    {.key = "name", .kind = FIELD_STRING, .offset = offsetof(struct repo_config, name)},
    {.key = "url", .kind = FIELD_STRING, .offset = offsetof(struct repo_config, url)},
};
static const struct section repo_section = {"repos[]", repo_fields, ARRAY_LEN(repo_fields)};

/* repos: a list of {name, url}; both required, names unique. */
static void config_parse_repos(struct loader *l, const char *path, yaml_node_t *node)
{
	yaml_node_item_t *item, *top;
	if (!list_expect(l, path, node, &item, &top))
		return;
	struct config *cfg = l->cfg;
	cfg->repos = xcalloc((size_t)(top - item), sizeof *cfg->repos);
	for (; item < top; item++) {
		yaml_node_t *entry = node_at(l, *item);
		struct repo_config repo = {0};
		size_t errors_before = l->n_errors;
		if (entry->type != YAML_MAPPING_NODE)
			config_error(l, entry, "a repos entry must be {name, url}");
		else
			section_walk(l, &repo_section, &repo, entry);
		if (l->n_errors == errors_before && (repo.name == NULL || repo.url == NULL))
			config_error(l, entry, "a repos entry needs both 'name' and 'url'");
		const struct repo_config *prev =
		    repo.name != NULL ? config_find_repo(cfg, repo.name) : NULL;
		if (prev != NULL)
			config_error(l, entry, "duplicate repo '%s'", repo.name);
		if (l->n_errors != errors_before) {
			free(repo.name);
			free(repo.url);
			continue;
		}
		cfg->repos[cfg->n_repos++] = repo;
	}
}

static void config_add_secret(struct loader *l, const yaml_node_t *node, const char *origin,
			      char *value)
{
	struct config *cfg = l->cfg;
	if (value[0] == '\0') {
		log_warn("config: %s:%d: secret %s is empty; nothing to mask", l->file,
			 node_line(node), origin);
		free(value);
		return;
	}
	if (strlen(value) < SECRET_SHORT_CHARS)
		log_warn("config: %s:%d: secret %s is shorter than %d characters; masking it "
			 "will also hide ordinary text",
			 l->file, node_line(node), origin, SECRET_SHORT_CHARS);
	for (size_t i = 0; i < cfg->n_secrets; i++) {
		if (strcmp(cfg->secrets[i], value) == 0) {
			free(value);
			return;
		}
	}
	cfg->secrets = xrealloc(cfg->secrets, (cfg->n_secrets + 1) * sizeof *cfg->secrets);
	cfg->secrets[cfg->n_secrets++] = value;
}

/*
 * secrets: a list of {env: NAME} or {file: PATH}, resolved now. An unset
 * variable is a warning (the secret may not exist in this environment); an
 * unreadable file is an error (someone meant it to be there).
 */
static void config_parse_secrets(struct loader *l, const char *path, yaml_node_t *node)
{
	yaml_node_item_t *item, *top;
	if (!list_expect(l, path, node, &item, &top))
		return;
	for (; item < top; item++) {
		yaml_node_t *entry = node_at(l, *item);
		if (entry->type != YAML_MAPPING_NODE ||
		    entry->data.mapping.pairs.top - entry->data.mapping.pairs.start != 1) {
			config_error(l, entry,
				     "a secrets entry must be exactly one of {env: NAME} or "
				     "{file: PATH}");
			continue;
		}
		yaml_node_pair_t *pair = entry->data.mapping.pairs.start;
		yaml_node_t *key = node_at(l, pair->key);
		yaml_node_t *value = node_at(l, pair->value);
		const char *kind = key->type == YAML_SCALAR_NODE ? node_text(key) : "";
		if (strcmp(kind, "env") == 0) {
			const char *name = scalar_expect(l, "secrets[].env", value);
			if (name == NULL)
				continue;
			const char *env = getenv(name);
			if (env == NULL) {
				log_warn("config: %s:%d: secret env %s is not set; skipped",
					 l->file, node_line(value), name);
				continue;
			}
			char *origin = xasprintf("env %s", name);
			config_add_secret(l, value, origin, xstrdup(env));
			free(origin);
		} else if (strcmp(kind, "file") == 0) {
			const char *file = scalar_expect(l, "secrets[].file", value);
			if (file == NULL)
				continue;
			size_t len;
			char *text = file_read_all(file, SECRET_MAX_FILE_BYTES, &len);
			if (text == NULL) {
				config_error(l, value, "secret file '%s': cannot read: %s", file,
					     strerror(errno));
				continue;
			}
			if (strlen(text) != len) {
				config_error(l, value, "secret file '%s' contains a NUL byte",
					     file);
				free(text);
				continue;
			}
			text_trim_trailing(text, len, "\r\n");
			char *origin = xasprintf("file %s", file);
			config_add_secret(l, value, origin, text);
			free(origin);
		} else {
			config_error(l, key, "unknown key '%s' (allowed: env, file)",
				     key->type == YAML_SCALAR_NODE ? node_text(key) : "?");
		}
	}
}

/*
 * One webhook secret from a file (trailing newline cut) or an environment
 * variable, read now. A file that cannot be read or an empty secret is an
 * error; an unset variable a warning that leaves the receiver off (it
 * answers 404, it never accepts unsigned requests). The value joins the
 * masked secrets; it is never logged.
 */
static void config_read_hook_secret(struct loader *l, const char *path, yaml_node_t *node,
				    char **slot, bool is_env)
{
	const char *source = scalar_expect(l, path, node);
	if (source == NULL)
		return;
	if (*slot != NULL) {
		config_error(l, node,
			     "'%s': give the secret once, from a file or from the environment",
			     path);
		return;
	}
	char *value;
	if (is_env) {
		const char *env = getenv(source);
		if (env == NULL) {
			/* As for secrets: the CLI reads this file without the agent's
			 * environment. The receiver stays off (404), never open. */
			log_warn("config: %s:%d: '%s': environment variable %s is not set; "
				 "that webhook receiver is off",
				 l->file, node_line(node), path, source);
			return;
		}
		value = xstrdup(env);
	} else {
		size_t len;
		value = file_read_all(source, TOKEN_MAX_FILE_BYTES, &len);
		if (value == NULL) {
			config_error(l, node, "'%s': cannot read '%s': %s", path, source,
				     strerror(errno));
			return;
		}
		if (strlen(value) != len) {
			config_error(l, node, "'%s': '%s' contains a NUL byte", path, source);
			free(value);
			return;
		}
		text_trim_trailing(value, len, "\r\n");
	}
	if (value[0] == '\0') {
		config_error(l, node, "'%s': the secret in %s is empty", path, source);
		free(value);
		return;
	}
	*slot = value;
	char *origin = xasprintf("%s %s", path, source);
	config_add_secret(l, node, origin, xstrdup(value));
	free(origin);
}

static void config_parse_github_secret_file(struct loader *l, const char *path, yaml_node_t *node)
{
	config_read_hook_secret(l, path, node, &l->cfg->hooks.github_secret, false);
}

static void config_parse_github_secret_env(struct loader *l, const char *path, yaml_node_t *node)
{
	config_read_hook_secret(l, path, node, &l->cfg->hooks.github_secret, true);
}

static void config_parse_gitlab_token_file(struct loader *l, const char *path, yaml_node_t *node)
{
	config_read_hook_secret(l, path, node, &l->cfg->hooks.gitlab_token, false);
}

static void config_parse_gitlab_token_env(struct loader *l, const char *path, yaml_node_t *node)
{
	config_read_hook_secret(l, path, node, &l->cfg->hooks.gitlab_token, true);
}

static void config_parse_azure_password_file(struct loader *l, const char *path, yaml_node_t *node)
{
	l->has_azure_password = true;
	config_read_hook_secret(l, path, node, &l->cfg->hooks.azure_password, false);
}

static void config_parse_azure_password_env(struct loader *l, const char *path, yaml_node_t *node)
{
	l->has_azure_password = true;
	config_read_hook_secret(l, path, node, &l->cfg->hooks.azure_password, true);
}

struct alert_entry {
	char *alert, *model;
};
static const struct field alert_fields[] = {
    {.key = "alert", .kind = FIELD_STRING, .offset = offsetof(struct alert_entry, alert)},
    {.key = "model", .kind = FIELD_STRING, .offset = offsetof(struct alert_entry, model)},
};
static const struct section alert_section = {"drift.alerts[]", alert_fields,
					     ARRAY_LEN(alert_fields)};

/* drift.alerts: a list of {alert, model}; an alert maps to one model only. */
static void config_parse_alerts(struct loader *l, const char *path, yaml_node_t *node)
{
	yaml_node_item_t *item, *top;
	if (!list_expect(l, path, node, &item, &top))
		return;
	struct config *cfg = l->cfg;
	cfg->alerts = xcalloc((size_t)(top - item), sizeof *cfg->alerts);
	for (; item < top; item++) {
		yaml_node_t *entry = node_at(l, *item);
		struct alert_entry e = {0};
		size_t errors_before = l->n_errors;
		if (entry->type != YAML_MAPPING_NODE)
			config_error(l, entry, "a drift.alerts entry must be {alert, model}");
		else
			section_walk(l, &alert_section, &e, entry);
		if (l->n_errors == errors_before && (e.alert == NULL || e.model == NULL))
			config_error(l, entry,
				     "a drift.alerts entry needs both 'alert' and 'model'");
		for (size_t i = 0; e.alert != NULL && i < cfg->n_alerts; i++)
			if (strcmp(cfg->alerts[i].alert, e.alert) == 0)
				config_error(l, entry, "duplicate alert '%s'", e.alert);
		if (l->n_errors != errors_before) {
			free(e.alert);
			free(e.model);
			continue;
		}
		cfg->alerts[cfg->n_alerts].alert = e.alert;
		cfg->alerts[cfg->n_alerts].model = e.model;
		cfg->n_alerts++;
	}
}

struct model_entry {
	char *model, *repo, *branch;
};
static const struct field model_fields[] = {
    {.key = "model", .kind = FIELD_STRING, .offset = offsetof(struct model_entry, model)},
    {.key = "repo", .kind = FIELD_STRING, .offset = offsetof(struct model_entry, repo)},
    {.key = "branch", .kind = FIELD_STRING, .offset = offsetof(struct model_entry, branch)},
};
static const struct section model_section = {"drift.models[]", model_fields,
					     ARRAY_LEN(model_fields)};

/* drift.models: a list of {model, repo, branch?}; models unique. */
static void config_parse_models(struct loader *l, const char *path, yaml_node_t *node)
{
	yaml_node_item_t *item, *top;
	if (!list_expect(l, path, node, &item, &top))
		return;
	struct config *cfg = l->cfg;
	cfg->models = xcalloc((size_t)(top - item), sizeof *cfg->models);
	for (; item < top; item++) {
		yaml_node_t *entry = node_at(l, *item);
		struct model_entry e = {0};
		size_t errors_before = l->n_errors;
		if (entry->type != YAML_MAPPING_NODE)
			config_error(l, entry,
				     "a drift.models entry must be {model, repo, branch}");
		else
			section_walk(l, &model_section, &e, entry);
		if (l->n_errors == errors_before && (e.model == NULL || e.repo == NULL))
			config_error(l, entry, "a drift.models entry needs 'model' and 'repo'");
		for (size_t i = 0; e.model != NULL && i < cfg->n_models; i++)
			if (strcmp(cfg->models[i].model, e.model) == 0)
				config_error(l, entry, "duplicate model '%s'", e.model);
		if (l->n_errors != errors_before) {
			free(e.model);
			free(e.repo);
			free(e.branch);
			continue;
		}
		cfg->models[cfg->n_models].model = e.model;
		cfg->models[cfg->n_models].repo = e.repo;
		cfg->models[cfg->n_models].branch = e.branch;
		cfg->n_models++;
	}
}

/*
 * One YAML node of plugin_config as JSON: plain scalars that read as an
 * integer, true/false or null become that, every other scalar a string.
 * NULL after recording why (an alias loop or absurd nesting).
 */
static json_t *config_node_json(struct loader *l, yaml_node_t *node, int depth)
{
	if (depth > 32) {
		config_error(l, node, "plugin_config is nested too deeply");
		return NULL;
	}
	if (node->type == YAML_SCALAR_NODE) {
		const char *s = node_text(node);
		if (node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
			return json_stringn(s, node->data.scalar.length);
		if (node_is_null(node))
			return json_null();
		if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0)
			return json_boolean(s[0] == 't');
		char *end;
		errno = 0;
		long long v = strtoll(s, &end, 10);
		if (s[0] != '\0' && *end == '\0' && errno == 0)
			return json_integer(v);
		return json_stringn(s, node->data.scalar.length);
	}
	if (node->type == YAML_SEQUENCE_NODE) {
		json_t *a = json_array();
		for (yaml_node_item_t *it = node->data.sequence.items.start;
		     it < node->data.sequence.items.top; it++) {
			json_t *v = config_node_json(l, node_at(l, *it), depth + 1);
			if (v == NULL) {
				json_decref(a);
				return NULL;
			}
			json_array_append_new(a, v);
		}
		return a;
	}
	json_t *o = json_object();
	for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
	     pair < node->data.mapping.pairs.top; pair++) {
		yaml_node_t *key = node_at(l, pair->key);
		if (key->type != YAML_SCALAR_NODE) {
			config_error(l, key, "plugin_config keys must be words, not %s",
				     node_kind_name(key));
			json_decref(o);
			return NULL;
		}
		json_t *v = config_node_json(l, node_at(l, pair->value), depth + 1);
		if (v == NULL) {
			json_decref(o);
			return NULL;
		}
		json_object_set_new(o, node_text(key), v);
	}
	return o;
}

/* plugin_config: { <plugin name>: { ... } }, each handed to that plugin's init. */
static void config_parse_plugin_config(struct loader *l, const char *path, yaml_node_t *node)
{
	json_object_clear(l->cfg->plugin_config);
	if (node_is_null(node))
		return;
	if (node->type != YAML_MAPPING_NODE) {
		config_error(l, node, "'%s' must be a mapping of plugin name: settings, not %s",
			     path, node_kind_name(node));
		return;
	}
	for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
	     pair < node->data.mapping.pairs.top; pair++) {
		yaml_node_t *key = node_at(l, pair->key);
		yaml_node_t *value = node_at(l, pair->value);
		if (key->type != YAML_SCALAR_NODE || node_is_null(key)) {
			config_error(l, key, "'%s' names plugins, not %s", path,
				     node_kind_name(key));
			continue;
		}
		const char *name = node_text(key);
		if (json_object_get(l->cfg->plugin_config, name) != NULL) {
			config_error(l, key, "duplicate key '%s'", name);
			continue;
		}
		if (value->type != YAML_MAPPING_NODE) {
			config_error(l, value, "'%s.%s' must be a mapping, not %s", path, name,
				     node_kind_name(value));
			continue;
		}
		json_t *v = config_node_json(l, value, 0);
		if (v != NULL)
			json_object_set_new(l->cfg->plugin_config, name, v);
	}
}

#define CFG(member) offsetof(struct config, member)

static const struct field kafka_fields[] = {
    {.key = "brokers", .kind = FIELD_STRING, .offset = CFG(kafka.brokers)},
    {.key = "group", .kind = FIELD_STRING, .offset = CFG(kafka.group)},
    {.key = "events_topic", .kind = FIELD_STRING, .offset = CFG(kafka.events_topic)},
    {.key = "results_topic", .kind = FIELD_STRING, .offset = CFG(kafka.results_topic)},
    {.key = "dead_letter_topic", .kind = FIELD_STRING, .offset = CFG(kafka.dead_letter_topic)},
    {.key = "embedded_partitions",
     .kind = FIELD_INT,
     .offset = CFG(kafka.embedded_partitions),
     .min = 1,
     .max = 1024},
    {.key = "properties", .kind = FIELD_CUSTOM, .parse = config_parse_properties},
};
static const struct section kafka_section = {"kafka", kafka_fields, ARRAY_LEN(kafka_fields)};

static const struct field admin_fields[] = {
    {.key = "listen", .kind = FIELD_CUSTOM, .parse = config_parse_listen},
    {.key = "token_file", .kind = FIELD_CUSTOM, .parse = config_parse_token_file},
    {.key = "max_body_bytes", .kind = FIELD_SIZE, .offset = CFG(admin.max_body_bytes)},
    {.key = "max_header_bytes", .kind = FIELD_SIZE, .offset = CFG(admin.max_header_bytes)},
    {.key = "max_log_followers",
     .kind = FIELD_INT,
     .offset = CFG(admin.max_log_followers),
     .min = 1,
     .max = 100000},
};
static const struct section admin_section = {"admin", admin_fields, ARRAY_LEN(admin_fields)};

static const struct field hooks_github_fields[] = {
    {.key = "secret_file", .kind = FIELD_CUSTOM, .parse = config_parse_github_secret_file},
    {.key = "secret_env", .kind = FIELD_CUSTOM, .parse = config_parse_github_secret_env},
};
static const struct section hooks_github_section = {"hooks.github", hooks_github_fields,
						    ARRAY_LEN(hooks_github_fields)};

static const struct field hooks_gitlab_fields[] = {
    {.key = "token_file", .kind = FIELD_CUSTOM, .parse = config_parse_gitlab_token_file},
    {.key = "token_env", .kind = FIELD_CUSTOM, .parse = config_parse_gitlab_token_env},
};
static const struct section hooks_gitlab_section = {"hooks.gitlab", hooks_gitlab_fields,
						    ARRAY_LEN(hooks_gitlab_fields)};

static const struct field hooks_azure_fields[] = {
    {.key = "username", .kind = FIELD_STRING, .offset = CFG(hooks.azure_username)},
    {.key = "password_file", .kind = FIELD_CUSTOM, .parse = config_parse_azure_password_file},
    {.key = "password_env", .kind = FIELD_CUSTOM, .parse = config_parse_azure_password_env},
};
static const struct section hooks_azure_section = {"hooks.azure_devops", hooks_azure_fields,
						   ARRAY_LEN(hooks_azure_fields)};

static const struct field hooks_fields[] = {
    {.key = "github", .kind = FIELD_SECTION, .section = &hooks_github_section},
    {.key = "gitlab", .kind = FIELD_SECTION, .section = &hooks_gitlab_section},
    {.key = "azure_devops", .kind = FIELD_SECTION, .section = &hooks_azure_section},
};
static const struct section hooks_section = {"hooks", hooks_fields, ARRAY_LEN(hooks_fields)};

static const struct field drift_fields[] = {
    {.key = "alerts", .kind = FIELD_CUSTOM, .parse = config_parse_alerts},
    {.key = "models", .kind = FIELD_CUSTOM, .parse = config_parse_models},
};
static const struct section drift_section = {"drift", drift_fields, ARRAY_LEN(drift_fields)};

static const struct field top_fields[] = {
    {.key = "state_dir", .kind = FIELD_STRING, .offset = CFG(state_dir)},
    {.key = "pipelines", .kind = FIELD_STRING, .offset = CFG(pipelines_dir)},
    {.key = "plugins", .kind = FIELD_STRING, .offset = CFG(plugins_dir)},
    {.key = "max_parallel", .kind = FIELD_INT, .offset = CFG(max_parallel), .min = 1, .max = 1024},
    {.key = "max_queued_runs",
     .kind = FIELD_INT,
     .offset = CFG(max_queued_runs),
     .min = 1,
     .max = 10000000},
    {.key = "max_event_bytes", .kind = FIELD_SIZE, .offset = CFG(max_event_bytes)},
    {.key = "max_log_bytes", .kind = FIELD_SIZE, .offset = CFG(max_log_bytes)},
    {.key = "stage_kill_grace", .kind = FIELD_DURATION, .offset = CFG(stage_kill_grace_ms)},
    {.key = "stop_grace", .kind = FIELD_DURATION, .offset = CFG(stop_grace_ms)},
    {.key = "keep_failed_workspace",
     .kind = FIELD_DURATION,
     .offset = CFG(keep_failed_workspace_ms)},
    {.key = "kafka", .kind = FIELD_SECTION, .section = &kafka_section},
    {.key = "admin", .kind = FIELD_SECTION, .section = &admin_section},
    {.key = "repos", .kind = FIELD_CUSTOM, .parse = config_parse_repos},
    {.key = "secrets", .kind = FIELD_CUSTOM, .parse = config_parse_secrets},
    {.key = "drift", .kind = FIELD_SECTION, .section = &drift_section},
    {.key = "hooks", .kind = FIELD_SECTION, .section = &hooks_section},
    {.key = "plugin_config", .kind = FIELD_CUSTOM, .parse = config_parse_plugin_config},
};
static const struct section top_section = {"", top_fields, ARRAY_LEN(top_fields)};

static struct config *config_new_defaults(void)
{
	struct config *cfg = xcalloc(1, sizeof *cfg);
	cfg->state_dir = xstrdup("./state");
	cfg->pipelines_dir = xstrdup("./pipelines");
	cfg->plugins_dir = xstrdup("./build/plugins");
	cfg->max_parallel = 8;
	cfg->max_queued_runs = 1000;
	cfg->max_event_bytes = 1024 * 1024;
	cfg->max_log_bytes = 10 * 1024 * 1024;
	cfg->stage_kill_grace_ms = 10 * 1000;
	cfg->stop_grace_ms = 30 * 1000;
	cfg->keep_failed_workspace_ms = 3600 * 1000;
	cfg->kafka.brokers = xstrdup("embedded");
	cfg->kafka.group = xstrdup("drover");
	cfg->kafka.events_topic = xstrdup("drover.events");
	cfg->kafka.results_topic = xstrdup("drover.results");
	cfg->kafka.dead_letter_topic = xstrdup("drover.dead-letter");
	cfg->kafka.properties = json_object();
	cfg->plugin_config = json_object();
	cfg->kafka.embedded_partitions = 4;
	cfg->admin.listen = xstrdup("127.0.0.1:8470");
	cfg->admin.max_body_bytes = 1024 * 1024;
	cfg->admin.max_header_bytes = 64 * 1024;
	cfg->admin.max_log_followers = 32;
	return cfg;
}

/* Warns about drift models whose repository is not in repos: their runs would be refused. */
static void config_warn_unlisted_models(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->n_models; i++)
		if (config_find_repo(cfg, cfg->models[i].repo) == NULL)
			log_warn("config: %s: drift model '%s' lives in '%s', which is not in "
				 "repos; its retraining would be refused",
				 cfg->path, cfg->models[i].model, cfg->models[i].repo);
}

/*
 * Parses text (already read from path) into cfg. Only the first YAML
 * document is the configuration; a second one is an error rather than
 * silently ignored.
 */
static void config_parse_text(struct loader *l, const char *text, size_t len)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		diags_add(l->diags, l->file, (int)parser.problem_mark.line + 1, "%s%s%s",
			  parser.problem != NULL ? parser.problem : "invalid YAML",
			  parser.context != NULL ? " " : "",
			  parser.context != NULL ? parser.context : "");
		l->n_errors++;
		yaml_parser_delete(&parser);
		return;
	}
	l->doc = &doc;
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	if (root != NULL)
		section_walk(l, &top_section, l->cfg, root);

	yaml_document_t next;
	if (!yaml_parser_load(&parser, &next)) {
		diags_add(l->diags, l->file, (int)parser.problem_mark.line + 1, "%s",
			  parser.problem != NULL ? parser.problem : "invalid YAML");
		l->n_errors++;
	} else {
		yaml_node_t *extra = yaml_document_get_root_node(&next);
		if (extra != NULL)
			config_error(l, extra, "only one YAML document is allowed");
		yaml_document_delete(&next);
	}
	l->doc = NULL;
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
}

struct config *config_load(const char *path, struct diags *diags)
{
	struct config *cfg = config_new_defaults();
	if (path == NULL)
		return cfg;
	cfg->path = xstrdup(path);
	struct loader l = {.file = path, .diags = diags, .cfg = cfg};
	size_t len;
	char *text = file_read_all(path, CONFIG_MAX_FILE_BYTES, &len);
	if (text == NULL) {
		diags_add(diags, path, 0, "cannot read: %s", strerror(errno));
		config_free(cfg);
		return NULL;
	}
	config_parse_text(&l, text, len);
	free(text);
	if ((cfg->hooks.azure_username != NULL) != l.has_azure_password) {
		diags_add(diags, path, 0,
			  "hooks.azure_devops needs both 'username' and a password (password_file "
			  "or password_env)");
		l.n_errors++;
	}
	if (l.n_errors > 0) {
		config_free(cfg);
		return NULL;
	}
	config_warn_unlisted_models(cfg);
	return cfg;
}

void config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	free(cfg->path);
	free(cfg->state_dir);
	free(cfg->pipelines_dir);
	free(cfg->plugins_dir);
	free(cfg->kafka.brokers);
	free(cfg->kafka.group);
	free(cfg->kafka.events_topic);
	free(cfg->kafka.results_topic);
	free(cfg->kafka.dead_letter_topic);
	json_decref(cfg->kafka.properties);
	json_decref(cfg->plugin_config);
	free(cfg->admin.listen);
	free(cfg->admin.token_file);
	free(cfg->admin.token);
	free(cfg->hooks.github_secret);
	free(cfg->hooks.gitlab_token);
	free(cfg->hooks.azure_username);
	free(cfg->hooks.azure_password);
	for (size_t i = 0; i < cfg->n_repos; i++) {
		free(cfg->repos[i].name);
		free(cfg->repos[i].url);
	}
	free(cfg->repos);
	for (size_t i = 0; i < cfg->n_secrets; i++)
		free(cfg->secrets[i]);
	free(cfg->secrets);
	for (size_t i = 0; i < cfg->n_alerts; i++) {
		free((char *)cfg->alerts[i].alert);
		free((char *)cfg->alerts[i].model);
	}
	free(cfg->alerts);
	for (size_t i = 0; i < cfg->n_models; i++) {
		free((char *)cfg->models[i].model);
		free((char *)cfg->models[i].repo);
		free((char *)cfg->models[i].branch);
	}
	free(cfg->models);
	free(cfg);
}

const struct repo_config *config_find_repo(const struct config *cfg, const char *name)
{
	if (name == NULL)
		return NULL;
	for (size_t i = 0; i < cfg->n_repos; i++)
		if (strcmp(cfg->repos[i].name, name) == 0)
			return &cfg->repos[i];
	return NULL;
}

void config_event_options(const struct config *cfg, struct event_options *opt)
{
	memset(opt, 0, sizeof *opt);
	opt->max_payload_bytes = cfg->max_event_bytes;
	opt->alerts = cfg->alerts;
	opt->n_alerts = cfg->n_alerts;
	opt->models = cfg->models;
	opt->n_models = cfg->n_models;
}
