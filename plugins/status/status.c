/*
 * status: a notify plugin that reports every run and stage to the git host
 * its event came from — GitHub commit statuses, GitLab commit statuses,
 * Azure DevOps pull-request (or commit) statuses. Statuses wait in a bounded
 * queue (queue.h) and go out through the host's asynchronous HTTP client,
 * with back-off on transport errors, 5xx and throttling; notify never
 * blocks and never waits for a git host. Tokens are read once at init and
 * only ever put into request headers, never into a log line. Counters go
 * to the agent's /metrics when the host offers metrics; when the agent
 * stops, the queue gets stop_flush_ms to empty before fini drops the rest.
 */
#include <drover/plugin.h>

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "queue.h"
#include "response.h"

#define STATUS_DESCRIPTION_MAX 140

enum status_host {
	HOST_GITHUB,
	HOST_GITLAB,
	HOST_AZURE,
	HOST_COUNT,
};

static const char *const host_names[HOST_COUNT] = {"github", "gitlab", "azure-devops"};

/* One git host: where, with what token, and its back-off state. */
struct status_target {
	bool is_enabled;
	char *api_url; /* without a trailing '/'; Azure: the organization URL, or NULL */
	char *token;   /* owned; never logged */
	char *auth_header;
	int failures;	       /* consecutive retryable failures */
	int64_t not_before_ms; /* monotonic: nothing goes to this host before */
};

/* What the plugin counted since it started (README: "Commit status"). */
struct status_counters {
	uint64_t queued, delivered, retried, throttled, refused, lost_at_stop;
};

/* The plugin's families on the agent's /metrics; NULL without the service. */
struct status_metrics {
	struct drover_metric *queued;	  /* {host} */
	struct drover_metric *deliveries; /* {host, outcome} */
	struct drover_metric *discarded;  /* {reason}: superseded, dropped */
	struct drover_metric *depth;	  /* statuses in the queue (in flight included) */
};

struct status_state {
	const struct drover_host *host;
	struct status_target targets[HOST_COUNT];
	struct status_queue queue;
	struct status_counters counts;
	char *target_url; /* template with {run}, or NULL: the run's admin API URL */
	int max_in_flight, in_flight;
	int64_t timeout_ms, retry_initial_ms, retry_max_ms;
	struct drover_timer *pump_timer;
	int64_t pump_at_ms;
	unsigned seed;	  /* jitter */
	bool is_stopping; /* the agent cancels requests: start nothing more */
	struct status_metrics metrics;
	/* The agent stops (status_drain): flushed is called once the queue is
	 * empty, nothing can go before drain_deadline_ms, or drain_timer fires. */
	int64_t stop_flush_ms, drain_deadline_ms;
	void (*flushed)(void *arg);
	void *flushed_arg;
	struct drover_timer *drain_timer;
};

struct status_send {
	struct status_state *s;
	struct status_item *item;
};

static void status_pump(struct status_state *s);

#define say(s, level, ...) (s)->host->plugin_log((s)->host->ctx, level, __VA_ARGS__)

static void *xalloc(size_t n)
{
	void *p = calloc(1, n);
	if (p == NULL) {
		fputs("status: out of memory\n", stderr);
		abort();
	}
	return p;
}

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *p = NULL;
	int rc = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (rc < 0) {
		fputs("status: out of memory\n", stderr);
		abort();
	}
	return p;
}

static int64_t mono_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- configuration ---- */

static int64_t config_int(const json_t *config, const char *key, int64_t def, int64_t min)
{
	const json_t *v = json_object_get(config, key);
	if (!json_is_integer(v))
		return def;
	int64_t n = json_integer_value(v);
	return n < min ? min : n;
}

/* The first line of a file, without trailing white space; NULL if unreadable or empty. */
static char *token_read_file(const char *path)
{
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return NULL;
	char buf[4096];
	size_t len = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[len] = '\0';
	char *nl = strchr(buf, '\n');
	if (nl != NULL)
		*nl = '\0';
	len = strlen(buf);
	while (len > 0 && isspace((unsigned char)buf[len - 1]))
		buf[--len] = '\0';
	return len > 0 ? strdup(buf) : NULL;
}

