/*
 * pipeline: reads pipeline YAML into JSON plus a map of source lines, then
 * checks and builds a struct pipeline from the JSON alone (one validation
 * path for files and stored definitions); matches events, expands
 * placeholders, computes retry delays. Reads files, never runs anything.
 */
#include "pipeline.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "glob.h"
#include "log.h"
#include "util.h"

#define PIPELINE_MAX_FILE_BYTES ((size_t)1 << 20)
#define PIPELINE_MAX_DEPTH 64
#define PIPELINE_MAX_RETRIES 20
#define PIPELINE_DEFAULT_TIMEOUT_MS (3600 * 1000LL)
#define PIPELINE_DEFAULT_RETRY_DELAY_MS (10 * 1000LL)
#define PIPELINE_DEFAULT_MAX_DELAY_MS (600 * 1000LL)
#define PIPELINE_NO_INDEX ((size_t)-1)

static const char *const placeholder_names[] = {"repo", "branch", "pr", "sha", "model", "env"};

/* clang-format off */
static const char *const pr_action_names[] = {
	"opened", "synchronize", "reopened", "closed", "merged", "edited", "labeled",
	"unlabeled", "ready_for_review", "converted_to_draft", "assigned", "unassigned",
	"review_requested", "review_request_removed", "locked", "unlocked",
	"auto_merge_enabled", "auto_merge_disabled", "enqueued", "dequeued", "milestoned",
	"demilestoned",
};
/* clang-format on */

static const char *const pr_default_actions[] = {"opened", "synchronize", "reopened"};

static const char *const severity_names[] = {"info", "warning", "critical"};

/* A short, printable copy of foreign text for a message. */
static const char *show(const char *s, char *buf, size_t buf_len)
{
	return log_escape(s != NULL ? s : "(null)", buf, buf_len);
}

/* ------------------------------------------------------------------ */
/* YAML → JSON with a line for every node                              */
/* ------------------------------------------------------------------ */

struct yaml_reader {
	yaml_parser_t parser;
	const char *text;
	size_t text_len;
	const char *file;
	struct diags *diags;
	json_t *lines;	   /* JSON pointer → 1-based line */
	struct strbuf ptr; /* JSON pointer of the node being read */
	int n_errors;
	bool is_stopped; /* after a syntax error or a fatal limit: read no further */
};

static void reader_error(struct yaml_reader *r, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reader_error(struct yaml_reader *r, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	diags_add(r->diags, r->file, line, "%s", msg);
	free(msg);
	r->n_errors++;
}

/* Appends one JSON-pointer segment (RFC 6901 escaping) to sb. */
static void pointer_add_key(struct strbuf *sb, const char *key)
{
	strbuf_adds(sb, "/");
	for (const char *k = key; *k != '\0'; k++) {
		if (*k == '~')
			strbuf_adds(sb, "~0");
		else if (*k == '/')
			strbuf_adds(sb, "~1");
		else
			strbuf_add(sb, k, 1);
	}
}

static void reader_set_line(struct yaml_reader *r, int line)
{
	json_object_set_new(r->lines, r->ptr.data != NULL ? r->ptr.data : "", json_integer(line));
}

/* Reads the next event; a libyaml failure becomes one diagnostic. */
static int reader_next(struct yaml_reader *r, yaml_event_t *ev)
{
	if (r->is_stopped)
		return -1;
	if (yaml_parser_parse(&r->parser, ev))
		return 0;
	yaml_parser_t *p = &r->parser;
	int line = (int)p->problem_mark.line + 1;
	if (p->error == YAML_READER_ERROR) {
		/* The reader reports a byte offset, not a mark. */
		line = 1;
		for (size_t i = 0; i < p->problem_offset && i < r->text_len; i++)
			line += r->text[i] == '\n';
	}
	const char *problem = p->problem != NULL ? p->problem : "cannot parse";
	if (p->error == YAML_MEMORY_ERROR)
		problem = "out of memory";
	if (p->context != NULL)
		reader_error(r, line, "YAML syntax error: %s (%s that started on line %d)", problem,
			     p->context, (int)p->context_mark.line + 1);
	else
		reader_error(r, line, "YAML syntax error: %s", problem);
	r->is_stopped = true;
	return -1;
}

static bool text_is_one_of(const char *s, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s, names[i]) == 0)
			return true;
	return false;
}

/* Digits (at least one) from s in the given base, up to the end of the text. */
static bool text_is_digits(const char *s, int base)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		bool is_digit = base == 16 ? strchr("0123456789abcdefABCDEF", *s) != NULL
					   : (*s >= '0' && *s < '0' + base);
		if (!is_digit)
			return false;
	}
	return true;
}

/* YAML 1.2 core-schema float: [-+]?(.d+|d+(.d*)?)([eE][-+]?d+)? */
static bool text_is_float(const char *s)
{
	if (*s == '-' || *s == '+')
		s++;
	size_t int_digits = strspn(s, "0123456789");
	s += int_digits;
	size_t frac_digits = 0;
	if (*s == '.') {
		s++;
		frac_digits = strspn(s, "0123456789");
		s += frac_digits;
	}
	if (int_digits == 0 && frac_digits == 0)
		return false;
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '-' || *s == '+')
			s++;
		size_t exp_digits = strspn(s, "0123456789");
		if (exp_digits == 0)
			return false;
		s += exp_digits;
	}
	return *s == '\0';
}

/*
 * Resolves a plain scalar by the YAML 1.2 core schema: null, booleans,
 * integers (decimal, 0x, 0o), floats; anything else is a string. So `on`,
 * `yes` and `off` stay strings. Returns NULL for an integer out of range.
 */
static json_t *scalar_resolve_plain(const char *s)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
	static const char *const trues[] = {"true", "True", "TRUE"};
	static const char *const falses[] = {"false", "False", "FALSE"};
	if (text_is_one_of(s, nulls, ARRAY_LEN(nulls)))
		return json_null();
	if (text_is_one_of(s, trues, ARRAY_LEN(trues)))
		return json_true();
	if (text_is_one_of(s, falses, ARRAY_LEN(falses)))
		return json_false();
	const char *digits = s + (*s == '-' || *s == '+');
	int base = 0;
	if (text_is_digits(digits, 10))
		base = 10;
	else if (strncmp(s, "0x", 2) == 0 && text_is_digits(s + 2, 16))
		base = 16;
	else if (strncmp(s, "0o", 2) == 0 && text_is_digits(s + 2, 8))
		base = 8;
	if (base != 0) {
		errno = 0;
		long long v = strtoll(base == 10 ? s : s + 2, NULL, base);
		if (errno == ERANGE)
			return NULL;
		return json_integer(v);
	}
	if (text_is_float(s)) {
		double v = strtod(s, NULL);
		json_t *real = json_real(v); /* NULL for inf: too large */
		if (real != NULL)
			return real;
	}
	return json_string(s);
}

/* One scalar event → a JSON value, honouring quotes and core-schema tags. */
static json_t *reader_scalar(struct yaml_reader *r, const yaml_event_t *ev, int line)
{
	const char *value = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;
	if (memchr(value, '\0', len) != NULL) {
		reader_error(r, line, "a string contains a NUL character");
		return json_null();
	}
	const char *tag = (const char *)ev->data.scalar.tag;
	bool is_string = tag == NULL ? !ev->data.scalar.plain_implicit
				     : strcmp(tag, "!") == 0 || strcmp(tag, YAML_STR_TAG) == 0;
	json_t *v = is_string ? json_stringn(value, len) : scalar_resolve_plain(value);
	if (v == NULL) {
		char buf[72];
		reader_error(r, line, "cannot read '%s': %s", show(value, buf, sizeof buf),
			     is_string ? "not UTF-8" : "integer out of range");
		return json_null();
	}
	if (tag == NULL || is_string)
		return v;
	bool is_fit = (strcmp(tag, YAML_NULL_TAG) == 0 && json_is_null(v)) ||
		      (strcmp(tag, YAML_BOOL_TAG) == 0 && json_is_boolean(v)) ||
		      (strcmp(tag, YAML_INT_TAG) == 0 && json_is_integer(v)) ||
		      (strcmp(tag, YAML_FLOAT_TAG) == 0 && json_is_number(v));
	if (!is_fit) {
		char buf[72], tbuf[72];
		reader_error(r, line, "'%s' is not a valid %s", show(value, buf, sizeof buf),
			     show(tag, tbuf, sizeof tbuf));
		json_decref(v);
		return json_null();
	}
	if (strcmp(tag, YAML_FLOAT_TAG) == 0 && json_is_integer(v)) {
		json_t *real = json_real((double)json_integer_value(v));
		json_decref(v);
		return real;
	}
	return v;
}

