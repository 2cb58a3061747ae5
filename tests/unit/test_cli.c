/*
 * test_cli: the operator CLI. The pure helpers (arguments, addresses, URLs,
 * times, escaping, tables, stage order) directly; the HTTP subcommands
 * against a one-shot fake agent on a loopback socket; validate and plan on
 * pipeline files written into a temporary directory.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli.h"
#include "util.h"

#ifndef FIXTURES_DIR
#define FIXTURES_DIR "tests/fixtures"
#endif

#define ARGC(a) ((int)ARRAY_LEN(a))

static bool starts_with(const char *s, const char *prefix)
{
	return s != NULL && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* A whole HTTP/1.1 answer with a correct Content-Length. Caller frees. */
static char *http_reply(const char *status_line, const char *body)
{
	return xasprintf("HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
			 "Content-Length: %zu\r\n\r\n%s",
			 status_line, strlen(body), body);
}

/* ------------------------------------------------------------ arguments */

static int parse(int argc, char **argv, struct cli_args *args, char *err, size_t len)
{
	return cli_args_parse(argc, argv, args, err, len);
}

static void test_args_emit_full(void **state)
{
	(void)state;
	char *argv[] = {"emit", "-c", "agent.yaml", "--github-event", "push", "--id=abc-1", "-"};
	struct cli_args a;
	char err[256];
	assert_int_equal(parse(ARGC(argv), argv, &a, err, sizeof err), 0);
	assert_string_equal(a.command, "emit");
	assert_string_equal(a.config_path, "agent.yaml");
	assert_int_equal(a.source, CLI_SOURCE_GITHUB);
	assert_string_equal(a.github_event, "push");
	assert_string_equal(a.id, "abc-1");
	assert_int_equal(a.n_positionals, 1);
	assert_string_equal(a.positionals[0], "-");
	cli_args_free(&a);
}

static void test_args_flags_after_positionals(void **state)
{
	(void)state;
	char *argv[] = {"show", "r-42", "--json", "-cother.yaml"};
	struct cli_args a;
	char err[256];
	assert_int_equal(parse(ARGC(argv), argv, &a, err, sizeof err), 0);
	assert_true(a.is_json);
	assert_string_equal(a.config_path, "other.yaml");
	assert_int_equal(a.n_positionals, 1);
	assert_string_equal(a.positionals[0], "r-42");
	cli_args_free(&a);
}

static void test_args_double_dash(void **state)
{
	(void)state;
	char *argv[] = {"validate", "--", "--looks-like-a-flag.yml", "-c"};
	struct cli_args a;
	char err[256];
	assert_int_equal(parse(ARGC(argv), argv, &a, err, sizeof err), 0);
	assert_null(a.config_path);
	assert_int_equal(a.n_positionals, 2);
	assert_string_equal(a.positionals[0], "--looks-like-a-flag.yml");
	assert_string_equal(a.positionals[1], "-c");
	cli_args_free(&a);
}

static void test_args_runs_filters(void **state)
{
	(void)state;
	char *argv[] = {"runs",	  "--pipeline", "a&b=c d", "--status", "failed",
			"--repo", "o/r",	"--limit", "25"};
	struct cli_args a;
	char err[256];
	assert_int_equal(parse(ARGC(argv), argv, &a, err, sizeof err), 0);
	assert_string_equal(a.pipeline, "a&b=c d");
	assert_string_equal(a.status, "failed");
	assert_string_equal(a.repo, "o/r");
	assert_int_equal(a.limit, 25);
	cli_args_free(&a);
}

/* replay: --stage repeats (in order), the switches, --reason. */
static void test_args_replay(void **state)
{
	(void)state;
	char *argv[] = {"replay",	"--stage",	     "qa",	 "7",	   "--stage=deploy",
			"--downstream", "--latest-pipeline", "--reason", "QA back"};
	struct cli_args a;
	char err[256];
	assert_int_equal(parse(ARGC(argv), argv, &a, err, sizeof err), 0);
	assert_int_equal(a.n_stages, 2);
	assert_string_equal(a.stages[0], "qa");
	assert_string_equal(a.stages[1], "deploy");
	assert_true(a.is_downstream);
	assert_true(a.is_latest_pipeline);
	assert_false(a.is_all);
	assert_string_equal(a.reason, "QA back");
	assert_string_equal(a.positionals[0], "7");
	cli_args_free(&a);
	char *all[] = {"replay", "--all", "--via-kafka", "7"};
	assert_int_equal(parse(ARGC(all), all, &a, err, sizeof err), 0);
	assert_true(a.is_all);
	assert_true(a.is_via_kafka);
	assert_int_equal(a.n_stages, 0);
	cli_args_free(&a);
}

