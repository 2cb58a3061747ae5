/*
 * metrics: the registry of labelled families and the Prometheus text
 * rendering (exposition format 0.0.4: HELP and TYPE once per family, its
 * samples together, label values escaped). Never reads foreign input
 * itself: the hooks below map what intake and the scheduler report onto
 * fixed label values, so the number of series stays bounded.
 */
#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

struct metric_series {
	char **values; /* one per label name (owned) */
	uint32_t hash;
	double value;	   /* counter, gauge */
	uint64_t *buckets; /* histogram: observations per bound, not cumulative (owned) */
	uint64_t count;	   /* histogram */
	double sum;	   /* histogram */
};

struct metric_family {
	char *name, *help; /* owned */
	enum metric_type type;
	char **labels; /* owned */
	size_t n_labels;
	double *bounds; /* histogram (owned) */
	size_t n_bounds;
	size_t max_series;
	bool is_capped;		       /* the cap was reached once (logged once) */
	struct metric_series **series; /* owned, creation order */
	size_t n_series, cap_series;
};

/* A record of the intake batch under way, counted when the batch commits. */
struct metric_staged {
	struct metric_series *series;
};

struct metrics_registry {
	struct metric_family **families; /* owned, rendering order */
	size_t n_families, cap_families;
	struct metric_staged *staged;
	size_t n_staged, cap_staged;
	/* drover's own families (also in families) */
	struct metric_family *events, *dead_letters, *runs, *stages, *stage_seconds;
};

const double metrics_stage_seconds_bounds[] = {0.1, 0.25, 0.5, 1,   2.5, 5,    10,
					       30,  60,	  120, 300, 600, 1800, 3600};
const size_t metrics_stage_seconds_n_bounds = ARRAY_LEN(metrics_stage_seconds_bounds);

/* ---- names and values ---- */

/* [a-zA-Z_:][a-zA-Z0-9_:]* for metric names; labels: no colon, no "__" prefix. */
static bool metric_name_is_valid(const char *s, bool is_label)
{
	if (s == NULL || *s == '\0' || (is_label && strncmp(s, "__", 2) == 0))
		return false;
	for (const char *p = s; *p != '\0'; p++) {
		bool is_alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
				(!is_label && *p == ':');
		if (!is_alpha && !(p > s && *p >= '0' && *p <= '9'))
			return false;
	}
	return true;
}

static uint32_t metric_hash(const char *const *values, size_t n)
{
	uint32_t h = 2166136261u; /* FNV-1a, the values separated by a zero byte */
	for (size_t i = 0; i < n; i++) {
		for (const char *p = values[i] != NULL ? values[i] : ""; *p != '\0'; p++)
			h = (h ^ (unsigned char)*p) * 16777619u;
		h = (h ^ 0) * 16777619u;
	}
	return h;
}

static bool metric_values_equal(const struct metric_series *s, const char *const *values, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s->values[i], values[i] != NULL ? values[i] : "") != 0)
			return false;
	return true;
}

static struct metric_series *metric_series_find(const struct metric_family *f,
						const char *const *values, uint32_t hash)
{
	for (size_t i = 0; i < f->n_series; i++)
		if (f->series[i]->hash == hash &&
		    metric_values_equal(f->series[i], values, f->n_labels))
			return f->series[i];
	return NULL;
}

static struct metric_series *metric_series_new(struct metric_family *f, const char *const *values,
					       uint32_t hash)
{
	struct metric_series *s = xcalloc(1, sizeof *s);
	s->values = xcalloc(f->n_labels + 1, sizeof *s->values);
	for (size_t i = 0; i < f->n_labels; i++)
		s->values[i] = xstrdup(values[i] != NULL ? values[i] : "");
	s->hash = hash;
	if (f->type == METRIC_HISTOGRAM)
		s->buckets = xcalloc(f->n_bounds + 1, sizeof *s->buckets);
	f->series = xgrow(f->series, &f->cap_series, f->n_series, sizeof *f->series);
	f->series[f->n_series++] = s;
	return s;
}

/*
 * The series of these label values, created on first use. A family at its
 * cap keeps one slot for the series whose every value is "other", which
 * takes whatever new label set comes after.
 */