static void reader_refuse_anchor(struct yaml_reader *r, const yaml_char_t *anchor, int line)
{
	if (anchor == NULL)
		return;
	char buf[72];
	reader_error(r, line,
		     "anchor '&%s' is not allowed: anchors and aliases are a billion-laughs risk",
		     show((const char *)anchor, buf, sizeof buf));
}

static json_t *reader_node(struct yaml_reader *r, yaml_event_t *ev, int depth);

/* The items of a sequence whose start event was just read. */
static json_t *reader_sequence(struct yaml_reader *r, int depth)
{
	json_t *arr = json_array();
	for (size_t i = 0;; i++) {
		yaml_event_t ev;
		if (reader_next(r, &ev) != 0) {
			json_decref(arr);
			return NULL;
		}
		if (ev.type == YAML_SEQUENCE_END_EVENT) {
			yaml_event_delete(&ev);
			return arr;
		}
		size_t saved = r->ptr.len;
		strbuf_addf(&r->ptr, "/%zu", i);
		json_t *item = reader_node(r, &ev, depth + 1);
		r->ptr.len = saved;
		r->ptr.data[saved] = '\0';
		if (item == NULL) {
			json_decref(arr);
			return NULL;
		}
		json_array_append_new(arr, item);
	}
}

/*
 * The entries of a mapping whose start event was just read. Keys must be
 * scalars and unique; an entry's line is its key's line, which is where a
 * reader looks for `stages:` even when the list starts below it.
 */
static json_t *reader_mapping(struct yaml_reader *r, int depth)
{
	json_t *obj = json_object();
	for (;;) {
		yaml_event_t ev;
		if (reader_next(r, &ev) != 0) {
			json_decref(obj);
			return NULL;
		}
		if (ev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&ev);
			return obj;
		}
		int key_line = (int)ev.start_mark.line + 1;
		char *key = NULL;
		if (ev.type == YAML_SCALAR_EVENT) {
			reader_refuse_anchor(r, ev.data.scalar.anchor, key_line);
			const char *k = (const char *)ev.data.scalar.value;
			if (strlen(k) != ev.data.scalar.length)
				reader_error(r, key_line, "a key contains a NUL character");
			else
				key = xstrdup(k);
			yaml_event_delete(&ev);
		} else {
			reader_error(r, key_line, "mapping keys must be plain strings");
			json_t *junk = reader_node(r, &ev, depth + 1);
			if (junk == NULL) {
				json_decref(obj);
				return NULL;
			}
			json_decref(junk);
		}
		if (reader_next(r, &ev) != 0) {
			free(key);
			json_decref(obj);
			return NULL;
		}
		size_t saved = r->ptr.len;
		pointer_add_key(&r->ptr, key != NULL ? key : "");
		json_t *value = reader_node(r, &ev, depth + 1);
		if (value != NULL && key != NULL) {
			if (json_object_get(obj, key) != NULL) {
				char buf[72];
				reader_error(r, key_line, "duplicate key '%s'",
					     show(key, buf, sizeof buf));
				json_decref(value);
			} else {
				reader_set_line(r, key_line);
				json_object_set_new(obj, key, value);
			}
		} else {
			json_decref(value);
		}
		r->ptr.len = saved;
		r->ptr.data[saved] = '\0';
		free(key);
		if (value == NULL) {
			json_decref(obj);
			return NULL;
		}
	}
}

/*
 * One node whose first event is ev (consumed here). Returns the value, or
 * NULL when reading cannot go on (syntax error, nesting too deep).
 */
static json_t *reader_node(struct yaml_reader *r, yaml_event_t *ev, int depth)
{
	int line = (int)ev->start_mark.line + 1;
	if (depth > PIPELINE_MAX_DEPTH) {
		reader_error(r, line, "nested deeper than %d levels", PIPELINE_MAX_DEPTH);
		yaml_event_delete(ev);
		r->is_stopped = true;
		return NULL;
	}
	json_t *v = NULL;
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		reader_refuse_anchor(r, ev->data.scalar.anchor, line);
		v = reader_scalar(r, ev, line);
		yaml_event_delete(ev);
		break;
	case YAML_ALIAS_EVENT: {
		char buf[72];
		reader_error(r, line,
			     "alias '*%s' is not allowed: anchors and aliases are a billion-laughs "
			     "risk",
			     show((const char *)ev->data.alias.anchor, buf, sizeof buf));
		yaml_event_delete(ev);
		v = json_null();
		break;
	}
	case YAML_SEQUENCE_START_EVENT:
		reader_refuse_anchor(r, ev->data.sequence_start.anchor, line);
		yaml_event_delete(ev);
		v = reader_sequence(r, depth);
		break;
	case YAML_MAPPING_START_EVENT:
		reader_refuse_anchor(r, ev->data.mapping_start.anchor, line);
		yaml_event_delete(ev);
		v = reader_mapping(r, depth);
		break;
	default:
		reader_error(r, line, "unexpected YAML event");
		yaml_event_delete(ev);
		r->is_stopped = true;
		return NULL;
	}
	if (v != NULL)
		reader_set_line(r, line);
	return v;
}

/*
 * Reads exactly one YAML document into JSON; *lines gets a JSON pointer →
 * line object. Returns NULL (with diagnostics) on any problem, including
 * problems that still let the whole text be read (anchors, duplicate keys).
 */
static json_t *yaml_read_document(const char *text, size_t len, const char *file,
				  struct diags *diags, json_t **lines)
{
	struct yaml_reader r = {.text = text, .text_len = len, .file = file, .diags = diags};
	r.lines = json_object();
	strbuf_init(&r.ptr);
	strbuf_adds(&r.ptr, "");
	yaml_parser_initialize(&r.parser);
	yaml_parser_set_input_string(&r.parser, (const unsigned char *)text, len);

	json_t *doc = NULL;
	int n_documents = 0;
	yaml_event_t ev;
	while (reader_next(&r, &ev) == 0) {
		yaml_event_type_t type = ev.type;
		int line = (int)ev.start_mark.line + 1;
		yaml_event_delete(&ev);
		if (type == YAML_STREAM_END_EVENT)
			break;
		if (type != YAML_DOCUMENT_START_EVENT)
			continue; /* stream start, document end */
		if (++n_documents > 1) {
			reader_error(&r, line,
				     "a pipeline file holds exactly one YAML document; another "
				     "starts here");
			break;
		}
		if (reader_next(&r, &ev) != 0)
			break;
		doc = reader_node(&r, &ev, 0);
		if (doc == NULL)
			break;
	}
	if (n_documents == 0 && r.n_errors == 0)
		reader_error(&r, 0, "the file is empty: a pipeline needs name, on and stages");
	yaml_parser_delete(&r.parser);
	strbuf_free(&r.ptr);
	if (r.n_errors > 0) {
		json_decref(doc);
		json_decref(r.lines);
		return NULL;
	}
	*lines = r.lines;
	return doc;
}

/* ------------------------------------------------------------------ */
/* Checking the JSON and building the pipeline                          */
/* ------------------------------------------------------------------ */

struct check {
	const char *file;
	struct diags *diags;
	const json_t *lines; /* JSON pointer → line; NULL: lines unknown (0) */
	const struct plugin_catalog *plugins;
	struct strbuf ptr;   /* JSON pointer of the node being checked */
	struct strbuf where; /* the same for people: stages[1].retry.delay */
	int n_errors;
};

