/*
 * kafka: producer and embedded broker on the event loop. The producer's
 * queue wakes the loop through a pipe (rd_kafka_queue_io_event_enable) and a
 * timer polls as a safety net. Never blocks the loop except in kafka_free.
 */
#include "kafka.h"

#include <event2/event.h>
#include <fcntl.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

struct kafka {
	struct event_base *base;
	rd_kafka_t *mock_rk; /* owns the embedded cluster, or NULL */
	rd_kafka_mock_cluster_t *mock;
	char *brokers;
	rd_kafka_t *producer;
	rd_kafka_queue_t *main_queue;
	int wake_fds[2];
	struct event *wake_ev, *poll_timer;
};

struct delivery {
	kafka_delivery_cb cb;
	void *arg;
};

/*
 * Whether a librdkafka line only says that a kafka.properties entry is for
 * the other kind of client ("Configuration property session.timeout.ms is
 * a consumer property and will be ignored by this producer instance").
 * kafka.properties is applied to the consumer and to the producer alike, so
 * that is expected of a correct configuration, not worth a warning.
 */
static bool kafka_log_is_other_client_property(const char *fac, const char *buf)
{
	if (fac == NULL || buf == NULL || strcmp(fac, "CONFWARN") != 0)
		return false;
	return strstr(buf, " is a consumer property and will be ignored by this producer "
			   "instance") != NULL ||
	       strstr(buf, " is a producer property and will be ignored by this consumer "
			   "instance") != NULL;
}

static void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	if (kafka_log_is_other_client_property(fac, buf))
		level = 7; /* debug */
	if (level <= 3)
		log_error("kafka: %s: %s", fac, buf);
	else if (level <= 5)
		log_warn("kafka: %s: %s", fac, buf);
	else
		log_debug("kafka: %s: %s", fac, buf);
}

static void kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	(void)rk, (void)opaque;
	/* Connection failures were already logged by kafka_log_cb. */
	if (err == RD_KAFKA_RESP_ERR__TRANSPORT)
		return;
	log_warn("kafka: %s: %s", rd_kafka_err2name(err), reason);
}

int kafka_conf_apply(rd_kafka_conf_t *conf, const struct config *cfg, const char *brokers,
		     char *err, size_t err_len)
{
	if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, err_len) != RD_KAFKA_CONF_OK)
		return -1;
	rd_kafka_conf_set(conf, "client.id", "drover", NULL, 0);
	/* librdkafka's messages go through drover's log, one escaped line each. */
	rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
	rd_kafka_conf_set_error_cb(conf, kafka_error_cb);
	const char *key;
	json_t *value;
	json_object_foreach(cfg->kafka.properties, key, value)
	{
		char buf[512];
		const char *text = json_string_value(value);
		if (text == NULL) {
			snprintf(err, err_len, "kafka.properties.%s must be a string", key);
			return -1;
		}
		if (rd_kafka_conf_set(conf, key, text, buf, sizeof buf) != RD_KAFKA_CONF_OK) {
			snprintf(err, err_len, "kafka.properties.%s: %s", key, buf);
			return -1;
		}
	}
	return 0;
}

static void kafka_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	(void)rk, (void)opaque;
	struct delivery *d = msg->_private;
	if (d == NULL)
		return;
	if (d->cb != NULL)
		d->cb(d->arg, msg->err, msg->partition, msg->offset);
	free(d);
}

static void kafka_poll(struct kafka *k)
{
	while (rd_kafka_poll(k->producer, 0) > 0)
		;
}

static void kafka_on_wake(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	char buf[64];
	while (read(fd, buf, sizeof buf) > 0)
		;
	kafka_poll(arg);
}

static void kafka_on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	kafka_poll(arg);
}

/* Starts librdkafka's in-process mock cluster and creates drover's topics. */
static int kafka_start_embedded(struct kafka *k, const struct config *cfg, char *err,
				size_t err_len)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
	/* This handle only hosts the cluster; it never connects anywhere. */
	rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
	k->mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, err_len);
	if (k->mock_rk == NULL) {
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	/* The mock cluster's thread inherits our signal mask; librdkafka 2.0 gives
	 * up on the cluster when its poll() is interrupted (by SIGCHLD from stage
	 * processes), so the thread must be born with every signal blocked. */
	sigset_t all, saved;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &saved);
	k->mock = rd_kafka_mock_cluster_new(k->mock_rk, 1);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (k->mock == NULL) {
		snprintf(err, err_len, "cannot start the embedded broker");
		return -1;
	}
	const char *topics[] = {cfg->kafka.events_topic, cfg->kafka.results_topic,
				cfg->kafka.dead_letter_topic};
	for (size_t i = 0; i < ARRAY_LEN(topics); i++) {
		rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(
		    k->mock, topics[i], cfg->kafka.embedded_partitions, 1);
		if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
			snprintf(err, err_len, "embedded broker: creating %s: %s", topics[i],
				 rd_kafka_err2str(e));
			return -1;
		}
	}
	k->brokers = xstrdup(rd_kafka_mock_cluster_bootstraps(k->mock));
	log_info("kafka: embedded broker (librdkafka mock cluster) at %s, %d partitions per topic",
		 k->brokers, cfg->kafka.embedded_partitions);
	return 0;
}