static char *base64(const char *in)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t len = strlen(in);
	char *out = xalloc(4 * ((len + 2) / 3) + 1), *o = out;
	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned char)in[i] << 16;
		if (i + 1 < len)
			v |= (unsigned char)in[i + 1] << 8;
		if (i + 2 < len)
			v |= (unsigned char)in[i + 2];
		*o++ = tab[(v >> 18) & 63];
		*o++ = tab[(v >> 12) & 63];
		*o++ = i + 1 < len ? tab[(v >> 6) & 63] : '=';
		*o++ = i + 2 < len ? tab[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

/*
 * One host's section: api_url, and the token from token_file or the
 * environment variable token_env. 0 (also when the section is absent: the
 * host is then not reported to), or -1 after saying what is missing.
 */
static int target_configure(struct status_state *s, enum status_host h, const json_t *section,
			    const char *default_url)
{
	struct status_target *t = &s->targets[h];
	if (section == NULL)
		return 0;
	const char *name = host_names[h];
	if (!json_is_object(section)) {
		say(s, DROVER_LOG_ERROR, "status: plugin_config.status.%s must be a mapping", name);
		return -1;
	}
	const char *url = json_string_value(json_object_get(section, "api_url"));
	const char *file = json_string_value(json_object_get(section, "token_file"));
	const char *env = json_string_value(json_object_get(section, "token_env"));
	if (url == NULL)
		url = default_url;
	if (file != NULL) {
		t->token = token_read_file(file);
		if (t->token == NULL) {
			say(s, DROVER_LOG_ERROR,
			    "status: %s: token_file %s cannot be read or is empty", name, file);
			return -1;
		}
	} else if (env != NULL) {
		const char *v = getenv(env);
		if (v == NULL || *v == '\0') {
			say(s, DROVER_LOG_ERROR,
			    "status: %s: environment variable %s (token_env) is not set", name,
			    env);
			return -1;
		}
		t->token = strdup(v);
	} else {
		say(s, DROVER_LOG_ERROR, "status: %s: give token_file or token_env", name);
		return -1;
	}
	if (url != NULL) {
		t->api_url = strdup(url);
		size_t len = strlen(t->api_url);
		while (len > 0 && t->api_url[len - 1] == '/')
			t->api_url[--len] = '\0';
	}
	if (h == HOST_GITHUB) {
		t->auth_header = xprintf("Authorization: Bearer %s", t->token);
	} else if (h == HOST_GITLAB) {
		t->auth_header = xprintf("PRIVATE-TOKEN: %s", t->token);
	} else {
		char *user_pass = xprintf(":%s", t->token);
		char *b64 = base64(user_pass);
		t->auth_header = xprintf("Authorization: Basic %s", b64);
		free(user_pass);
		free(b64);
	}
	t->is_enabled = true;
	say(s, DROVER_LOG_INFO, "status: reporting to %s at %s", name,
	    t->api_url != NULL ? t->api_url : "(the organization of each event's clone URL)");
	return 0;
}

static void status_free(struct status_state *s)
{
	for (int h = 0; h < HOST_COUNT; h++) {
		struct status_target *t = &s->targets[h];
		free(t->api_url);
		if (t->token != NULL)
			memset(t->token, 0, strlen(t->token));
		free(t->token);
		if (t->auth_header != NULL)
			memset(t->auth_header, 0, strlen(t->auth_header));
		free(t->auth_header);
	}
	status_queue_clear(&s->queue);
	free(s->target_url);
	free(s);
}

/* Adds delta to a series of m, when the host offers metrics. */
static void metric_bump(struct status_state *s, struct drover_metric *m, const char *const *values,
			double delta)
{
	if (m != NULL)
		s->host->metric_add(s->host->ctx, m, values, delta);
}

/* The deliveries outcomes: 2xx; 5xx or no answer; 429 or a rate limit; any other 4xx. */
static const char *const outcome_names[] = {"delivered", "retried", "throttled", "refused"};

/* Registers the families (when the agent offers metrics) with a zero series
 * per configured host, so that they show before the first status. */
static void status_metrics_register(struct status_state *s)
{
	const struct drover_host *host = s->host;
	if (host->size < offsetof(struct drover_host, metric_set) + sizeof host->metric_set ||
	    host->metric_new == NULL || host->metric_add == NULL || host->metric_set == NULL)
		return;
	struct status_metrics *m = &s->metrics;
	m->queued =
	    host->metric_new(host->ctx, "status", DROVER_METRIC_COUNTER, "queued_total",
			     "statuses queued for a git host", (const char *[]){"host", NULL});
	m->deliveries = host->metric_new(
	    host->ctx, "status", DROVER_METRIC_COUNTER, "deliveries_total",
	    "delivery attempts by answer: delivered (2xx), retried (5xx, no answer), throttled "
	    "(429, rate limit), refused (other 4xx: dropped)",
	    (const char *[]){"host", "outcome", NULL});
	m->discarded = host->metric_new(
	    host->ctx, "status", DROVER_METRIC_COUNTER, "discarded_total",
	    "statuses never sent because the queue was full: superseded (by a newer status of "
	    "the same commit and context) or dropped",
	    (const char *[]){"reason", NULL});
	m->depth = host->metric_new(host->ctx, "status", DROVER_METRIC_GAUGE, "queue_depth",
				    "statuses waiting or in flight", NULL);
	for (int h = 0; h < HOST_COUNT; h++) {
		if (!s->targets[h].is_enabled)
			continue;
		metric_bump(s, m->queued, (const char *[]){host_names[h]}, 0);
		for (size_t i = 0; i < sizeof outcome_names / sizeof *outcome_names; i++)
			metric_bump(s, m->deliveries,
				    (const char *[]){host_names[h], outcome_names[i]}, 0);
	}
	metric_bump(s, m->discarded, (const char *[]){"superseded"}, 0);
	metric_bump(s, m->discarded, (const char *[]){"dropped"}, 0);
	if (m->depth != NULL)
		host->metric_set(host->ctx, m->depth, NULL, 0);
}

static int status_init(const struct drover_host *host, const json_t *config, void **state)
{
	if (host->size < offsetof(struct drover_host, plugin_log) + sizeof host->plugin_log ||
	    host->http_request == NULL || host->timer_start == NULL || host->timer_cancel == NULL ||
	    host->plugin_log == NULL) {
		/* An agent without these services: fine as long as nothing is asked. */
		if (config == NULL) {
			*state = NULL;
			return 0;
		}
		fputs("status: this agent offers plugins no HTTP client: cannot report\n", stderr);
		return -1;
	}
	struct status_state *s = xalloc(sizeof *s);
	s->host = host;
	*state = s;
	s->seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	status_queue_init(&s->queue, (size_t)config_int(config, "max_queue", 1000, 1));
	s->max_in_flight = (int)config_int(config, "max_in_flight", 4, 1);
	s->timeout_ms = config_int(config, "timeout_ms", 10000, 100);
	s->retry_initial_ms = config_int(config, "retry_initial_ms", 1000, 1);
	s->retry_max_ms = config_int(config, "retry_max_ms", 300000, 1);
	s->stop_flush_ms = config_int(config, "stop_flush_ms", 5000, 0);
	const char *tpl = json_string_value(json_object_get(config, "target_url"));
	s->target_url = tpl != NULL ? strdup(tpl) : NULL;
	if (config == NULL) {
		say(s, DROVER_LOG_DEBUG,
		    "status: no plugin_config.status: reporting to no git host");
		return 0;
	}
	if (target_configure(s, HOST_GITHUB, json_object_get(config, "github"),
			     "https://api.github.com") != 0 ||
	    target_configure(s, HOST_GITLAB, json_object_get(config, "gitlab"),
			     "https://gitlab.com") != 0 ||
	    target_configure(s, HOST_AZURE, json_object_get(config, "azure-devops"), NULL) != 0) {
		status_free(s);
		*state = NULL;
		return -1;
	}
	status_metrics_register(s);
	return 0;
}

/* Only with a git host to report to does the plugin want run events. */
static bool status_wants_notify(void *state)
{
	struct status_state *s = state;
	for (int h = 0; s != NULL && h < HOST_COUNT; h++)
		if (s->targets[h].is_enabled)
			return true;
	return false;
}

static void status_fini(void *state)
{
	struct status_state *s = state;
	if (s == NULL)
		return;
	s->host->timer_cancel(s->host->ctx, s->pump_timer);
	s->host->timer_cancel(s->host->ctx, s->drain_timer);
	s->counts.lost_at_stop += s->queue.n;
	if (s->counts.queued > 0 || s->queue.n > 0)
		say(s, s->queue.n > 0 ? DROVER_LOG_WARN : DROVER_LOG_INFO,
		    "status: stopping: %zu status(es) undelivered; delivered %llu, retried %llu, "
		    "throttled %llu, refused %llu, superseded %llu, dropped %llu",
		    s->queue.n, (unsigned long long)s->counts.delivered,
		    (unsigned long long)s->counts.retried, (unsigned long long)s->counts.throttled,
		    (unsigned long long)s->counts.refused, (unsigned long long)s->queue.superseded,
		    (unsigned long long)s->queue.dropped);
	status_free(s);
}

/* ---- from a run event to a request ---- */

/* Appends s percent-encoded as one URL path segment (slashes too when is_segment). */
static void url_add(char **url, const char *s, bool is_segment)
{
	size_t len = strlen(*url);
	char *out = xalloc(len + 3 * strlen(s) + 1);
	memcpy(out, *url, len);
	char *o = out + len;
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (isalnum(*p) || strchr("-._~", *p) != NULL || (!is_segment && *p == '/'))
			*o++ = (char)*p;
		else
			o += sprintf(o, "%%%02X", *p);
	}
	*o = '\0';
	free(*url);
	*url = out;
}

