/*
 * plugin_host: loads plugins (dlopen), checks their ABI, validates `with:`
 * against what they declare, and keeps them for the agent's lifetime. A bad
 * plugin is refused with one line and the agent goes on without it.
 */
#ifndef DROVER_PLUGIN_HOST_H
#define DROVER_PLUGIN_HOST_H

#include <drover/plugin.h>
#include <stdbool.h>
#include <stddef.h>

struct plugin_host;

struct loaded_plugin {
	char *name; /* file name without .so; must equal the descriptor's name */
	char *path;
	void *dl;
	const struct drover_plugin *desc;
	void *state;	   /* from desc->init */
	bool wants_notify; /* has notify, and desc->wants_notify (if any) said yes after init */
};

/* services is borrowed and must outlive the host. */
struct plugin_host *plugin_host_new(const struct drover_host *services);
/* configs (plugin name → JSON object, borrowed, must outlive the host):
 * each plugin's init gets its entry, or NULL. Set before loading. */
void plugin_host_set_config(struct plugin_host *h, const json_t *configs);
/* Calls every plugin's fini, then dlcloses. */
void plugin_host_free(struct plugin_host *h);

/* Loads one .so; 0, or -1 with the reason in err (nothing kept). */
int plugin_host_load(struct plugin_host *h, const char *path, char *err, size_t err_len);
/* Loads every *.so in dir; returns how many were refused (each logged), or -1
 * when the directory cannot be read. */
int plugin_host_load_dir(struct plugin_host *h, const char *dir);

const struct loaded_plugin *plugin_host_find(const struct plugin_host *h, const char *name);
/* Hands a run or stage event (a CloudEvent carrying a CDEvent) to every
 * plugin that wants notify(). */
void plugin_host_notify(const struct plugin_host *h, const json_t *run_event);
/* Whether any loaded plugin wants notify() (report skips building its input if not). */
bool plugin_host_has_notify(const struct plugin_host *h);
/* The agent stops: calls each plugin's drain, then drained(arg) once every
 * one of them called flushed (at once when none has drain). */
void plugin_host_drain(struct plugin_host *h, void (*drained)(void *arg), void *arg);

/* For struct plugin_catalog: arg is the plugin_host. */
bool plugin_host_has(void *arg, const char *name);

/* Checks `with` against the plugin's declared params (unknown key, missing
 * required key, wrong type). 0, or -1 with the first problem in err. */
int plugin_check_with(const struct drover_plugin *desc, const json_t *with, char *err,
		      size_t err_len);

#endif
