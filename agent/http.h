/*
 * http: an asynchronous HTTP client on the agent's event loop (libcurl's
 * multi interface driven by libevent: curl's socket and timer callbacks,
 * one timer). Requests never block the loop; each ends in exactly one
 * completion callback. Requests and responses are the plugin ABI's
 * (drover/plugin.h), so plugins reach this client through the host table.
 */
#ifndef DROVER_HTTP_H
#define DROVER_HTTP_H

#include <drover/plugin.h>
#include <stddef.h>

struct event_base;
struct http;

/* A client on base (libcurl is set up at its first request: a request that
 * cannot set it up fails, logged). */
struct http *http_new(struct event_base *base);
/*
 * Ends every request still in flight with a cancelled response (each
 * callback runs, and may not start another request: that is refused), then
 * frees the client. NULL is ignored.
 */
void http_free(struct http *h);

/*
 * Starts req (copied: nothing of it is borrowed after the call). done runs
 * later, never from inside this call, exactly once. 0, or -1 when the
 * request cannot be made (bad method or URL, client stopping; logged), and
 * done is then never called.
 */
int http_request_start(struct http *h, const struct drover_http_request *req,
		       drover_http_done_fn done, void *arg);

/* Requests started and not yet completed. */
size_t http_in_flight(const struct http *h);

/*
 * One response header line ("Name: value", CRLF or not) into a lower-case
 * name and a trimmed value (both the caller's to free). -1 when it is no
 * header: no colon, a name that is not a token, a NUL, or over 8 KiB.
 */
int http_header_parse(const char *line, size_t len, char **name, char **value);

/* The value of a response header (name in any case), or NULL. */
const char *http_response_header(const struct drover_http_response *res, const char *name);

#endif