static struct metric_series *metric_series_get(struct metric_family *f, const char *const *values)
{
	uint32_t hash = metric_hash(values, f->n_labels);
	struct metric_series *s = metric_series_find(f, values, hash);
	if (s != NULL)
		return s;
	if (f->n_series + 1 >= f->max_series && f->n_labels > 0) {
		const char **other = xcalloc(f->n_labels, sizeof *other);
		for (size_t i = 0; i < f->n_labels; i++)
			other[i] = "other";
		hash = metric_hash(other, f->n_labels);
		s = metric_series_find(f, other, hash);
		if (s == NULL)
			s = metric_series_new(f, other, hash);
		free(other);
		if (!f->is_capped)
			log_warn("metrics: %s has %zu series, its cap: new label sets count as "
				 "\"other\"",
				 f->name, f->max_series);
		f->is_capped = true;
		return s;
	}
	return metric_series_new(f, values, hash);
}

static void metric_series_free(struct metric_series *s, size_t n_labels)
{
	for (size_t i = 0; i < n_labels; i++)
		free(s->values[i]);
	free(s->values);
	free(s->buckets);
	free(s);
}

static void metric_family_free(struct metric_family *f)
{
	metric_clear(f);
	free(f->series);
	for (size_t i = 0; i < f->n_labels; i++)
		free(f->labels[i]);
	free(f->labels);
	free(f->bounds);
	free(f->name);
	free(f->help);
	free(f);
}

/* ---- the registry ---- */

static struct metric_family *metric_family_find(const struct metrics_registry *r, const char *name)
{
	for (size_t i = 0; i < r->n_families; i++)
		if (strcmp(r->families[i]->name, name) == 0)
			return r->families[i];
	return NULL;
}