static void url_addf(char **url, const char *text)
{
	char *n = xprintf("%s%s", *url, text);
	free(*url);
	*url = n;
}

/* The organization URL of an Azure DevOps clone URL
 * (https://[user@]dev.azure.com/ORG/PROJECT/_git/REPO → https://dev.azure.com/ORG). */
static char *azure_org_url(const char *clone_url)
{
	if (clone_url == NULL)
		return NULL;
	const char *git = strstr(clone_url, "/_git/");
	const char *scheme = strstr(clone_url, "://");
	if (git == NULL || scheme == NULL || scheme > git)
		return NULL;
	const char *project = git;
	while (project > scheme + 3 && project[-1] != '/')
		project--;
	if (project <= scheme + 3)
		return NULL;
	const char *host = scheme + 3;
	const char *at = memchr(host, '@', (size_t)(project - host));
	if (at != NULL)
		host = at + 1;
	return xprintf("%.*s%.*s", (int)(scheme + 3 - clone_url), clone_url,
		       (int)(project - 1 - host), host);
}

/* The description: at most 140 bytes, cut at a UTF-8 character boundary. */
static char *description_cut(const char *text)
{
	size_t len = strlen(text);
	if (len <= STATUS_DESCRIPTION_MAX)
		return strdup(text);
	len = STATUS_DESCRIPTION_MAX - 3;
	while (len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80)
		len--;
	return xprintf("%.*s...", (int)len, text);
}

