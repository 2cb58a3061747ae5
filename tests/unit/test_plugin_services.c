/*
 * Tests for plugin_services' metric services: a plugin's family lands in the
 * agent's registry under drover_plugin_<plugin>_, so it cannot clobber the
 * agent's own families; a plugin name that would break the prefix, or an
 * invalid metric name, is refused (NULL, which every call accepts); a
 * family's series are bounded whatever label values the plugin passes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>

#include "agent.h"
#include "metrics.h"
#include "plugin_services.h"
#include "util.h"

struct fixture {
	struct agent agent;
	struct plugin_services *ps;
	const struct drover_host *host;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	metrics_init(&f->agent.metrics);
	f->agent.base = event_base_new();
	f->ps = plugin_services_new(&f->agent);
	f->host = plugin_services_table(f->ps);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	plugin_services_free(f->ps);
	event_base_free(f->agent.base);
	metrics_fini(&f->agent.metrics);
	free(f);
	return 0;
}

/* How many lines of text start with prefix. */
static size_t lines_starting(const char *text, const char *prefix)
{
	size_t n = 0, len = strlen(prefix);
	for (const char *p = text; p != NULL && *p != '\0';) {
		if (strncmp(p, prefix, len) == 0)
			n++;
		p = strchr(p, '\n');
		p = p != NULL ? p + 1 : NULL;
	}
	return n;
}

static void test_families_are_prefixed(void **state)
{
	struct fixture *f = *state;
	const struct drover_host *h = f->host;
	assert_true(h->size > offsetof(struct drover_host, metric_set));
	struct drover_metric *d =
	    h->metric_new(h->ctx, "status", DROVER_METRIC_COUNTER, "deliveries_total", "attempts",
			  (const char *[]){"host", "outcome", NULL});
	assert_non_null(d);
	h->metric_add(h->ctx, d, (const char *[]){"github", "delivered"}, 2);
	h->metric_add(h->ctx, d, (const char *[]){"github", "delivered"}, -5); /* ignored */
	struct drover_metric *depth =
	    h->metric_new(h->ctx, "status", DROVER_METRIC_GAUGE, "queue_depth", "waiting", NULL);
	h->metric_set(h->ctx, depth, NULL, 7);
	/* The same name again is the same family. */
	assert_ptr_equal(h->metric_new(h->ctx, "status", DROVER_METRIC_COUNTER, "deliveries_total",
				       "attempts", (const char *[]){"host", "outcome", NULL}),
			 d);
	/* A name of the agent's own stays the plugin's. */
	metrics_run_finished(&f->agent.metrics, "ci", STATUS_SUCCEEDED);
	struct drover_metric *runs =
	    h->metric_new(h->ctx, "x", DROVER_METRIC_GAUGE, "runs_total", "mine", NULL);
	h->metric_set(h->ctx, runs, NULL, 99);
	char *text = metrics_render(&f->agent.metrics);
	assert_non_null(strstr(
	    text,
	    "\ndrover_plugin_status_deliveries_total{host=\"github\",outcome=\"delivered\"} 2\n"));
	assert_non_null(strstr(text, "\n# TYPE drover_plugin_status_queue_depth gauge\n"));
	assert_non_null(strstr(text, "\ndrover_plugin_status_queue_depth 7\n"));
	assert_non_null(strstr(text, "\ndrover_plugin_x_runs_total 99\n"));
	assert_non_null(
	    strstr(text, "\ndrover_runs_total{pipeline=\"ci\",outcome=\"succeeded\"} 1\n"));
	assert_null(strstr(text, "\ndrover_runs_total 99\n"));
	free(text);
}

static void test_bad_names_refused(void **state)
{
	struct fixture *f = *state;
	const struct drover_host *h = f->host;
	/* Names that would break out of the prefix, or are no metric names. */
	const char *plugins[] = {"", "Status", "st-atus", "a}b", NULL};
	for (size_t i = 0; i < 5; i++)
		assert_null(
		    h->metric_new(h->ctx, plugins[i], DROVER_METRIC_COUNTER, "n_total", "h", NULL));
	assert_null(h->metric_new(h->ctx, "status", DROVER_METRIC_COUNTER, "bad name", "h", NULL));
	assert_null(h->metric_new(h->ctx, "status", DROVER_METRIC_COUNTER, NULL, "h", NULL));
	assert_null(h->metric_new(h->ctx, "status", (enum drover_metric_type)7, "n", "h", NULL));
	/* NULL handles are accepted and do nothing. */
	h->metric_add(h->ctx, NULL, NULL, 1);
	h->metric_set(h->ctx, NULL, NULL, 1);
	char *text = metrics_render(&f->agent.metrics);
	assert_null(strstr(text, "drover_plugin_"));
	free(text);
}

static void test_series_bounded(void **state)
{
	struct fixture *f = *state;
	const struct drover_host *h = f->host;
	struct drover_metric *m = h->metric_new(h->ctx, "p", DROVER_METRIC_COUNTER, "seen_total",
						"h", (const char *[]){"v", NULL});
	for (int i = 0; i < 300; i++) {
		char v[16];
		snprintf(v, sizeof v, "v%d", i);
		h->metric_add(h->ctx, m, (const char *[]){v}, 1);
	}
	char *text = metrics_render(&f->agent.metrics);
	assert_true(lines_starting(text, "drover_plugin_p_seen_total{") <= 100);
	assert_non_null(strstr(text, "drover_plugin_p_seen_total{v=\"other\"}"));
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_families_are_prefixed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_names_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_series_bounded, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