struct check_mark {
	size_t ptr_len;
	size_t where_len;
};

static struct check_mark check_enter_key(struct check *c, const char *key)
{
	struct check_mark m = {c->ptr.len, c->where.len};
	pointer_add_key(&c->ptr, key);
	if (c->where.len > 0)
		strbuf_adds(&c->where, ".");
	strbuf_adds(&c->where, key);
	return m;
}

static struct check_mark check_enter_index(struct check *c, size_t i)
{
	struct check_mark m = {c->ptr.len, c->where.len};
	strbuf_addf(&c->ptr, "/%zu", i);
	strbuf_addf(&c->where, "[%zu]", i);
	return m;
}

static void check_leave(struct check *c, struct check_mark m)
{
	c->ptr.len = m.ptr_len;
	c->ptr.data[m.ptr_len] = '\0';
	c->where.len = m.where_len;
	c->where.data[m.where_len] = '\0';
}

static int check_line(const struct check *c)
{
	if (c->lines == NULL)
		return 0;
	json_t *line = json_object_get(c->lines, c->ptr.data);
	return json_is_integer(line) ? (int)json_integer_value(line) : 0;
}

/* Reports a problem with the node being checked, prefixed by where it is. */
static void check_error(struct check *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void check_error(struct check *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	if (c->where.len > 0) {
		char buf[160];
		diags_add(c->diags, c->file, check_line(c), "%s: %s",
			  show(c->where.data, buf, sizeof buf), msg);
	} else {
		diags_add(c->diags, c->file, check_line(c), "%s", msg);
	}
	free(msg);
	c->n_errors++;
}

static const char *json_kind_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "a mapping";
	case JSON_ARRAY:
		return "a list";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "something else";
}

static void names_join(struct strbuf *sb, const char *const *names, size_t n, const char *sep)
{
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			strbuf_adds(sb, sep);
		strbuf_adds(sb, names[i]);
	}
}

/* Reports every key of obj that is not in allowed (NULL-terminated). */
static void check_keys(struct check *c, const json_t *obj, const char *const *allowed)
{
	const char *key;
	const json_t *value;
	size_t n_allowed = 0;
	while (allowed[n_allowed] != NULL)
		n_allowed++;
	json_object_foreach((json_t *)obj, key, value)
	{
		if (text_is_one_of(key, allowed, n_allowed))
			continue;
		struct strbuf list;
		strbuf_init(&list);
		names_join(&list, allowed, n_allowed, ", ");
		struct check_mark m = check_enter_key(c, key);
		check_error(c, "unknown key (allowed here: %s)", list.data);
		check_leave(c, m);
		strbuf_free(&list);
	}
}

/* Is every byte of s in the set "A-Za-z0-9" plus extra? (and s not empty) */
static bool text_is_name(const char *s, const char *extra, bool is_lower_only)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		bool is_ok = (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
			     (!is_lower_only && *s >= 'A' && *s <= 'Z') ||
			     strchr(extra, *s) != NULL;
		if (!is_ok)
			return false;
	}
	return true;
}

/*
 * A string member of obj. Absent or null leaves *out NULL (an error when
 * is_required); another type is an error. Returns false on error.
 */
static bool check_string(struct check *c, const json_t *obj, const char *key, bool is_required,
			 const char **out)
{
	*out = NULL;
	const json_t *v = json_object_get(obj, key);
	if (v == NULL || json_is_null(v)) {
		if (!is_required)
			return true;
		if (v != NULL) {
			struct check_mark m = check_enter_key(c, key);
			check_error(c, "must not be empty");
			check_leave(c, m);
		} else {
			check_error(c, "'%s' is required", key);
		}
		return false;
	}
	struct check_mark m = check_enter_key(c, key);
	bool is_ok = json_is_string(v);
	if (!is_ok)
		check_error(c, "must be a string, not %s%s", json_kind_name(v),
			    json_is_number(v) ? " (quote it)" : "");
	else
		*out = json_string_value(v);
	check_leave(c, m);
	return is_ok;
}

static bool check_bool(struct check *c, const json_t *obj, const char *key, bool *out)
{
	const json_t *v = json_object_get(obj, key);
	if (v == NULL || json_is_null(v))
		return true;
	if (json_is_boolean(v)) {
		*out = json_is_true(v);
		return true;
	}
	struct check_mark m = check_enter_key(c, key);
	check_error(c, "must be true or false, not %s", json_kind_name(v));
	check_leave(c, m);
	return false;
}

/*
 * A duration member: "30s", "10m", "1h30m" or a number of seconds. Absent
 * or null keeps *out. Zero is refused unless is_zero_ok.
 */
static void check_duration(struct check *c, const json_t *obj, const char *key, bool is_zero_ok,
			   int64_t *out)
{
	const json_t *v = json_object_get(obj, key);
	if (v == NULL || json_is_null(v))
		return;
	struct check_mark m = check_enter_key(c, key);
	int64_t ms = -1;
	if (json_is_integer(v)) {
		json_int_t secs = json_integer_value(v);
		if (secs >= 0 && secs <= INT64_MAX / 1000)
			ms = (int64_t)secs * 1000;
	} else if (json_is_string(v)) {
		if (duration_parse_ms(json_string_value(v), &ms) != 0)
			ms = -1;
	}
	if (ms < 0) {
		char buf[72];
		if (json_is_string(v))
			check_error(c,
				    "bad duration '%s' (write it like 500ms, 30s, 10m, 1h30m, 1d)",
				    show(json_string_value(v), buf, sizeof buf));
		else
			check_error(c,
				    "bad duration: %s (write it like 500ms, 30s, 10m, 1h30m, 1d)",
				    json_kind_name(v));
	} else if (ms == 0 && !is_zero_ok) {
		check_error(c, "must be longer than zero");
	} else {
		*out = ms;
	}
	check_leave(c, m);
}

/*
 * Placeholders in a template: only {repo} {branch} {pr} {sha} {model} {env},
 * every '{' closed.
 */
static void check_template(struct check *c, const char *tmpl)
{
	for (const char *p = strchr(tmpl, '{'); p != NULL; p = strchr(p + 1, '{')) {
		const char *end = strchr(p, '}');
		if (end == NULL) {
			check_error(c, "'{' is never closed by '}'");
			return;
		}
		char *name = xstrndup(p + 1, (size_t)(end - p - 1));
		if (!text_is_one_of(name, placeholder_names, ARRAY_LEN(placeholder_names))) {
			char buf[72];
			check_error(
			    c,
			    "unknown placeholder '{%s}' (allowed: {repo} {branch} {pr} {sha} "
			    "{model} {env})",
			    show(name, buf, sizeof buf));
		}
		free(name);
		p = end;
	}
}

static void glob_list_add(struct glob_list *list, const char *s)
{
	list->items = xrealloc(list->items, (list->n + 1) * sizeof *list->items);
	list->items[list->n++] = xstrdup(s);
}

static void glob_list_free(struct glob_list *list)
{
	for (size_t i = 0; i < list->n; i++)
		free(list->items[i]);
	free(list->items);
	list->items = NULL;
	list->n = 0;
}

/* One item of a pattern or name list; checks globs when is_glob. */
static void check_list_item(struct check *c, const json_t *v, bool is_glob, struct glob_list *out)
{
	if (!json_is_string(v)) {
		check_error(c, "must be a string, not %s%s", json_kind_name(v),
			    json_is_number(v) ? " (quote it)" : "");
		return;
	}
	const char *s = json_string_value(v);
	char buf[72];
	if (*s == '\0')
		check_error(c, "must not be empty");
	else if (is_glob && !glob_is_valid(s))
		check_error(c, "bad pattern '%s' (unclosed '[', backwards range or trailing '\\')",
			    show(s, buf, sizeof buf));
	else
		glob_list_add(out, s);
}

/*
 * A list member (a single string counts as a list of one). Absent or null
 * leaves the list empty.
 */
