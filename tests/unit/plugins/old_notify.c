/*
 * A notify plugin built before wants_notify and drain were appended: its
 * descriptor's size ends at fini. The fields past it hold what would stop
 * it from being notified and would abort at stop, to prove that the host
 * never reads beyond size (test_plugin_host).
 */
#include <drover/plugin.h>
#include <stdlib.h>

static int n_notified;

static int init(const struct drover_host *host, const json_t *config, void **state)
{
	(void)host, (void)config;
	*state = &n_notified;
	return 0;
}

static int start(void *s, struct drover_stage *st)
{
	(void)s, (void)st;
	return -1;
}

static void notify(void *state, const json_t *ev)
{
	(void)ev;
	++*(int *)state;
}

static bool wants_nothing(void *state)
{
	(void)state;
	return false;
}

static void drain_aborts(void *state, void (*flushed)(void *), void *arg)
{
	(void)state, (void)flushed, (void)arg;
	abort();
}

static const struct drover_plugin p = {.abi = DROVER_PLUGIN_ABI,
				       .size = offsetof(struct drover_plugin, wants_notify),
				       .signature = DROVER_PLUGIN_SIGNATURE,
				       .name = "old_notify",
				       .init = init,
				       .start = start,
				       .notify = notify,
				       .wants_notify = wants_nothing,
				       .drain = drain_aborts};

const struct drover_plugin *drover_plugin_entry(void)
{
	return &p;
}
