/*
 * Tests for kafka's pure parts: the header blob of the outbox (round trip,
 * binary and null values, and hostile blobs that must neither crash nor
 * read past their end — run under ASan), and kafka_conf_apply's refusal of
 * bad user properties, and the reading of librdkafka's statistics (broker
 * reachability and consumer lag) that /readyz and /metrics show; which
 * produce errors are refusals (never worth sending again), the producer's
 * record size limit, and that a kafka.properties entry meant for the other
 * kind of client (consumer or producer) is only a debug line, while other
 * configuration warnings stay warnings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "kafka.h"
#include "util.h"

/* Copies the blob into an allocation of exactly its size, so that ASan sees
 * any read past its end. */
static rd_kafka_headers_t *unpack_exact(const void *blob, size_t len)
{
	void *copy = xmalloc(len);
	if (len > 0)
		memcpy(copy, blob, len);
	rd_kafka_headers_t *h = kafka_headers_unpack(copy, len);
	free(copy);
	return h;
}

static void assert_header(const rd_kafka_headers_t *h, size_t idx, const char *name,
			  const void *value, size_t size)
{
	const char *got_name;
	const void *got_value;
	size_t got_size;
	assert_int_equal(rd_kafka_header_get_all(h, idx, &got_name, &got_value, &got_size),
			 RD_KAFKA_RESP_ERR_NO_ERROR);
	assert_string_equal(got_name, name);
	if (value == NULL) {
		assert_null(got_value);
		return;
	}
	assert_non_null(got_value);
	assert_int_equal(got_size, size);
	if (size > 0)
		assert_memory_equal(got_value, value, size);
}

static void test_headers_round_trip(void **state)
{
	(void)state;
	static const unsigned char binary[] = {0x00, 0x01, 0x00, 0xff, 0x7f, 0x00};
	rd_kafka_headers_t *h = rd_kafka_headers_new(4);
	rd_kafka_header_add(h, "content-type", -1, "application/json", -1);
	rd_kafka_header_add(h, "binary", -1, binary, sizeof binary);
	rd_kafka_header_add(h, "nothing", -1, NULL, 0);
	rd_kafka_header_add(h, "empty", -1, "", 0);
	rd_kafka_header_add(h, "dup", -1, "1", 1);
	rd_kafka_header_add(h, "dup", -1, "2", 1);
	rd_kafka_header_add(h, "ce_id", -1, "ünïcödé", -1);

	size_t len = 0;
	void *blob = kafka_headers_pack(h, &len);
	assert_non_null(blob);
	assert_true(len > 0);
	rd_kafka_headers_t *back = unpack_exact(blob, len);
	assert_non_null(back);
	assert_int_equal(rd_kafka_header_cnt(back), 7);
	assert_header(back, 0, "content-type", "application/json", 16);
	assert_header(back, 1, "binary", binary, sizeof binary);
	assert_header(back, 2, "nothing", NULL, 0);
	assert_header(back, 3, "empty", "", 0);
	assert_header(back, 4, "dup", "1", 1);
	assert_header(back, 5, "dup", "2", 1);
	assert_header(back, 6, "ce_id", "ünïcödé", strlen("ünïcödé"));

	/* packing what was unpacked gives the same blob */
	size_t len2 = 0;
	void *blob2 = kafka_headers_pack(back, &len2);
	assert_int_equal(len2, len);
	assert_memory_equal(blob2, blob, len);
	free(blob2);

	rd_kafka_headers_destroy(back);
	rd_kafka_headers_destroy(h);
	free(blob);
}