static void check_list(struct check *c, const json_t *obj, const char *key, bool is_glob,
		       struct glob_list *out)
{
	const json_t *v = json_object_get(obj, key);
	if (v == NULL || json_is_null(v))
		return;
	struct check_mark m = check_enter_key(c, key);
	if (json_is_array(v)) {
		for (size_t i = 0; i < json_array_size(v); i++) {
			struct check_mark mi = check_enter_index(c, i);
			check_list_item(c, json_array_get(v, i), is_glob, out);
			check_leave(c, mi);
		}
	} else if (json_is_string(v)) {
		check_list_item(c, v, is_glob, out);
	} else {
		check_error(c, "must be a list, not %s", json_kind_name(v));
	}
	check_leave(c, m);
}

/* A trigger's value: null (defaults) or a mapping. Returns the mapping or NULL. */
static const json_t *check_trigger_value(struct check *c, const json_t *on, const char *key,
					 bool *is_enabled)
{
	const json_t *v = json_object_get(on, key);
	if (v == NULL)
		return NULL;
	*is_enabled = true;
	if (json_is_null(v))
		return NULL;
	if (json_is_object(v))
		return v;
	struct check_mark m = check_enter_key(c, key);
	check_error(c, "must be a mapping (or empty for the defaults), not %s", json_kind_name(v));
	check_leave(c, m);
	return NULL;
}

static void check_push(struct check *c, const json_t *t, struct trigger_push *push)
{
	static const char *const keys[] = {"branches",	   "branches_ignore", "tags", "paths",
					   "paths_ignore", "deleted",	      NULL};
	check_keys(c, t, keys);
	check_list(c, t, "branches", true, &push->branches);
	check_list(c, t, "branches_ignore", true, &push->branches_ignore);
	check_list(c, t, "tags", true, &push->tags);
	check_list(c, t, "paths", true, &push->paths);
	check_list(c, t, "paths_ignore", true, &push->paths_ignore);
	check_bool(c, t, "deleted", &push->include_deleted);
}

static void check_pull_request(struct check *c, const json_t *t, struct trigger_pull_request *pr)
{
	static const char *const keys[] = {"branches", "actions", "paths", "paths_ignore", NULL};
	check_keys(c, t, keys);
	check_list(c, t, "branches", true, &pr->branches);
	check_list(c, t, "paths", true, &pr->paths);
	check_list(c, t, "paths_ignore", true, &pr->paths_ignore);
	check_list(c, t, "actions", false, &pr->actions);
	const json_t *v = json_object_get(t, "actions");
	if (v == NULL || json_is_null(v))
		return;
	struct check_mark m = check_enter_key(c, "actions");
	for (size_t i = 0; i < (json_is_array(v) ? json_array_size(v) : 1); i++) {
		const json_t *item = json_is_array(v) ? json_array_get(v, i) : v;
		const char *a = json_string_value(item);
		if (a == NULL || *a == '\0' ||
		    text_is_one_of(a, pr_action_names, ARRAY_LEN(pr_action_names)))
			continue; /* wrong types were reported by check_list */
		struct check_mark mi = json_is_array(v) ? check_enter_index(c, i) : m;
		struct strbuf list;
		strbuf_init(&list);
		names_join(&list, pr_action_names, ARRAY_LEN(pr_action_names), ", ");
		char buf[72];
		check_error(c, "unknown pull_request action '%s' (known: %s)",
			    show(a, buf, sizeof buf), list.data);
		strbuf_free(&list);
		check_leave(c, mi);
	}
	check_leave(c, m);
}

static void check_drift(struct check *c, const json_t *t, struct trigger_drift *drift)
{
	static const char *const keys[] = {"models", "environments", "min_severity", NULL};
	check_keys(c, t, keys);
	check_list(c, t, "models", true, &drift->models);
	check_list(c, t, "environments", true, &drift->environments);
	const char *sev;
	if (!check_string(c, t, "min_severity", false, &sev) || sev == NULL)
		return;
	for (size_t i = 0; i < ARRAY_LEN(severity_names); i++) {
		if (strcmp(sev, severity_names[i]) == 0) {
			drift->min_severity = (enum severity)i;
			return;
		}
	}
	struct check_mark m = check_enter_key(c, "min_severity");
	char buf[72];
	check_error(c, "unknown severity '%s' (known: info, warning, critical)",
		    show(sev, buf, sizeof buf));
	check_leave(c, m);
}

static void check_on(struct check *c, const json_t *doc, struct pipeline *p)
{
	const json_t *on = json_object_get(doc, "on");
	if (on == NULL) {
		check_error(c, "'on' is required (push, pull_request and/or drift)");
		return;
	}
	struct check_mark m = check_enter_key(c, "on");
	if (!json_is_object(on)) {
		check_error(c, "must be a mapping with push, pull_request and/or drift, not %s",
			    json_kind_name(on));
		check_leave(c, m);
		return;
	}
	static const char *const keys[] = {"push", "pull_request", "drift", NULL};
	check_keys(c, on, keys);
	const json_t *t;
	struct check_mark mt;
	if ((t = check_trigger_value(c, on, "push", &p->push.is_enabled)) != NULL) {
		mt = check_enter_key(c, "push");
		check_push(c, t, &p->push);
		check_leave(c, mt);
	}
	if ((t = check_trigger_value(c, on, "pull_request", &p->pull_request.is_enabled)) != NULL) {
		mt = check_enter_key(c, "pull_request");
		check_pull_request(c, t, &p->pull_request);
		check_leave(c, mt);
	}
	if ((t = check_trigger_value(c, on, "drift", &p->drift.is_enabled)) != NULL) {
		mt = check_enter_key(c, "drift");
		check_drift(c, t, &p->drift);
		check_leave(c, mt);
	}
	if (!p->push.is_enabled && !p->pull_request.is_enabled && !p->drift.is_enabled)
		check_error(c, "needs at least one of push, pull_request, drift");
	check_leave(c, m);
}

static void check_concurrency(struct check *c, const json_t *doc, struct pipeline *p)
{
	const json_t *v = json_object_get(doc, "concurrency");
	if (v == NULL || json_is_null(v))
		return;
	struct check_mark m = check_enter_key(c, "concurrency");
	if (!json_is_object(v)) {
		check_error(c, "must be a mapping with group and cancel_in_progress, not %s",
			    json_kind_name(v));
		check_leave(c, m);
		return;
	}
	static const char *const keys[] = {"group", "cancel_in_progress", NULL};
	check_keys(c, v, keys);
	const char *group;
	if (check_string(c, v, "group", true, &group)) {
		struct check_mark mg = check_enter_key(c, "group");
		if (*group == '\0')
			check_error(c, "must not be empty");
		check_template(c, group);
		check_leave(c, mg);
		p->concurrency_group = xstrdup(group);
	}
	check_bool(c, v, "cancel_in_progress", &p->cancel_in_progress);
	check_leave(c, m);
}

static void check_retry(struct check *c, const json_t *v, struct retry_policy *retry)
{
	const json_t *attempts = v;
	if (json_is_object(v)) {
		static const char *const keys[] = {"attempts", "delay", "backoff", "max_delay",
						   NULL};
		check_keys(c, v, keys);
		attempts = json_object_get(v, "attempts");
		if (attempts == NULL) {
			check_error(c,
				    "'attempts' is required (retries after the first try, 0..%d)",
				    PIPELINE_MAX_RETRIES);
		}
		check_duration(c, v, "delay", true, &retry->delay_ms);
		check_duration(c, v, "max_delay", true, &retry->max_delay_ms);
		const json_t *b = json_object_get(v, "backoff");
		if (b != NULL && !json_is_null(b)) {
			struct check_mark m = check_enter_key(c, "backoff");
			if (!json_is_number(b) || json_number_value(b) < 1.0)
				check_error(c, "must be a number >= 1");
			else
				retry->backoff = json_number_value(b);
			check_leave(c, m);
		}
	} else if (!json_is_integer(v)) {
		check_error(c,
			    "must be a number of retries or a mapping with attempts, delay, "
			    "backoff, max_delay; not %s",
			    json_kind_name(v));
		return;
	}
	if (attempts == NULL)
		return;
	struct check_mark m = {c->ptr.len, c->where.len};
	if (attempts != v)
		m = check_enter_key(c, "attempts");
	json_int_t n = json_is_integer(attempts) ? json_integer_value(attempts) : -1;
	if (n < 0 || n > PIPELINE_MAX_RETRIES)
		check_error(c,
			    "must be a whole number of retries from 0 to %d (after the first try)",
			    PIPELINE_MAX_RETRIES);
	else
		retry->attempts = (int)n;
	check_leave(c, m);
}