/* Each bad command line fails with a message naming the problem. */
static void test_args_errors(void **state)
{
	(void)state;
	static const struct {
		const char *argv[8];
		const char *message;
	} cases[] = {
	    {{"runs", "--bogus"}, "unknown flag '--bogus'"},
	    {{"emit", "--json", "x.json"}, "unknown flag '--json'"}, /* not an emit flag */
	    {{"runs", "-x"}, "unknown flag '-x'"},
	    {{"runs", "--limit"}, "--limit needs a value"},
	    {{"runs", "-c"}, "-c needs a value"},
	    {{"runs", "--limit", "0"}, "not a positive number"},
	    {{"runs", "--limit", "ten"}, "not a positive number"},
	    {{"runs", "--limit", "10x"}, "not a positive number"},
	    {{"runs", "--limit", "-5"}, "not a positive number"},
	    {{"runs", "--limit", "99999999999999999999"}, "not a positive number"},
	    {{"logs", "r", "s", "--attempt", "0"}, "not a positive number"},
	    {{"runs", "--before", "-1"}, "not a positive number"},
	    {{"show", "--before", "3", "1"}, "unknown flag '--before'"},
	    {{"runs", "-f"}, "unknown flag '-f'"}, /* only logs follows */
	    {{"runs", "--status", "exploded"}, "unknown status 'exploded'"},
	    {{"runs", "--json=yes"}, "--json takes no value"},
	    {{"runs", "extra"}, "expects no arguments"},
	    {{"show"}, "expects one run id"},
	    {{"show", "a", "b"}, "expects one run id"},
	    {{"logs", "r"}, "expects a run id and a stage name"},
	    {{"validate"}, "expects at least one"},
	    {{"emit"}, "expects one event file"},
	    {{"plan", "a.json", "b.json"}, "expects one event file"},
	    {{"emit", "--azure", "--cloudevent", "x"}, "choose one of"},
	    {{"plan", "--github-event", "push", "--cloudevent", "x"}, "choose one of"},
	    {{"plan", "--drift", "--azure", "x"}, "choose one of"},
	    {{"emit", "--id", "abc", "x"}, "--id goes with --github-event"},
	    {{"emit", "--cloudevent", "--id", "abc", "x"}, "--id goes with --github-event"},
	    {{"emit", "--github-event", "push\r\nX-Evil: 1", "x"}, "is not an event name"},
	    {{"emit", "--github-event", "", "x"}, "is not an event name"},
	    {{"emit", "--github-event", "push", "--id", "a b", "x"}, "one word"},
	    {{"emit", "-c", "", "x"}, "-c needs a file name"},
	    {{"frobnicate"}, "unknown command"},
	    {{"replay", "--all", "--stage", "a", "7"}, "choose --all or --stage"},
	    {{"replay", "--downstream", "7"}, "--downstream goes with --stage"},
	    {{"replay", "--stage", "", "7"}, "--stage needs a stage name"},
	    {{"replay"}, "expects one run id"},
	    {{"show", "--stage", "a", "7"}, "unknown flag '--stage'"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		int argc = 0;
		while (argc < 8 && cases[i].argv[argc] != NULL)
			argc++;
		struct cli_args a;
		char err[256];
		int rc = parse(argc, (char **)cases[i].argv, &a, err, sizeof err);
		if (rc != -1 || strstr(err, cases[i].message) == NULL)
			fail_msg("case %zu (%s ...): rc %d, err '%s', want '%s'", i,
				 cases[i].argv[0], rc, err, cases[i].message);
		cli_args_free(&a);
	}
}

static void test_args_help_skips_arity(void **state)
{
	(void)state;
	char *argv[] = {"logs", "--help"};
	struct cli_args a;
	char err[256];
	assert_int_equal(parse(ARGC(argv), argv, &a, err, sizeof err), 0);
	assert_true(a.is_help);
	cli_args_free(&a);
}

static void test_is_command(void **state)
{
	(void)state;
	const char *yes[] = {"emit", "runs", "show", "logs", "validate", "plan"};
	for (size_t i = 0; i < ARRAY_LEN(yes); i++)
		assert_true(cli_is_command(yes[i]));
	assert_false(cli_is_command("agent"));
	assert_false(cli_is_command(""));
	assert_false(cli_is_command(NULL));
	assert_false(cli_is_command("EMIT"));
}

/* ------------------------------------------------------------ addresses, URLs */

static void expect_split(const char *listen, const char *host, const char *port)
{
	char *h = NULL, *p = NULL;
	if (cli_split_host_port(listen, &h, &p) != 0)
		fail_msg("'%s' did not split", listen);
	assert_string_equal(h, host);
	assert_string_equal(p, port);
	free(h);
	free(p);
}

static void test_split_host_port(void **state)
{
	(void)state;
	expect_split("127.0.0.1:8470", "127.0.0.1", "8470");
	expect_split("0.0.0.0:8470", "127.0.0.1", "8470");
	expect_split(":8470", "127.0.0.1", "8470");
	expect_split("*:8470", "127.0.0.1", "8470");
	expect_split("8470", "127.0.0.1", "8470");
	expect_split("localhost:1", "localhost", "1");
	expect_split("agent.example.com:65535", "agent.example.com", "65535");
	expect_split("[::]:8470", "::1", "8470");
	expect_split("[::1]:9000", "::1", "9000");
	expect_split("[2001:db8::7]:80", "2001:db8::7", "80");
	expect_split("[fe80::1%eth0]:80", "fe80::1%eth0", "80");
}

static void test_split_host_port_refuses(void **state)
{
	(void)state;
	const char *bad[] = {"",	  "host",	    "host:",	"host:0", "host:65536",
			     "host:80x",  "host:+80",	    "::1:8470", "[::1]",  "[::1]8470",
			     "[]:80",	  "[127.0.0.1]:80", "a b:80",	"a/b:80", "user@host:80",
			     "host:80/x", "h\n:80",	    "[::1:80"};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		char *h = (char *)"untouched", *p = (char *)"untouched";
		if (cli_split_host_port(bad[i], &h, &p) != -1)
			fail_msg("'%s' was accepted as %s / %s", bad[i], h, p);
		assert_string_equal(h, "untouched");
	}
	char *h, *p;
	assert_int_equal(cli_split_host_port(NULL, &h, &p), -1);
	assert_null(cli_base_url("nonsense"));
}

static void test_base_url(void **state)
{
	(void)state;
	static const char *const cases[][2] = {
	    {"127.0.0.1:8470", "http://127.0.0.1:8470"},
	    {"0.0.0.0:8470", "http://127.0.0.1:8470"},
	    {"[::]:8470", "http://[::1]:8470"},
	    {"[2001:db8::7]:80", "http://[2001:db8::7]:80"},
	    {"[fe80::1%eth0]:80", "http://[fe80::1%25eth0]:80"},
	    {"localhost:8470", "http://localhost:8470"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char *url = cli_base_url(cases[i][0]);
		assert_non_null(url);
		assert_string_equal(url, cases[i][1]);
		free(url);
	}
}

static void test_escape(void **state)
{
	(void)state;
	char *e = cli_escape("a&b=c d");
	assert_string_equal(e, "a%26b%3Dc%20d");
	free(e);
	e = cli_escape("../etc/passwd?x#y");
	assert_string_equal(e, "..%2Fetc%2Fpasswd%3Fx%23y");
	free(e);
	e = cli_escape("r\n\xc3\xa9+%");
	assert_string_equal(e, "r%0A%C3%A9%2B%25");
	free(e);
	e = cli_escape("Safe-._~09");
	assert_string_equal(e, "Safe-._~09");
	free(e);
}

static void test_build_url(void **state)
{
	(void)state;
	const struct cli_query_param params[] = {
	    {"pipeline", NULL}, {"status", "failed"}, {"repo", "a&b=c d"},
	    {"limit", NULL},	{"odd name", "x"},
	};
	char *url =
	    cli_build_url("http://127.0.0.1:8470", "/api/v1/runs", params, ARRAY_LEN(params));
	assert_string_equal(url,
			    "http://127.0.0.1:8470/api/v1/runs?status=failed&repo=a%26b%3Dc%20d"
			    "&odd%20name=x");
	free(url);
	url = cli_build_url("http://h:1", "/p", params, 1); /* every value NULL: no '?' */
	assert_string_equal(url, "http://h:1/p");
	free(url);
	url = cli_build_url("http://h:1", "/p", NULL, 0);
	assert_string_equal(url, "http://h:1/p");
	free(url);
}

/* ------------------------------------------------------------ times, durations */

#define T_2026_11_29_0835 1795941300LL /* 2026-11-29T08:35:00Z */

static void test_parse_time(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		int64_t ms;
	} good[] = {
	    {"2026-11-29T08:35:00Z", T_2026_11_29_0835 * 1000},
	    {"2026-11-29T08:35:00.123Z", T_2026_11_29_0835 * 1000 + 123},
	    {"2026-11-29T08:35:00.5Z", T_2026_11_29_0835 * 1000 + 500},
	    {"2026-11-29T08:35:00.123456789Z", T_2026_11_29_0835 * 1000 + 123},
	    {"2026-11-29T10:35:00+02:00", T_2026_11_29_0835 * 1000},
	    {"2026-11-29T03:05:00-0530", T_2026_11_29_0835 * 1000},
	    {"2026-11-29 08:35:00", T_2026_11_29_0835 * 1000},
	    {"1970-01-01T00:00:00Z", 0},
	};
	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		int64_t ms = -1;
		if (cli_parse_time_ms(good[i].text, &ms) != 0)
			fail_msg("'%s' did not parse", good[i].text);
		assert_int_equal(ms, good[i].ms);
	}
	const char *bad[] = {"",
			     "2026-11-29",
			     "2026-13-01T00:00:00Z",
			     "2026-11-29T24:00:00Z",
			     "2026-11-29T08:35Z",
			     "2026-11-29T08:35:00.Z",
			     "2026-11-29T08:35:00Zjunk",
			     "2026-11-29T08:35:00+2",
			     "26-11-29T08:35:00Z",
			     "yesterday"};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		int64_t ms;
		if (cli_parse_time_ms(bad[i], &ms) != -1)
			fail_msg("'%s' parsed", bad[i]);
	}
	int64_t ms;
	assert_int_equal(cli_parse_time_ms(NULL, &ms), -1);
}

