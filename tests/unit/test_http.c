/*
 * Tests for http: the libcurl-multi client on a real libevent loop against
 * an evhttp server in this process on 127.0.0.1:0 — success with body and
 * headers, 4xx/5xx with Retry-After, the body cap, timeouts, a refused
 * connection, many requests at once, a request started from a callback,
 * and freeing the client with requests in flight (each callback once).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "http.h"
#include "util.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SAFETY_TIMEOUT_MS 15000

struct fixture {
	struct event_base *base;
	struct evhttp *server;
	int port;
	struct http *http;
	int served; /* requests the server answered or parked */
};

/* What one request's callback saw. */
struct outcome {
	int calls;
	int status;
	char *error;
	bool is_timeout, is_cancelled, is_truncated;
	char *body;
	size_t body_len;
	char *retry_after;
	int *done_count;
	struct fixture *f;
	bool restart; /* start another request from the callback */
	struct outcome *next_outcome;
};

static void on_done(void *arg, const struct drover_http_response *res);

static char *url_for(struct fixture *f, const char *path)
{
	return xasprintf("http://127.0.0.1:%d%s", f->port, path);
}

/*
 * The server: /ok (200, echoes method, body and X-Test), /status/N (status
 * N with Retry-After: 7 and a JSON body), /big (100000 bytes), /park (never
 * answered: timeouts and freeing in flight).
 */
static void serve(struct evhttp_request *req, void *arg)
{
	struct fixture *f = arg;
	f->served++;
	const char *uri = evhttp_request_get_uri(req);
	struct evbuffer *out = evbuffer_new();
	struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
	if (strcmp(uri, "/ok") == 0) {
		struct evbuffer *in = evhttp_request_get_input_buffer(req);
		const char *x = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Test");
		const char *m = evhttp_request_get_command(req) == EVHTTP_REQ_POST ? "POST" : "GET";
		evbuffer_add_printf(out, "%s %s ", m, x != NULL ? x : "-");
		evbuffer_add_buffer(out, in);
		evhttp_add_header(oh, "X-RateLimit-Remaining", "42");
		evhttp_send_reply(req, 200, "OK", out);
	} else if (strncmp(uri, "/status/", 8) == 0) {
		int code = atoi(uri + 8);
		evhttp_add_header(oh, "Retry-After", "7");
		evbuffer_add_printf(out, "{\"message\":\"status %d\"}", code);
		evhttp_send_reply(req, code, "Test", out);
	} else if (strcmp(uri, "/big") == 0) {
		char chunk[1000];
		memset(chunk, 'x', sizeof chunk);
		for (int i = 0; i < 100; i++)
			evbuffer_add(out, chunk, sizeof chunk);
		evhttp_send_reply(req, 200, "OK", out);
	} else {
		/* /park: left unanswered; evhttp_free drops it. */
	}
	evbuffer_free(out);
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	f->base = event_base_new();
	f->server = evhttp_new(f->base);
	evhttp_set_gencb(f->server, serve, f);
	evhttp_set_allowed_methods(f->server, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT);
	struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(f->server, "127.0.0.1", 0);
	assert_non_null(bs);
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;
	assert_int_equal(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sin, &len),
			 0);
	f->port = ntohs(sin.sin_port);
	f->http = http_new(f->base);
	assert_non_null(f->http);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	http_free(f->http);
	evhttp_free(f->server);
	event_base_free(f->base);
	free(f);
	return 0;
}

static void outcome_clear(struct outcome *o)
{
	free(o->error);
	free(o->body);
	free(o->retry_after);
}