/* Replaces {run} in the template with the run id. */
static char *target_url_for(const struct status_state *s, const json_t *drover)
{
	const char *url = json_string_value(json_object_get(drover, "url"));
	if (s->target_url == NULL)
		return url != NULL ? strdup(url) : NULL;
	char run[32];
	snprintf(run, sizeof run, "%lld",
		 (long long)json_integer_value(json_object_get(drover, "run")));
	const char *at = strstr(s->target_url, "{run}");
	if (at == NULL)
		return strdup(s->target_url);
	return xprintf("%.*s%s%s", (int)(at - s->target_url), s->target_url, run, at + 5);
}

/*
 * The state each host calls the phase and outcome:
 * queued/started: pending (GitLab: started is running); finished: success,
 * failure, or for cancel/error GitHub and Azure error, GitLab canceled/failed.
 */
static const char *host_state(enum status_host h, const char *phase, const char *outcome)
{
	bool is_finished = strcmp(phase, "finished") == 0;
	if (!is_finished)
		return h == HOST_GITLAB && strcmp(phase, "started") == 0 ? "running" : "pending";
	bool ok = outcome != NULL && strcmp(outcome, "success") == 0;
	bool failed = outcome != NULL && strcmp(outcome, "failure") == 0;
	bool cancelled = outcome != NULL && strcmp(outcome, "cancel") == 0;
	switch (h) {
	case HOST_GITHUB:
		return ok ? "success" : failed ? "failure" : "error";
	case HOST_GITLAB:
		return ok ? "success" : cancelled ? "canceled" : "failed";
	default:
		return ok ? "succeeded" : failed ? "failed" : "error";
	}
}

