/*
 * plugin_host: dlopen, ABI checks, `with:` validation, and ownership of
 * every loaded plugin. Never runs stages; never unloads a plugin in use.
 */
#include "plugin_host.h"

#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

struct plugin_host {
	const struct drover_host *services;
	const json_t *configs; /* plugin_config, borrowed; may be NULL */
	struct loaded_plugin *items;
	size_t n;
	size_t n_draining; /* plugin_host_drain: flushed not called yet */
	void (*drained)(void *arg);
	void *drained_arg;
};

/* The first descriptor (fields up to fini): the least a plugin may hand. */
#define PLUGIN_DESC_MIN_SIZE offsetof(struct drover_plugin, wants_notify)
/* Whether the descriptor d (checked) has field. */
#define PLUGIN_DESC_HAS(d, field) ((d)->size > offsetof(struct drover_plugin, field))

struct plugin_host *plugin_host_new(const struct drover_host *services)
{
	struct plugin_host *h = xcalloc(1, sizeof *h);
	h->services = services;
	return h;
}

void plugin_host_set_config(struct plugin_host *h, const json_t *configs)
{
	h->configs = configs;
}

void plugin_host_free(struct plugin_host *h)
{
	if (h == NULL)
		return;
	for (size_t i = 0; i < h->n; i++) {
		struct loaded_plugin *p = &h->items[i];
		if (p->desc->fini != NULL)
			p->desc->fini(p->state);
		dlclose(p->dl);
		free(p->name);
		free(p->path);
	}
	free(h->items);
	free(h);
}

/* The checks every descriptor must pass before any of its pointers is used. */
static int plugin_check_descriptor(const struct drover_plugin *d, const char *expected_name,
				   char *err, size_t err_len)
{
	if (d == NULL) {
		snprintf(err, err_len, "drover_plugin_entry() returned NULL");
		return -1;
	}
	if (d->abi != DROVER_PLUGIN_ABI) {
		snprintf(err, err_len, "ABI version %u, this agent speaks %u", d->abi,
			 DROVER_PLUGIN_ABI);
		return -1;
	}
	if (d->size < PLUGIN_DESC_MIN_SIZE) {
		snprintf(err, err_len, "descriptor is %zu bytes, at least %zu needed", d->size,
			 PLUGIN_DESC_MIN_SIZE);
		return -1;
	}
	if (d->signature == NULL || strcmp(d->signature, DROVER_PLUGIN_SIGNATURE) != 0) {
		snprintf(err, err_len, "built for '%s', this agent is '%s'",
			 d->signature != NULL ? d->signature : "(none)", DROVER_PLUGIN_SIGNATURE);
		return -1;
	}
	if (d->name == NULL || strcmp(d->name, expected_name) != 0) {
		snprintf(err, err_len, "calls itself '%s' but the file is %s.so",
			 d->name != NULL ? d->name : "(none)", expected_name);
		return -1;
	}
	if (d->start == NULL) {
		snprintf(err, err_len, "has no start function");
		return -1;
	}
	return 0;
}

static char *plugin_name_from_path(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base != NULL ? base + 1 : path;
	size_t len = strlen(base);
	if (len > 3 && strcmp(base + len - 3, ".so") == 0)
		len -= 3;
	return xstrndup(base, len);
}

int plugin_host_load(struct plugin_host *h, const char *path, char *err, size_t err_len)
{
	char *name = plugin_name_from_path(path);
	if (plugin_host_find(h, name) != NULL) {
		snprintf(err, err_len, "a plugin named '%s' is already loaded", name);
		free(name);
		return -1;
	}
	void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (dl == NULL) {
		snprintf(err, err_len, "dlopen failed: %s", dlerror());
		free(name);
		return -1;
	}
	/* A function pointer through dlsym: POSIX guarantees this conversion. */
	drover_plugin_entry_fn entry;
	*(void **)&entry = dlsym(dl, "drover_plugin_entry");
	if (entry == NULL) {
		snprintf(err, err_len, "no drover_plugin_entry function");
		goto fail;
	}
	const struct drover_plugin *desc = entry();
	if (plugin_check_descriptor(desc, name, err, err_len) != 0)
		goto fail;
	void *state = NULL;
	const json_t *config = json_object_get(h->configs, name);
	if (desc->init != NULL && desc->init(h->services, config, &state) != 0) {
		snprintf(err, err_len, "init failed");
		goto fail;
	}
	bool wants_notify = desc->notify != NULL;
	if (wants_notify && PLUGIN_DESC_HAS(desc, wants_notify) && desc->wants_notify != NULL)
		wants_notify = desc->wants_notify(state);
	h->items = xrealloc(h->items, (h->n + 1) * sizeof *h->items);
	h->items[h->n++] = (struct loaded_plugin){.name = name,
						  .path = xstrdup(path),
						  .dl = dl,
						  .desc = desc,
						  .state = state,
						  .wants_notify = wants_notify};
	return 0;
fail:
	dlclose(dl);
	free(name);
	return -1;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int plugin_host_load_dir(struct plugin_host *h, const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL) {
		log_error("plugins: cannot read directory %s", dir);
		return -1;
	}
	char **paths = NULL;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		if (len > 3 && strcmp(de->d_name + len - 3, ".so") == 0) {
			paths = xrealloc(paths, (n + 1) * sizeof *paths);
			paths[n++] = xasprintf("%s/%s", dir, de->d_name);
		}
	}
	closedir(d);
	qsort(paths, n, sizeof *paths, cmp_str);
	int refused = 0;
	for (size_t i = 0; i < n; i++) {
		char err[512];
		if (plugin_host_load(h, paths[i], err, sizeof err) != 0) {
			log_error("plugins: refusing %s: %s", paths[i], err);
			refused++;
		} else {
			const struct loaded_plugin *p = &h->items[h->n - 1];
			log_info("plugins: loaded %s %s from %s", p->name,
				 p->desc->version != NULL ? p->desc->version : "", paths[i]);
		}
		free(paths[i]);
	}
	free(paths);
	const char *key;
	const json_t *value;
	json_object_foreach((json_t *)h->configs, key, value)
	{
		if (plugin_host_find(h, key) == NULL)
			log_warn("plugins: plugin_config names '%s', which is not loaded", key);
	}
	return refused;
}

