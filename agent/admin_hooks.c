/*
 * admin_hooks: webhook receivers. Authenticates each request with its
 * provider's secret before reading anything else, then normalizes the body
 * only to decide (produce, ignore or refuse) and to key the record by
 * repository; the raw body goes to Kafka unchanged. Never logs a secret or
 * what a client presented as one.
 */
#include "admin_hooks.h"

#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin_http.h"
#include "agent.h"
#include "config.h"
#include "event.h"
#include "hmac.h"
#include "log.h"
#include "util.h"

enum hook_provider { HOOK_GITHUB, HOOK_GITLAB, HOOK_AZURE, HOOK_N_PROVIDERS };

/* What became of a request; a label of drover_webhooks_total. */
enum hook_outcome {
	HOOK_PRODUCED,	     /* handed to Kafka (the reply waits for its acknowledgement) */
	HOOK_PING,	     /* GitHub's ping: 200, nothing produced */
	HOOK_IGNORED,	     /* an event drover does not build from: 200, nothing produced */
	HOOK_UNAUTHORIZED,   /* 401 (see enum hook_reason) */
	HOOK_MALFORMED,	     /* 400: empty, not JSON, or a known event missing what it needs */
	HOOK_TOO_LARGE,	     /* 413: over max_event_bytes */
	HOOK_NOT_CONFIGURED, /* 404: no secret configured for the provider */
	HOOK_WRONG_METHOD,   /* 405: not POST */
	HOOK_N_OUTCOMES,
};

/* Why a request was unauthorized; a label of drover_webhooks_unauthorized_total. */
enum hook_reason {
	HOOK_MISSING,	     /* no signature, token or credentials */
	HOOK_MALFORMED_AUTH, /* not sha256=<64 hex digits>, not Basic ... */
	HOOK_MISMATCH,	     /* present and well-formed, but wrong */
	HOOK_N_REASONS,
};

/* Path segments, metric labels and the canonical event's source (event.h). */
static const char *const provider_names[HOOK_N_PROVIDERS] = {"github", "gitlab", "azure-devops"};
static const char *const outcome_names[HOOK_N_OUTCOMES] = {
    "produced",	 "ping",      "ignored",	"unauthorized",
    "malformed", "too_large", "not_configured", "wrong_method",
};
static const char *const reason_names[HOOK_N_REASONS] = {"missing", "malformed", "mismatch"};

struct admin_hooks {
	struct agent *agent;
	char *azure_expected;		/* base64("username:password"), or NULL; owned */
	struct metric_family *outcomes; /* drover_webhooks_total{provider,outcome} */
	struct metric_family
	    *unauthorized; /* drover_webhooks_unauthorized_total{provider,reason} */
};

/* Registers the receivers' counters, every series at 0 so a scrape lists them all. */
static void hooks_register_metrics(struct admin_hooks *h, struct metrics *m)
{
	h->outcomes = metric_family_new(m, METRIC_COUNTER, "drover_webhooks_total",
					"Webhook requests by provider and outcome",
					(const char *[]){"provider", "outcome", NULL}, NULL, 0, 0);
	h->unauthorized = metric_family_new(
	    m, METRIC_COUNTER, "drover_webhooks_unauthorized_total",
	    "Webhook requests refused for their signature, token or credentials, by reason",
	    (const char *[]){"provider", "reason", NULL}, NULL, 0, 0);
	for (int p = 0; p < HOOK_N_PROVIDERS; p++) {
		for (int o = 0; o < HOOK_N_OUTCOMES; o++)
			metric_add(h->outcomes,
				   (const char *[]){provider_names[p], outcome_names[o]}, 0);
		for (int r = 0; r < HOOK_N_REASONS; r++)
			metric_add(h->unauthorized,
				   (const char *[]){provider_names[p], reason_names[r]}, 0);
	}
}

struct admin_hooks *admin_hooks_new(struct agent *a)
{
	struct admin_hooks *h = xcalloc(1, sizeof *h);
	h->agent = a;
	hooks_register_metrics(h, &a->metrics);
	const struct hooks_config *cfg = &a->cfg->hooks;
	if (cfg->azure_username != NULL && cfg->azure_password != NULL) {
		/* Base64 of the same bytes is one string: compare encoded credentials. */
		char *plain = xasprintf("%s:%s", cfg->azure_username, cfg->azure_password);
		size_t len = strlen(plain);
		h->azure_expected = xmalloc(4 * ((len + 2) / 3) + 1);
		EVP_EncodeBlock((unsigned char *)h->azure_expected, (const unsigned char *)plain,
				(int)len);
		OPENSSL_cleanse(plain, len);
		free(plain);
	}
	log_info("admin: webhook receivers: /hooks/github %s, /hooks/gitlab %s, "
		 "/hooks/azure-devops %s",
		 cfg->github_secret != NULL ? "on" : "off",
		 cfg->gitlab_token != NULL ? "on" : "off",
		 h->azure_expected != NULL ? "on" : "off");
	return h;
}