static void stage_add_need(struct pipeline_stage *st, const char *name)
{
	st->needs = xrealloc(st->needs, (st->n_needs + 1) * sizeof *st->needs);
	st->needs[st->n_needs++] = xstrdup(name);
}

/* One entry of stages:, checked and copied into st. */
static void check_stage(struct check *c, const json_t *v, struct pipeline_stage *st)
{
	st->timeout_ms = PIPELINE_DEFAULT_TIMEOUT_MS;
	st->retry.delay_ms = PIPELINE_DEFAULT_RETRY_DELAY_MS;
	st->retry.backoff = 2.0;
	st->retry.max_delay_ms = PIPELINE_DEFAULT_MAX_DELAY_MS;
	st->line = check_line(c);
	if (!json_is_object(v)) {
		check_error(c, "a stage must be a mapping with name and uses, not %s",
			    json_kind_name(v));
		st->with = json_object();
		return;
	}
	static const char *const keys[] = {"name",    "uses",  "with", "needs",
					   "timeout", "retry", NULL};
	check_keys(c, v, keys);
	char buf[72];
	const char *name;
	if (check_string(c, v, "name", true, &name)) {
		st->name = xstrdup(name);
		struct check_mark m = check_enter_key(c, "name");
		if (!text_is_name(name, "_-", false))
			check_error(c,
				    "stage name '%s' may use only A-Z a-z 0-9 _ - (it becomes part "
				    "of DROVER_OUTPUT_<STAGE>_<KEY>; no placeholders)",
				    show(name, buf, sizeof buf));
		check_leave(c, m);
	}
	const char *uses;
	if (check_string(c, v, "uses", true, &uses)) {
		st->uses = xstrdup(uses);
		struct check_mark m = check_enter_key(c, "uses");
		if (!text_is_name(uses, "_-", true))
			check_error(c, "plugin name '%s' may use only a-z 0-9 _ -",
				    show(uses, buf, sizeof buf));
		else if (c->plugins != NULL && c->plugins->has_plugin != NULL &&
			 !c->plugins->has_plugin(c->plugins->arg, uses))
			check_error(c, "unknown plugin '%s'", show(uses, buf, sizeof buf));
		check_leave(c, m);
	}
	const json_t *with = json_object_get(v, "with");
	if (with != NULL && !json_is_null(with) && !json_is_object(with)) {
		struct check_mark m = check_enter_key(c, "with");
		check_error(c, "must be a mapping, not %s", json_kind_name(with));
		check_leave(c, m);
	}
	st->with = json_is_object(with) ? json_deep_copy(with) : json_object();

	struct glob_list needs = {0};
	check_list(c, v, "needs", false, &needs);
	for (size_t i = 0; i < needs.n; i++)
		stage_add_need(st, needs.items[i]);
	glob_list_free(&needs);

	check_duration(c, v, "timeout", false, &st->timeout_ms);
	const json_t *retry = json_object_get(v, "retry");
	if (retry != NULL && !json_is_null(retry)) {
		struct check_mark m = check_enter_key(c, "retry");
		check_retry(c, retry, &st->retry);
		check_leave(c, m);
	}
}

/* Moves the check's position to stages[i].name (or .needs[j]) for a message. */
static struct check_mark check_enter_stage(struct check *c, const json_t *doc, size_t i,
					   const char *key, size_t j)
{
	struct check_mark m = check_enter_key(c, "stages");
	check_enter_index(c, i);
	const json_t *st = json_array_get(json_object_get(doc, "stages"), i);
	const json_t *v = json_object_get(st, key);
	if (v != NULL) {
		check_enter_key(c, key);
		if (json_is_array(v))
			check_enter_index(c, j);
	}
	return m;
}

/* Uppercased, '-' as '_': how a stage name appears in environment variables. */
static char *stage_env_name(const char *name)
{
	char *s = xstrdup(name);
	for (char *p = s; *p != '\0'; p++) {
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
		else if (*p == '-')
			*p = '_';
	}
	return s;
}

/*
 * Stage names unique (also as environment-variable names), needs resolved
 * to indexes, no needs cycle.
 */
static void check_stage_graph(struct check *c, const json_t *doc, struct pipeline *p)
{
	json_t *by_name = json_object();
	json_t *by_env = json_object();
	char buf[72], buf2[72];
	for (size_t i = 0; i < p->n_stages; i++) {
		const char *name = p->stages[i].name;
		if (name == NULL)
			continue;
		json_t *first = json_object_get(by_name, name);
		char *env = stage_env_name(name);
		json_t *first_env = json_object_get(by_env, env);
		struct check_mark m = check_enter_stage(c, doc, i, "name", 0);
		if (first != NULL) {
			check_error(c, "duplicate stage name '%s' (first at stages[%lld])",
				    show(name, buf, sizeof buf),
				    (long long)json_integer_value(first));
		} else if (first_env != NULL) {
			const char *other = p->stages[json_integer_value(first_env)].name;
			check_error(c,
				    "stage names '%s' and '%s' both become DROVER_OUTPUT_%s_<KEY>; "
				    "rename one",
				    show(other, buf2, sizeof buf2), show(name, buf, sizeof buf),
				    show(env, buf, sizeof buf));
		}
		check_leave(c, m);
		if (first == NULL)
			json_object_set_new(by_name, name, json_integer((json_int_t)i));
		if (first_env == NULL)
			json_object_set_new(by_env, env, json_integer((json_int_t)i));
		free(env);
	}
	json_decref(by_env);

	for (size_t i = 0; i < p->n_stages; i++) {
		struct pipeline_stage *st = &p->stages[i];
		st->needs_idx = xcalloc(st->n_needs, sizeof *st->needs_idx);
		for (size_t j = 0; j < st->n_needs; j++) {
			st->needs_idx[j] = PIPELINE_NO_INDEX;
			json_t *idx = json_object_get(by_name, st->needs[j]);
			struct check_mark m = check_enter_stage(c, doc, i, "needs", j);
			bool is_repeat = false;
			for (size_t k = 0; k < j; k++)
				is_repeat |= strcmp(st->needs[k], st->needs[j]) == 0;
			if (idx == NULL)
				check_error(c, "needs unknown stage '%s'",
					    show(st->needs[j], buf, sizeof buf));
			else if ((size_t)json_integer_value(idx) == i)
				check_error(c, "stage '%s' needs itself",
					    show(st->name, buf, sizeof buf));
			else if (is_repeat)
				check_error(c, "'%s' is listed twice",
					    show(st->needs[j], buf, sizeof buf));
			else
				st->needs_idx[j] = (size_t)json_integer_value(idx);
			check_leave(c, m);
		}
	}
	json_decref(by_name);

	/* Iterative depth-first search; an edge back to a stage on the path is a cycle. */
	enum { WHITE, GREY, BLACK };
	unsigned char *color = xcalloc(p->n_stages, 1);
	size_t *path = xcalloc(p->n_stages, sizeof *path);
	size_t *next_edge = xcalloc(p->n_stages, sizeof *next_edge);
	for (size_t root = 0; root < p->n_stages; root++) {
		if (color[root] != WHITE)
			continue;
		size_t depth = 0;
		path[depth++] = root;
		color[root] = GREY;
		next_edge[root] = 0;
		while (depth > 0) {
			size_t u = path[depth - 1];
			struct pipeline_stage *st = &p->stages[u];
			if (next_edge[u] == st->n_needs) {
				color[u] = BLACK;
				depth--;
				continue;
			}
			size_t j = next_edge[u]++;
			size_t w = st->needs_idx[j];
			if (w == PIPELINE_NO_INDEX || color[w] == BLACK)
				continue;
			if (color[w] == WHITE) {
				color[w] = GREY;
				next_edge[w] = 0;
				path[depth++] = w;
				continue;
			}
			struct strbuf cycle;
			strbuf_init(&cycle);
			size_t from = depth;
			while (path[from - 1] != w)
				from--;
			/* The message shows ~250 bytes: do not build more. */
			for (size_t k = from - 1; k < depth && cycle.len < 512; k++)
				strbuf_addf(&cycle, "%s -> ", p->stages[path[k]].name);
			strbuf_adds(&cycle, p->stages[w].name);
			struct check_mark m = check_enter_stage(c, doc, u, "needs", j);
			char cbuf[256];
			check_error(c, "needs cycle: %s (each stage needs the next)",
				    show(cycle.data, cbuf, sizeof cbuf));
			check_leave(c, m);
			strbuf_free(&cycle);
		}
	}
	free(color);
	free(path);
	free(next_edge);
}

