/*
 * drover plugin ABI, version 1. The only header a plugin includes.
 *
 * A plugin is one shared object in the agent's plugins directory, loaded with
 * dlopen(RTLD_NOW | RTLD_LOCAL). It exports exactly one function:
 *
 *     const struct drover_plugin *drover_plugin_entry(void);
 *
 * The plugin links against nothing of the agent: every service it may use
 * comes through the struct drover_host table handed to init(). Structures
 * here only ever grow at the end; `size` fields tell each side how much of
 * the other's struct it may read.
 *
 * Threading and blocking: every callback runs on the agent's one event-loop
 * thread and must return promptly. Work that waits is started through the
 * host (spawn, timer) and finished in its callback; a stage ends only when
 * the plugin calls host->done(), exactly once, whatever happened.
 */
#ifndef DROVER_PLUGIN_H
#define DROVER_PLUGIN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DROVER_PLUGIN_ABI 1

#define DROVER_PLUGIN_STR_(x) #x
#define DROVER_PLUGIN_STR(x) DROVER_PLUGIN_STR_(x)
/* Build signature: a plugin built for another data model is refused. */
#define DROVER_PLUGIN_SIGNATURE                                                                    \
	"drover-abi1/ptr" DROVER_PLUGIN_STR(__SIZEOF_POINTER__) "/long" DROVER_PLUGIN_STR(         \
	    __SIZEOF_LONG__) "/size" DROVER_PLUGIN_STR(__SIZEOF_SIZE_T__)

enum drover_result {
	DROVER_SUCCEEDED = 0,
	DROVER_FAILED = 1,
	DROVER_ERROR = 2, /* infrastructure, not the code under test */
	DROVER_CANCELLED = 3,
	DROVER_TIMED_OUT = 4,
};

enum drover_param_type {
	DROVER_PARAM_STRING,
	DROVER_PARAM_INTEGER,
	DROVER_PARAM_BOOLEAN,
	DROVER_PARAM_OBJECT,
	DROVER_PARAM_ARRAY,
	DROVER_PARAM_ANY,
};

/* One declared `with:` key; a plugin's list ends with name == NULL. */
struct drover_param {
	const char *name;
	enum drover_param_type type;
	bool is_required;
	const char *description;
};

/* A stage as the plugin sees it: opaque, owned by the host. */
struct drover_stage;

struct drover_spawn {
	const char *const *argv; /* argv[0] is looked up in PATH */
	const char *const *env;	 /* extra "KEY=value" on top of the stage's DROVER_* env, or NULL */
	const char *cwd;	 /* NULL: the stage's workspace */
	/* Called once, after the process was reaped and its output drained. */
	void (*on_exit)(void *arg, struct drover_stage *stage, int exit_code, int term_signal);
	void *arg;
};

/*
 * An HTTP request (host->http_request). Every pointer is borrowed for the
 * duration of the call only: the host copies what it keeps.
 */
struct drover_http_request {
	const char *method;		/* "GET", "POST", ... */
	const char *url;		/* http:// or https:// */
	const char *const *headers;	/* "Name: value" lines, NULL-terminated, or NULL */
	const char *body;		/* may be NULL */
	size_t body_len;		/* bytes of body */
	int64_t timeout_ms;		/* whole request; <= 0: 30 s */
	size_t max_response_body_bytes; /* the rest is dropped (is_truncated); 0: 64 KiB */
};

/* A response header; names are lower case. */
struct drover_http_header {
	const char *name;
	const char *value;
};

/*
 * How a request ended, valid only during the completion callback. status is
 * the HTTP status of the final response, or 0 when there was none: error
 * then says why (connection refused, timeout, cancelled because the agent
 * stops, ...).
 */
struct drover_http_response {
	int status;
	const char *error; /* NULL when status > 0 */
	bool is_timeout;   /* the request hit timeout_ms */
	bool is_cancelled; /* the agent is stopping: do not start a retry */
	const char *body;  /* NUL-terminated, at most max_response_body_bytes */
	size_t body_len;
	bool is_truncated;
	const struct drover_http_header *headers; /* of the final response */
	size_t n_headers;
};