static void test_headers_empty(void **state)
{
	(void)state;
	rd_kafka_headers_t *h = rd_kafka_headers_new(0);
	size_t len = 99;
	void *blob = kafka_headers_pack(h, &len);
	assert_non_null(blob);
	assert_int_equal(len, 0);
	rd_kafka_headers_t *back = unpack_exact(blob, len);
	assert_non_null(back);
	assert_int_equal(rd_kafka_header_cnt(back), 0);
	rd_kafka_headers_destroy(back);
	rd_kafka_headers_destroy(h);
	free(blob);

	/* no list at all */
	len = 99;
	blob = kafka_headers_pack(NULL, &len);
	assert_int_equal(len, 0);
	free(blob);

	/* an outbox row without headers hands over NULL, 0 */
	back = kafka_headers_unpack(NULL, 0);
	assert_non_null(back);
	assert_int_equal(rd_kafka_header_cnt(back), 0);
	rd_kafka_headers_destroy(back);
}

/* Every prefix of a valid blob: no crash, no over-read, never more headers
 * than were packed, and whole headers only. */
static void test_headers_truncated(void **state)
{
	(void)state;
	rd_kafka_headers_t *h = rd_kafka_headers_new(4);
	rd_kafka_header_add(h, "a", -1, "value-a", -1);
	rd_kafka_header_add(h, "null", -1, NULL, 0);
	rd_kafka_header_add(h, "bytes", -1, "\0\0\0\0\0\0\0\0\0\0", 10);
	size_t len = 0;
	void *blob = kafka_headers_pack(h, &len);
	for (size_t cut = 0; cut < len; cut++) {
		rd_kafka_headers_t *back = unpack_exact(blob, cut);
		assert_non_null(back);
		size_t n = rd_kafka_header_cnt(back);
		assert_true(n < 3);
		if (n >= 1)
			assert_header(back, 0, "a", "value-a", 7);
		if (n >= 2)
			assert_header(back, 1, "null", NULL, 0);
		rd_kafka_headers_destroy(back);
	}
	rd_kafka_headers_destroy(h);
	free(blob);
}

static void put_u32(unsigned char *p, uint32_t v)
{
	memcpy(p, &v, sizeof v);
}

static void put_i64(unsigned char *p, int64_t v)
{
	memcpy(p, &v, sizeof v);
}

/* Lengths that lie: huge, negative, or pointing past the end. */
static void test_headers_hostile_lengths(void **state)
{
	(void)state;
	unsigned char b[64];
	rd_kafka_headers_t *back;

	/* name length far past the end */
	memset(b, 'n', sizeof b);
	put_u32(b, 0xffffffffu);
	back = unpack_exact(b, sizeof b);
	assert_int_equal(rd_kafka_header_cnt(back), 0);
	rd_kafka_headers_destroy(back);

	/* name fits, value length INT64_MAX */
	memset(b, 0, sizeof b);
	put_u32(b, 1);
	b[4] = 'k';
	put_i64(b + 5, INT64_MAX);
	back = unpack_exact(b, 13 + 10);
	assert_int_equal(rd_kafka_header_cnt(back), 0);
	rd_kafka_headers_destroy(back);

	/* value length one byte more than is there */
	put_i64(b + 5, 11);
	back = unpack_exact(b, 13 + 10);
	assert_int_equal(rd_kafka_header_cnt(back), 0);
	rd_kafka_headers_destroy(back);

	/* negative lengths other than -1, and INT64_MIN: no crash, nothing read */
	static const int64_t negatives[] = {-2, -1000, INT64_MIN};
	for (size_t i = 0; i < ARRAY_LEN(negatives); i++) {
		put_i64(b + 5, negatives[i]);
		back = unpack_exact(b, 13);
		assert_true(rd_kafka_header_cnt(back) <= 1);
		rd_kafka_headers_destroy(back);
	}

	/* zero-length name */
	memset(b, 0, sizeof b);
	put_u32(b, 0);
	put_i64(b + 4, 2);
	b[12] = 'h';
	b[13] = 'i';
	back = unpack_exact(b, 14);
	assert_true(rd_kafka_header_cnt(back) <= 1);
	rd_kafka_headers_destroy(back);

	/* fewer bytes than a name length */
	back = unpack_exact(b, 3);
	assert_int_equal(rd_kafka_header_cnt(back), 0);
	rd_kafka_headers_destroy(back);
}