static void check_stages(struct check *c, const json_t *doc, struct pipeline *p)
{
	const json_t *stages = json_object_get(doc, "stages");
	if (stages == NULL) {
		check_error(c, "'stages' is required (a list of stages)");
		return;
	}
	struct check_mark m = check_enter_key(c, "stages");
	if (!json_is_array(stages) || json_array_size(stages) == 0) {
		check_error(c, "must be a non-empty list of stages, not %s%s",
			    json_kind_name(stages), json_is_array(stages) ? " (empty)" : "");
		check_leave(c, m);
		return;
	}
	p->n_stages = json_array_size(stages);
	p->stages = xcalloc(p->n_stages, sizeof *p->stages);
	for (size_t i = 0; i < p->n_stages; i++) {
		struct check_mark mi = check_enter_index(c, i);
		check_stage(c, json_array_get(stages, i), &p->stages[i]);
		check_leave(c, mi);
	}
	check_leave(c, m);
	check_stage_graph(c, doc, p);
}

/*
 * The one validation path: checks the document and builds the pipeline
 * from it. Takes ownership of doc (it becomes p->definition). lines may be
 * NULL. *name_line (when given) gets the line of `name:`.
 */
static struct pipeline *pipeline_build(json_t *doc, const json_t *lines, const char *file,
				       const struct plugin_catalog *plugins, struct diags *diags,
				       int *name_line)
{
	struct check c = {.file = file, .diags = diags, .lines = lines, .plugins = plugins};
	strbuf_init(&c.ptr);
	strbuf_init(&c.where);
	strbuf_adds(&c.ptr, "");
	strbuf_adds(&c.where, "");

	struct pipeline *p = xcalloc(1, sizeof *p);
	p->file = xstrdup(file != NULL ? file : "");
	p->definition = doc;
	p->checkout = true;
	p->drift.min_severity = SEVERITY_WARNING;

	if (!json_is_object(doc)) {
		check_error(&c,
			    "a pipeline file must be a mapping with name, on and stages, not %s",
			    json_kind_name(doc));
		goto done;
	}
	static const char *const keys[] = {"name",     "on",	 "concurrency", "lock",
					   "checkout", "stages", NULL};
	check_keys(&c, doc, keys);

	const char *name;
	if (check_string(&c, doc, "name", true, &name)) {
		p->name = xstrdup(name);
		struct check_mark m = check_enter_key(&c, "name");
		if (name_line != NULL)
			*name_line = check_line(&c);
		char buf[72];
		if (!text_is_name(name, "._-", false))
			check_error(&c, "pipeline name '%s' may use only A-Z a-z 0-9 . _ -",
				    show(name, buf, sizeof buf));
		check_leave(&c, m);
	}
	check_on(&c, doc, p);
	check_concurrency(&c, doc, p);

	const char *lock;
	if (check_string(&c, doc, "lock", false, &lock) && lock != NULL) {
		struct check_mark m = check_enter_key(&c, "lock");
		if (*lock == '\0')
			check_error(&c, "must not be empty (use null for no lock)");
		check_template(&c, lock);
		check_leave(&c, m);
		p->lock = xstrdup(lock);
	}
	check_bool(&c, doc, "checkout", &p->checkout);
	check_stages(&c, doc, p);

done:
	strbuf_free(&c.ptr);
	strbuf_free(&c.where);
	if (c.n_errors > 0) {
		pipeline_free(p);
		return NULL;
	}
	return p;
}

/* ------------------------------------------------------------------ */
/* Loading                                                              */
/* ------------------------------------------------------------------ */

static struct pipeline *pipeline_load_text(const char *yaml, size_t len, const char *file,
					   const struct plugin_catalog *plugins,
					   struct diags *diags, int *name_line)
{
	if (file == NULL)
		file = "";
	if (len > PIPELINE_MAX_FILE_BYTES) {
		diags_add(diags, file, 0, "the file is larger than 1 MiB (%zu bytes)", len);
		return NULL;
	}
	json_t *lines = NULL;
	json_t *doc = yaml_read_document(yaml, len, file, diags, &lines);
	if (doc == NULL)
		return NULL;
	struct pipeline *p = pipeline_build(doc, lines, file, plugins, diags, name_line);
	json_decref(lines);
	return p;
}

struct pipeline *pipeline_load_string(const char *yaml, size_t len, const char *file,
				      const struct plugin_catalog *plugins, struct diags *diags)
{
	struct diags unread = {0}; /* diags may be NULL: then errors are only dropped */
	struct pipeline *p =
	    pipeline_load_text(yaml != NULL ? yaml : "", yaml != NULL ? len : 0, file, plugins,
			       diags != NULL ? diags : &unread, NULL);
	diags_free(&unread);
	return p;
}

static struct pipeline *pipeline_load_path(const char *path, const struct plugin_catalog *plugins,
					   struct diags *diags, int *name_line)
{
	size_t len = 0;
	char *text = file_read_all(path, PIPELINE_MAX_FILE_BYTES, &len);
	if (text == NULL) {
		if (errno == EFBIG)
			diags_add(diags, path, 0, "the file is larger than 1 MiB");
		else
			diags_add(diags, path, 0, "cannot read: %s", strerror(errno));
		return NULL;
	}
	struct pipeline *p = pipeline_load_text(text, len, path, plugins, diags, name_line);
	free(text);
	return p;
}

struct pipeline *pipeline_load_file(const char *path, const struct plugin_catalog *plugins,
				    struct diags *diags)
{
	struct diags unread = {0};
	struct pipeline *p =
	    pipeline_load_path(path, plugins, diags != NULL ? diags : &unread, NULL);
	diags_free(&unread);
	return p;
}

struct pipeline *pipeline_from_json(const json_t *definition, const char *file,
				    const struct plugin_catalog *plugins, struct diags *diags)
{
	struct diags unread = {0};
	struct pipeline *p = NULL;
	if (definition == NULL)
		diags_add(diags != NULL ? diags : &unread, file, 0, "no pipeline definition");
	else
		p = pipeline_build(json_deep_copy(definition), NULL, file, plugins,
				   diags != NULL ? diags : &unread, NULL);
	diags_free(&unread);
	return p;
}

void pipeline_free(struct pipeline *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->n_stages; i++) {
		struct pipeline_stage *st = &p->stages[i];
		free(st->name);
		free(st->uses);
		json_decref(st->with);
		for (size_t j = 0; j < st->n_needs; j++)
			free(st->needs[j]);
		free(st->needs);
		free(st->needs_idx);
	}
	free(p->stages);
	glob_list_free(&p->push.branches);
	glob_list_free(&p->push.branches_ignore);
	glob_list_free(&p->push.tags);
	glob_list_free(&p->push.paths);
	glob_list_free(&p->push.paths_ignore);
	glob_list_free(&p->pull_request.branches);
	glob_list_free(&p->pull_request.actions);
	glob_list_free(&p->pull_request.paths);
	glob_list_free(&p->pull_request.paths_ignore);
	glob_list_free(&p->drift.models);
	glob_list_free(&p->drift.environments);
	free(p->name);
	free(p->file);
	free(p->concurrency_group);
	free(p->lock);
	json_decref(p->definition);
	free(p);
}

