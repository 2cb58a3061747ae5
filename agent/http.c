/*
 * http: libcurl multi on the agent's libevent base, the way curl's
 * hiperfifo example drives it. curl tells us which sockets to watch
 * (http_on_curl_socket) and when to call it back (http_on_curl_timer, one
 * timer); our events call curl_multi_socket_action and then collect the
 * finished transfers. We never call into libcurl from inside one of its own
 * callbacks: they only (re)arm events, and the work happens when those fire.
 */
#include "http.h"

#include <ctype.h>
#include <curl/curl.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "util.h"

#define HTTP_DEFAULT_TIMEOUT_MS 30000
#define HTTP_DEFAULT_MAX_BODY (64 * 1024)
/* Response headers kept per response; a host sending more loses the rest. */
#define HTTP_MAX_HEADERS 64
#define HTTP_MAX_HEADER_LINE 8192

/* A socket curl asked us to watch (in struct http's list until curl removes it). */
struct http_sock {
	struct http *h;
	curl_socket_t fd;
	struct event *ev;
	struct http_sock *prev, *next;
};

/* One request in flight; owned by the client until its callback has run. */
struct http_req {
	struct http *h;
	CURL *easy;
	struct curl_slist *headers;
	drover_http_done_fn done;
	void *arg;
	struct strbuf body;
	size_t max_body;
	bool is_truncated;
	struct drover_http_header resp_headers[HTTP_MAX_HEADERS]; /* strings owned */
	size_t n_resp_headers;
	char errbuf[CURL_ERROR_SIZE];
	struct http_req *prev, *next;
};

struct http {
	struct event_base *base;
	CURLM *multi;
	struct event *timer_ev; /* curl's one timer */
	struct http_req *reqs;	/* in flight */
	size_t n_reqs;
	struct http_sock *socks; /* watched */
	bool is_closing;
};

static void http_req_clear_headers(struct http_req *r)
{
	for (size_t i = 0; i < r->n_resp_headers; i++) {
		free((char *)r->resp_headers[i].name);
		free((char *)r->resp_headers[i].value);
	}
	r->n_resp_headers = 0;
}

static void http_req_free(struct http_req *r)
{
	curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->headers);
	strbuf_free(&r->body);
	http_req_clear_headers(r);
	free(r);
}

static void http_req_unlink(struct http_req *r)
{
	struct http *h = r->h;
	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		h->reqs = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	h->n_reqs--;
}

/*
 * Runs the request's callback with what curl reported (code; cancelled when
 * the client is being freed) and frees the request. The easy handle has
 * already left the multi handle.
 */
static void http_req_complete(struct http_req *r, CURLcode code, bool is_cancelled)
{
	long status = 0;
	struct drover_http_response res = {0};
	if (is_cancelled) {
		res.error = "cancelled: the agent is stopping";
		res.is_cancelled = true;
	} else if (code != CURLE_OK) {
		res.error = r->errbuf[0] != '\0' ? r->errbuf : curl_easy_strerror(code);
		res.is_timeout = code == CURLE_OPERATION_TIMEDOUT;
	} else {
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
		res.status = (int)status;
		if (res.status <= 0)
			res.error = "no HTTP status in the response";
	}
	if (res.status <= 0)
		http_req_clear_headers(r);
	strbuf_add(&r->body, "", 0); /* NUL-terminated even when empty */
	res.body = r->body.data;
	res.body_len = r->body.len;
	res.is_truncated = r->is_truncated;
	res.headers = r->resp_headers;
	res.n_headers = r->n_resp_headers;
	r->done(r->arg, &res);
	http_req_free(r);
}

/* Collects the transfers curl finished and completes them. */
static void http_collect_done(struct http *h)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		CURL *easy = msg->easy_handle;
		CURLcode code = msg->data.result;
		struct http_req *r = NULL;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
		curl_multi_remove_handle(h->multi, easy);
		http_req_unlink(r);
		http_req_complete(r, code, false);
	}
}

static void http_on_socket_event(evutil_socket_t fd, short what, void *arg)
{
	struct http *h = arg;
	int flags = 0;
	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	int running;
	curl_multi_socket_action(h->multi, fd, flags, &running);
	http_collect_done(h);
}

