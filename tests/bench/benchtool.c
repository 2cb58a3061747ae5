/*
 * benchtool: the small native helpers of tests/bench/run.sh, compiled by it
 * (cc ... -lrdkafka). Not part of the agent; it links nothing of it.
 *
 *   benchtool produce-ingest BROKERS TOPIC ce|github N TAG [FIXTURE]
 *       N records as fast as the producer takes them, round-robin over the
 *       topic's partitions: small structured CloudEvents (a drift of a model
 *       no pipeline watches) or a GitHub push body (FIXTURE) with the
 *       x-github-event / x-github-delivery headers, each with a unique id.
 *   benchtool produce-timed BROKERS TOPIC N INTERVAL_MS PREFIX
 *       N drift CloudEvents, one every INTERVAL_MS (0: as fast as possible),
 *       each produced on its own (linger.ms=0 when spaced). The model of
 *       record i is PREFIX-i-T, T the CLOCK_REALTIME nanoseconds just before
 *       it was handed to librdkafka: a stage reads it back from DROVER_MODEL.
 *   benchtool committed BROKERS GROUP TOPIC PARTITIONS TARGET TIMEOUT_S
 *       Polls the group's committed offsets (OffsetFetch; it does not join
 *       the group) every 10 ms until their sum reaches TARGET; prints the
 *       CLOCK_REALTIME milliseconds at which it saw that. Exit 1 on timeout.
 *   benchtool spawn N PARALLEL PROGRAM [ARG...]
 *       The bare cost of running N processes: posix_spawn, then waitpid,
 *       PARALLEL at a time. Prints "N elapsed_ms per_second".
 *   benchtool spawn-date N
 *       The floor of a shell stage's "start" mark: N times, the nanoseconds
 *       from posix_spawn of /bin/sh -e -c 'date +%s%N' to the time date
 *       prints. Prints "p50_ns p99_ns max_ns".
 */
#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int64_t clock_ns(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "benchtool: %s\n", what);
	exit(2);
}

static void *must_alloc(size_t size)
{
	void *p = calloc(1, size);
	if (p == NULL)
		die("out of memory");
	return p;
}

static void conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char err[256];
	if (rd_kafka_conf_set(conf, name, value, err, sizeof err) != RD_KAFKA_CONF_OK)
		die(err);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	long *failed = opaque;
	if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		if (*failed == 0)
			fprintf(stderr, "benchtool: delivery failed: %s\n",
				rd_kafka_err2str(m->err));
		(*failed)++;
	}
}