struct kafka *kafka_new(const struct config *cfg, struct event_base *base, char *err,
			size_t err_len)
{
	struct kafka *k = xcalloc(1, sizeof *k);
	k->base = base;
	k->wake_fds[0] = k->wake_fds[1] = -1;
	if (strcmp(cfg->kafka.brokers, "embedded") == 0) {
		if (kafka_start_embedded(k, cfg, err, err_len) != 0)
			goto fail;
	} else {
		k->brokers = xstrdup(cfg->kafka.brokers);
	}

	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set_dr_msg_cb(conf, kafka_dr_cb);
	/*
	 * A record is retried for as long as the agent runs (kafka.properties
	 * may set a limit): through a broker outage the idempotent producer
	 * keeps it, in order, and delivers it once when the broker is back. A
	 * record given up and produced again could be written twice.
	 */
	rd_kafka_conf_set(conf, "message.timeout.ms", "0", NULL, 0);
	/*
	 * The largest record: the broker's default max.message.bytes (librdkafka's
	 * own default, 1000000, is lower), so the dead letter of any record the
	 * events topic took can be published as it came. kafka.properties may
	 * change it.
	 */
	rd_kafka_conf_set(conf, "message.max.bytes", "1048588", NULL, 0);
	if (kafka_conf_apply(conf, cfg, k->brokers, err, err_len) != 0 ||
	    rd_kafka_conf_set(conf, "enable.idempotence", "true", err, err_len) !=
		RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "acks", "all", err, err_len) != RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "linger.ms", "2", err, err_len) != RD_KAFKA_CONF_OK) {
		rd_kafka_conf_destroy(conf);
		goto fail;
	}
	k->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, err_len);
	if (k->producer == NULL) {
		rd_kafka_conf_destroy(conf);
		goto fail;
	}
	if (pipe2(k->wake_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
		snprintf(err, err_len, "pipe: %m");
		goto fail;
	}
	k->main_queue = rd_kafka_queue_get_main(k->producer);
	rd_kafka_queue_io_event_enable(k->main_queue, k->wake_fds[1], "1", 1);
	k->wake_ev = event_new(base, k->wake_fds[0], EV_READ | EV_PERSIST, kafka_on_wake, k);
	event_add(k->wake_ev, NULL);
	k->poll_timer = event_new(base, -1, EV_PERSIST, kafka_on_timer, k);
	struct timeval tv = {0, 200 * 1000};
	event_add(k->poll_timer, &tv);
	return k;
fail:
	kafka_free(k, 0);
	return NULL;
}