static void http_on_timer_event(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct http *h = arg;
	int running;
	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	http_collect_done(h);
}

/* curl's timer callback: only (re)arms our timer; curl runs when it fires. */
static int http_on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
	(void)multi;
	struct http *h = userp;
	if (timeout_ms < 0) {
		evtimer_del(h->timer_ev);
		return 0;
	}
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	evtimer_add(h->timer_ev, &tv);
	return 0;
}

static void http_sock_free(struct http_sock *s)
{
	struct http *h = s->h;
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		h->socks = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	event_free(s->ev);
	free(s);
}

/*
 * curl's socket callback: watches, re-watches or forgets a socket. Our
 * sockets are found in our own list (not curl_multi_assign): nothing here
 * calls back into libcurl.
 */
static int http_on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	(void)easy, (void)socketp;
	struct http *h = userp;
	struct http_sock *s = h->socks;
	while (s != NULL && s->fd != fd)
		s = s->next;
	if (what == CURL_POLL_REMOVE) {
		if (s != NULL)
			http_sock_free(s);
		return 0;
	}
	short kind = EV_PERSIST;
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		kind |= EV_READ;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		kind |= EV_WRITE;
	if (s == NULL) {
		s = xcalloc(1, sizeof *s);
		s->h = h;
		s->fd = fd;
		s->next = h->socks;
		if (h->socks != NULL)
			h->socks->prev = s;
		h->socks = s;
		s->ev = event_new(h->base, fd, kind, http_on_socket_event, h);
	} else {
		event_del(s->ev);
		event_assign(s->ev, h->base, fd, kind, http_on_socket_event, h);
	}
	event_add(s->ev, NULL);
	return 0;
}

/* Every socket of ours is close-on-exec: stages are spawned while requests run. */
static curl_socket_t http_open_socket(void *clientp, curlsocktype purpose,
				      struct curl_sockaddr *addr)
{
	(void)clientp, (void)purpose;
	return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

static size_t http_on_body(char *data, size_t size, size_t nmemb, void *userp)
{
	struct http_req *r = userp;
	size_t len = size * nmemb;
	size_t room = r->max_body > r->body.len ? r->max_body - r->body.len : 0;
	if (len > room) {
		r->is_truncated = true;
		strbuf_add(&r->body, data, room);
	} else {
		strbuf_add(&r->body, data, len);
	}
	return len; /* the rest is dropped, not an error */
}

int http_header_parse(const char *line, size_t len, char **name, char **value)
{
	if (len > HTTP_MAX_HEADER_LINE)
		return -1;
	const char *colon = memchr(line, ':', len);
	if (colon == NULL || colon == line || memchr(line, '\0', len) != NULL)
		return -1;
	for (const char *p = line; p < colon; p++)
		if (*p <= ' ' || *p >= 127)
			return -1; /* not a token: no header (obs-fold lines included) */
	const char *v = colon + 1, *end = line + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*name = xstrndup(line, (size_t)(colon - line));
	for (char *p = *name; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	*value = xstrndup(v, (size_t)(end - v));
	return 0;
}

/* One header line; a status line starts a new response (redirect, 100 Continue). */
static size_t http_on_header(char *data, size_t size, size_t nmemb, void *userp)
{
	struct http_req *r = userp;
	size_t len = size * nmemb;
	if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
		http_req_clear_headers(r);
		return len;
	}
	char *name, *value;
	if (r->n_resp_headers == HTTP_MAX_HEADERS ||
	    http_header_parse(data, len, &name, &value) != 0)
		return len;
	r->resp_headers[r->n_resp_headers].name = name;
	r->resp_headers[r->n_resp_headers].value = value;
	r->n_resp_headers++;
	return len;
}

struct http *http_new(struct event_base *base)
{
	struct http *h = xcalloc(1, sizeof *h);
	h->base = base;
	h->timer_ev = evtimer_new(base, http_on_timer_event, h);
	return h;
}

/*
 * libcurl (and through it TLS) is set up at the first request, not at
 * start: an agent whose plugins never make one does not pay for it (about
 * 2 MB of resident memory).
 */
static int http_start_curl(struct http *h)
{
	if (h->multi != NULL)
		return 0;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_error("http: libcurl cannot be initialised");
		return -1;
	}
	h->multi = curl_multi_init();
	if (h->multi == NULL) {
		log_error("http: curl_multi_init failed");
		curl_global_cleanup();
		return -1;
	}
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, http_on_curl_socket);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, http_on_curl_timer);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	return 0;
}