static bool file_name_is_pipeline(const char *name)
{
	size_t n = strlen(name);
	if (name[0] == '.')
		return false;
	return (n > 4 && strcmp(name + n - 4, ".yml") == 0) ||
	       (n > 5 && strcmp(name + n - 5, ".yaml") == 0);
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Loads every pipeline file of dir in name order into set (appending). A
 * bad file, or a second pipeline with a name already loaded, is reported
 * and left out. Returns -1 only when the directory cannot be read.
 */
int pipeline_set_load_dir(struct pipeline_set *set, const char *dir,
			  const struct plugin_catalog *plugins, struct diags *diags)
{
	struct diags unread = {0};
	if (diags == NULL)
		diags = &unread;
	DIR *d = opendir(dir);
	if (d == NULL) {
		diags_add(diags, dir, 0, "cannot open the pipelines directory: %s",
			  strerror(errno));
		diags_free(&unread);
		return -1;
	}
	char **names = NULL;
	size_t n_names = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (!file_name_is_pipeline(de->d_name))
			continue;
		names = xrealloc(names, (n_names + 1) * sizeof *names);
		names[n_names++] = xstrdup(de->d_name);
	}
	closedir(d);
	if (n_names > 0)
		qsort(names, n_names, sizeof *names, compare_names);

	for (size_t i = 0; i < n_names; i++) {
		char *path = xasprintf("%s/%s", dir, names[i]);
		int name_line = 0;
		struct pipeline *p = pipeline_load_path(path, plugins, diags, &name_line);
		const struct pipeline *other = p != NULL ? pipeline_set_find(set, p->name) : NULL;
		if (other != NULL) {
			char buf[72];
			diags_add(diags, path, name_line,
				  "pipeline '%s' is already defined in %s; this file is left out",
				  show(p->name, buf, sizeof buf), other->file);
			pipeline_free(p);
			p = NULL;
		}
		if (p != NULL) {
			set->items = xrealloc(set->items, (set->n + 1) * sizeof *set->items);
			set->items[set->n++] = p;
		}
		free(path);
		free(names[i]);
	}
	free(names);
	diags_free(&unread);
	return 0;
}

void pipeline_set_free(struct pipeline_set *set)
{
	for (size_t i = 0; i < set->n; i++)
		pipeline_free(set->items[i]);
	free(set->items);
	set->items = NULL;
	set->n = 0;
}

const struct pipeline *pipeline_set_find(const struct pipeline_set *set, const char *name)
{
	if (name == NULL)
		return NULL;
	for (size_t i = 0; i < set->n; i++)
		if (strcmp(set->items[i]->name, name) == 0)
			return set->items[i];
	return NULL;
}