/* Pseudo-random garbage of many sizes (a fixed LCG: reproducible). */
static void test_headers_garbage(void **state)
{
	(void)state;
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (int round = 0; round < 3000; round++) {
		size_t len = (size_t)(round % 97);
		unsigned char *b = xmalloc(len > 0 ? len : 1);
		for (size_t i = 0; i < len; i++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			b[i] = (unsigned char)(x >> 56);
		}
		/* make small lengths likely, so parsing gets past the first field */
		if (len >= 4 && round % 3 == 0)
			put_u32(b, (uint32_t)(round % 7));
		if (len >= (size_t)(4 + round % 7 + 8) && round % 3 == 0)
			put_i64(b + 4 + round % 7, (int64_t)(round % 13) - 2);
		rd_kafka_headers_t *back = kafka_headers_unpack(b, len);
		assert_non_null(back);
		/* whatever came out can be packed again */
		size_t plen;
		void *again = kafka_headers_pack(back, &plen);
		assert_true(plen <= len + 8 * rd_kafka_header_cnt(back) + 16);
		free(again);
		rd_kafka_headers_destroy(back);
		free(b);
	}
}

/* ---- kafka_conf_apply ---- */

static struct config *config_default(void)
{
	struct diags diags = {0};
	struct config *cfg = config_load(NULL, &diags);
	assert_non_null(cfg);
	diags_free(&diags);
	assert_non_null(cfg->kafka.properties);
	return cfg;
}

static void test_conf_apply_good(void **state)
{
	(void)state;
	struct config *cfg = config_default();
	json_object_set_new(cfg->kafka.properties, "socket.timeout.ms", json_string("12345"));
	json_object_set_new(cfg->kafka.properties, "client.id", json_string("my-agent"));
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char err[512] = "";
	assert_int_equal(kafka_conf_apply(conf, cfg, "broker1:9092,broker2:9092", err, sizeof err),
			 0);
	char value[256];
	size_t value_len = sizeof value;
	assert_int_equal(rd_kafka_conf_get(conf, "bootstrap.servers", value, &value_len),
			 RD_KAFKA_CONF_OK);
	assert_string_equal(value, "broker1:9092,broker2:9092");
	value_len = sizeof value;
	assert_int_equal(rd_kafka_conf_get(conf, "socket.timeout.ms", value, &value_len),
			 RD_KAFKA_CONF_OK);
	assert_string_equal(value, "12345");
	/* the user's properties come after drover's: the user wins */
	value_len = sizeof value;
	assert_int_equal(rd_kafka_conf_get(conf, "client.id", value, &value_len), RD_KAFKA_CONF_OK);
	assert_string_equal(value, "my-agent");
	rd_kafka_conf_destroy(conf);
	config_free(cfg);
}

static void check_refused(const char *key, json_t *value)
{
	struct config *cfg = config_default();
	json_object_set_new(cfg->kafka.properties, "socket.timeout.ms", json_string("5000"));
	json_object_set_new(cfg->kafka.properties, key, value);
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char err[512] = "";
	int rc = kafka_conf_apply(conf, cfg, "localhost:9092", err, sizeof err);
	rd_kafka_conf_destroy(conf);
	config_free(cfg);
	if (rc != -1)
		fail_msg("property %s was accepted", key);
	if (strstr(err, key) == NULL)
		fail_msg("the error does not name %s: \"%s\"", key, err);
}

static void test_conf_apply_refuses(void **state)
{
	(void)state;
	check_refused("no.such.property", json_string("1"));
	check_refused("socket.timeout.ms.typo", json_string("1"));
	check_refused("message.max.bytes", json_string("not-a-number"));
	check_refused("compression.codec", json_string("zip-it"));
	check_refused("linger.ms", json_integer(5)); /* not a string */
	check_refused("enable.idempotence", json_true());
}