void admin_hooks_free(struct admin_hooks *h)
{
	if (h == NULL)
		return;
	if (h->azure_expected != NULL)
		OPENSSL_cleanse(h->azure_expected, strlen(h->azure_expected));
	free(h->azure_expected);
	free(h);
}

static bool hook_is_configured(const struct admin_hooks *h, enum hook_provider p)
{
	const struct hooks_config *cfg = &h->agent->cfg->hooks;
	switch (p) {
	case HOOK_GITHUB:
		return cfg->github_secret != NULL;
	case HOOK_GITLAB:
		return cfg->gitlab_token != NULL;
	default:
		return h->azure_expected != NULL;
	}
}

static const char *hook_header(struct evhttp_request *req, const char *name)
{
	return evhttp_find_header(evhttp_request_get_input_headers(req), name);
}

/*
 * Checks the request's credentials against the provider's secret; returns
 * HOOK_N_REASONS when they are right, else why not, with *why saying it
 * for the reply.
 */
static enum hook_reason hook_authenticate(const struct admin_hooks *h, enum hook_provider p,
					  struct evhttp_request *req, const char *body, size_t len,
					  const char **why)
{
	const struct hooks_config *cfg = &h->agent->cfg->hooks;
	if (p == HOOK_GITHUB) {
		const char *sig = hook_header(req, "X-Hub-Signature-256");
		if (sig == NULL) {
			*why = "X-Hub-Signature-256 is missing: set the webhook's secret to "
			       "hooks.github's";
			return HOOK_MISSING;
		}
		int rc = -1;
		if (strncmp(sig, "sha256=", 7) == 0)
			rc = hmac_sha256_check_hex(cfg->github_secret, strlen(cfg->github_secret),
						   body, len, sig + 7, strlen(sig + 7));
		if (rc < 0) {
			*why = "X-Hub-Signature-256 is not sha256=<64 hex digits>";
			return HOOK_MALFORMED_AUTH;
		}
		if (rc == 0) {
			*why = "X-Hub-Signature-256 does not match the body: another secret, or "
			       "the body changed on the way";
			return HOOK_MISMATCH;
		}
		return HOOK_N_REASONS;
	}
	if (p == HOOK_GITLAB) {
		const char *token = hook_header(req, "X-Gitlab-Token");
		if (token == NULL) {
			*why = "X-Gitlab-Token is missing: set the webhook's secret token to "
			       "hooks.gitlab's";
			return HOOK_MISSING;
		}
		if (!hmac_secret_equal(token, strlen(token), cfg->gitlab_token,
				       strlen(cfg->gitlab_token))) {
			*why = "X-Gitlab-Token is wrong";
			return HOOK_MISMATCH;
		}
		return HOOK_N_REASONS;
	}
	const char *auth = hook_header(req, "Authorization");
	if (auth == NULL) {
		*why = "basic authentication is missing: set the service hook's username and "
		       "password to hooks.azure_devops'";
		return HOOK_MISSING;
	}
	if (strncasecmp(auth, "Basic ", 6) != 0) {
		*why = "the Authorization header is not Basic";
		return HOOK_MALFORMED_AUTH;
	}
	const char *given = auth + 6;
	while (*given == ' ')
		given++;
	if (!hmac_secret_equal(given, strlen(given), h->azure_expected,
			       strlen(h->azure_expected))) {
		*why = "wrong username or password";
		return HOOK_MISMATCH;
	}
	return HOOK_N_REASONS;
}

/* The client's address, for log lines. */
static const char *hook_peer(struct evhttp_request *req, uint16_t *port)
{
	const char *host = "?";
	ev_uint16_t p = 0;
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	if (conn != NULL)
		evhttp_connection_get_peer(conn, (char **)&host, &p);
	*port = p;
	return host;
}

/*
 * Normalizes an authenticated body to decide: produced (keyed by the
 * repository, as the same event arriving through Kafka or POST
 * /api/v1/events is), ignored, or refused.
 */