static void test_format_duration(void **state)
{
	(void)state;
	static const struct {
		int64_t ms;
		const char *text;
	} cases[] = {
	    {0, "0ms"},		 {999, "999ms"},
	    {1000, "1s"},	 {59999, "59s"},
	    {60000, "1m00s"},	 {185000, "3m05s"},
	    {3599999, "59m59s"}, {3600000, "1h00m"},
	    {7620000, "2h07m"},	 {86400000LL * 3 + 3600000LL * 4, "3d04h"},
	    {-1, "-"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char buf[32];
		cli_format_duration(cases[i].ms, buf, sizeof buf);
		assert_string_equal(buf, cases[i].text);
	}
}

/* ------------------------------------------------------------ escaping */

static void expect_cell(const char *in, size_t max, const char *want)
{
	char *got = cli_cell(in, max);
	if (strcmp(got, want) != 0)
		fail_msg("cell of '%s': got '%s', want '%s'", in != NULL ? in : "(null)", got,
			 want);
	free(got);
}

static void test_cell_escapes(void **state)
{
	(void)state;
	expect_cell("feature/x", 0, "feature/x");
	expect_cell("", 0, "");
	expect_cell(NULL, 0, "");
	expect_cell("a\nb\r\tc", 0, "a\\nb\\r\\tc");
	expect_cell("\x1b[2Jx\x7f", 0, "\\x1b[2Jx\\x7f");
	expect_cell("h\xc3\xa9llo \xe2\x9c\x93", 0, "h\xc3\xa9llo \xe2\x9c\x93"); /* UTF-8 stays */
	expect_cell("csi\xc2\x9b"
		    "31m",
		    0, "csi\\xc2\\x9b31m"); /* C1 CSI, UTF-8 encoded */
	expect_cell("rlo\xe2\x80\xae"
		    "cod",
		    0, "rlo\\xe2\\x80\\xaecod"); /* bidi override */
	expect_cell("bad\xff", 0, "bad\\xff");
	expect_cell("overlong\xc0\xaf", 0, "overlong\\xc0\\xaf");
	expect_cell("surrogate\xed\xa0\x80", 0, "surrogate\\xed\\xa0\\x80");
	expect_cell("cut\xe2\x82", 0, "cut\\xe2\\x82");
}

static void test_cell_truncates(void **state)
{
	(void)state;
	char forty[41], fifty[51];
	memset(forty, 'a', 40);
	forty[40] = '\0';
	memset(fifty, 'b', 50);
	fifty[50] = '\0';
	expect_cell(forty, 40, forty);
	char want[41];
	memset(want, 'b', 37);
	memcpy(want + 37, "...", 4);
	expect_cell(fifty, 40, want);

	/* Multi-byte characters count once and are never split. */
	struct strbuf in, exp;
	strbuf_init(&in);
	strbuf_init(&exp);
	for (int i = 0; i < 45; i++)
		strbuf_adds(&in, "\xc3\xa9");
	for (int i = 0; i < 37; i++)
		strbuf_adds(&exp, "\xc3\xa9");
	strbuf_adds(&exp, "...");
	expect_cell(in.data, 40, exp.data);
	strbuf_free(&in);
	strbuf_free(&exp);

	/* An escape is never cut in half. */
	char s[64];
	memset(s, 'a', 36);
	strcpy(s + 36, "\nbbbbbb");
	char w[64];
	memset(w, 'a', 36);
	strcpy(w + 36, "...");
	expect_cell(s, 40, w);
}

/* ------------------------------------------------------------ tables */

static size_t count_char(const char *s, char c)
{
	size_t n = 0;
	for (; *s != '\0'; s++)
		n += *s == c;
	return n;
}

/* The column where `word` starts on the line that holds `line_mark`. */
static long column_of(const char *text, const char *line_mark, const char *word)
{
	const char *line = strstr(text, line_mark);
	if (line == NULL)
		return -1;
	while (line > text && line[-1] != '\n')
		line--;
	const char *end = strchr(line, '\n');
	const char *at = strstr(line, word);
	if (at == NULL || (end != NULL && at > end))
		return -1;
	return at - line;
}

static const char runs_json[] =
    "[{\"id\": 42, \"pipeline\": \"pr\", \"status\": \"succeeded\", \"repo\": \"o/r\","
    "  \"branch\": \"evil\\nbranch\\u001b[2J\", \"sha\": \"0123456789abcdef0123\","
    "  \"created_at\": \"2026-11-29T08:35:00.250Z\", \"finished_at\": "
    "\"2026-11-29T08:40:00.250Z\"},"
    " {\"id\": \"r-7\", \"pipeline\": \"release\", \"status\": \"running\", \"repo\": \"o/r\","
    "  \"branch\": \"feature/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
    "  \"sha\": \"fedcba9876543210\", \"created_at\": \"2026-11-29T09:00:00Z\","
    "  \"finished_at\": null},"
    " {\"pipeline\": \"retrain\"}]";

static void test_runs_table(void **state)
{
	(void)state;
	json_t *runs = json_loads(runs_json, 0, NULL);
	assert_non_null(runs);
	char *t = cli_format_runs_table(runs);
	assert_non_null(t);
	/* One line per run plus the header: the hostile branch stays on its line. */
	assert_int_equal(count_char(t, '\n'), 4);
	assert_null(strchr(t, '\x1b'));
	assert_non_null(strstr(t, "evil\\nbranch\\x1b[2J"));
	assert_non_null(strstr(t, "ID"));
	assert_non_null(strstr(t, "DURATION"));
	/* sha: first 10 characters only */
	assert_non_null(strstr(t, "0123456789 "));
	assert_null(strstr(t, "0123456789a"));
	assert_non_null(strstr(t, "2026-11-29T08:35:00Z"));
	assert_non_null(strstr(t, "5m00s"));
	/* the long branch is cut to 40 characters */
	assert_non_null(strstr(t, "feature/aaaaaaaaaaaaaaaaaaaaaaaaaaaaa... "));
	assert_null(strstr(t, "feature/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
	/* columns line up */
	long status_col = column_of(t, "DURATION", "STATUS");
	assert_true(status_col > 0);
	assert_int_equal(column_of(t, "evil", "succeeded"), status_col);
	assert_int_equal(column_of(t, "r-7", "running"), status_col);
	long dur_col = column_of(t, "DURATION", "DURATION");
	assert_int_equal(column_of(t, "evil", "5m00s"), dur_col);
	/* the running run and the empty one have no duration; missing fields show "-" */
	const char *last = strstr(t, "retrain");
	assert_non_null(last);
	assert_int_equal(column_of(t, "retrain", "-"), 0);
	assert_null(strstr(t, "  \n")); /* no trailing blanks */
	free(t);
	json_decref(runs);

	json_t *empty = json_array();
	t = cli_format_runs_table(empty);
	assert_string_equal(t, "no runs\n");
	free(t);
	json_decref(empty);
	json_t *obj = json_object();
	assert_null(cli_format_runs_table(obj));
	json_decref(obj);
}

static void test_format_run(void **state)
{
	(void)state;
	json_t *run = json_loads(
	    "{\"id\": 42, \"pipeline\": \"pr\", \"status\": \"failed\", \"repo\": \"o/r\","
	    " \"sha\": \"0123456789abcdef0123456789abcdef01234567\", \"branch\": \"x\\u001b]0;t\","
	    " \"event_id\": \"d-1\", \"event_kind\": \"pull_request\","
	    " \"created_at\": \"2026-11-29T08:35:00Z\", \"finished_at\": \"2026-11-29T08:37:30Z\","
	    " \"attempt\": 2, \"attempts\": [{\"attempt\": 1, \"mode\": \"original\", \"stages\": "
	    "null,"
	    "  \"requested_at\": \"2026-11-29T08:35:00Z\", \"requested_by\": null, \"reason\": "
	    "null},"
	    " {\"attempt\": 2, \"mode\": \"failed\", \"stages\": [\"integration\"],"
	    "  \"latest_pipeline\": true, \"requested_at\": \"2026-11-29T08:36:00Z\","
	    "  \"requested_by\": \"ops@box\", \"reason\": \"QA back\"}],"
	    "  \"stages\": ["
	    "  {\"name\": \"unit\", \"status\": \"succeeded\", \"attempt\": 1, \"exit_code\": 0,"
	    "   \"run_attempt\": 1, \"attempts\": [{\"attempt\": 1, \"status\": \"succeeded\"}],"
	    "   \"started_at\": \"2026-11-29T08:35:01Z\", \"finished_at\": "
	    "\"2026-11-29T08:36:03Z\","
	    "   \"summary\": \"12 passed\"},"
	    "  {\"name\": \"integration\", \"status\": \"failed\", \"attempt\": 2, \"exit_code\": "
	    "null, \"run_attempt\": 2, \"attempts\": [{\"attempt\": 1, \"status\": \"failed\"},"
	    "   {\"attempt\": 2, \"status\": \"failed\"}],"
	    "   \"started_at\": \"2026-11-29T08:36:03Z\", \"finished_at\": null,"
	    "   \"summary\": \"job failed\\nsee log\"}]}",
	    0, NULL);
	assert_non_null(run);
	char *t = cli_format_run(run);
	assert_non_null(t);
	assert_non_null(strstr(t, "run       42\n"));
	assert_non_null(strstr(t, "sha       0123456789abcdef0123456789abcdef01234567\n"));
	assert_non_null(strstr(t, "event     d-1 (pull_request)\n"));
	assert_non_null(strstr(t, "branch    x\\x1b]0;t\n"));
	assert_non_null(strstr(t, "duration  2m30s\n"));
	assert_null(strchr(t, '\x1b'));
	long exit_col = column_of(t, "SUMMARY", "EXIT");
	assert_true(exit_col > 0);
	assert_int_equal(column_of(t, "unit ", "0"), exit_col);
	assert_int_equal(column_of(t, "integration", "-"), exit_col);
	assert_non_null(strstr(t, "1m02s"));
	assert_non_null(strstr(t, "job failed\\nsee log\n"));
	/* Attempts: the stage's tries, the run attempt of its result, the run's attempts. */
	assert_non_null(strstr(t, "attempt   2\n"));
	assert_non_null(strstr(t, "1:failed 2:failed"));
	assert_int_equal(column_of(t, "integration", "1:failed"), column_of(t, "SUMMARY", "TRIED"));
	assert_int_equal(column_of(t, "integration", "2 "), column_of(t, "SUMMARY", "ATTEMPT"));
	assert_non_null(strstr(t, "failed (latest pipeline)"));
	assert_non_null(strstr(t, "ops@box"));
	assert_non_null(strstr(t, "QA back"));
	assert_int_equal(column_of(t, "ops@box", "integration"), column_of(t, "REASON", "STAGES"));
	assert_non_null(strstr(t, "original"));
	assert_non_null(strstr(t, "logs: drover logs 42 STAGE --attempt N\n"));
	free(t);

	json_object_set_new(run, "stages", json_array());
	t = cli_format_run(run);
	assert_non_null(strstr(t, "\nno stages\n"));
	free(t);
	json_decref(run);
	json_t *arr = json_array();
	assert_null(cli_format_run(arr));
	json_decref(arr);
}

/* ------------------------------------------------------------ stage order */

static void test_stage_order(void **state)
{
	(void)state;
	char *needs_a[] = {"c"};
	char *needs_c[] = {"b"};
	char *needs_d[] = {"a", "b"};
	struct pipeline_stage stages[] = {
	    {.name = "a", .needs = needs_a, .n_needs = 1},
	    {.name = "b"},
	    {.name = "c", .needs = needs_c, .n_needs = 1},
	    {.name = "d", .needs = needs_d, .n_needs = 2},
	    {.name = "e"},
	};
	struct pipeline p = {.name = "t", .stages = stages, .n_stages = ARRAY_LEN(stages)};
	size_t order[5];
	assert_int_equal(cli_stage_order(&p, order), 0);
	/* b, then c (needs b), a (needs c), d; e is free and keeps file order after them */
	size_t want[] = {1, 2, 0, 3, 4};
	for (size_t i = 0; i < ARRAY_LEN(want); i++)
		assert_int_equal(order[i], want[i]);

	char *needs_x[] = {"y"};
	char *needs_y[] = {"x"};
	struct pipeline_stage cyc[] = {
	    {.name = "x", .needs = needs_x, .n_needs = 1},
	    {.name = "y", .needs = needs_y, .n_needs = 1},
	};
	struct pipeline pc = {.name = "c", .stages = cyc, .n_stages = 2};
	assert_int_equal(cli_stage_order(&pc, order), -1);

	char *needs_ghost[] = {"ghost"};
	struct pipeline_stage missing[] = {{.name = "m", .needs = needs_ghost, .n_needs = 1}};
	struct pipeline pm = {.name = "m", .stages = missing, .n_stages = 1};
	assert_int_equal(cli_stage_order(&pm, order), -1);

	struct pipeline none = {.name = "n"};
	assert_int_equal(cli_stage_order(&none, order), 0);
}

/* ------------------------------------------------------------ running cli_main */

struct capture {
	int rc;
	char *out;
	char *err;
};

static char *fd_slurp(int fd)
{
	struct strbuf sb;
	strbuf_init(&sb);
	lseek(fd, 0, SEEK_SET);
	char buf[4096];
	ssize_t n;
	while ((n = read(fd, buf, sizeof buf)) > 0)
		strbuf_add(&sb, buf, (size_t)n);
	return strbuf_detach(&sb);
}

/* Runs cli_main with stdout and stderr caught in files (stdin from in_path when given). */
static struct capture run_cli(const char *in_path, int argc, const char **argv)
{
	char out_path[] = "/tmp/test_cli_outXXXXXX";
	char err_path[] = "/tmp/test_cli_errXXXXXX";
	int out_fd = mkstemp(out_path);
	int err_fd = mkstemp(err_path);
	assert_true(out_fd >= 0 && err_fd >= 0);
	unlink(out_path);
	unlink(err_path);
	fflush(stdout);
	fflush(stderr);
	int saved_out = dup(STDOUT_FILENO), saved_err = dup(STDERR_FILENO);
	int saved_in = dup(STDIN_FILENO);
	dup2(out_fd, STDOUT_FILENO);
	dup2(err_fd, STDERR_FILENO);
	if (in_path != NULL) {
		int in_fd = open(in_path, O_RDONLY);
		assert_true(in_fd >= 0);
		dup2(in_fd, STDIN_FILENO);
		close(in_fd);
	}
	struct capture c;
	c.rc = cli_main(argc, (char **)argv);
	fflush(stdout);
	fflush(stderr);
	dup2(saved_out, STDOUT_FILENO);
	dup2(saved_err, STDERR_FILENO);
	dup2(saved_in, STDIN_FILENO);
	close(saved_out);
	close(saved_err);
	close(saved_in);
	c.out = fd_slurp(out_fd);
	c.err = fd_slurp(err_fd);
	close(out_fd);
	close(err_fd);
	return c;
}

static void capture_free(struct capture *c)
{
	free(c->out);
	free(c->err);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

struct tmp {
	char dir[64];
};

static void tmp_make(struct tmp *t)
{
	strcpy(t->dir, "/tmp/test_cli_XXXXXX");
	assert_non_null(mkdtemp(t->dir));
}

static char *tmp_path(const struct tmp *t, const char *name)
{
	return xasprintf("%s/%s", t->dir, name);
}

static void test_main_usage(void **state)
{
	(void)state;
	const char *argv[] = {"runs", "--bogus"};
	struct capture c = run_cli(NULL, 2, argv);
	assert_int_equal(c.rc, 2);
	assert_non_null(strstr(c.err, "drover runs: unknown flag '--bogus'\n"));
	assert_non_null(strstr(c.err, "usage: drover runs"));
	assert_string_equal(c.out, "");
	capture_free(&c);

	const char *help[] = {"emit", "-h"};
	c = run_cli(NULL, 2, help);
	assert_int_equal(c.rc, 0);
	assert_non_null(strstr(c.out, "usage: drover emit"));
	capture_free(&c);
}

static void test_main_bad_config(void **state)
{
	(void)state;
	struct tmp t;
	tmp_make(&t);
	char *cfg = tmp_path(&t, "agent.yaml");
	write_file(cfg, "admin:\n  no_such_key: 1\n");
	const char *argv[] = {"runs", "-c", cfg};
	struct capture c = run_cli(NULL, 3, argv);
	assert_int_equal(c.rc, 1);
	assert_non_null(strstr(c.err, "agent.yaml:2"));
	assert_non_null(strstr(c.err, "drover: cannot load"));
	capture_free(&c);
	unlink(cfg);
	rmdir(t.dir);
	free(cfg);
}

/* ------------------------------------------------------------ a fake agent */

/* Accepts one connection, keeps the request, answers with a canned reply. */
struct fake_agent {
	int listen_fd;
	int port;
	pthread_t thread;
	const char *reply;
	struct strbuf request;
};

static void *fake_agent_serve(void *arg)
{
	struct fake_agent *fa = arg;
	/* A client that never comes must not hang the test run. */
	struct pollfd pfd = {.fd = fa->listen_fd, .events = POLLIN};
	if (poll(&pfd, 1, 10000) != 1)
		return NULL;
	int fd = accept(fa->listen_fd, NULL, NULL);
	if (fd < 0)
		return NULL;
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	size_t want = SIZE_MAX;
	char buf[4096];
	while (fa->request.len < want) {
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n <= 0)
			break;
		strbuf_add(&fa->request, buf, (size_t)n);
		const char *end =
		    fa->request.data != NULL ? strstr(fa->request.data, "\r\n\r\n") : NULL;
		if (end != NULL && want == SIZE_MAX) {
			size_t head = (size_t)(end - fa->request.data) + 4;
			const char *cl = strcasestr(fa->request.data, "\r\nContent-Length:");
			size_t body = cl != NULL && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
			want = head + body;
		}
	}
	size_t len = strlen(fa->reply);
	for (size_t off = 0; off < len;) {
		ssize_t n = send(fd, fa->reply + off, len - off, MSG_NOSIGNAL);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	close(fd);
	return NULL;
}

static void fake_agent_start(struct fake_agent *fa, const char *reply)
{
	memset(fa, 0, sizeof *fa);
	strbuf_init(&fa->request);
	fa->reply = reply;
	fa->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fa->listen_fd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fa->listen_fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(fa->listen_fd, 1), 0);
	socklen_t sl = sizeof sa;
	getsockname(fa->listen_fd, (struct sockaddr *)&sa, &sl);
	fa->port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&fa->thread, NULL, fake_agent_serve, fa), 0);
}

/* Waits for the one exchange; returns the request that arrived (caller frees). */
static char *fake_agent_stop(struct fake_agent *fa)
{
	pthread_join(fa->thread, NULL);
	close(fa->listen_fd);
	return strbuf_detach(&fa->request);
}

/* An agent.yaml in t pointing at port, with a token; returns its path. */
static char *agent_config(const struct tmp *t, int port, const char *extra)
{
	char *token = tmp_path(t, "token");
	write_file(token, "s3cret-token\n");
	char *cfg = tmp_path(t, "agent.yaml");
	char *text = xasprintf("admin:\n  listen: \"0.0.0.0:%d\"\n  token_file: %s\n%s", port,
			       token, extra != NULL ? extra : "");
	write_file(cfg, text);
	free(text);
	free(token);
	return cfg;
}

static void tmp_clean(struct tmp *t, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char *p = tmp_path(t, names[i]);
		unlink(p);
		free(p);
	}
	assert_int_equal(rmdir(t->dir), 0);
}