static void on_done(void *arg, const struct drover_http_response *res)
{
	struct outcome *o = arg;
	o->calls++;
	o->status = res->status;
	o->error = res->error != NULL ? xstrdup(res->error) : NULL;
	o->is_timeout = res->is_timeout;
	o->is_cancelled = res->is_cancelled;
	o->is_truncated = res->is_truncated;
	o->body = xstrndup(res->body, res->body_len);
	o->body_len = res->body_len;
	assert_int_equal(res->body[res->body_len], '\0');
	const char *ra = http_response_header(res, "retry-after");
	o->retry_after = ra != NULL ? xstrdup(ra) : NULL;
	if (o->restart) {
		char *url = url_for(o->f, "/ok");
		struct drover_http_request req = {.method = "GET", .url = url};
		assert_int_equal(http_request_start(o->f->http, &req, on_done, o->next_outcome), 0);
		free(url);
	}
	if (o->done_count != NULL)
		(*o->done_count)++;
}

/* Runs the loop until *count reaches want (bounded). */
static void run_until(struct fixture *f, int *count, int want)
{
	int64_t end = mono_ms() + SAFETY_TIMEOUT_MS;
	while (*count < want) {
		assert_true(mono_ms() < end);
		event_base_loop(f->base, EVLOOP_ONCE);
	}
}

static void start(struct fixture *f, const char *method, const char *path, const char *body,
		  int64_t timeout_ms, struct outcome *o)
{
	char *url = url_for(f, path);
	const char *headers[] = {"X-Test: hello", "Content-Type: text/plain", NULL};
	struct drover_http_request req = {.method = method,
					  .url = url,
					  .headers = headers,
					  .body = body,
					  .body_len = body != NULL ? strlen(body) : 0,
					  .timeout_ms = timeout_ms};
	assert_int_equal(http_request_start(f->http, &req, on_done, o), 0);
	free(url);
}

static void test_success_with_body_and_headers(void **state)
{
	struct fixture *f = *state;
	int done = 0;
	struct outcome o = {.done_count = &done};
	start(f, "POST", "/ok", "payload", 0, &o);
	assert_int_equal(o.calls, 0); /* never from inside the call */
	assert_int_equal(http_in_flight(f->http), 1);
	run_until(f, &done, 1);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.status, 200);
	assert_null(o.error);
	assert_string_equal(o.body, "POST hello payload");
	assert_int_equal(http_in_flight(f->http), 0);
	outcome_clear(&o);
}

static void test_client_and_server_errors(void **state)
{
	struct fixture *f = *state;
	int done = 0;
	struct outcome o404 = {.done_count = &done}, o422 = {.done_count = &done},
		       o503 = {.done_count = &done}, o429 = {.done_count = &done};
	start(f, "POST", "/status/404", "{}", 0, &o404);
	start(f, "POST", "/status/422", "{}", 0, &o422);
	start(f, "GET", "/status/503", NULL, 0, &o503);
	start(f, "GET", "/status/429", NULL, 0, &o429);
	run_until(f, &done, 4);
	assert_int_equal(o404.status, 404);
	assert_int_equal(o422.status, 422);
	assert_int_equal(o503.status, 503);
	assert_int_equal(o429.status, 429);
	assert_null(o429.error);
	assert_string_equal(o429.retry_after, "7");
	assert_string_equal(o503.body, "{\"message\":\"status 503\"}");
	outcome_clear(&o404), outcome_clear(&o422), outcome_clear(&o503), outcome_clear(&o429);
}

static void test_body_is_capped(void **state)
{
	struct fixture *f = *state;
	int done = 0;
	struct outcome o = {.done_count = &done};
	char *url = url_for(f, "/big");
	struct drover_http_request req = {
	    .method = "GET", .url = url, .max_response_body_bytes = 1000};
	assert_int_equal(http_request_start(f->http, &req, on_done, &o), 0);
	free(url);
	run_until(f, &done, 1);
	assert_int_equal(o.status, 200);
	assert_int_equal(o.body_len, 1000);
	assert_true(o.is_truncated);
	outcome_clear(&o);
}

static void test_timeout(void **state)
{
	struct fixture *f = *state;
	int done = 0;
	struct outcome o = {.done_count = &done};
	int64_t t0 = mono_ms();
	start(f, "GET", "/park", NULL, 300, &o);
	run_until(f, &done, 1);
	assert_int_equal(o.status, 0);
	assert_true(o.is_timeout);
	assert_non_null(o.error);
	assert_true(mono_ms() - t0 >= 250);
	outcome_clear(&o);
}