static enum hook_outcome hook_accept(struct admin *ad, enum hook_provider p,
				     struct evhttp_request *req, const char *body, size_t len)
{
	rd_kafka_headers_t *headers;
	json_t *ev = NULL;
	char err[256];
	enum event_outcome rc =
	    admin_event_read(ad, req, body, len, &headers, &ev, err, sizeof err);
	const char *source = json_string_value(json_object_get(ev, "source"));
	enum hook_outcome outcome;
	if (rc == EVENT_OK && source != NULL && strcmp(source, provider_names[p]) == 0) {
		admin_produce_event(ad, req, body, len, headers,
				    json_string_value(json_object_get(ev, "repo")));
		headers = NULL; /* taken */
		outcome = HOOK_PRODUCED;
	} else if (rc == EVENT_OK) {
		admin_reply_error(req, 400, "/hooks/%s takes %s webhooks, not a %s event",
				  provider_names[p], provider_names[p],
				  source != NULL ? source : "sourceless");
		outcome = HOOK_MALFORMED;
	} else if (rc == EVENT_IGNORED || rc == EVENT_UNKNOWN) {
		admin_reply_json(req, 200,
				 json_pack("{s:s,s:s}", "status", "ignored", "reason", err));
		outcome = HOOK_IGNORED;
	} else if (rc == EVENT_TOO_LARGE) {
		admin_reply_error(req, 413, "%s (max_event_bytes)", err);
		outcome = HOOK_TOO_LARGE;
	} else {
		admin_reply_error(req, 400, "%s", err);
		outcome = HOOK_MALFORMED;
	}
	if (outcome != HOOK_PRODUCED)
		log_info("admin: webhook %s: %s, nothing produced: %s", provider_names[p],
			 outcome_names[outcome], err[0] != '\0' ? err : "wrong source");
	if (headers != NULL)
		rd_kafka_headers_destroy(headers);
	json_decref(ev);
	return outcome;
}

/* Everything of one request but counting its outcome. */
static enum hook_outcome hook_handle(struct admin_hooks *h, struct admin *ad, enum hook_provider p,
				     struct evhttp_request *req)
{
	if (!hook_is_configured(h, p)) {
		admin_reply_error(req, 404,
				  "webhook not configured: set hooks.%s in agent.yaml to receive "
				  "%s webhooks",
				  p == HOOK_AZURE ? "azure_devops" : provider_names[p],
				  provider_names[p]);
		return HOOK_NOT_CONFIGURED;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
		admin_reply_error(req, 405, "use POST");
		return HOOK_WRONG_METHOD;
	}
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const char *body = len > 0 ? (const char *)evbuffer_pullup(in, -1) : "";
	const char *why = NULL;
	enum hook_reason reason = hook_authenticate(h, p, req, body, len, &why);
	if (reason != HOOK_N_REASONS) {
		metric_add(h->unauthorized,
			   (const char *[]){provider_names[p], reason_names[reason]}, 1);
		uint16_t port;
		const char *peer = hook_peer(req, &port);
		log_warn("admin: webhook %s from %s:%u refused (%s): %s", provider_names[p], peer,
			 port, reason_names[reason], why);
		if (p == HOOK_AZURE)
			evhttp_add_header(evhttp_request_get_output_headers(req),
					  "WWW-Authenticate", "Basic realm=\"drover\"");
		admin_reply_error(req, 401, "%s", why);
		return HOOK_UNAUTHORIZED;
	}
	if (len == 0) {
		admin_reply_error(req, 400, "empty body");
		return HOOK_MALFORMED;
	}
	if (p == HOOK_GITHUB) {
		const char *event = hook_header(req, "X-GitHub-Event");
		if (event == NULL) {
			admin_reply_error(req, 400, "X-GitHub-Event is missing");
			return HOOK_MALFORMED;
		}
		const char *type = hook_header(req, "Content-Type");
		if (type != NULL &&
		    strncasecmp(type, "application/x-www-form-urlencoded", 33) == 0) {
			admin_reply_error(req, 400,
					  "a form-encoded body: set the webhook's content type to "
					  "application/json");
			return HOOK_MALFORMED;
		}
		if (strcmp(event, "ping") == 0) {
			log_info("admin: webhook github: ping (hook %s)",
				 hook_header(req, "X-GitHub-Hook-ID") != NULL
				     ? hook_header(req, "X-GitHub-Hook-ID")
				     : "?");
			admin_reply_json(req, 200, json_pack("{s:s}", "status", "pong"));
			return HOOK_PING;
		}
	} else if (p == HOOK_GITLAB && hook_header(req, "X-Gitlab-Event") == NULL) {
		admin_reply_error(req, 400, "X-Gitlab-Event is missing");
		return HOOK_MALFORMED;
	}
	return hook_accept(ad, p, req, body, len);
}

void admin_hooks_route(struct admin_hooks *h, struct admin *ad, struct evhttp_request *req,
		       const char *provider)
{
	for (int p = 0; p < HOOK_N_PROVIDERS; p++) {
		if (strcmp(provider, provider_names[p]) == 0) {
			enum hook_outcome o = hook_handle(h, ad, (enum hook_provider)p, req);
			metric_add(h->outcomes,
				   (const char *[]){provider_names[p], outcome_names[o]}, 1);
			return;
		}
	}
	admin_reply_error(req, 404, "no webhook receiver '%s' (github, gitlab, azure-devops)",
			  provider);
}
