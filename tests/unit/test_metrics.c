/*
 * Tests for metrics: the Prometheus text the registry renders (HELP and TYPE
 * once per family, samples grouped under them, label values and help
 * escaped), histogram buckets (cumulative, upper bound inclusive), sum and
 * count, the cap on series per family, foreign values collapsing to
 * "other", and the intake hooks counting a batch only once it committed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"
#include "util.h"

/* Whether text has exactly this line. */
static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; p != NULL && *p != '\0';) {
		const char *end = strchr(p, '\n');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		if (len == n && strncmp(p, line, n) == 0)
			return true;
		p = end != NULL ? end + 1 : NULL;
	}
	return false;
}

static void assert_line(const char *text, const char *line)
{
	if (!has_line(text, line))
		fail_msg("no line '%s' in:\n%s", line, text);
}

static size_t count_lines_starting(const char *text, const char *prefix)
{
	size_t n = 0, len = strlen(prefix);
	for (const char *p = text; *p != '\0';) {
		if (strncmp(p, prefix, len) == 0)
			n++;
		const char *end = strchr(p, '\n');
		if (end == NULL)
			break;
		p = end + 1;
	}
	return n;
}

static void test_metrics_plain_counters_keep_their_names(void **state)
{
	(void)state;
	struct metrics m = {0};
	metrics_init(&m);
	m.events_received = 3;
	m.events_dead_lettered = 2;
	char *text = metrics_render(&m);
	assert_line(text, "# TYPE drover_events_received_total counter");
	assert_line(text, "drover_events_received_total 3");
	assert_line(text, "drover_events_dead_lettered_total 2");
	assert_line(text, "drover_runs_created_total 0");
	/* Labelled families without a series yet say nothing. */
	assert_null(strstr(text, "drover_events_total"));
	free(text);
	metrics_fini(&m);
	assert_null(m.reg);
}

static void test_metrics_escaping(void **state)
{
	(void)state;
	struct metrics m = {0};
	metrics_init(&m);
	struct metric_family *f =
	    metric_family_new(&m, METRIC_COUNTER, "t_escaped_total", "back\\slash\nand \"quotes\"",
			      (const char *[]){"pipeline", NULL}, NULL, 0, 0);
	assert_non_null(f);
	metric_add(f, (const char *[]){"a\\b\"c\nd"}, 2);
	metric_add(f, (const char *[]){NULL}, 1);
	char *text = metrics_render(&m);
	assert_line(text, "# HELP t_escaped_total back\\\\slash\\nand \"quotes\"");
	assert_line(text, "t_escaped_total{pipeline=\"a\\\\b\\\"c\\nd\"} 2");
	assert_line(text, "t_escaped_total{pipeline=\"\"} 1");
	free(text);
	metrics_fini(&m);
}

static void test_metrics_histogram(void **state)
{
	(void)state;
	struct metrics m = {0};
	metrics_init(&m);
	const double bounds[] = {0.1, 0.5, 2.5};
	struct metric_family *h =
	    metric_family_new(&m, METRIC_HISTOGRAM, "t_seconds", "durations",
			      (const char *[]){"pipeline", NULL}, bounds, ARRAY_LEN(bounds), 0);
	assert_non_null(h);
	const double seen[] = {0.05, 0.1, 0.3, 7200};
	for (size_t i = 0; i < ARRAY_LEN(seen); i++)
		metric_observe(h, (const char *[]){"pr"}, seen[i]);
	metric_observe(h, (const char *[]){"release"}, 1);
	char *text = metrics_render(&m);
	assert_line(text, "# TYPE t_seconds histogram");
	assert_line(text, "t_seconds_bucket{pipeline=\"pr\",le=\"0.1\"} 2"); /* le is inclusive */
	assert_line(text, "t_seconds_bucket{pipeline=\"pr\",le=\"0.5\"} 3");
	assert_line(text, "t_seconds_bucket{pipeline=\"pr\",le=\"2.5\"} 3");
	assert_line(text, "t_seconds_bucket{pipeline=\"pr\",le=\"+Inf\"} 4");
	assert_line(text, "t_seconds_sum{pipeline=\"pr\"} 7200.45");
	assert_line(text, "t_seconds_count{pipeline=\"pr\"} 4");
	assert_line(text, "t_seconds_bucket{pipeline=\"release\",le=\"0.5\"} 0");
	assert_line(text, "t_seconds_bucket{pipeline=\"release\",le=\"2.5\"} 1");
	assert_line(text, "t_seconds_count{pipeline=\"release\"} 1");
	free(text);
	metrics_fini(&m);
}