const struct loaded_plugin *plugin_host_find(const struct plugin_host *h, const char *name)
{
	for (size_t i = 0; i < h->n; i++)
		if (strcmp(h->items[i].name, name) == 0)
			return &h->items[i];
	return NULL;
}

bool plugin_host_has(void *arg, const char *name)
{
	return plugin_host_find(arg, name) != NULL;
}

static bool param_type_ok(enum drover_param_type type, const json_t *v)
{
	switch (type) {
	case DROVER_PARAM_STRING:
		return json_is_string(v);
	case DROVER_PARAM_INTEGER:
		return json_is_integer(v);
	case DROVER_PARAM_BOOLEAN:
		return json_is_boolean(v);
	case DROVER_PARAM_OBJECT:
		return json_is_object(v);
	case DROVER_PARAM_ARRAY:
		return json_is_array(v);
	case DROVER_PARAM_ANY:
		return true;
	}
	return false;
}

static const char *param_type_name(enum drover_param_type type)
{
	static const char *const names[] = {"a string",	 "an integer", "a boolean",
					    "a mapping", "a list",     "anything"};
	return (unsigned)type < ARRAY_LEN(names) ? names[type] : "?";
}

int plugin_check_with(const struct drover_plugin *desc, const json_t *with, char *err,
		      size_t err_len)
{
	if (desc->params == NULL)
		return 0;
	const char *key;
	json_t *value;
	json_object_foreach((json_t *)with, key, value)
	{
		const struct drover_param *p = desc->params;
		while (p->name != NULL && strcmp(p->name, key) != 0)
			p++;
		if (p->name == NULL) {
			snprintf(err, err_len, "plugin '%s' takes no parameter '%s'", desc->name,
				 key);
			return -1;
		}
		if (!param_type_ok(p->type, value)) {
			snprintf(err, err_len, "plugin '%s': '%s' must be %s", desc->name, key,
				 param_type_name(p->type));
			return -1;
		}
	}
	for (const struct drover_param *p = desc->params; p->name != NULL; p++) {
		if (p->is_required && json_object_get(with, p->name) == NULL) {
			snprintf(err, err_len, "plugin '%s' needs parameter '%s'", desc->name,
				 p->name);
			return -1;
		}
	}
	return 0;
}

void plugin_host_notify(const struct plugin_host *h, const json_t *run_event)
{
	for (size_t i = 0; i < h->n; i++)
		if (h->items[i].wants_notify)
			h->items[i].desc->notify(h->items[i].state, run_event);
}

bool plugin_host_has_notify(const struct plugin_host *h)
{
	for (size_t i = 0; i < h->n; i++)
		if (h->items[i].wants_notify)
			return true;
	return false;
}

static void plugin_host_on_flushed(void *arg)
{
	struct plugin_host *h = arg;
	if (h->n_draining > 0 && --h->n_draining == 0)
		h->drained(h->drained_arg);
}

/* Counts one more pending than there are plugins until every drain was
 * called, so a plugin that calls flushed at once does not end it early. */
void plugin_host_drain(struct plugin_host *h, void (*drained)(void *arg), void *arg)
{
	h->drained = drained;
	h->drained_arg = arg;
	h->n_draining = 1;
	for (size_t i = 0; i < h->n; i++) {
		const struct drover_plugin *d = h->items[i].desc;
		if (PLUGIN_DESC_HAS(d, drain) && d->drain != NULL) {
			h->n_draining++;
			d->drain(h->items[i].state, plugin_host_on_flushed, h);
		}
	}
	plugin_host_on_flushed(h);
}
