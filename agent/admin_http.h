/*
 * admin_http: what admin.c shares with the routes kept in files of their
 * own (admin_hooks.c): JSON replies and the acknowledged produce of an
 * event. Internal to the admin API; nothing else includes it.
 */
#ifndef DROVER_ADMIN_HTTP_H
#define DROVER_ADMIN_HTTP_H

#include <event2/http.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stddef.h>

#include "event.h"

struct admin;

/* Answers code with body (a reference the call takes) as JSON. */
void admin_reply_json(struct evhttp_request *req, int code, json_t *body);

/* Answers code with {"error": "<message>"}. */
void admin_reply_error(struct evhttp_request *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * The request headers that become record headers (ce-*, X-GitHub-Event,
 * X-GitHub-Delivery, X-Gitlab-Event, X-Gitlab-Event-UUID, Idempotency-Key,
 * X-Drover-Event, Content-Type; never a secret), lower-cased; views (at
 * most max_views) point into the returned list, which the caller owns.
 */
rd_kafka_headers_t *admin_event_headers(struct evhttp_request *req, struct event_header *views,
					size_t *n_views, size_t max_views);

/*
 * Reads a request carrying an event: *headers gets its record headers (as
 * admin_event_headers; the caller owns them) and *ev its canonical event (a
 * new reference, or NULL when it does not normalize, err then says why).
 * Returns event_normalize's outcome.
 */
enum event_outcome admin_event_read(struct admin *ad, struct evhttp_request *req, const char *data,
				    size_t len, rd_kafka_headers_t **headers, json_t **ev,
				    char *err, size_t err_len);

/*
 * Produces data with headers (taken in every case) to the events topic
 * under key (may be NULL) and answers 202 {topic, partition, offset, key}
 * once Kafka acknowledged the record, 503 when it refused it or the agent
 * is stopping. A client that goes away meanwhile is never answered.
 */
void admin_produce_event(struct admin *ad, struct evhttp_request *req, const char *data, size_t len,
			 rd_kafka_headers_t *headers, const char *key);

#endif