/* Past its cap a family counts new label sets under "other"; known ones still count. */
static void test_metrics_cardinality_cap(void **state)
{
	(void)state;
	struct metrics m = {0};
	metrics_init(&m);
	struct metric_family *f =
	    metric_family_new(&m, METRIC_COUNTER, "t_capped_total", "capped",
			      (const char *[]){"pipeline", "outcome", NULL}, NULL, 0, 4);
	for (int i = 0; i < 10; i++) {
		char name[16];
		snprintf(name, sizeof name, "p%d", i);
		metric_add(f, (const char *[]){name, "failed"}, 1);
	}
	metric_add(f, (const char *[]){"p0", "failed"}, 1);
	char *text = metrics_render(&m);
	assert_int_equal(count_lines_starting(text, "t_capped_total{"), 4);
	assert_line(text, "t_capped_total{pipeline=\"p0\",outcome=\"failed\"} 2");
	assert_line(text, "t_capped_total{pipeline=\"p2\",outcome=\"failed\"} 1");
	assert_line(text, "t_capped_total{pipeline=\"other\",outcome=\"other\"} 7");
	assert_null(strstr(text, "pipeline=\"p3\""));
	free(text);
	metrics_fini(&m);
}

static void test_metrics_registration(void **state)
{
	(void)state;
	struct metrics m = {0};
	/* Before init nothing registers and the hooks do nothing. */
	assert_null(metric_family_new(&m, METRIC_GAUGE, "t_gauge", "g", NULL, NULL, 0, 0));
	metrics_event_seen(&m, NULL, "malformed");
	metrics_events_settle(&m, true);
	metrics_stage_finished(&m, "pr", STATUS_FAILED, 10);
	metrics_init(&m);
	struct metric_family *g =
	    metric_family_new(&m, METRIC_GAUGE, "t_gauge", "g", NULL, NULL, 0, 0);
	assert_non_null(g);
	assert_ptr_equal(metric_family_new(&m, METRIC_GAUGE, "t_gauge", "again", NULL, NULL, 0, 0),
			 g);
	assert_null(metric_family_new(&m, METRIC_COUNTER, "t_gauge", "clash", NULL, NULL, 0, 0));
	assert_null(metric_family_new(&m, METRIC_GAUGE, "t_gauge", "clash",
				      (const char *[]){"x", NULL}, NULL, 0, 0));
	assert_null(metric_family_new(&m, METRIC_GAUGE, "9lives", "bad name", NULL, NULL, 0, 0));
	assert_null(metric_family_new(&m, METRIC_GAUGE, "t_bad_label", "bad label",
				      (const char *[]){"__x", NULL}, NULL, 0, 0));
	assert_null(metric_family_new(&m, METRIC_HISTOGRAM, "t_le", "le is reserved",
				      (const char *[]){"le", NULL}, (const double[]){1}, 1, 0));
	assert_null(metric_family_new(&m, METRIC_HISTOGRAM, "t_desc", "descending", NULL,
				      (const double[]){2, 1}, 2, 0));
	metric_add(NULL, NULL, 1); /* a failed registration is harmless */
	metric_set(g, NULL, -2.5);
	struct metric_family *c =
	    metric_family_new(&m, METRIC_COUNTER, "t_counter_total", "c", NULL, NULL, 0, 0);
	metric_add(c, NULL, 2);
	metric_add(c, NULL, -1); /* a counter never goes down */
	metric_set(c, NULL, 0);	 /* nor is it set */
	char *text = metrics_render(&m);
	assert_line(text, "t_gauge -2.5");
	assert_line(text, "# HELP t_gauge g");
	assert_line(text, "t_counter_total 2");
	assert_null(strstr(text, "drover_stages_total"));
	free(text);
	metric_clear(g);
	text = metrics_render(&m);
	assert_null(strstr(text, "t_gauge"));
	free(text);
	metrics_fini(&m);
}