/* The shape librdkafka 2.0 gives (STATISTICS.md), trimmed to what is read. */
static const char stats_up[] =
    "{\"name\":\"drover#consumer-1\",\"type\":\"consumer\","
    "\"brokers\":{"
    "\"127.0.0.1:19092/bootstrap\":{\"name\":\"127.0.0.1:19092/bootstrap\",\"nodeid\":-1,"
    "\"state\":\"INIT\"},"
    "\"GroupCoordinator\":{\"name\":\"GroupCoordinator\",\"nodeid\":-1,\"state\":\"UP\"},"
    "\"127.0.0.1:19092/1\":{\"name\":\"127.0.0.1:19092/1\",\"nodeid\":1,\"state\":\"UP\"}},"
    "\"topics\":{\"drover.events\":{\"topic\":\"drover.events\",\"partitions\":{"
    "\"0\":{\"partition\":0,\"desired\":true,\"consumer_lag\":7},"
    "\"1\":{\"partition\":1,\"desired\":true,\"consumer_lag\":-1},"
    "\"2\":{\"partition\":2,\"desired\":false,\"consumer_lag\":3},"
    "\"3\":{\"partition\":3,\"desired\":true,\"consumer_lag\":0},"
    "\"-1\":{\"partition\":-1,\"desired\":false,\"consumer_lag\":-1}}},"
    "\"other\":{\"partitions\":{\"0\":{\"desired\":true,\"consumer_lag\":99}}}}}";

static void test_stats_up_and_lag(void **state)
{
	(void)state;
	bool is_up = false;
	json_t *lag = NULL;
	assert_int_equal(
	    kafka_stats_parse(stats_up, strlen(stats_up), "drover.events", &is_up, &lag), 0);
	assert_true(is_up);
	/* Partitions 0 and 3: desired with a known lag; 1 unknown, 2 not ours, -1 internal. */
	assert_int_equal(json_object_size(lag), 2);
	assert_int_equal(json_integer_value(json_object_get(lag, "0")), 7);
	assert_int_equal(json_integer_value(json_object_get(lag, "3")), 0);
	json_decref(lag);
}

static void test_stats_down(void **state)
{
	(void)state;
	/* Only logical brokers up, the real one down: not connected. */
	const char *text = "{\"brokers\":{"
			   "\"GroupCoordinator\":{\"nodeid\":-1,\"state\":\"UP\"},"
			   "\"127.0.0.1:1/1\":{\"nodeid\":1,\"state\":\"CONNECT\"},"
			   "\"127.0.0.1:2/2\":{\"nodeid\":2,\"state\":\"DOWN\"}}}";
	bool is_up = true;
	json_t *lag = NULL;
	assert_int_equal(kafka_stats_parse(text, strlen(text), "drover.events", &is_up, &lag), 0);
	assert_false(is_up);
	assert_int_equal(json_object_size(lag), 0);
	json_decref(lag);
}

static void test_stats_garbage(void **state)
{
	(void)state;
	const char *bad[] = {"", "not json", "[1,2]", "{\"brokers\":", "null"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		bool is_up = true;
		json_t *lag = NULL;
		assert_int_equal(
		    kafka_stats_parse(bad[i], strlen(bad[i]), "drover.events", &is_up, &lag), -1);
		assert_true(is_up); /* untouched */
		assert_null(lag);
	}
	/* Wrong types inside an object are not errors, just nothing found. */
	const char *odd = "{\"brokers\":[1],\"topics\":{\"drover.events\":{\"partitions\":"
			  "{\"0\":{\"desired\":\"yes\",\"consumer_lag\":\"7\"}}}}}";
	bool is_up = true;
	json_t *lag = NULL;
	assert_int_equal(kafka_stats_parse(odd, strlen(odd), "drover.events", &is_up, &lag), 0);
	assert_false(is_up);
	assert_int_equal(json_object_size(lag), 0);
	json_decref(lag);
}