void http_free(struct http *h)
{
	if (h == NULL)
		return;
	h->is_closing = true;
	while (h->reqs != NULL) {
		struct http_req *r = h->reqs;
		curl_multi_remove_handle(h->multi, r->easy);
		http_req_unlink(r);
		http_req_complete(r, CURLE_OK, true);
	}
	if (h->multi != NULL)
		curl_multi_cleanup(h->multi);
	while (h->socks != NULL)
		http_sock_free(h->socks);
	event_free(h->timer_ev);
	if (h->multi != NULL)
		curl_global_cleanup();
	free(h);
}

size_t http_in_flight(const struct http *h)
{
	return h->n_reqs;
}

const char *http_response_header(const struct drover_http_response *res, const char *name)
{
	for (size_t i = 0; i < res->n_headers; i++)
		if (strcasecmp(res->headers[i].name, name) == 0)
			return res->headers[i].value;
	return NULL;
}

/* A method is a token of upper-case letters: nothing curl could misread. */
static bool http_method_ok(const char *m)
{
	if (m == NULL || *m == '\0' || strlen(m) > 16)
		return false;
	for (const char *p = m; *p != '\0'; p++)
		if (*p < 'A' || *p > 'Z')
			return false;
	return true;
}

int http_request_start(struct http *h, const struct drover_http_request *req,
		       drover_http_done_fn done, void *arg)
{
	if (h->is_closing) {
		log_warn("http: %s %s refused: the client is stopping", req->method, req->url);
		return -1;
	}
	if (http_start_curl(h) != 0)
		return -1;
	if (!http_method_ok(req->method) || req->url == NULL ||
	    (strncmp(req->url, "http://", 7) != 0 && strncmp(req->url, "https://", 8) != 0)) {
		log_warn("http: refusing a request with method '%s' to '%s'",
			 req->method != NULL ? req->method : "(none)",
			 req->url != NULL ? req->url : "(none)");
		return -1;
	}
	struct http_req *r = xcalloc(1, sizeof *r);
	r->h = h;
	r->done = done;
	r->arg = arg;
	r->max_body =
	    req->max_response_body_bytes > 0 ? req->max_response_body_bytes : HTTP_DEFAULT_MAX_BODY;
	strbuf_init(&r->body);
	r->easy = curl_easy_init();
	if (r->easy == NULL) {
		log_error("http: curl_easy_init failed");
		free(r);
		return -1;
	}
	CURL *e = r->easy;
	curl_easy_setopt(e, CURLOPT_URL, req->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, http_open_socket);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, http_on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "drover/" DROVER_VERSION);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
			 (long)(req->timeout_ms > 0 ? req->timeout_ms : HTTP_DEFAULT_TIMEOUT_MS));
	if (req->body != NULL || strcmp(req->method, "POST") == 0) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
		curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, req->body != NULL ? req->body : "");
	}
	if (strcmp(req->method, "GET") == 0 && req->body == NULL)
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	else if (strcmp(req->method, "POST") != 0)
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
	/* No "Expect: 100-continue" round trip for small bodies. */
	r->headers = curl_slist_append(r->headers, "Expect:");
	for (const char *const *hd = req->headers; hd != NULL && *hd != NULL; hd++)
		r->headers = curl_slist_append(r->headers, *hd);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
	r->next = h->reqs;
	if (h->reqs != NULL)
		h->reqs->prev = r;
	h->reqs = r;
	h->n_reqs++;
	/* curl answers with a zero timeout (http_on_curl_timer): the transfer
	 * starts on the loop, after this returns. */
	CURLMcode mc = curl_multi_add_handle(h->multi, e);
	if (mc != CURLM_OK) {
		log_error("http: %s %s: %s", req->method, req->url, curl_multi_strerror(mc));
		http_req_unlink(r);
		http_req_free(r);
		return -1;
	}
	return 0;
}
