/* A plugin that claims ABI 99: the host must refuse it. */
#include <drover/plugin.h>
static int start(void *s, struct drover_stage *st)
{
	(void)s, (void)st;
	return 0;
}
static const struct drover_plugin p = {.abi = 99,
				       .size = sizeof(struct drover_plugin),
				       .signature = DROVER_PLUGIN_SIGNATURE,
				       .name = "bad_abi",
				       .start = start};
const struct drover_plugin *drover_plugin_entry(void)
{
	return &p;
}