static void status_enqueue(struct status_state *s, struct status_item *it)
{
	s->counts.queued++;
	metric_bump(s, s->metrics.queued, (const char *[]){host_names[it->target]}, 1);
	uint64_t dropped_before = s->queue.dropped, superseded_before = s->queue.superseded;
	enum status_push r = status_queue_push(&s->queue, it);
	metric_bump(s, s->metrics.discarded, (const char *[]){"superseded"},
		    (double)(s->queue.superseded - superseded_before));
	metric_bump(s, s->metrics.discarded, (const char *[]){"dropped"},
		    (double)(s->queue.dropped - dropped_before));
	if (r == STATUS_PUSH_DROPPED_OLDEST || r == STATUS_PUSH_DROPPED_NEW) {
		uint64_t d = s->queue.dropped;
		/* Warned at the 1st, 2nd, 4th, 8th... drop: a long outage must
		 * not flood the log. */
		if (d > dropped_before && (d & (d - 1)) == 0)
			say(s, DROVER_LOG_WARN,
			    "status: queue full (%zu): dropped the oldest waiting status (%llu "
			    "dropped so far)",
			    s->queue.max, (unsigned long long)d);
	}
}

static void status_notify(void *state, const json_t *ev)
{
	struct status_state *s = state;
	if (s == NULL || s->is_stopping)
		return;
	const json_t *drover = json_object_get(ev, "drover");
	const json_t *event = json_object_get(drover, "event");
	const char *source = json_string_value(json_object_get(event, "source"));
	if (source == NULL)
		return;
	enum status_host h = HOST_COUNT;
	for (int i = 0; i < HOST_COUNT; i++)
		if (strcmp(source, host_names[i]) == 0)
			h = (enum status_host)i;
	if (h == HOST_COUNT || !s->targets[h].is_enabled)
		return;
	struct status_target *t = &s->targets[h];
	const char *repo = json_string_value(json_object_get(event, "repo"));
	const char *sha = json_string_value(json_object_get(drover, "sha"));
	const char *pipeline = json_string_value(json_object_get(drover, "pipeline"));
	const char *stage = json_string_value(json_object_get(drover, "stage"));
	const char *phase = json_string_value(json_object_get(drover, "phase"));
	const char *status = json_string_value(json_object_get(drover, "status"));
	const json_t *content =
	    json_object_get(json_object_get(json_object_get(ev, "data"), "subject"), "content");
	const char *outcome = json_string_value(json_object_get(content, "outcome"));
	const char *errors = json_string_value(json_object_get(content, "errors"));
	json_int_t pr = json_integer_value(json_object_get(json_object_get(event, "pr"), "number"));
	if (repo == NULL || sha == NULL || pipeline == NULL || phase == NULL || status == NULL)
		return;
	const char *slash = strchr(repo, '/');
	if (slash == NULL || slash == repo || slash[1] == '\0')
		return;

	char *context = stage != NULL ? xprintf("drover/%s/%s", pipeline, stage)
				      : xprintf("drover/%s", pipeline);
	char *what = strcmp(phase, "queued") == 0    ? strdup("queued")
		     : strcmp(phase, "started") == 0 ? strdup("running")
		     : errors != NULL && strcmp(status, "succeeded") != 0
			 ? xprintf("%s: %s", status, errors)
			 : strdup(status);
	char *description = description_cut(what);
	free(what);
	char *target_url = target_url_for(s, drover);
	const char *state_name = host_state(h, phase, outcome);
	char *url = NULL;
	json_t *body = NULL;
	if (h == HOST_GITHUB) {
		url = xprintf("%s/repos/", t->api_url);
		char *owner = strndup(repo, (size_t)(slash - repo));
		url_add(&url, owner, true);
		free(owner);
		url_addf(&url, "/");
		url_add(&url, slash + 1, true);
		url_addf(&url, "/statuses/");
		url_add(&url, sha, true);
		body = json_pack("{s:s,s:s,s:s,s:s?}", "state", state_name, "context", context,
				 "description", description, "target_url", target_url);
	} else if (h == HOST_GITLAB) {
		url = xprintf("%s/api/v4/projects/", t->api_url);
		url_add(&url, repo, true); /* the project's full path, '/' encoded */
		url_addf(&url, "/statuses/");
		url_add(&url, sha, true);
		body = json_pack("{s:s,s:s,s:s,s:s?}", "state", state_name, "name", context,
				 "description", description, "target_url", target_url);
	} else {
		char *org =
		    t->api_url != NULL
			? strdup(t->api_url)
			: azure_org_url(json_string_value(json_object_get(event, "clone_url")));
		if (org != NULL) {
			url = xprintf("%s/", org);
			char *project = strndup(repo, (size_t)(slash - repo));
			url_add(&url, project, true);
			free(project);
			url_addf(&url, "/_apis/git/repositories/");
			url_add(&url, slash + 1, true);
			if (pr > 0) {
				char num[64];
				snprintf(num, sizeof num, "/pullRequests/%lld/statuses",
					 (long long)pr);
				url_addf(&url, num);
			} else {
				url_addf(&url, "/commits/");
				url_add(&url, sha, true);
				url_addf(&url, "/statuses");
			}
			url_addf(&url, "?api-version=7.1");
			const char *name = context + strlen("drover/");
			body = json_pack("{s:s,s:s,s:{s:s,s:s},s:s?}", "state", state_name,
					 "description", description, "context", "name", name,
					 "genre", "drover", "targetUrl", target_url);
		}
		free(org);
	}
	if (url != NULL && body != NULL) {
		char *text = json_dumps(body, JSON_COMPACT);
		char *sha_key = xprintf("%s|%s|%s", host_names[h], repo, sha);
		status_enqueue(s, status_item_new(sha_key, context, url, text, h));
		free(sha_key);
		free(text);
	} else {
		say(s, DROVER_LOG_WARN,
		    "status: cannot tell where %s's status of %s goes (no organization URL)",
		    host_names[h], repo);
	}
	json_decref(body);
	free(url);
	free(context);
	free(description);
	free(target_url);
	status_pump(s);
}