static const char *const agent_files[] = {"agent.yaml", "token", "event.json"};

static void test_emit_github(void **state)
{
	(void)state;
	struct fake_agent fa;
	fake_agent_start(&fa, "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
			      "Connection: close\r\n\r\n"
			      "{\"topic\": \"drover.events\", \"partition\": 2, \"offset\": 17,"
			      " \"key\": \"o/r\"}");
	struct tmp t;
	tmp_make(&t);
	char *cfg = agent_config(&t, fa.port, NULL);
	char *ev = tmp_path(&t, "event.json");
	write_file(ev, "{\"ref\": \"refs/heads/master\"}");
	const char *argv[] = {"emit", "-c", cfg, "--github-event", "push", "--id", "d-1", ev};
	struct capture c = run_cli(NULL, ARGC(argv), argv);
	char *req = fake_agent_stop(&fa);
	assert_int_equal(c.rc, 0);
	assert_string_equal(c.out, "queued drover.events[2]@17\n");
	assert_true(starts_with(req, "POST /api/v1/events HTTP/1.1\r\n"));
	assert_non_null(strcasestr(req, "\r\nX-GitHub-Event: push\r\n"));
	assert_non_null(strcasestr(req, "\r\nX-GitHub-Delivery: d-1\r\n"));
	assert_non_null(strcasestr(req, "\r\nAuthorization: Bearer s3cret-token\r\n"));
	assert_non_null(strcasestr(req, "\r\nContent-Type: application/json\r\n"));
	assert_null(strcasestr(req, "Expect:"));
	assert_non_null(strstr(req, "\r\n\r\n{\"ref\": \"refs/heads/master\"}"));
	capture_free(&c);
	tmp_clean(&t, agent_files, ARRAY_LEN(agent_files));
	free(cfg);
	free(ev);
	free(req);
}

