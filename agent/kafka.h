/*
 * kafka: the agent's librdkafka handles that are not the consumer: the
 * producer (idempotent, acks=all) shared by report, intake's dead letters
 * and the admin API, and the embedded broker (librdkafka's mock cluster)
 * when kafka.brokers is "embedded". Delivery reports run on the event loop.
 */
#ifndef DROVER_KAFKA_H
#define DROVER_KAFKA_H

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct event_base;
struct kafka;

/* Called once per produced record, on the loop, when Kafka acked or gave up. */
typedef void (*kafka_delivery_cb)(void *arg, rd_kafka_resp_err_t err, int32_t partition,
				  int64_t offset);

struct kafka *kafka_new(const struct config *cfg, struct event_base *base, char *err,
			size_t err_len);
/* Flushes what is in flight (up to timeout_ms), then frees. */
void kafka_free(struct kafka *k, int timeout_ms);

/* "host:port,..." to give to other clients (the mock cluster's when embedded). */
const char *kafka_brokers(const struct kafka *k);
bool kafka_is_embedded(const struct kafka *k);

/*
 * Applies drover's settings and the user's kafka.properties to conf.
 * 0, or -1 with a message naming the bad property.
 */
int kafka_conf_apply(rd_kafka_conf_t *conf, const struct config *cfg, const char *brokers,
		     char *err, size_t err_len);

/*
 * Produces one record: key_len bytes of key (NULL: no key) and value_len
 * bytes of value (NULL: a null value). headers (may be NULL) are taken over
 * on success. 0; -1 when the producer cannot take it now (queue full: try
 * later); -2 when Kafka will never take it as it is (kafka_is_refusal: too
 * large). On error cb is not called and headers are still the caller's.
 */
int kafka_produce_bytes(struct kafka *k, const char *topic, const void *key, size_t key_len,
			const void *value, size_t value_len, rd_kafka_headers_t *headers,
			kafka_delivery_cb cb, void *arg);
/* The same with a text key (NULL: no key). */
int kafka_produce(struct kafka *k, const char *topic, const char *key, const void *value,
		  size_t value_len, rd_kafka_headers_t *headers, kafka_delivery_cb cb, void *arg);
/* Whether err (from producing or a delivery report) means the record itself
 * is refused, so sending it again can never succeed. */
bool kafka_is_refusal(rd_kafka_resp_err_t err);

/* Headers as one blob (for the outbox) and back. Caller frees / destroys. */
void *kafka_headers_pack(const rd_kafka_headers_t *headers, size_t *len);
rd_kafka_headers_t *kafka_headers_unpack(const void *blob, size_t len);

/*
 * Reads librdkafka's statistics JSON: *is_up is whether any real broker is
 * in state UP; *lag (new object, caller owns) maps each partition of topic
 * this consumer wants to its consumer lag, where known. 0, or -1 for text
 * that is not a JSON object (nothing set).
 */
int kafka_stats_parse(const char *text, size_t len, const char *topic, bool *is_up, json_t **lag);

#endif