/* ---- delivery ---- */

static bool status_is_ready(void *arg, int target)
{
	struct status_state *s = arg;
	return mono_now_ms() >= s->targets[target].not_before_ms;
}

/* Back-off after a retryable failure: what the host asked for, else
 * exponential from retry_initial_ms with jitter (half to all of it). */
static void target_back_off(struct status_state *s, struct status_target *t, int64_t asked_ms)
{
	t->failures++;
	int64_t delay;
	if (asked_ms >= 0) {
		delay = asked_ms;
	} else {
		delay = s->retry_initial_ms;
		for (int i = 1; i < t->failures && delay < s->retry_max_ms; i++)
			delay *= 2;
		if (delay > s->retry_max_ms)
			delay = s->retry_max_ms;
		delay = delay / 2 + (int64_t)(rand_r(&s->seed) % (unsigned)(delay / 2 + 1));
	}
	if (delay > STATUS_MAX_WAIT_MS)
		delay = STATUS_MAX_WAIT_MS;
	t->not_before_ms = mono_now_ms() + delay;
}

static void status_on_response(void *arg, const struct drover_http_response *res)
{
	struct status_send *send = arg;
	struct status_state *s = send->s;
	struct status_item *it = send->item;
	free(send);
	s->in_flight--;
	struct status_target *t = &s->targets[it->target];
	const char *name = host_names[it->target];
	if (res->is_cancelled) {
		s->is_stopping = true;
		status_queue_release(&s->queue, it);
		return;
	}
	if (res->status >= 200 && res->status < 300) {
		if (t->failures > 0)
			say(s, DROVER_LOG_INFO,
			    "status: %s accepts statuses again after %d failed attempt(s); %zu "
			    "waiting",
			    name, t->failures, s->queue.n - 1);
		t->failures = 0;
		s->counts.delivered++;
		metric_bump(s, s->metrics.deliveries, (const char *[]){name, "delivered"}, 1);
		status_queue_remove(&s->queue, it);
	} else if (res->status == 0 || res->status >= 500 || status_response_is_rate_limit(res)) {
		int64_t asked =
		    res->status > 0 ? status_response_wait_ms(res, (int64_t)time(NULL)) : -1;
		target_back_off(s, t, asked);
		bool is_throttled = res->status > 0 && res->status < 500;
		if (is_throttled)
			s->counts.throttled++;
		else
			s->counts.retried++;
		metric_bump(s, s->metrics.deliveries,
			    (const char *[]){name, is_throttled ? "throttled" : "retried"}, 1);
		it->attempts++;
		char why[160];
		if (res->status == 0)
			snprintf(why, sizeof why, "%s",
				 res->error != NULL ? res->error : "no answer");
		else
			snprintf(why, sizeof why, "HTTP %d", res->status);
		/* A streak of failures is logged once; each throttling (at most
		 * one per wait the host asked for) is. */
		say(s, t->failures == 1 || asked >= 0 ? DROVER_LOG_WARN : DROVER_LOG_DEBUG,
		    "status: %s: %s for %s; retrying in %lld ms%s (%zu status(es) waiting)", name,
		    why, it->context, (long long)(t->not_before_ms - mono_now_ms()),
		    asked >= 0 ? " as the host asked" : "", s->queue.n);
		status_queue_release(&s->queue, it);
	} else {
		char *msg = status_response_message(res);
		s->counts.refused++;
		metric_bump(s, s->metrics.deliveries, (const char *[]){name, "refused"}, 1);
		say(s, DROVER_LOG_ERROR,
		    "status: %s refused %s (HTTP %d: %s); dropped (%llu refused so far)", name,
		    it->context, res->status, msg, (unsigned long long)s->counts.refused);
		free(msg);
		status_queue_remove(&s->queue, it);
	}
	status_pump(s);
}