static void test_emit_cloudevent_stdin_and_error(void **state)
{
	(void)state;
	struct fake_agent fa;
	char *reply =
	    http_reply("400 Bad Request", "{\"error\": \"not a CloudEvent\\n\\u001b[31mx\"}");
	fake_agent_start(&fa, reply);
	struct tmp t;
	tmp_make(&t);
	char *cfg = agent_config(&t, fa.port, NULL);
	char *ev = tmp_path(&t, "event.json");
	write_file(ev, "{\"specversion\": \"1.0\"}");
	const char *argv[] = {"emit", "-c", cfg, "--cloudevent", "-"};
	struct capture c = run_cli(ev, ARGC(argv), argv);
	char *req = fake_agent_stop(&fa);
	assert_int_equal(c.rc, 1);
	assert_string_equal(c.out, "");
	assert_string_equal(c.err, "drover: not a CloudEvent\\n\\x1b[31mx (HTTP 400)\n");
	assert_non_null(strcasestr(req, "\r\nContent-Type: application/cloudevents+json\r\n"));
	assert_null(strcasestr(req, "X-GitHub-Event"));
	assert_non_null(strstr(req, "\r\n\r\n{\"specversion\": \"1.0\"}"));
	capture_free(&c);
	tmp_clean(&t, agent_files, ARRAY_LEN(agent_files));
	free(cfg);
	free(reply);
	free(ev);
	free(req);
}