/* Every sample line belongs to the family of the last TYPE line; each TYPE appears once. */
static void test_metrics_families_grouped(void **state)
{
	(void)state;
	struct metrics m = {0};
	metrics_init(&m);
	json_t *ev = json_pack("{s:s,s:s}", "source", "github", "kind", "push");
	metrics_event_seen(&m, ev, "accepted");
	metrics_event_seen(&m, NULL, "malformed");
	metrics_events_settle(&m, true);
	metrics_stage_finished(&m, "pr", STATUS_SUCCEEDED, 100);
	metrics_stage_finished(&m, "release", STATUS_FAILED, 100);
	metrics_stage_finished(&m, "pr", STATUS_FAILED, 100);
	metrics_run_finished(&m, "pr", STATUS_FAILED);
	json_decref(ev);
	char *text = metrics_render(&m);
	char *copy = strdup(text);
	char family[128] = "", seen[8192] = " ";
	for (char *line = strtok(copy, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		if (strncmp(line, "# HELP ", 7) == 0)
			continue;
		if (sscanf(line, "# TYPE %127s", family) == 1) {
			char key[140];
			snprintf(key, sizeof key, " %s ", family);
			if (strstr(seen, key) != NULL)
				fail_msg("family %s appears twice:\n%s", family, text);
			strncat(seen, key + 1, sizeof seen - strlen(seen) - 1);
			continue;
		}
		size_t n = strlen(family);
		const char *rest = line + n;
		if (strncmp(line, family, n) != 0 ||
		    !(*rest == ' ' || *rest == '{' || strncmp(rest, "_bucket{", 8) == 0 ||
		      strncmp(rest, "_sum", 4) == 0 || strncmp(rest, "_count", 6) == 0))
			fail_msg("sample '%s' is not under its family (last TYPE %s)", line,
				 family);
	}
	free(copy);
	assert_line(text, "drover_stages_total{pipeline=\"pr\",outcome=\"succeeded\"} 1");
	assert_line(text, "drover_stages_total{pipeline=\"release\",outcome=\"failed\"} 1");
	assert_line(text, "drover_runs_total{pipeline=\"pr\",outcome=\"failed\"} 1");
	assert_line(text, "drover_stage_duration_seconds_count{pipeline=\"pr\"} 2");
	assert_line(text, "drover_stage_duration_seconds_bucket{pipeline=\"pr\",le=\"0.1\"} 2");
	assert_line(text, "drover_stage_duration_seconds_bucket{pipeline=\"pr\",le=\"3600\"} 2");
	free(text);
	metrics_fini(&m);
}

/* A batch counts once committed; a rolled-back one not at all; foreign values are "other". */
static void test_metrics_events_staged(void **state)
{
	(void)state;
	struct metrics m = {0};
	metrics_init(&m);
	json_t *push = json_pack("{s:s,s:s}", "source", "github", "kind", "push");
	json_t *odd = json_pack("{s:s,s:s}", "source", "evil\"source{x}", "kind", "made-up");
	metrics_event_seen(&m, push, "accepted");
	metrics_event_seen(&m, push, "accepted");
	metrics_event_seen(&m, odd, "unmatched");
	metrics_event_seen(&m, NULL, "too_large");
	metrics_event_seen(&m, push, "no-such-outcome");
	char *text = metrics_render(&m);
	assert_line(text,
		    "drover_events_total{source=\"github\",kind=\"push\",outcome=\"accepted\"} "
		    "0");
	free(text);
	metrics_events_settle(&m, true);
	metrics_event_seen(&m, push, "accepted");
	metrics_event_seen(&m, NULL, "malformed");
	metrics_events_settle(&m, false); /* rolled back: redelivered later */
	metrics_event_seen(&m, push, "duplicate");
	metrics_events_settle(&m, true);
	text = metrics_render(&m);
	assert_line(text,
		    "drover_events_total{source=\"github\",kind=\"push\",outcome=\"accepted\"} "
		    "2");
	assert_line(text,
		    "drover_events_total{source=\"other\",kind=\"other\",outcome=\"unmatched\"} "
		    "1");
	assert_line(text, "drover_events_total{source=\"other\",kind=\"other\",outcome="
			  "\"dead_lettered\"} 1");
	assert_line(text,
		    "drover_events_total{source=\"github\",kind=\"push\",outcome=\"other\"} 1");
	assert_line(text,
		    "drover_events_total{source=\"github\",kind=\"push\",outcome=\"duplicate\"} "
		    "1");
	assert_line(text, "drover_dead_letters_total{reason=\"too_large\"} 1");
	assert_line(text, "drover_dead_letters_total{reason=\"malformed\"} 0");
	assert_null(strstr(text, "evil"));
	free(text);
	json_decref(push);
	json_decref(odd);
	metrics_fini(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_metrics_plain_counters_keep_their_names),
	    cmocka_unit_test(test_metrics_escaping),
	    cmocka_unit_test(test_metrics_histogram),
	    cmocka_unit_test(test_metrics_cardinality_cap),
	    cmocka_unit_test(test_metrics_registration),
	    cmocka_unit_test(test_metrics_families_grouped),
	    cmocka_unit_test(test_metrics_events_staged),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