static void status_on_pump_timer(void *arg)
{
	struct status_state *s = arg;
	s->pump_timer = NULL;
	status_pump(s);
}

/* The agent's stop waits no more: says how it ended, calls flushed once. */
static void status_drain_end(struct status_state *s)
{
	void (*flushed)(void *) = s->flushed;
	if (flushed == NULL)
		return;
	s->flushed = NULL;
	s->host->timer_cancel(s->host->ctx, s->drain_timer);
	s->drain_timer = NULL;
	if (s->queue.n == 0)
		say(s, DROVER_LOG_INFO, "status: stopping: every status delivered");
	else
		say(s, DROVER_LOG_WARN,
		    "status: stopping: %zu status(es) cannot be delivered within stop_flush_ms "
		    "(%lld ms)",
		    s->queue.n, (long long)s->stop_flush_ms);
	flushed(s->flushed_arg);
}

static void status_on_drain_timer(void *arg)
{
	struct status_state *s = arg;
	s->drain_timer = NULL;
	status_drain_end(s);
}

/*
 * The agent stops: the queue gets stop_flush_ms to empty. The wait ends
 * early when it is empty, or when nothing is in flight and every waiting
 * host backs off past the deadline (status_pump checks both).
 */
static void status_drain(void *state, void (*flushed)(void *arg), void *arg)
{
	struct status_state *s = state;
	if (s == NULL || s->queue.n == 0 || s->stop_flush_ms == 0) {
		flushed(arg);
		return;
	}
	say(s, DROVER_LOG_INFO,
	    "status: stopping: %zu status(es) waiting; up to %lld ms (stop_flush_ms) to deliver "
	    "them",
	    s->queue.n, (long long)s->stop_flush_ms);
	s->flushed = flushed;
	s->flushed_arg = arg;
	s->drain_deadline_ms = mono_now_ms() + s->stop_flush_ms;
	s->drain_timer =
	    s->host->timer_start(s->host->ctx, s->stop_flush_ms, status_on_drain_timer, s);
	status_pump(s);
}