static void test_emit_too_large(void **state)
{
	(void)state;
	struct tmp t;
	tmp_make(&t);
	char *cfg = agent_config(&t, 9, "  max_body_bytes: 16\n");
	char *ev = tmp_path(&t, "event.json");
	write_file(ev, "{\"padding\": \"0123456789abcdef\"}");
	const char *argv[] = {"emit", "-c", cfg, ev};
	struct capture c = run_cli(NULL, ARGC(argv), argv);
	assert_int_equal(c.rc, 1);
	assert_non_null(strstr(c.err, "is larger than 16 bytes (admin.max_body_bytes)"));
	capture_free(&c);
	tmp_clean(&t, agent_files, ARRAY_LEN(agent_files));
	free(cfg);
	free(ev);
}

static void test_emit_drift(void **state)
{
	(void)state;
	struct fake_agent fa;
	fake_agent_start(&fa, "HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}");
	struct tmp t;
	tmp_make(&t);
	char *cfg = agent_config(&t, fa.port, NULL);
	char *ev = tmp_path(&t, "event.json");
	write_file(ev, "{\"model\": \"churn\"}");
	const char *argv[] = {"emit", "-c", cfg, "--drift", ev};
	struct capture c = run_cli(NULL, ARGC(argv), argv);
	char *req = fake_agent_stop(&fa);
	assert_int_equal(c.rc, 0);
	/* accepted, but without a receipt to print */
	assert_string_equal(c.out, "queued (HTTP 202, the agent sent no receipt)\n");
	assert_non_null(strcasestr(req, "\r\nX-Drover-Event: drift\r\n"));
	assert_non_null(strcasestr(req, "\r\nContent-Type: application/json\r\n"));
	capture_free(&c);
	tmp_clean(&t, agent_files, ARRAY_LEN(agent_files));
	free(cfg);
	free(ev);
	free(req);
}

static void test_unreachable(void **state)
{
	(void)state;
	/* A port that was just free: nothing listens there. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	socklen_t sl = sizeof sa;
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	int port = ntohs(sa.sin_port);
	close(fd);
	struct tmp t;
	tmp_make(&t);
	char *cfg = agent_config(&t, port, NULL);
	const char *argv[] = {"runs", "-c", cfg};
	struct capture c = run_cli(NULL, ARGC(argv), argv);
	assert_int_equal(c.rc, 1);
	char *want = xasprintf("drover: cannot reach the agent at http://127.0.0.1:%d: ", port);
	assert_true(starts_with(c.err, want));
	assert_int_equal(count_char(c.err, '\n'), 1);
	free(want);
	capture_free(&c);
	tmp_clean(&t, agent_files, ARRAY_LEN(agent_files));
	free(cfg);
}

static void test_runs_query_and_table(void **state)
{
	(void)state;
	char *reply = http_reply("200 OK", runs_json);
	struct fake_agent fa;
	fake_agent_start(&fa, reply);
	struct tmp t;
	tmp_make(&t);
	char *cfg = agent_config(&t, fa.port, NULL);
	const char *argv[] = {"runs",	 "-c", cfg,	   "--pipeline", "a&b=c d",
			      "--limit", "5",  "--before", "40"};
	struct capture c = run_cli(NULL, ARGC(argv), argv);
	char *req = fake_agent_stop(&fa);
	assert_int_equal(c.rc, 0);
	assert_true(starts_with(
	    req, "GET /api/v1/runs?pipeline=a%26b%3Dc%20d&limit=5&before=40 HTTP/1.1\r\n"));
	assert_non_null(strstr(c.out, "evil\\nbranch"));
	assert_int_equal(count_char(c.out, '\n'), 4);
	capture_free(&c);

	/* --json prints the array again, pretty */
	fake_agent_start(&fa, reply);
	free(cfg);
	cfg = agent_config(&t, fa.port, NULL);
	const char *argv_json[] = {"runs", "-c", cfg, "--json"};
	c = run_cli(NULL, ARGC(argv_json), argv_json);
	free(req);
	req = fake_agent_stop(&fa);
	assert_int_equal(c.rc, 0);
	assert_true(starts_with(req, "GET /api/v1/runs?limit=100 HTTP/1.1\r\n"));
	json_t *again = json_loads(c.out, 0, NULL);
	json_t *orig = json_loads(runs_json, 0, NULL);
	assert_true(json_equal(again, orig));
	assert_non_null(strstr(c.out, "\n  {\n"));
	json_decref(again);
	json_decref(orig);
	capture_free(&c);
	free(reply);
	tmp_clean(&t, agent_files, ARRAY_LEN(agent_files));
	free(cfg);
	free(req);
}

static void test_show_missing(void **state)
{
	(void)state;
	struct fake_agent fa;
	char *reply = http_reply("404 Not Found", "{\"error\": \"no such run\"}");
	fake_agent_start(&fa, reply);
	struct tmp t;
	tmp_make(&t);
	char *cfg = agent_config(&t, fa.port, NULL);
	const char *argv[] = {"show", "-c", cfg, "../42"};
	struct capture c = run_cli(NULL, ARGC(argv), argv);
	char *req = fake_agent_stop(&fa);
	assert_int_equal(c.rc, 1);
	assert_string_equal(c.err, "drover: no run ../42\n");
	assert_true(starts_with(req, "GET /api/v1/runs/..%2F42 HTTP/1.1\r\n"));
	capture_free(&c);
	tmp_clean(&t, agent_files, ARRAY_LEN(agent_files));
	free(cfg);
	free(reply);
	free(req);
}