typedef void (*drover_http_done_fn)(void *arg, const struct drover_http_response *res);

/* A plugin-level timer (host->timer_start); opaque, owned by the host. */
struct drover_timer;

/* Levels of host->plugin_log. */
enum drover_log_level {
	DROVER_LOG_DEBUG = 0,
	DROVER_LOG_INFO = 1,
	DROVER_LOG_WARN = 2,
	DROVER_LOG_ERROR = 3,
};

/* A metric family of a plugin (host->metric_new); opaque, owned by the host. */
struct drover_metric;

enum drover_metric_type {
	DROVER_METRIC_COUNTER,
	DROVER_METRIC_GAUGE,
};

struct drover_host {
	unsigned abi;
	size_t size; /* sizeof(struct drover_host) in the agent */

	const json_t *(*stage_with)(struct drover_stage *stage); /* the stage's `with:` object */
	const char *(*stage_param)(struct drover_stage *stage,
				   const char *name);		  /* string or NULL */
	const json_t *(*stage_event)(struct drover_stage *stage); /* the canonical event */
	const char *(*stage_name)(struct drover_stage *stage);
	const char *(*stage_workspace)(struct drover_stage *stage);
	int (*stage_attempt)(struct drover_stage *stage);

	/* Per-stage state of the plugin's own; the host never looks inside. */
	void *(*stage_get_data)(struct drover_stage *stage);
	void (*stage_set_data)(struct drover_stage *stage, void *data);

	/* A line into the stage's log (secrets masked). */
	void (*log)(struct drover_stage *stage, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
	/* Starts a process in its own process group; stdout and stderr go to the
	 * stage log. Timeouts and cancel kill it. 0, or -1 (logged). */
	int (*spawn)(struct drover_stage *stage, const struct drover_spawn *spec);
	/* One-shot timer; cleared automatically when the stage ends. */
	int (*set_timer)(struct drover_stage *stage, int64_t delay_ms,
			 void (*cb)(void *arg, struct drover_stage *stage), void *arg);
	/* Survives an agent restart: resume() gets it back. */
	int (*save_resume_token)(struct drover_stage *stage, const char *token);
	/* key=value that later stages read as DROVER_OUTPUT_<STAGE>_<KEY>. */
	int (*set_output)(struct drover_stage *stage, const char *key, const char *value);
	/* Ends the stage. Exactly once; summary may be NULL. */
	void (*done)(struct drover_stage *stage, enum drover_result result, const char *summary);

	/*
	 * ---- Appended after the first release. A plugin must check that
	 * host->size > offsetof(struct drover_host, <field>) before it uses any
	 * field from here on: an older agent hands a shorter table. ----
	 *
	 * Services that are not bound to a stage (a notify plugin has none).
	 * The table is per agent: ctx is that agent's context, opaque to the
	 * plugin, and the first argument of each service below, so the agent
	 * needs no globals and two agents in one process would not mix. A
	 * plugin keeps the host pointer it got in init; it stays valid until
	 * fini returns.
	 */
	void *ctx;
	/*
	 * Starts an HTTP request on the agent's event loop; never blocks and
	 * never calls done before returning. done runs exactly once: on a
	 * response, a transport error, a timeout, or when the agent stops
	 * (res->is_cancelled, before the plugin's fini). 0, or -1 (logged;
	 * done is then never called).
	 */
	int (*http_request)(void *ctx, const struct drover_http_request *req,
			    drover_http_done_fn done, void *arg);
	/* One-shot timer after delay_ms; NULL when it cannot be set. The handle
	 * is valid until cb runs or timer_cancel; timers still pending at fini
	 * are freed by the host without running. */
	struct drover_timer *(*timer_start)(void *ctx, int64_t delay_ms, void (*cb)(void *arg),
					    void *arg);
	/* Cancels a pending timer (cb never runs); NULL is ignored. */
	void (*timer_cancel)(void *ctx, struct drover_timer *timer);
	/* A line into the agent's log (not a stage log), prefixed by nothing:
	 * say which plugin speaks. Never pass a secret. */
	void (*plugin_log)(void *ctx, enum drover_log_level level, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));