void kafka_free(struct kafka *k, int timeout_ms)
{
	if (k == NULL)
		return;
	if (k->producer != NULL) {
		if (rd_kafka_flush(k->producer, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
			log_warn("kafka: %d records not acknowledged at stop (results and dead "
				 "letters stay in the outbox; events posted to the API were not "
				 "accepted: their clients got no 202)",
				 rd_kafka_outq_len(k->producer));
		if (k->main_queue != NULL) {
			rd_kafka_queue_io_event_enable(k->main_queue, -1, NULL, 0);
			rd_kafka_queue_destroy(k->main_queue);
		}
		/* Undelivered records still own a struct delivery: purge them so
		 * their reports run (with an error) and free it. */
		rd_kafka_purge(k->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		rd_kafka_poll(k->producer, 0);
		rd_kafka_destroy(k->producer);
	}
	if (k->wake_ev != NULL)
		event_free(k->wake_ev);
	if (k->poll_timer != NULL)
		event_free(k->poll_timer);
	if (k->wake_fds[0] >= 0) {
		close(k->wake_fds[0]);
		close(k->wake_fds[1]);
	}
	if (k->mock != NULL)
		rd_kafka_mock_cluster_destroy(k->mock);
	if (k->mock_rk != NULL)
		rd_kafka_destroy(k->mock_rk);
	free(k->brokers);
	free(k);
}

const char *kafka_brokers(const struct kafka *k)
{
	return k->brokers;
}

bool kafka_is_embedded(const struct kafka *k)
{
	return k->mock != NULL;
}

int kafka_produce(struct kafka *k, const char *topic, const char *key, const void *value,
		  size_t value_len, rd_kafka_headers_t *headers, kafka_delivery_cb cb, void *arg)
{
	return kafka_produce_bytes(k, topic, key, key != NULL ? strlen(key) : 0, value, value_len,
				   headers, cb, arg);
}

int kafka_produce_bytes(struct kafka *k, const char *topic, const void *key, size_t key_len,
			const void *value, size_t value_len, rd_kafka_headers_t *headers,
			kafka_delivery_cb cb, void *arg)
{
	struct delivery *d = xmalloc(sizeof *d);
	d->cb = cb;
	d->arg = arg;
	rd_kafka_resp_err_t err = rd_kafka_producev(
	    k->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key_len),
	    RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
	    RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_warn("kafka: producing to %s failed: %s", topic, rd_kafka_err2str(err));
		free(d);
		return kafka_is_refusal(err) ? -2 : -1;
	}
	return 0;
}

bool kafka_is_refusal(rd_kafka_resp_err_t err)
{
	switch (err) {
	case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:    /* over message.max.bytes */
	case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE: /* over the broker's limits */
	case RD_KAFKA_RESP_ERR_INVALID_RECORD:
	case RD_KAFKA_RESP_ERR__INVALID_ARG:
		return true;
	default:
		return false;
	}
}

/* Blob: for each header, u32 name length, name, i64 value length (-1: null), value. */
void *kafka_headers_pack(const rd_kafka_headers_t *headers, size_t *len)
{
	struct strbuf sb;
	strbuf_init(&sb);
	const char *name;
	const void *value;
	size_t size;
	for (size_t i = 0;
	     headers != NULL && rd_kafka_header_get_all(headers, i, &name, &value, &size) ==
				    RD_KAFKA_RESP_ERR_NO_ERROR;
	     i++) {
		uint32_t name_len = (uint32_t)strlen(name);
		int64_t value_len = value != NULL ? (int64_t)size : -1;
		strbuf_add(&sb, &name_len, sizeof name_len);
		strbuf_add(&sb, name, name_len);
		strbuf_add(&sb, &value_len, sizeof value_len);
		if (value != NULL)
			strbuf_add(&sb, value, size);
	}
	*len = sb.len;
	return strbuf_detach(&sb);
}

rd_kafka_headers_t *kafka_headers_unpack(const void *blob, size_t len)
{
	rd_kafka_headers_t *h = rd_kafka_headers_new(8);
	const unsigned char *p = blob, *end = p + len;
	while (p < end) {
		uint32_t name_len;
		int64_t value_len;
		if ((size_t)(end - p) < sizeof name_len)
			break;
		memcpy(&name_len, p, sizeof name_len);
		p += sizeof name_len;
		if ((size_t)(end - p) < name_len + sizeof value_len)
			break;
		const char *name = (const char *)p;
		p += name_len;
		memcpy(&value_len, p, sizeof value_len);
		p += sizeof value_len;
		if (value_len > (int64_t)(end - p))
			break;
		rd_kafka_header_add(h, name, (ssize_t)name_len, value_len >= 0 ? p : NULL,
				    value_len >= 0 ? (ssize_t)value_len : 0);
		if (value_len > 0)
			p += value_len;
	}
	return h;
}

int kafka_stats_parse(const char *text, size_t len, const char *topic, bool *is_up, json_t **lag)
{
	json_t *stats = json_loadb(text, len, 0, NULL);
	if (!json_is_object(stats)) {
		json_decref(stats);
		return -1;
	}
	*is_up = false;
	const char *name;
	json_t *b;
	json_object_foreach(json_object_get(stats, "brokers"), name, b)
	{
		/* Logical brokers (bootstrap, coordinator aliases) have nodeid -1. */
		const char *state = json_string_value(json_object_get(b, "state"));
		if (json_integer_value(json_object_get(b, "nodeid")) >= 0 && state != NULL &&
		    strcmp(state, "UP") == 0)
			*is_up = true;
	}
	*lag = json_object();
	json_t *parts =
	    json_object_get(json_object_get(json_object_get(stats, "topics"), topic), "partitions");
	json_t *p;
	json_object_foreach(parts, name, p)
	{
		/* Only partitions this consumer has (desired), with a known lag. */
		json_t *l = json_object_get(p, "consumer_lag");
		if (strcmp(name, "-1") != 0 && json_is_integer(l) && json_integer_value(l) >= 0 &&
		    json_is_true(json_object_get(p, "desired")))
			json_object_set_new(*lag, name, json_integer(json_integer_value(l)));
	}
	json_decref(stats);
	return 0;
}