/* A producer handle; linger_ms "0" sends each record at once. */
static rd_kafka_t *producer_new(const char *brokers, const char *linger_ms, long *failed)
{
	char err[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	conf_set(conf, "bootstrap.servers", brokers);
	conf_set(conf, "linger.ms", linger_ms);
	conf_set(conf, "acks", "all");
	conf_set(conf, "queue.buffering.max.messages", "200000");
	rd_kafka_conf_set_opaque(conf, failed);
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
	if (rk == NULL)
		die(err);
	return rk;
}

/* Produces one record, waiting while the local queue is full. */
static void produce_one(rd_kafka_t *rk, const char *topic, int32_t partition, const char *key,
			const char *value, size_t value_len, rd_kafka_headers_t *headers)
{
	for (;;) {
		rd_kafka_resp_err_t err = rd_kafka_producev(
		    rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
		    RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE((void *)value, value_len),
		    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(headers),
		    RD_KAFKA_V_END);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			return;
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			die(rd_kafka_err2str(err));
		rd_kafka_poll(rk, 50);
	}
}

/* Waits for every acknowledgement; fails if any record was not taken. */
static void producer_finish(rd_kafka_t *rk, const long *failed)
{
	if (rd_kafka_flush(rk, 120000) != RD_KAFKA_RESP_ERR_NO_ERROR)
		die("records still unacknowledged after 120 s");
	rd_kafka_destroy(rk);
	if (*failed > 0) {
		fprintf(stderr, "benchtool: %ld records were not delivered\n", *failed);
		exit(1);
	}
}

static int32_t topic_partitions(rd_kafka_t *rk, const char *topic)
{
	rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
	const struct rd_kafka_metadata *md = NULL;
	if (rd_kafka_metadata(rk, 0, t, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
		die("no metadata for the topic");
	int32_t n = md->topic_cnt == 1 ? md->topics[0].partition_cnt : 0;
	rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(t);
	if (n <= 0)
		die("the topic has no partitions (does it exist?)");
	return n;
}

static char *file_read(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		die("cannot open the fixture");
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = must_alloc((size_t)size + 1);
	if (size < 0 || fread(buf, 1, (size_t)size, f) != (size_t)size)
		die("cannot read the fixture");
	fclose(f);
	*len = (size_t)size;
	return buf;
}

/* produce-ingest BROKERS TOPIC ce|github N TAG [FIXTURE] */
static int cmd_produce_ingest(int argc, char **argv)
{
	if (argc < 5)
		die("produce-ingest BROKERS TOPIC ce|github N TAG [FIXTURE]");
	const char *brokers = argv[0], *topic = argv[1], *kind = argv[2], *tag = argv[4];
	long n = atol(argv[3]);
	bool is_github = strcmp(kind, "github") == 0;
	size_t body_len = 0;
	char *body = NULL;
	if (is_github) {
		if (argc < 6)
			die("produce-ingest github needs the FIXTURE");
		body = file_read(argv[5], &body_len);
	}
	long failed = 0;
	rd_kafka_t *rk = producer_new(brokers, "20", &failed);
	int32_t parts = topic_partitions(rk, topic);
	for (long i = 0; i < n; i++) {
		char key[64], value[768], id[96];
		snprintf(key, sizeof key, "bench/repo-%ld", i % 64);
		rd_kafka_headers_t *h = rd_kafka_headers_new(2);
		if (is_github) {
			snprintf(id, sizeof id, "bench-gh-%s-%ld", tag, i);
			rd_kafka_header_add(h, "x-github-event", -1, "push", -1);
			rd_kafka_header_add(h, "x-github-delivery", -1, id, -1);
			produce_one(rk, topic, (int32_t)(i % parts), key, body, body_len, h);
		} else {
			int len =
			    snprintf(value, sizeof value,
				     "{\"specversion\":\"1.0\","
				     "\"type\":\"dev.cdeventsx.drover-drift.detected.0.1.0\","
				     "\"source\":\"/bench/monitoring\",\"id\":\"bench-ce-%s-%ld\","
				     "\"datacontenttype\":\"application/json\",\"data\":{"
				     "\"model\":\"unwatched-%ld\",\"environment\":\"prod\","
				     "\"metric\":\"psi\",\"value\":0.27,\"threshold\":0.2,"
				     "\"severity\":\"warning\",\"repo\":\"%s\"}}",
				     tag, i, i % 1000, key);
			rd_kafka_header_add(h, "content-type", -1, "application/cloudevents+json",
					    -1);
			produce_one(rk, topic, (int32_t)(i % parts), key, value, (size_t)len, h);
		}
		rd_kafka_poll(rk, 0);
	}
	producer_finish(rk, &failed);
	free(body);
	printf("%ld\n", n);
	return 0;
}

/* produce-timed BROKERS TOPIC N INTERVAL_MS PREFIX */
static int cmd_produce_timed(int argc, char **argv)
{
	if (argc < 5)
		die("produce-timed BROKERS TOPIC N INTERVAL_MS PREFIX");
	const char *brokers = argv[0], *topic = argv[1], *prefix = argv[4];
	long n = atol(argv[2]), interval_ms = atol(argv[3]);
	long failed = 0;
	rd_kafka_t *rk = producer_new(brokers, interval_ms > 0 ? "0" : "5", &failed);
	int32_t parts = topic_partitions(rk, topic);
	/* The first records would pay for connecting: make the connections now. */
	rd_kafka_flush(rk, 1000);
	int64_t start = clock_ns(CLOCK_MONOTONIC);
	for (long i = 0; i < n; i++) {
		if (interval_ms > 0) {
			/* An absolute schedule: a late record does not delay the next. */
			int64_t due = start + (int64_t)i * interval_ms * 1000000;
			struct timespec ts = {(time_t)(due / 1000000000), (long)(due % 1000000000)};
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
				;
		}
		char key[64], value[768];
		snprintf(key, sizeof key, "bench/%s-%ld", prefix, i % 64);
		int64_t t = clock_ns(CLOCK_REALTIME);
		int len = snprintf(value, sizeof value,
				   "{\"specversion\":\"1.0\","
				   "\"type\":\"dev.cdeventsx.drover-drift.detected.0.1.0\","
				   "\"source\":\"/bench/monitoring\",\"id\":\"%s-%ld\","
				   "\"datacontenttype\":\"application/json\",\"data\":{"
				   "\"model\":\"%s-%ld-%lld\",\"environment\":\"prod\","
				   "\"metric\":\"psi\",\"value\":0.27,\"threshold\":0.2,"
				   "\"severity\":\"warning\",\"repo\":\"%s\"}}",
				   prefix, i, prefix, i, (long long)t, key);
		rd_kafka_headers_t *h = rd_kafka_headers_new(1);
		rd_kafka_header_add(h, "content-type", -1, "application/cloudevents+json", -1);
		produce_one(rk, topic, (int32_t)(i % parts), key, value, (size_t)len, h);
		rd_kafka_poll(rk, 0);
	}
	producer_finish(rk, &failed);
	printf("%ld\n", n);
	return 0;
}

/* committed BROKERS GROUP TOPIC PARTITIONS TARGET TIMEOUT_S */
static int cmd_committed(int argc, char **argv)
{
	if (argc < 6)
		die("committed BROKERS GROUP TOPIC PARTITIONS TARGET TIMEOUT_S");
	const char *brokers = argv[0], *group = argv[1], *topic = argv[2];
	int parts = atoi(argv[3]);
	long long target = atoll(argv[4]);
	int64_t deadline = clock_ns(CLOCK_MONOTONIC) + atoll(argv[5]) * 1000000000LL;
	char err[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	conf_set(conf, "bootstrap.servers", brokers);
	conf_set(conf, "group.id", group);
	conf_set(conf, "enable.auto.commit", "false");
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
	if (rk == NULL)
		die(err);
	long long sum = -1;
	for (;;) {
		rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
		for (int p = 0; p < parts; p++)
			rd_kafka_topic_partition_list_add(l, topic, p);
		if (rd_kafka_committed(rk, l, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
			sum = 0;
			for (int p = 0; p < l->cnt; p++)
				if (l->elems[p].offset > 0)
					sum += l->elems[p].offset;
		}
		rd_kafka_topic_partition_list_destroy(l);
		if (sum >= target) {
			printf("%lld\n", (long long)(clock_ns(CLOCK_REALTIME) / 1000000));
			break;
		}
		if (clock_ns(CLOCK_MONOTONIC) > deadline) {
			fprintf(stderr, "benchtool: committed offsets sum to %lld, not %lld\n", sum,
				target);
			rd_kafka_destroy(rk);
			return 1;
		}
		usleep(10000);
	}
	rd_kafka_destroy(rk);
	return 0;
}

/* spawn N PARALLEL PROGRAM [ARG...] */
static int cmd_spawn(int argc, char **argv)
{
	if (argc < 3)
		die("spawn N PARALLEL PROGRAM [ARG...]");
	long n = atol(argv[0]), parallel = atol(argv[1]);
	char **child_argv = argv + 2;
	long started = 0, running = 0;
	int64_t t0 = clock_ns(CLOCK_MONOTONIC);
	while (started < n || running > 0) {
		while (started < n && running < parallel) {
			pid_t pid;
			int rc = posix_spawn(&pid, child_argv[0], NULL, NULL, child_argv, environ);
			if (rc != 0) {
				fprintf(stderr, "benchtool: posix_spawn %s: %s\n", child_argv[0],
					strerror(rc));
				return 1;
			}
			started++;
			running++;
		}
		int status;
		if (waitpid(-1, &status, 0) > 0)
			running--;
		else if (errno != EINTR)
			die("waitpid");
	}
	double ms = (double)(clock_ns(CLOCK_MONOTONIC) - t0) / 1e6;
	printf("%ld %.1f %.1f\n", n, ms, (double)n / (ms / 1000.0));
	return 0;
}

static int compare_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* spawn-date N */
static int cmd_spawn_date(int argc, char **argv)
{
	if (argc < 1)
		die("spawn-date N");
	long n = atol(argv[0]);
	if (n <= 0)
		die("N must be positive");
	int64_t *lat = must_alloc((size_t)n * sizeof *lat);
	char *child_argv[] = {"/bin/sh", "-e", "-c", "date +%s%N", NULL};
	for (long i = 0; i < n; i++) {
		int fds[2];
		if (pipe(fds) != 0)
			die("pipe");
		posix_spawn_file_actions_t fa;
		posix_spawn_file_actions_init(&fa);
		posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
		posix_spawn_file_actions_addclose(&fa, fds[0]);
		pid_t pid;
		int64_t t0 = clock_ns(CLOCK_REALTIME);
		if (posix_spawn(&pid, child_argv[0], &fa, NULL, child_argv, environ) != 0)
			die("posix_spawn /bin/sh");
		posix_spawn_file_actions_destroy(&fa);
		close(fds[1]);
		char buf[64] = {0};
		size_t got = 0;
		ssize_t r;
		while (got < sizeof buf - 1 &&
		       (r = read(fds[0], buf + got, sizeof buf - 1 - got)) > 0)
			got += (size_t)r;
		close(fds[0]);
		waitpid(pid, NULL, 0);
		lat[i] = atoll(buf) - t0;
	}
	qsort(lat, (size_t)n, sizeof *lat, compare_i64);
	printf("%lld %lld %lld\n", (long long)lat[n / 2], (long long)lat[(n * 99) / 100],
	       (long long)lat[n - 1]);
	free(lat);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		die("usage: benchtool produce-ingest|produce-timed|committed|spawn|spawn-date ...");
	signal(SIGPIPE, SIG_IGN);
	const char *cmd = argv[1];
	if (strcmp(cmd, "produce-ingest") == 0)
		return cmd_produce_ingest(argc - 2, argv + 2);
	if (strcmp(cmd, "produce-timed") == 0)
		return cmd_produce_timed(argc - 2, argv + 2);
	if (strcmp(cmd, "committed") == 0)
		return cmd_committed(argc - 2, argv + 2);
	if (strcmp(cmd, "spawn") == 0)
		return cmd_spawn(argc - 2, argv + 2);
	if (strcmp(cmd, "spawn-date") == 0)
		return cmd_spawn_date(argc - 2, argv + 2);
	die("unknown subcommand");
	return 2;
}