/* The same type and label names as an existing family (a second registration). */
static bool metric_family_is_same(const struct metric_family *f, enum metric_type type,
				  const char *const *labels)
{
	size_t n = 0;
	while (labels != NULL && labels[n] != NULL)
		n++;
	if (f->type != type || f->n_labels != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (strcmp(f->labels[i], labels[i]) != 0)
			return false;
	return true;
}

struct metric_family *metric_family_new(struct metrics *m, enum metric_type type, const char *name,
					const char *help, const char *const *labels,
					const double *bounds, size_t n_bounds, size_t max_series)
{
	struct metrics_registry *r = m->reg;
	if (r == NULL)
		return NULL;
	struct metric_family *f =
	    metric_name_is_valid(name, false) ? metric_family_find(r, name) : NULL;
	if (f != NULL) {
		if (metric_family_is_same(f, type, labels))
			return f;
		log_error("metrics: %s is registered already with other labels or type", name);
		return NULL;
	}
	if (!metric_name_is_valid(name, false)) {
		log_error("metrics: '%s' is not a metric name", name != NULL ? name : "(null)");
		return NULL;
	}
	for (size_t i = 0; labels != NULL && labels[i] != NULL; i++) {
		if (!metric_name_is_valid(labels[i], true) ||
		    (type == METRIC_HISTOGRAM && strcmp(labels[i], "le") == 0)) {
			log_error("metrics: %s: '%s' is not a label name", name, labels[i]);
			return NULL;
		}
	}
	for (size_t i = 1; i < n_bounds; i++) {
		if (!(bounds[i - 1] < bounds[i])) {
			log_error("metrics: %s: bucket bounds must ascend", name);
			return NULL;
		}
	}
	f = xcalloc(1, sizeof *f);
	f->name = xstrdup(name);
	f->help = xstrdup(help != NULL ? help : "");
	f->type = type;
	while (labels != NULL && labels[f->n_labels] != NULL)
		f->n_labels++;
	f->labels = xcalloc(f->n_labels + 1, sizeof *f->labels);
	for (size_t i = 0; i < f->n_labels; i++)
		f->labels[i] = xstrdup(labels[i]);
	if (type == METRIC_HISTOGRAM) {
		f->n_bounds = n_bounds;
		f->bounds = xcalloc(n_bounds + 1, sizeof *f->bounds);
		if (n_bounds > 0)
			memcpy(f->bounds, bounds, n_bounds * sizeof *bounds);
	}
	f->max_series = max_series > 0 ? max_series : METRICS_MAX_SERIES_DEFAULT;
	if (f->max_series < 2)
		f->max_series = 2; /* one, and "other" */
	r->families = xgrow(r->families, &r->cap_families, r->n_families, sizeof *r->families);
	r->families[r->n_families++] = f;
	return f;
}

void metric_add(struct metric_family *f, const char *const *values, double delta)
{
	if (f == NULL || f->type == METRIC_HISTOGRAM ||
	    (f->type == METRIC_COUNTER && !(delta >= 0)))
		return;
	metric_series_get(f, values)->value += delta;
}

void metric_set(struct metric_family *f, const char *const *values, double value)
{
	if (f == NULL || f->type != METRIC_GAUGE)
		return;
	metric_series_get(f, values)->value = value;
}

void metric_observe(struct metric_family *f, const char *const *values, double value)
{
	if (f == NULL || f->type != METRIC_HISTOGRAM || isnan(value))
		return;
	struct metric_series *s = metric_series_get(f, values);
	size_t i = 0;
	while (i < f->n_bounds && value > f->bounds[i])
		i++;
	s->buckets[i]++; /* i == n_bounds: only in +Inf */
	s->count++;
	s->sum += value;
}

void metric_clear(struct metric_family *f)
{
	if (f == NULL)
		return;
	for (size_t i = 0; i < f->n_series; i++)
		metric_series_free(f->series[i], f->n_labels);
	f->n_series = 0;
	f->is_capped = false;
}

/* ---- rendering ---- */

/* A sample value: integers as integers, else the shortest text that reads back the same. */
static void metrics_add_number(struct strbuf *sb, double v)
{
	if (isnan(v)) {
		strbuf_adds(sb, "NaN");
	} else if (isinf(v)) {
		strbuf_adds(sb, v > 0 ? "+Inf" : "-Inf");
	} else if (v == floor(v) && fabs(v) < 9007199254740992.0) {
		strbuf_addf(sb, "%.0f", v);
	} else {
		char buf[40];
		snprintf(buf, sizeof buf, "%.15g", v);
		if (strtod(buf, NULL) != v)
			snprintf(buf, sizeof buf, "%.17g", v);
		strbuf_adds(sb, buf);
	}
}

/* HELP text escapes backslash and newline; label values also the double quote. */
static void metrics_add_escaped(struct strbuf *sb, const char *s, bool is_label_value)
{
	for (const char *p = s; *p != '\0'; p++) {
		if (*p == '\\')
			strbuf_adds(sb, "\\\\");
		else if (*p == '\n')
			strbuf_adds(sb, "\\n");
		else if (*p == '"' && is_label_value)
			strbuf_adds(sb, "\\\"");
		else
			strbuf_add(sb, p, 1);
	}
}

/* name{l1="v1",...,le="x"} (le: NULL for none) and the value, one line. */
static void metrics_add_sample(struct strbuf *sb, const struct metric_family *f,
			       const struct metric_series *s, const char *suffix, const char *le,
			       double value)
{
	strbuf_adds(sb, f->name);
	strbuf_adds(sb, suffix);
	if (f->n_labels > 0 || le != NULL) {
		strbuf_adds(sb, "{");
		for (size_t i = 0; i < f->n_labels; i++) {
			strbuf_addf(sb, "%s%s=\"", i > 0 ? "," : "", f->labels[i]);
			metrics_add_escaped(sb, s->values[i], true);
			strbuf_adds(sb, "\"");
		}
		if (le != NULL)
			strbuf_addf(sb, "%sle=\"%s\"", f->n_labels > 0 ? "," : "", le);
		strbuf_adds(sb, "}");
	}
	strbuf_adds(sb, " ");
	metrics_add_number(sb, value);
	strbuf_adds(sb, "\n");
}

static void metrics_render_family(struct strbuf *sb, const struct metric_family *f)
{
	static const char *const type_names[] = {[METRIC_COUNTER] = "counter",
						 [METRIC_GAUGE] = "gauge",
						 [METRIC_HISTOGRAM] = "histogram"};
	if (f->n_series == 0)
		return;
	strbuf_addf(sb, "# HELP %s ", f->name);
	metrics_add_escaped(sb, f->help, false);
	strbuf_addf(sb, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
	for (size_t i = 0; i < f->n_series; i++) {
		const struct metric_series *s = f->series[i];
		if (f->type != METRIC_HISTOGRAM) {
			metrics_add_sample(sb, f, s, "", NULL, s->value);
			continue;
		}
		uint64_t cumulative = 0;
		for (size_t b = 0; b < f->n_bounds; b++) {
			struct strbuf le;
			strbuf_init(&le);
			metrics_add_number(&le, f->bounds[b]);
			cumulative += s->buckets[b];
			metrics_add_sample(sb, f, s, "_bucket", le.data, (double)cumulative);
			strbuf_free(&le);
		}
		metrics_add_sample(sb, f, s, "_bucket", "+Inf", (double)s->count);
		metrics_add_sample(sb, f, s, "_sum", NULL, s->sum);
		metrics_add_sample(sb, f, s, "_count", NULL, (double)s->count);
	}
}

char *metrics_render(const struct metrics *m)
{
	const struct {
		const char *name, *help;
		uint64_t value;
	} counters[] = {
	    {"drover_events_received_total", "Records read from the events topic",
	     m->events_received},
	    {"drover_events_accepted_total", "Events that started runs", m->events_accepted},
	    {"drover_events_unmatched_total", "Events no pipeline matched", m->events_unmatched},
	    {"drover_events_duplicate_total", "Redelivered events (nothing new started)",
	     m->events_duplicate},
	    {"drover_events_ignored_total", "Events understood and ignored (ping)",
	     m->events_ignored},
	    {"drover_events_refused_total", "Events of repositories not configured",
	     m->events_refused},
	    {"drover_events_dead_lettered_total", "Records sent to the dead-letter topic",
	     m->events_dead_lettered},
	    {"drover_events_malformed_total", "Malformed records", m->events_malformed},
	    {"drover_events_unknown_total", "Records of unknown type", m->events_unknown},
	    {"drover_events_too_large_total", "Records over max_event_bytes", m->events_too_large},
	    {"drover_runs_created_total", "Runs created", m->runs_created},
	    {"drover_runs_finished_total", "Runs finished", m->runs_finished},
	    {"drover_stages_started_total", "Stage attempts started", m->stages_started},
	    {"drover_stages_finished_total", "Stage attempts finished", m->stages_finished},
	    {"drover_results_published_total", "Outbox records acknowledged by Kafka",
	     m->results_published},
	    {"drover_kafka_errors_total", "Kafka errors", m->kafka_errors},
	    {"drover_api_requests_total", "Admin API requests", m->api_requests},
	    {"drover_api_unauthorized_total", "Admin API requests refused for the token",
	     m->api_unauthorized},
	    {"drover_plugins_refused_total", "Plugins refused at load", m->plugins_refused},
	    {"drover_pipelines_refused_total", "Pipeline files refused at load",
	     m->pipelines_refused},
	};
	struct strbuf sb;
	strbuf_init(&sb);
	for (size_t i = 0; i < ARRAY_LEN(counters); i++)
		strbuf_addf(&sb, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", counters[i].name,
			    counters[i].help, counters[i].name, counters[i].name,
			    (unsigned long long)counters[i].value);
	const struct metrics_registry *r = m->reg;
	for (size_t i = 0; r != NULL && i < r->n_families; i++)
		metrics_render_family(&sb, r->families[i]);
	return strbuf_detach(&sb);
}

/* ---- drover's own families and their hooks ---- */

void metrics_init(struct metrics *m)
{
	m->reg = xcalloc(1, sizeof *m->reg);
	struct metrics_registry *r = m->reg;
	r->events = metric_family_new(
	    m, METRIC_COUNTER, "drover_events_total",
	    "Records of the events topic by source, kind and outcome (accepted, unmatched, "
	    "duplicate, ignored, refused, dead_lettered)",
	    (const char *[]){"source", "kind", "outcome", NULL}, NULL, 0, 0);
	r->dead_letters = metric_family_new(
	    m, METRIC_COUNTER, "drover_dead_letters_total",
	    "Records sent to the dead-letter topic by reason (malformed, unknown, too_large)",
	    (const char *[]){"reason", NULL}, NULL, 0, 0);
	r->runs = metric_family_new(
	    m, METRIC_COUNTER, "drover_runs_total",
	    "Runs finished by pipeline and outcome (succeeded, failed, cancelled, "
	    "timed_out, error)",
	    (const char *[]){"pipeline", "outcome", NULL}, NULL, 0, 0);
	r->stages = metric_family_new(m, METRIC_COUNTER, "drover_stages_total",
				      "Stage attempts finished by pipeline and outcome",
				      (const char *[]){"pipeline", "outcome", NULL}, NULL, 0, 0);
	r->stage_seconds = metric_family_new(
	    m, METRIC_HISTOGRAM, "drover_stage_duration_seconds",
	    "Wall time of finished stage attempts by pipeline", (const char *[]){"pipeline", NULL},
	    metrics_stage_seconds_bounds, metrics_stage_seconds_n_bounds, 200);
}

void metrics_fini(struct metrics *m)
{
	struct metrics_registry *r = m->reg;
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n_families; i++)
		metric_family_free(r->families[i]);
	free(r->families);
	free(r->staged);
	free(r);
	m->reg = NULL;
}

/* s if it is one of names (NULL-terminated), else "other". */
static const char *metrics_enum_value(const char *s, const char *const *names)
{
	for (size_t i = 0; s != NULL && names[i] != NULL; i++)
		if (strcmp(s, names[i]) == 0)
			return names[i];
	return "other";
}

static const char *const metrics_sources[] = {
    "github", "gitlab", "azure-devops", "cloudevents", "drover", "databricks", NULL};
static const char *const metrics_kinds[] = {"push", "pull_request", "drift", "manual", NULL};
static const char *const metrics_outcomes[] = {"accepted", "unmatched", "duplicate",
					       "ignored",  "refused",	NULL};
static const char *const metrics_reasons[] = {"malformed", "unknown", "too_large", NULL};

static void metrics_stage(struct metrics_registry *r, struct metric_family *f,
			  const char *const *values)
{
	if (f == NULL)
		return;
	r->staged = xgrow(r->staged, &r->cap_staged, r->n_staged, sizeof *r->staged);
	r->staged[r->n_staged++] = (struct metric_staged){.series = metric_series_get(f, values)};
}

void metrics_event_seen(struct metrics *m, const json_t *ev, const char *outcome)
{
	struct metrics_registry *r = m->reg;
	if (r == NULL)
		return;
	const char *source =
	    metrics_enum_value(json_string_value(json_object_get(ev, "source")), metrics_sources);
	const char *kind =
	    metrics_enum_value(json_string_value(json_object_get(ev, "kind")), metrics_kinds);
	const char *reason = metrics_enum_value(outcome, metrics_reasons);
	bool is_dead_letter = strcmp(reason, "other") != 0;
	const char *o =
	    is_dead_letter ? "dead_lettered" : metrics_enum_value(outcome, metrics_outcomes);
	metrics_stage(r, r->events, (const char *[]){source, kind, o});
	if (is_dead_letter)
		metrics_stage(r, r->dead_letters, (const char *[]){reason});
}

void metrics_events_settle(struct metrics *m, bool is_committed)
{
	struct metrics_registry *r = m->reg;
	if (r == NULL)
		return;
	for (size_t i = 0; is_committed && i < r->n_staged; i++)
		r->staged[i].series->value += 1;
	r->n_staged = 0;
}

void metrics_stage_finished(struct metrics *m, const char *pipeline, enum status status,
			    int64_t duration_ms)
{
	struct metrics_registry *r = m->reg;
	if (r == NULL)
		return;
	metric_add(r->stages, (const char *[]){pipeline, status_name(status)}, 1);
	metric_observe(r->stage_seconds, (const char *[]){pipeline},
		       duration_ms > 0 ? (double)duration_ms / 1000.0 : 0.0);
}

void metrics_run_finished(struct metrics *m, const char *pipeline, enum status status)
{
	struct metrics_registry *r = m->reg;
	if (r == NULL)
		return;
	metric_add(r->runs, (const char *[]){pipeline, status_name(status)}, 1);
}