static void test_connection_refused(void **state)
{
	struct fixture *f = *state;
	/* A port that was free a moment ago and nobody listens on. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	socklen_t len = sizeof sin;
	getsockname(fd, (struct sockaddr *)&sin, &len);
	close(fd);
	char *url = xasprintf("http://127.0.0.1:%d/x", ntohs(sin.sin_port));
	int done = 0;
	struct outcome o = {.done_count = &done};
	struct drover_http_request req = {.method = "GET", .url = url};
	assert_int_equal(http_request_start(f->http, &req, on_done, &o), 0);
	free(url);
	run_until(f, &done, 1);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.status, 0);
	assert_false(o.is_timeout);
	assert_non_null(o.error);
	outcome_clear(&o);
}

static void test_bad_requests_refused(void **state)
{
	struct fixture *f = *state;
	struct outcome o = {0};
	struct drover_http_request req = {.method = "GET", .url = "file:///etc/passwd"};
	assert_int_equal(http_request_start(f->http, &req, on_done, &o), -1);
	req = (struct drover_http_request){.method = "GE T", .url = "http://127.0.0.1:1/"};
	assert_int_equal(http_request_start(f->http, &req, on_done, &o), -1);
	assert_int_equal(http_in_flight(f->http), 0);
	assert_int_equal(o.calls, 0);
}

#define MANY 100

static void test_many_concurrent(void **state)
{
	struct fixture *f = *state;
	int done = 0;
	struct outcome *o = xcalloc(MANY, sizeof *o);
	for (int i = 0; i < MANY; i++) {
		o[i].done_count = &done;
		char body[32];
		snprintf(body, sizeof body, "n%d", i);
		start(f, "POST", "/ok", body, 0, &o[i]);
	}
	assert_int_equal(http_in_flight(f->http), MANY);
	run_until(f, &done, MANY);
	for (int i = 0; i < MANY; i++) {
		char want[64];
		snprintf(want, sizeof want, "POST hello n%d", i);
		assert_int_equal(o[i].calls, 1);
		assert_int_equal(o[i].status, 200);
		assert_string_equal(o[i].body, want);
		outcome_clear(&o[i]);
	}
	free(o);
}

static void test_request_from_callback(void **state)
{
	struct fixture *f = *state;
	int done = 0;
	struct outcome second = {.done_count = &done};
	struct outcome first = {
	    .done_count = &done, .f = f, .restart = true, .next_outcome = &second};
	start(f, "GET", "/status/500", NULL, 0, &first);
	run_until(f, &done, 2);
	assert_int_equal(first.status, 500);
	assert_int_equal(second.status, 200);
	assert_string_equal(second.body, "GET - ");
	outcome_clear(&first), outcome_clear(&second);
}

static void test_free_with_requests_in_flight(void **state)
{
	struct fixture *f = *state;
	int done = 0;
	struct outcome o[5];
	memset(o, 0, sizeof o);
	for (int i = 0; i < 5; i++) {
		o[i].done_count = &done;
		start(f, "GET", "/park", NULL, 10000, &o[i]);
	}
	/* Let them connect and reach the server. */
	int64_t end = mono_ms() + SAFETY_TIMEOUT_MS;
	while (f->served < 5) {
		assert_true(mono_ms() < end);
		event_base_loop(f->base, EVLOOP_ONCE);
	}
	http_free(f->http);
	f->http = NULL;
	assert_int_equal(done, 5);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(o[i].calls, 1);
		assert_true(o[i].is_cancelled);
		assert_int_equal(o[i].status, 0);
		outcome_clear(&o[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_success_with_body_and_headers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_client_and_server_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_body_is_capped, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_requests_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_many_concurrent, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_request_from_callback, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_free_with_requests_in_flight, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