int pipeline_stage_index(const struct pipeline *p, const char *name)
{
	if (p == NULL || name == NULL)
		return -1;
	for (size_t i = 0; i < p->n_stages; i++)
		if (p->stages[i].name != NULL && strcmp(p->stages[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* ------------------------------------------------------------------ */
/* Matching                                                             */
/* ------------------------------------------------------------------ */

static void why_set(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void why_set(char *why, size_t why_len, const char *fmt, ...)
{
	if (why == NULL || why_len == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, why_len, fmt, ap);
	va_end(ap);
}

/* Is a reason wanted? Lists are joined for it only then (intake passes none). */
static bool why_is_wanted(const char *why, size_t why_len)
{
	return why != NULL && why_len > 0;
}

static const char *event_string(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

static bool glob_list_has_match(const struct glob_list *list, const char *text)
{
	for (size_t i = 0; i < list->n; i++)
		if (glob_match(list->items[i], text))
			return true;
	return false;
}

/* "[a, b]" for messages; the caller frees. */
static char *glob_list_show(const struct glob_list *list)
{
	struct strbuf sb;
	strbuf_init(&sb);
	strbuf_adds(&sb, "[");
	names_join(&sb, (const char *const *)list->items, list->n, ", ");
	strbuf_adds(&sb, "]");
	return strbuf_detach(&sb);
}

/* "<trigger>: <what> '<value>' matches none of [list]". */
static void why_no_match(char *why, size_t why_len, const char *trigger, const char *what,
			 const char *value, const struct glob_list *list, const char *verb)
{
	if (!why_is_wanted(why, why_len))
		return;
	char *shown = glob_list_show(list);
	char buf[72];
	why_set(why, why_len, "%s: %s '%s' %s %s", trigger, what, show(value, buf, sizeof buf),
		verb, shown);
	free(shown);
}

/*
 * GitHub's path filter: with paths and/or paths_ignore set, at least one
 * changed path must be selected by paths (when given) and not ignored. An
 * event that does not list its paths is not filtered.
 */
static bool paths_pass(const char *trigger, const struct glob_list *paths,
		       const struct glob_list *ignore, const json_t *event, char *why,
		       size_t why_len)
{
	if (paths->n == 0 && ignore->n == 0)
		return true;
	const json_t *changed = json_object_get(event, "paths");
	if (!json_is_array(changed))
		return true;
	bool is_any_selected = false;
	for (size_t i = 0; i < json_array_size(changed); i++) {
		const char *path = json_string_value(json_array_get(changed, i));
		if (path == NULL)
			continue;
		bool is_selected = paths->n == 0 || glob_list_has_match(paths, path);
		is_any_selected |= is_selected;
		if (is_selected && !glob_list_has_match(ignore, path))
			return true;
	}
	if (!why_is_wanted(why, why_len))
		return false;
	char *shown = glob_list_show(is_any_selected || paths->n == 0 ? ignore : paths);
	if (json_array_size(changed) == 0)
		why_set(why, why_len, "%s: the event changed no paths", trigger);
	else if (!is_any_selected && paths->n > 0)
		why_set(why, why_len, "%s: no changed path matches %s", trigger, shown);
	else
		why_set(why, why_len, "%s: every changed path is ignored by %s", trigger, shown);
	free(shown);
	return false;
}

/* A branch against a branches / branches_ignore pair. */
static bool branch_pass(const char *trigger, const char *what, const char *branch,
			const struct glob_list *branches, const struct glob_list *ignore, char *why,
			size_t why_len)
{
	if (branch == NULL) {
		why_set(why, why_len, "%s: the event names no %s", trigger, what);
		return false;
	}
	if (branches->n > 0 && !glob_list_has_match(branches, branch)) {
		why_no_match(why, why_len, trigger, what, branch, branches, "matches none of");
		return false;
	}
	if (glob_list_has_match(ignore, branch)) {
		why_no_match(why, why_len, trigger, what, branch, ignore, "is ignored by");
		return false;
	}
	return true;
}

static bool push_match(const struct trigger_push *t, const json_t *event, char *why, size_t why_len)
{
	const char *action = event_string(event, "action");
	const char *tag = event_string(event, "tag");
	const char *branch = event_string(event, "branch");
	char buf[72];
	if (action == NULL)
		action = tag != NULL ? "tag" : "pushed";
	bool is_deleted = strcmp(action, "deleted") == 0;
	if (is_deleted && !t->include_deleted) {
		why_set(why, why_len, "push: deletions are not watched (deleted: false)");
		return false;
	}
	if (strcmp(action, "tag") == 0 || (is_deleted && tag != NULL)) {
		if (t->tags.n == 0) {
			why_set(why, why_len, "push: tag '%s' pushed, but no tags are watched",
				show(tag, buf, sizeof buf));
			return false;
		}
		if (tag == NULL) {
			why_set(why, why_len, "push: the event names no tag");
			return false;
		}
		if (!glob_list_has_match(&t->tags, tag)) {
			why_no_match(why, why_len, "push", "tag", tag, &t->tags, "matches none of");
			return false;
		}
		return true;
	}
	if (strcmp(action, "pushed") != 0 && !is_deleted) {
		why_set(why, why_len, "push: unknown action '%s'", show(action, buf, sizeof buf));
		return false;
	}
	/* Like GitHub: a trigger that lists only tags does not run for branches. */
	if (t->tags.n > 0 && t->branches.n == 0 && t->branches_ignore.n == 0) {
		if (!why_is_wanted(why, why_len))
			return false;
		char *shown = glob_list_show(&t->tags);
		why_set(why, why_len, "push: only tags %s are watched, not branch '%s'", shown,
			show(branch, buf, sizeof buf));
		free(shown);
		return false;
	}
	if (!branch_pass("push", "branch", branch, &t->branches, &t->branches_ignore, why, why_len))
		return false;
	if (is_deleted)
		return true;
	return paths_pass("push", &t->paths, &t->paths_ignore, event, why, why_len);
}

static bool pull_request_match(const struct trigger_pull_request *t, const json_t *event, char *why,
			       size_t why_len)
{
	const char *action = event_string(event, "action");
	char buf[72];
	if (action == NULL) {
		why_set(why, why_len, "pull_request: the event has no action");
		return false;
	}
	bool is_wanted =
	    t->actions.n > 0
		? text_is_one_of(action, (const char *const *)t->actions.items, t->actions.n)
		: text_is_one_of(action, pr_default_actions, ARRAY_LEN(pr_default_actions));
	if (!is_wanted) {
		if (!why_is_wanted(why, why_len))
			return false;
		struct strbuf list;
		strbuf_init(&list);
		if (t->actions.n > 0)
			names_join(&list, (const char *const *)t->actions.items, t->actions.n,
				   ", ");
		else
			names_join(&list, pr_default_actions, ARRAY_LEN(pr_default_actions), ", ");
		why_set(why, why_len, "pull_request: action '%s' is not one of [%s]",
			show(action, buf, sizeof buf), list.data);
		strbuf_free(&list);
		return false;
	}
	const char *base = event_string(json_object_get(event, "pr"), "base");
	struct glob_list none = {0};
	if (!branch_pass("pull_request", "base branch", base, &t->branches, &none, why, why_len))
		return false;
	return paths_pass("pull_request", &t->paths, &t->paths_ignore, event, why, why_len);
}

static bool drift_match(const struct trigger_drift *t, const json_t *event, char *why,
			size_t why_len)
{
	const json_t *drift = json_object_get(event, "drift");
	const char *model = event_string(drift, "model");
	const char *env = event_string(drift, "environment");
	const char *sev = event_string(drift, "severity");
	struct glob_list none = {0};
	if (t->models.n > 0 &&
	    !branch_pass("drift", "model", model, &t->models, &none, why, why_len))
		return false;
	if (t->environments.n > 0 &&
	    !branch_pass("drift", "environment", env, &t->environments, &none, why, why_len))
		return false;
	/* A drift without a (known) severity counts as the lowest, info. */
	enum severity level = SEVERITY_INFO;
	for (size_t i = 0; sev != NULL && i < ARRAY_LEN(severity_names); i++)
		if (strcmp(sev, severity_names[i]) == 0)
			level = (enum severity)i;
	if (level < t->min_severity) {
		char buf[72];
		why_set(why, why_len, "drift: severity '%s' is below %s",
			sev != NULL ? show(sev, buf, sizeof buf) : "none",
			severity_names[t->min_severity]);
		return false;
	}
	return true;
}

/*
 * Does the canonical event start p? On false, why says which condition
 * failed; on true, why is set to "".
 */
bool pipeline_match(const struct pipeline *p, const json_t *event, char *why, size_t why_len)
{
	why_set(why, why_len, "%s", "");
	if (p == NULL || !json_is_object(event)) {
		why_set(why, why_len, "not an event");
		return false;
	}
	const char *kind = event_string(event, "kind");
	char buf[72];
	if (kind == NULL) {
		why_set(why, why_len, "the event has no kind");
		return false;
	}
	if (strcmp(kind, "push") == 0 && p->push.is_enabled)
		return push_match(&p->push, event, why, why_len);
	if (strcmp(kind, "pull_request") == 0 && p->pull_request.is_enabled)
		return pull_request_match(&p->pull_request, event, why, why_len);
	if (strcmp(kind, "drift") == 0 && p->drift.is_enabled)
		return drift_match(&p->drift, event, why, why_len);
	why_set(why, why_len, "no trigger for kind '%s'", show(kind, buf, sizeof buf));
	return false;
}

/* ------------------------------------------------------------------ */
/* Placeholders and retries                                             */
/* ------------------------------------------------------------------ */

/* The event's value for one placeholder name; "" when it has none. */
static void placeholder_value(const char *name, size_t len, const json_t *event, struct strbuf *out)
{
	const json_t *v = NULL;
	if (len == 4 && strncmp(name, "repo", 4) == 0)
		v = json_object_get(event, "repo");
	else if (len == 6 && strncmp(name, "branch", 6) == 0)
		v = json_object_get(event, "branch");
	else if (len == 2 && strncmp(name, "pr", 2) == 0)
		v = json_object_get(json_object_get(event, "pr"), "number");
	else if (len == 3 && strncmp(name, "sha", 3) == 0)
		v = json_object_get(event, "sha");
	else if (len == 5 && strncmp(name, "model", 5) == 0)
		v = json_object_get(json_object_get(event, "drift"), "model");
	else if (len == 3 && strncmp(name, "env", 3) == 0)
		v = json_object_get(json_object_get(event, "drift"), "environment");
	if (json_is_string(v))
		strbuf_adds(out, json_string_value(v));
	else if (json_is_integer(v))
		strbuf_addf(out, "%lld", (long long)json_integer_value(v));
}

static bool placeholder_is_known(const char *name, size_t len)
{
	for (size_t i = 0; i < ARRAY_LEN(placeholder_names); i++)
		if (strlen(placeholder_names[i]) == len &&
		    strncmp(placeholder_names[i], name, len) == 0)
			return true;
	return false;
}

/*
 * Replaces each known {placeholder} with the event's value ("" when absent);
 * anything else in braces is kept as written.
 */
char *pipeline_expand(const char *tmpl, const json_t *event)
{
	if (tmpl == NULL)
		return NULL;
	struct strbuf sb;
	strbuf_init(&sb);
	strbuf_adds(&sb, "");
	const char *p = tmpl;
	while (*p != '\0') {
		const char *open = strchr(p, '{');
		if (open == NULL) {
			strbuf_adds(&sb, p);
			break;
		}
		strbuf_add(&sb, p, (size_t)(open - p));
		const char *close = strchr(open, '}');
		size_t len = close != NULL ? (size_t)(close - open - 1) : 0;
		if (close == NULL || !placeholder_is_known(open + 1, len)) {
			strbuf_add(&sb, open, 1);
			p = open + 1;
			continue;
		}
		placeholder_value(open + 1, len, event, &sb);
		p = close + 1;
	}
	return strbuf_detach(&sb);
}

/*
 * delay * backoff^(retry-1), capped at max_delay; never overflows, whatever
 * the policy holds. retry < 1 counts as the first retry.
 */
int64_t pipeline_retry_delay_ms(const struct retry_policy *policy, int retry)
{
	if (policy == NULL)
		return 0;
	int64_t delay = policy->delay_ms > 0 ? policy->delay_ms : 0;
	int64_t cap = policy->max_delay_ms >= 0 ? policy->max_delay_ms : INT64_MAX;
	if (delay == 0 || cap == 0)
		return 0;
	double backoff = policy->backoff >= 1.0 ? policy->backoff : 1.0; /* also for NaN */
	unsigned exponent = retry > 1 ? (unsigned)retry - 1 : 0;
	double factor = 1.0;
	double base = backoff;
	/* Exponentiation by squaring; inf is fine, it is capped below. */
	while (exponent > 0) {
		if (exponent & 1)
			factor *= base;
		base *= base;
		exponent >>= 1;
	}
	double ms = (double)delay * factor;
	if (!(ms < (double)cap))
		return cap;
	return (int64_t)ms;
}