struct delivered {
	int count;
	rd_kafka_resp_err_t err;
};

static void count_delivery(void *arg, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
	(void)partition, (void)offset;
	struct delivered *d = arg;
	d->count++;
	d->err = err;
}

/*
 * kafka_produce tells a record Kafka will never take (-2) from one it takes:
 * the producer's limit is the broker's default (1048588 bytes), above
 * librdkafka's own 1000000, so a dead letter of any record the events topic
 * took fits. No broker is needed: the size check is local, and kafka_free
 * purges what is left (its delivery report still runs, with a purge error).
 */
static void test_produce_too_large(void **state)
{
	(void)state;
	struct config *cfg = config_default();
	free(cfg->kafka.brokers);
	cfg->kafka.brokers = xstrdup("127.0.0.1:1");
	struct event_base *base = event_base_new();
	char err[512] = "";
	struct kafka *k = kafka_new(cfg, base, err, sizeof err);
	if (k == NULL)
		fail_msg("kafka_new: %s", err);
	size_t big = 1040000, huge = 2000000;
	char *value = xmalloc(huge);
	memset(value, 'x', huge);
	struct delivered fits = {0}, refused = {0};
	assert_int_equal(kafka_produce(k, "t", "key", value, big, NULL, count_delivery, &fits), 0);
	rd_kafka_headers_t *h = rd_kafka_headers_new(1);
	rd_kafka_header_add(h, "x-drover-error", -1, "too large", -1);
	assert_int_equal(kafka_produce(k, "t", "key", value, huge, h, count_delivery, &refused),
			 -2);
	rd_kafka_headers_destroy(h); /* still ours after an error */
	kafka_free(k, 0);
	assert_int_equal(refused.count, 0);
	assert_int_equal(fits.count, 1);
	assert_true(fits.err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
		    fits.err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT);
	free(value);
	event_base_free(base);
	config_free(cfg);
}

static void test_is_refusal(void **state)
{
	(void)state;
	assert_true(kafka_is_refusal(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE));
	assert_true(kafka_is_refusal(RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE));
	/* Worth trying again: */
	assert_false(kafka_is_refusal(RD_KAFKA_RESP_ERR_NO_ERROR));
	assert_false(kafka_is_refusal(RD_KAFKA_RESP_ERR__QUEUE_FULL));
	assert_false(kafka_is_refusal(RD_KAFKA_RESP_ERR__TRANSPORT));
	assert_false(kafka_is_refusal(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT));
	assert_false(kafka_is_refusal(RD_KAFKA_RESP_ERR__PURGE_QUEUE));
	assert_false(kafka_is_refusal(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS));
}

/* Runs fn(arg) with stderr sent to a file; returns what was written (caller frees). */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
	char path[] = "/tmp/drover-test-kafka-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	fn(arg);
	fflush(stderr);
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	close(fd);
	char *text = file_read_all(path, 1 << 20, NULL);
	unlink(path);
	assert_non_null(text);
	return text;
}

/* The agent's producer, made and freed (librdkafka checks the configuration in between). */
static void make_producer(void *arg)
{
	struct config *cfg = arg;
	struct event_base *base = event_base_new();
	char err[512] = "";
	struct kafka *k = kafka_new(cfg, base, err, sizeof err);
	if (k == NULL)
		fail_msg("kafka_new: %s", err);
	kafka_free(k, 0);
	event_base_free(base);
}

/* A consumer configured as intake does (kafka_conf_apply), made and freed. */
static void make_consumer(void *arg)
{
	struct config *cfg = arg;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char err[512] = "";
	assert_int_equal(kafka_conf_apply(conf, cfg, "127.0.0.1:1", err, sizeof err), 0);
	assert_int_equal(rd_kafka_conf_set(conf, "group.id", "g", err, sizeof err),
			 RD_KAFKA_CONF_OK);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
	if (rk == NULL)
		fail_msg("rd_kafka_new: %s", err);
	rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
}

