/* A plugin built for another data model: the host must refuse it. */
#include <drover/plugin.h>
static int start(void *s, struct drover_stage *st)
{
	(void)s, (void)st;
	return 0;
}
static const struct drover_plugin p = {.abi = DROVER_PLUGIN_ABI,
				       .size = sizeof(struct drover_plugin),
				       .signature = "drover-abi1/ptr4/long4/size4",
				       .name = "bad_signature",
				       .start = start};
const struct drover_plugin *drover_plugin_entry(void)
{
	return &p;
}