static void test_logs_stream(void **state)
{
	(void)state;
	struct fake_agent fa;
	fake_agent_start(&fa, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
			      "Transfer-Encoding: chunked\r\n\r\n"
			      "6\r\nline1\n\r\n7\r\nline2\x1b\n\r\n0\r\n\r\n");
	struct tmp t;
	tmp_make(&t);
	char *cfg = agent_config(&t, fa.port, NULL);
	const char *argv[] = {"logs", "-c", cfg, "42", "unit tests", "--attempt", "2"};
	struct capture c = run_cli(NULL, ARGC(argv), argv);
	char *req = fake_agent_stop(&fa);
	assert_int_equal(c.rc, 0);
	assert_string_equal(c.out, "line1\nline2\x1b\n"); /* raw, as the agent wrote it */
	assert_true(
	    starts_with(req, "GET /api/v1/runs/42/stages/unit%20tests/log?attempt=2 HTTP/1.1\r\n"));
	capture_free(&c);

	/* an error answer is not written to stdout */
	char *reply = http_reply("404 Not Found", "{\"error\": \"no such log\"}");
	fake_agent_start(&fa, reply);
	free(cfg);
	cfg = agent_config(&t, fa.port, NULL);
	const char *argv2[] = {"logs", "-c", cfg, "42", "unit"};
	c = run_cli(NULL, ARGC(argv2), argv2);
	free(req);
	req = fake_agent_stop(&fa);
	assert_int_equal(c.rc, 1);
	assert_string_equal(c.out, "");
	assert_string_equal(c.err, "drover: no such log (HTTP 404)\n");
	capture_free(&c);
	tmp_clean(&t, agent_files, ARRAY_LEN(agent_files));
	free(cfg);
	free(reply);
	free(req);
}

/* logs -f asks for follow=1 and copies the stream as it comes; a stream that
 * breaks off before its last chunk is an error, what came is kept. */
static void test_logs_follow(void **state)
{
	(void)state;
	char *pargv[] = {"logs", "-f", "7", "s"};
	struct cli_args a;
	char err[256];
	assert_int_equal(parse(ARGC(pargv), pargv, &a, err, sizeof err), 0);
	assert_true(a.is_follow);
	cli_args_free(&a);
	char *pargv2[] = {"logs", "7", "s", "--follow"};
	assert_int_equal(parse(ARGC(pargv2), pargv2, &a, err, sizeof err), 0);
	assert_true(a.is_follow);
	cli_args_free(&a);

	struct fake_agent fa;
	fake_agent_start(&fa, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
			      "Transfer-Encoding: chunked\r\n\r\n"
			      "7\r\nline 1\n\r\n7\r\nline 2\n\r\n0\r\n\r\n");
	struct tmp t;
	tmp_make(&t);
	char *cfg = agent_config(&t, fa.port, NULL);
	const char *argv[] = {"logs", "-c", cfg, "-f", "42", "unit", "--attempt", "3"};
	struct capture c = run_cli(NULL, ARGC(argv), argv);
	char *req = fake_agent_stop(&fa);
	assert_int_equal(c.rc, 0);
	assert_string_equal(c.out, "line 1\nline 2\n");
	assert_true(starts_with(
	    req, "GET /api/v1/runs/42/stages/unit/log?attempt=3&follow=1 HTTP/1.1\r\n"));
	capture_free(&c);
	free(req);

	/* the agent goes away in the middle of the stream */
	fake_agent_start(&fa, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
			      "Transfer-Encoding: chunked\r\n\r\n"
			      "7\r\nline 1\n\r\n");
	free(cfg);
	cfg = agent_config(&t, fa.port, NULL);
	const char *argv2[] = {"logs", "-c", cfg, "--follow", "42", "unit"};
	c = run_cli(NULL, ARGC(argv2), argv2);
	req = fake_agent_stop(&fa);
	assert_int_equal(c.rc, 1);
	assert_string_equal(c.out, "line 1\n");
	assert_true(starts_with(c.err, "drover: the agent's answer broke off: "));
	capture_free(&c);
	tmp_clean(&t, agent_files, ARRAY_LEN(agent_files));
	free(cfg);
	free(req);
}

/* ------------------------------------------------------------ validate, plan */

static const char pipeline_pr[] = "name: pr\n"
				  "on:\n"
				  "  pull_request: { branches: [master] }\n"
				  "stages:\n"
				  "  - name: integration\n"
				  "    uses: shell\n"
				  "    needs: [unit]\n"
				  "    with: { run: \"true\" }\n"
				  "  - name: unit\n"
				  "    uses: shell\n"
				  "    with: { run: \"true\" }\n";

static const char pipeline_push[] = "name: release\n"
				    "on:\n"
				    "  push: { branches: [release] }\n"
				    "stages:\n"
				    "  - name: deploy\n"
				    "    uses: shell\n"
				    "    with: { run: \"true\" }\n";

static const char pipeline_bad[] = "name: bad\n"
				   "on:\n"
				   "  push: {}\n"
				   "stages:\n"
				   "  - name: one\n"
				   "    uses: shell\n"
				   "    frobnicate: 1\n";

static void test_validate(void **state)
{
	(void)state;
	struct tmp t;
	tmp_make(&t);
	char *pdir = tmp_path(&t, "pipelines");
	assert_int_equal(mkdir(pdir, 0700), 0);
	char *pr = xasprintf("%s/pr.yml", pdir);
	char *rel = xasprintf("%s/release.yaml", pdir);
	char *bad = tmp_path(&t, "bad.yml");
	char *cfg = tmp_path(&t, "agent.yaml");
	write_file(pr, pipeline_pr);
	write_file(rel, pipeline_push);
	write_file(bad, pipeline_bad);
	char *cfg_text = xasprintf("plugins: %s/no-plugins-here\n", t.dir);
	write_file(cfg, cfg_text);
	free(cfg_text);

	const char *ok_argv[] = {"validate", "-c", cfg, pdir, pr};
	struct capture c = run_cli(NULL, ARGC(ok_argv), ok_argv);
	assert_int_equal(c.rc, 0);
	assert_string_equal(c.out, "ok: 3 pipelines\n");
	assert_non_null(strstr(c.err, "plugin names not checked"));
	capture_free(&c);

	const char *bad_argv[] = {"validate", "-c", cfg, pr, bad};
	c = run_cli(NULL, ARGC(bad_argv), bad_argv);
	assert_int_equal(c.rc, 1);
	char *want = xasprintf("%s:7: ", bad);
	assert_non_null(strstr(c.out, want));
	assert_null(strstr(c.out, "ok:"));
	free(want);
	capture_free(&c);

	const char *missing_argv[] = {"validate", "-c", cfg, "/nonexistent/p.yml"};
	c = run_cli(NULL, ARGC(missing_argv), missing_argv);
	assert_int_equal(c.rc, 1);
	assert_non_null(strstr(c.out, "/nonexistent/p.yml:0: "));
	capture_free(&c);

	/* With a plugins directory, an unknown plugin is an error; a present one is not. */
	char *plugdir = tmp_path(&t, "plugins");
	assert_int_equal(mkdir(plugdir, 0700), 0);
	cfg_text = xasprintf("plugins: %s\n", plugdir);
	write_file(cfg, cfg_text);
	free(cfg_text);
	const char *plug_argv[] = {"validate", "-c", cfg, pr};
	c = run_cli(NULL, ARGC(plug_argv), plug_argv);
	assert_int_equal(c.rc, 1);
	assert_non_null(strstr(c.out, "shell"));
	capture_free(&c);
	char *so = xasprintf("%s/shell.so", plugdir);
	write_file(so, "");
	c = run_cli(NULL, ARGC(plug_argv), plug_argv);
	assert_int_equal(c.rc, 0);
	assert_string_equal(c.out, "ok: 1 pipelines\n");
	assert_string_equal(c.err, "");
	capture_free(&c);

	unlink(so);
	rmdir(plugdir);
	unlink(pr);
	unlink(rel);
	rmdir(pdir);
	const char *names[] = {"bad.yml", "agent.yaml"};
	tmp_clean(&t, names, ARRAY_LEN(names));
	free(so);
	free(plugdir);
	free(pdir);
	free(pr);
	free(rel);
	free(bad);
	free(cfg);
}