/* The log line that mentions needle: it must exist and have level (" DEBUG ", " WARN  "). */
static void assert_logged_as(const char *text, const char *needle, const char *level)
{
	const char *hit = strstr(text, needle);
	if (hit == NULL)
		fail_msg("no log line mentions \"%s\"; the log:\n%s", needle, text);
	const char *line = hit;
	while (line > text && line[-1] != '\n')
		line--;
	const char *end = strchr(hit, '\n');
	size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
	char *copy = xstrndup(line, len);
	if (strstr(copy, level) == NULL)
		fail_msg("\"%s\" is not logged at%s: %s", needle, level, copy);
	free(copy);
	/* and only once: one line per property */
	if (strstr(hit + 1, needle) != NULL)
		fail_msg("\"%s\" is logged more than once:\n%s", needle, text);
}

/*
 * kafka.properties goes to the consumer and to the producer alike, so each
 * sees the other's properties: librdkafka says so (CONFWARN) and that must
 * not reach operators as a warning. A real configuration warning (a
 * deprecated property) still does.
 */
static void test_conf_other_client_property_is_debug(void **state)
{
	(void)state;
	struct config *cfg = config_default();
	free(cfg->kafka.brokers);
	cfg->kafka.brokers = xstrdup("127.0.0.1:1");
	json_object_set_new(cfg->kafka.properties, "session.timeout.ms", json_string("6000"));
	json_object_set_new(cfg->kafka.properties, "group.instance.id", json_string("drover-1"));
	json_object_set_new(cfg->kafka.properties, "partition.assignment.strategy",
			    json_string("cooperative-sticky"));
	json_object_set_new(cfg->kafka.properties, "batch.num.messages", json_string("77"));
	json_object_set_new(cfg->kafka.properties, "produce.offset.report", json_string("true"));
	setenv("DROVER_LOG_LEVEL", "debug", 1);

	char *text = capture_stderr(make_producer, cfg);
	assert_logged_as(text, "session.timeout.ms is a consumer property", " DEBUG ");
	assert_logged_as(text, "group.instance.id is a consumer property", " DEBUG ");
	assert_logged_as(text, "partition.assignment.strategy is a consumer property", " DEBUG ");
	assert_logged_as(text, "produce.offset.report is deprecated", " WARN  ");
	free(text);

	text = capture_stderr(make_consumer, cfg);
	assert_logged_as(text, "batch.num.messages is a producer property", " DEBUG ");
	assert_logged_as(text, "produce.offset.report is deprecated", " WARN  ");
	assert_null(strstr(text, "session.timeout.ms is a"));
	free(text);

	/* At the default level the operator sees the deprecation and nothing else of it. */
	unsetenv("DROVER_LOG_LEVEL");
	text = capture_stderr(make_producer, cfg);
	assert_null(strstr(text, "is a consumer property"));
	assert_non_null(strstr(text, "produce.offset.report is deprecated"));
	free(text);
	config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_headers_round_trip),
	    cmocka_unit_test(test_headers_empty),
	    cmocka_unit_test(test_headers_truncated),
	    cmocka_unit_test(test_headers_hostile_lengths),
	    cmocka_unit_test(test_headers_garbage),
	    cmocka_unit_test(test_conf_apply_good),
	    cmocka_unit_test(test_conf_apply_refuses),
	    cmocka_unit_test(test_stats_up_and_lag),
	    cmocka_unit_test(test_stats_down),
	    cmocka_unit_test(test_stats_garbage),
	    cmocka_unit_test(test_produce_too_large),
	    cmocka_unit_test(test_is_refusal),
	    cmocka_unit_test(test_conf_other_client_property_is_debug),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
