/* A descriptor that says it is smaller than ABI 1's: the host must refuse it. */
#include <drover/plugin.h>
static int start(void *s, struct drover_stage *st)
{
	(void)s, (void)st;
	return 0;
}
static const struct drover_plugin p = {.abi = DROVER_PLUGIN_ABI,
				       .size = 16,
				       .signature = DROVER_PLUGIN_SIGNATURE,
				       .name = "bad_small",
				       .start = start};
const struct drover_plugin *drover_plugin_entry(void)
{
	return &p;
}