struct plan_env {
	struct tmp t;
	char *pdir, *pr, *rel, *cfg;
};

static void plan_env_make(struct plan_env *e, const char *repos)
{
	tmp_make(&e->t);
	e->pdir = tmp_path(&e->t, "pipelines");
	assert_int_equal(mkdir(e->pdir, 0700), 0);
	e->pr = xasprintf("%s/pr.yml", e->pdir);
	e->rel = xasprintf("%s/release.yml", e->pdir);
	write_file(e->pr, pipeline_pr);
	write_file(e->rel, pipeline_push);
	e->cfg = tmp_path(&e->t, "agent.yaml");
	char *text = xasprintf("pipelines: %s\n%s", e->pdir, repos);
	write_file(e->cfg, text);
	free(text);
}

static void plan_env_free(struct plan_env *e)
{
	unlink(e->pr);
	unlink(e->rel);
	rmdir(e->pdir);
	const char *names[] = {"agent.yaml"};
	tmp_clean(&e->t, names, 1);
	free(e->pdir);
	free(e->pr);
	free(e->rel);
	free(e->cfg);
}

static void test_plan(void **state)
{
	(void)state;
	struct plan_env e;
	plan_env_make(&e, "");
	const char *ev = FIXTURES_DIR "/github/pull_request.opened.payload.json";
	const char *argv[] = {"plan", "-c", e.cfg, "--github-event", "pull_request", ev};
	struct capture c = run_cli(NULL, ARGC(argv), argv);
	assert_int_equal(c.rc, 0);
	assert_non_null(strstr(c.out, "event   pull_request opened (github)\n"));
	assert_non_null(strstr(c.out, "repo    Codertocat/Hello-World\n"));
	assert_non_null(strstr(c.out, "pipeline pr: would start\n"));
	assert_non_null(strstr(c.out, "pipeline release: no match: "));
	/* unit runs before integration although the file lists it second */
	const char *unit = strstr(c.out, "  unit ");
	const char *integ = strstr(c.out, "  integration ");
	assert_non_null(unit);
	assert_non_null(integ);
	assert_true(unit < integ);
	capture_free(&c);

	const char *argv_json[] = {"plan",	   "-c",     e.cfg, "--github-event",
				   "pull_request", "--json", ev};
	c = run_cli(NULL, ARGC(argv_json), argv_json);
	assert_int_equal(c.rc, 0);
	json_t *doc = json_loads(c.out, 0, NULL);
	assert_non_null(doc);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(doc, "event"), "kind")),
	    "pull_request");
	json_t *pls = json_object_get(doc, "pipelines");
	assert_int_equal(json_array_size(pls), 2);
	json_t *p0 = json_array_get(pls, 0);
	assert_string_equal(json_string_value(json_object_get(p0, "name")), "pr");
	assert_true(json_is_true(json_object_get(p0, "matched")));
	json_t *st = json_object_get(p0, "stages");
	assert_string_equal(json_string_value(json_object_get(json_array_get(st, 0), "name")),
			    "unit");
	assert_string_equal(
	    json_string_value(json_array_get(json_object_get(json_array_get(st, 1), "needs"), 0)),
	    "unit");
	json_t *p1 = json_array_get(pls, 1);
	assert_true(json_is_false(json_object_get(p1, "matched")));
	assert_true(json_is_string(json_object_get(p1, "why")));
	json_decref(doc);
	capture_free(&c);

	/* Not JSON at all: the outcome and why, exit 1. */
	char *junk = tmp_path(&e.t, "junk.json");
	write_file(junk, "{not json");
	const char *argv_bad[] = {"plan", "-c", e.cfg, "--github-event", "push", junk};
	c = run_cli(NULL, ARGC(argv_bad), argv_bad);
	assert_int_equal(c.rc, 1);
	assert_non_null(strstr(c.out, "event malformed: "));
	capture_free(&c);
	unlink(junk);
	free(junk);
	plan_env_free(&e);
}

static void test_plan_repo_not_configured(void **state)
{
	(void)state;
	struct plan_env e;
	plan_env_make(&e, "repos:\n  - { name: other/repo, url: \"https://example.com/o.git\" }\n");
	const char *ev = FIXTURES_DIR "/github/pull_request.opened.payload.json";
	const char *argv[] = {"plan", "-c", e.cfg, "--github-event", "pull_request", ev};
	struct capture c = run_cli(NULL, ARGC(argv), argv);
	assert_int_equal(c.rc, 0);
	assert_non_null(strstr(c.out, "repository Codertocat/Hello-World is not configured: "
				      "nothing would run\n"));
	assert_null(strstr(c.out, "would start"));
	capture_free(&c);
	plan_env_free(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_args_emit_full),
	    cmocka_unit_test(test_args_flags_after_positionals),
	    cmocka_unit_test(test_args_double_dash),
	    cmocka_unit_test(test_args_runs_filters),
	    cmocka_unit_test(test_args_errors),
	    cmocka_unit_test(test_args_replay),
	    cmocka_unit_test(test_args_help_skips_arity),
	    cmocka_unit_test(test_is_command),
	    cmocka_unit_test(test_split_host_port),
	    cmocka_unit_test(test_split_host_port_refuses),
	    cmocka_unit_test(test_base_url),
	    cmocka_unit_test(test_escape),
	    cmocka_unit_test(test_build_url),
	    cmocka_unit_test(test_parse_time),
	    cmocka_unit_test(test_format_duration),
	    cmocka_unit_test(test_cell_escapes),
	    cmocka_unit_test(test_cell_truncates),
	    cmocka_unit_test(test_runs_table),
	    cmocka_unit_test(test_format_run),
	    cmocka_unit_test(test_stage_order),
	    cmocka_unit_test(test_main_usage),
	    cmocka_unit_test(test_main_bad_config),
	    cmocka_unit_test(test_emit_github),
	    cmocka_unit_test(test_emit_cloudevent_stdin_and_error),
	    cmocka_unit_test(test_emit_too_large),
	    cmocka_unit_test(test_emit_drift),
	    cmocka_unit_test(test_unreachable),
	    cmocka_unit_test(test_runs_query_and_table),
	    cmocka_unit_test(test_show_missing),
	    cmocka_unit_test(test_logs_stream),
	    cmocka_unit_test(test_logs_follow),
	    cmocka_unit_test(test_validate),
	    cmocka_unit_test(test_plan),
	    cmocka_unit_test(test_plan_repo_not_configured),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