	/*
	 * ---- Appended in the second release (check host->size as above). ----
	 *
	 * Metrics on the agent's GET /metrics. metric_new registers a family
	 * (normally in init) named drover_plugin_<plugin>_<name>: the host adds
	 * the prefix, so no plugin clobbers the agent's own families. plugin is
	 * the plugin's own name, [a-z0-9_] only; name is [a-zA-Z0-9_:]; labels
	 * is a NULL-terminated list of label names, or NULL. Label values must
	 * come from fixed lists: a family holds at most 100 series, past which
	 * new label sets count under "other". NULL when refused (logged);
	 * metric_add and metric_set accept NULL and then do nothing. A family
	 * registered again with the same type and labels is the same one. The
	 * handle is valid until fini returns.
	 */
	struct drover_metric *(*metric_new)(void *ctx, const char *plugin,
					    enum drover_metric_type type, const char *name,
					    const char *help, const char *const *labels);
	/* values: one per label name (NULL when there are none). A counter
	 * only goes up (a negative delta is ignored). */
	void (*metric_add)(void *ctx, struct drover_metric *metric, const char *const *values,
			   double delta);
	void (*metric_set)(void *ctx, struct drover_metric *metric, const char *const *values,
			   double value); /* gauges only */
};

struct drover_plugin {
	unsigned abi;	       /* DROVER_PLUGIN_ABI */
	size_t size;	       /* sizeof(struct drover_plugin) the plugin was built with */
	const char *signature; /* DROVER_PLUGIN_SIGNATURE */
	const char *name, *version, *description;
	const struct drover_param *params; /* may be NULL: any `with:` is accepted */

	/* config: the plugin's plugin_config entry of agent.yaml, or NULL; borrowed
	 * (copy what is kept). host stays valid until fini returns. */
	int (*init)(const struct drover_host *host, const json_t *config, void **state);
	/* Begins a stage; 0, or -1 when it could not start (then done() is not called). */
	int (*start)(void *state, struct drover_stage *stage);
	/* After an agent restart, for a stage that saved a resume token. May be NULL:
	 * the stage is then retried or failed by its retry policy. */
	int (*resume)(void *state, struct drover_stage *stage, const char *token);
	/* Asks the stage to stop; it still ends through done(). May be NULL. */
	void (*cancel)(void *state, struct drover_stage *stage);
	/* Optional, for reporters: every run and stage transition. */
	void (*notify)(void *state, const json_t *run_event);
	void (*fini)(void *state);

	/*
	 * ---- Appended in the second release. The host reads a field from
	 * here on only when size > offsetof(struct drover_plugin, <field>):
	 * a plugin built before has a shorter descriptor. ----
	 *
	 * Optional, for reporters: asked once after init whether this instance
	 * wants run events at all (e.g. false when nothing is configured to
	 * report to). false: notify is never called, and when no plugin wants
	 * them the agent does not build them. NULL: notify decides alone.
	 */
	bool (*wants_notify)(void *state);
	/*
	 * Optional: the agent stops and its stages are over (no notify
	 * follows). The plugin finishes pending work within a bound of its own
	 * (it must not delay the stop beyond it), then calls flushed(arg)
	 * exactly once, possibly before drain returns. The agent leaves its
	 * loop once every plugin with drain called flushed, or when the
	 * agent's stop_grace is over, whichever comes first (a second signal
	 * leaves at once); fini follows. NULL: nothing to finish.
	 */
	void (*drain)(void *state, void (*flushed)(void *arg), void *arg);
};

#define DROVER_PLUGIN_INIT                                                                         \
	.abi = DROVER_PLUGIN_ABI, .size = sizeof(struct drover_plugin),                            \
	.signature = DROVER_PLUGIN_SIGNATURE

typedef const struct drover_plugin *(*drover_plugin_entry_fn)(void);

#endif