/* Sends what may go now; arms the timer for the earliest back-off end. */
static void status_pump(struct status_state *s)
{
	if (s->metrics.depth != NULL)
		s->host->metric_set(s->host->ctx, s->metrics.depth, NULL, (double)s->queue.n);
	if (s->is_stopping)
		return;
	while (s->in_flight < s->max_in_flight) {
		struct status_item *it = status_queue_take(&s->queue, status_is_ready, s);
		if (it == NULL)
			break;
		struct status_target *t = &s->targets[it->target];
		const char *headers[] = {
		    t->auth_header, "Content-Type: application/json",
		    it->target == HOST_GITHUB ? "Accept: application/vnd.github+json"
					      : "Accept: application/json",
		    it->target == HOST_GITHUB ? "X-GitHub-Api-Version: 2022-11-28" : NULL, NULL};
		struct drover_http_request req = {.method = "POST",
						  .url = it->url,
						  .headers = headers,
						  .body = it->body,
						  .body_len = strlen(it->body),
						  .timeout_ms = s->timeout_ms,
						  .max_response_body_bytes = 16384};
		struct status_send *send = xalloc(sizeof *send);
		send->s = s;
		send->item = it;
		if (s->host->http_request(s->host->ctx, &req, status_on_response, send) != 0) {
			free(send);
			status_queue_release(&s->queue, it);
			target_back_off(s, t, -1);
			break;
		}
		s->in_flight++;
	}
	/* Waiting items whose host backs off: come back when the first may go. */
	int64_t now = mono_now_ms(), at = INT64_MAX;
	for (struct status_item *it = s->queue.head; it != NULL; it = it->next)
		if (!it->is_in_flight && s->targets[it->target].not_before_ms > now &&
		    s->targets[it->target].not_before_ms < at)
			at = s->targets[it->target].not_before_ms;
	if (s->flushed != NULL &&
	    (s->queue.n == 0 || (s->in_flight == 0 && at > s->drain_deadline_ms))) {
		status_drain_end(s);
		return;
	}
	if (at == INT64_MAX || (s->pump_timer != NULL && s->pump_at_ms <= at))
		return;
	s->host->timer_cancel(s->host->ctx, s->pump_timer);
	s->pump_at_ms = at;
	s->pump_timer = s->host->timer_start(s->host->ctx, at - now, status_on_pump_timer, s);
}

static int status_start(void *state, struct drover_stage *stage)
{
	(void)state;
	struct status_state *s = state;
	if (s != NULL)
		s->host->log(stage, "status is a reporter (notify), not a stage plugin");
	return -1;
}

static const struct drover_plugin status_plugin = {
    DROVER_PLUGIN_INIT,
    .name = "status",
    .version = "0.1.0",
    .description = "commit and pull-request statuses to GitHub, GitLab and Azure DevOps",
    .init = status_init,
    .start = status_start,
    .notify = status_notify,
    .fini = status_fini,
    .wants_notify = status_wants_notify,
    .drain = status_drain,
};

__attribute__((visibility("default"))) const struct drover_plugin *drover_plugin_entry(void)
{
	return &status_plugin;
}
