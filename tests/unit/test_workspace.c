/*
 * Tests for workspace: mirror paths of hostile repository names stay one
 * component under state_dir/repos, and real checkouts from a local git
 * repository on a real event loop (clone, fetch of a new commit, missing
 * commits and branches, branch heads, hostile shas, cancel).
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
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "config.h"
#include "proc.h"
#include "stagelog.h"
#include "util.h"
#include "workspace.h"

#define CHECKOUT_TIMEOUT_MS 30000

/* ---- mirror paths ---- */

static bool is_safe_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_';
}

static void check_mirror_path(const char *repo)
{
	const char *state_dir = "/var/lib/drover";
	char *path = workspace_mirror_path(state_dir, repo);
	assert_non_null(path);
	const char *prefix = "/var/lib/drover/repos/";
	if (strncmp(path, prefix, strlen(prefix)) != 0)
		fail_msg("mirror of \"%s\" is %s: not under %s", repo, path, prefix);
	const char *leaf = path + strlen(prefix);
	if (*leaf == '\0' || *leaf == '.' || strchr(leaf, '/') != NULL || strcmp(leaf, "..") == 0)
		fail_msg("mirror of \"%s\" is %s: not one plain component", repo, path);
	for (const char *p = leaf; *p != '\0'; p++)
		if (!is_safe_char(*p))
			fail_msg("mirror of \"%s\" is %s: byte 0x%02x", repo, path,
				 (unsigned char)*p);
	free(path);
}

static void test_mirror_path_sanitises(void **state)
{
	(void)state;
	static const char *const repos[] = {
	    "owner/name", "../../etc", "a/b",  ".hidden", ".",	  "..",	      "...",
	    "a b",	  "$(x)",      "`id`", "a;b|c&d", "x\ny", "ünï/cöde", "/abs/path",
	    "trailing/",  "a/../../b", "-rf",  "~root",	  "a\\b", "*?[]",
	};
	for (size_t i = 0; i < ARRAY_LEN(repos); i++)
		check_mirror_path(repos[i]);

	char *path = workspace_mirror_path("/s", "owner/name");
	assert_non_null(strstr(path, "owner"));
	assert_non_null(strstr(path, "name"));
	free(path);

	/* the same repository always gets the same mirror */
	char *a = workspace_mirror_path("/s", "org/repo");
	char *b = workspace_mirror_path("/s", "org/repo");
	assert_string_equal(a, b);
	free(a);
	free(b);
}

/* Two different repositories never share a mirror (GitLab subgroups make
 * "team/ml/models" and "team/ml_models" both real names). */
static void test_mirror_path_distinct_repos(void **state)
{
	(void)state;
	static const char *const pairs[][2] = {
	    {"team/ml/models", "team/ml_models"},
	    {"a/b", "a_b"},
	    {"owner/my repo", "owner/my_repo"},
	};
	struct strbuf bad;
	strbuf_init(&bad);
	for (size_t i = 0; i < ARRAY_LEN(pairs); i++) {
		char *a = workspace_mirror_path("/s", pairs[i][0]);
		char *b = workspace_mirror_path("/s", pairs[i][1]);
		if (strcmp(a, b) == 0)
			strbuf_addf(&bad, " [\"%s\" and \"%s\" both → %s]", pairs[i][0],
				    pairs[i][1], a);
		free(a);
		free(b);
	}
	if (bad.len > 0) {
		print_error("shared mirrors:%s\n", bad.data);
		strbuf_free(&bad);
		fail();
	}
	strbuf_free(&bad);
}

/* ---- real checkouts ---- */

struct fixture {
	char dir[64];
	char *src;   /* a plain git repository: the "remote" */
	char *state; /* the agent's state_dir */
	struct agent agent;
};

struct result {
	int calls;
	int rc;
	char *sha;
	char *error;
};

static void run_shell(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void run_shell(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *cmd = xvasprintf(fmt, ap);
	va_end(ap);
	int rc = system(cmd);
	if (rc != 0)
		fail_msg("command failed (%d): %s", rc, cmd);
	free(cmd);
}

/* The output of a shell command, last newline cut (caller frees). */
static char *shell_output(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *shell_output(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *cmd = xvasprintf(fmt, ap);
	va_end(ap);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	char buf[256] = "";
	if (fgets(buf, sizeof buf, p) == NULL)
		buf[0] = '\0';
	assert_int_equal(pclose(p), 0);
	free(cmd);
	buf[strcspn(buf, "\n")] = '\0';
	return xstrdup(buf);
}

/* Commits one more file in the source repository; returns the new sha. */
static char *src_commit(struct fixture *f, const char *file, const char *content)
{
	run_shell("cd '%s' && printf '%%s\\n' '%s' > '%s' && git add '%s' && "
		  "git -c user.name=t -c user.email=t@example.com commit -q -m '%s'",
		  f->src, content, file, file, file);
	return shell_output("git -C '%s' rev-parse HEAD", f->src);
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/drover-test-workspace-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	f->src = xasprintf("%s/src", f->dir);
	f->state = xasprintf("%s/state", f->dir);
	run_shell("git init -q -b master '%s'", f->src);
	mkdir_p(f->state, 0750);
	char *ws = xasprintf("%s/workspaces", f->state);
	mkdir_p(ws, 0750);
	free(ws);

	struct diags diags = {0};
	struct agent *a = &f->agent;
	a->cfg = config_load(NULL, &diags);
	diags_free(&diags);
	if (a->cfg == NULL)
		return -1;
	free(a->cfg->state_dir);
	a->cfg->state_dir = xstrdup(f->state);
	a->cfg->stage_kill_grace_ms = 300;
	a->base = event_base_new();
	a->procs = proc_table_new(a->base);
	if (a->base == NULL || a->procs == NULL)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	proc_table_free(f->agent.procs);
	event_base_free(f->agent.base);
	config_free(f->agent.cfg);
	int rc = rm_rf(f->dir);
	free(f->src);
	free(f->state);
	free(f);
	return rc;
}

static void on_done(void *arg, int rc, const char *sha, const char *error)
{
	struct result *r = arg;
	r->calls++;
	r->rc = rc;
	free(r->sha);
	free(r->error);
	r->sha = sha != NULL ? xstrdup(sha) : NULL;
	r->error = error != NULL ? xstrdup(error) : NULL;
}

static void result_clear(struct result *r)
{
	free(r->sha);
	free(r->error);
	memset(r, 0, sizeof *r);
}

static void loop_until_done(struct fixture *f, struct result *r)
{
	int64_t deadline = mono_ms() + CHECKOUT_TIMEOUT_MS;
	while (r->calls == 0) {
		if (mono_ms() > deadline)
			fail_msg("checkout did not finish in %d ms", CHECKOUT_TIMEOUT_MS);
		struct timeval tv = {0, 100 * 1000};
		event_base_loopexit(f->agent.base, &tv);
		event_base_loop(f->agent.base, EVLOOP_ONCE);
	}
}

/* Runs one checkout to its end; the log text is returned in *log_text. */
static void checkout(struct fixture *f, const char *sha, const char *branch, const char *dest,
		     struct result *r, char **log_text)
{
	char *log_path = xasprintf("%s.log", dest);
	unlink(log_path);
	struct stagelog *log = stagelog_open(log_path, 1 << 20, NULL, 0);
	assert_non_null(log);
	struct workspace_job *job =
	    workspace_checkout(&f->agent, "owner/repo", f->src, sha, branch, dest, log, on_done, r);
	assert_non_null(job);
	loop_until_done(f, r);
	stagelog_close(log);
	FILE *fp = fopen(log_path, "re");
	assert_non_null(fp);
	struct strbuf sb;
	strbuf_init(&sb);
	char chunk[1024];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0)
		strbuf_add(&sb, chunk, n);
	fclose(fp);
	*log_text = strbuf_detach(&sb);
	free(log_path);
}

static char *file_in(const char *dir, const char *name)
{
	char *path = xasprintf("%s/%s", dir, name);
	char *text = file_read_all(path, 1 << 20, NULL);
	free(path);
	return text;
}

static void test_checkout_clone_then_fetch(void **state)
{
	struct fixture *f = *state;
	char *sha1 = src_commit(f, "hello.txt", "first");
	char *dest1 = xasprintf("%s/workspaces/1", f->state);
	struct result r = {0};
	char *log = NULL;
	checkout(f, sha1, NULL, dest1, &r, &log);
	if (r.rc != 0)
		fail_msg("checkout failed: %s\nlog:\n%s", r.error, log);
	assert_int_equal(r.calls, 1);
	assert_string_equal(r.sha, sha1);
	assert_null(r.error);
	assert_non_null(strstr(log, "cloning"));
	char *text = file_in(dest1, "hello.txt");
	assert_non_null(text);
	assert_string_equal(text, "first\n");
	free(text);
	/* detached at the sha */
	char *head = shell_output("git -C '%s' rev-parse HEAD", dest1);
	assert_string_equal(head, sha1);
	free(head);
	/* made without git's templates (fewer files per run), and still clean */
	char *hooks = xasprintf("%s/.git/hooks", dest1);
	assert_int_not_equal(access(hooks, F_OK), 0);
	free(hooks);
	char *dirty = shell_output("git -C '%s' status --porcelain", dest1);
	assert_string_equal(dirty, "");
	free(dirty);
	/* the mirror is where workspace_mirror_path says */
	char *mirror = workspace_mirror_path(f->state, "owner/repo");
	struct stat st;
	assert_int_equal(stat(mirror, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	free(mirror);
	/* the sha file next to dest is gone */
	char *sha_file = xasprintf("%s.sha", dest1);
	assert_int_not_equal(access(sha_file, F_OK), 0);
	free(sha_file);
	free(log);
	result_clear(&r);

	/* a new commit in the source: the mirror fetches it */
	char *sha2 = src_commit(f, "second.txt", "second");
	char *dest2 = xasprintf("%s/workspaces/2", f->state);
	checkout(f, sha2, NULL, dest2, &r, &log);
	if (r.rc != 0)
		fail_msg("second checkout failed: %s\nlog:\n%s", r.error, log);
	assert_string_equal(r.sha, sha2);
	assert_non_null(strstr(log, "fetching"));
	assert_null(strstr(log, "cloning"));
	text = file_in(dest2, "second.txt");
	assert_non_null(text);
	assert_string_equal(text, "second\n");
	free(text);
	free(log);
	result_clear(&r);

	/* the old commit again, into the first workspace: no fetch needed,
	 * and whatever was in dest before is replaced */
	run_shell("echo stale > '%s/stale.txt'", dest1);
	checkout(f, sha1, NULL, dest1, &r, &log);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.sha, sha1);
	assert_null(strstr(log, "fetching"));
	char *stale = xasprintf("%s/stale.txt", dest1);
	assert_int_not_equal(access(stale, F_OK), 0);
	free(stale);
	char *second = xasprintf("%s/second.txt", dest1);
	assert_int_not_equal(access(second, F_OK), 0);
	free(second);
	free(log);
	result_clear(&r);

	free(sha1);
	free(sha2);
	free(dest1);
	free(dest2);
}

static void test_checkout_missing_commit(void **state)
{
	struct fixture *f = *state;
	char *sha = src_commit(f, "a.txt", "a");
	char *dest = xasprintf("%s/workspaces/9", f->state);
	struct result r = {0};
	char *log = NULL;
	checkout(f, "0123456789abcdef0123456789abcdef01234567", NULL, dest, &r, &log);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.rc, -1);
	assert_null(r.sha);
	assert_non_null(r.error);
	assert_non_null(strstr(r.error, "does not exist"));
	assert_non_null(strstr(log, "0123456789abcdef0123456789abcdef01234567 does not exist"));
	free(log);
	result_clear(&r);
	free(sha);
	free(dest);
}

static void test_checkout_branch_head(void **state)
{
	struct fixture *f = *state;
	char *sha1 = src_commit(f, "a.txt", "a");
	char *dest = xasprintf("%s/workspaces/3", f->state);
	struct result r = {0};
	char *log = NULL;
	checkout(f, NULL, "master", dest, &r, &log);
	if (r.rc != 0)
		fail_msg("branch checkout failed: %s\nlog:\n%s", r.error, log);
	assert_string_equal(r.sha, sha1);
	free(log);
	result_clear(&r);

	/* the branch moved: a branch checkout always looks again */
	char *sha2 = src_commit(f, "b.txt", "b");
	checkout(f, NULL, "master", dest, &r, &log);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.sha, sha2);
	char *text = file_in(dest, "b.txt");
	assert_non_null(text);
	free(text);
	free(log);
	result_clear(&r);

	checkout(f, NULL, "no-such-branch", dest, &r, &log);
	assert_int_equal(r.rc, -1);
	assert_non_null(r.error);
	assert_non_null(strstr(r.error, "does not exist"));
	assert_non_null(strstr(log, "branch no-such-branch does not exist"));
	free(log);
	result_clear(&r);

	free(sha1);
	free(sha2);
	free(dest);
}

/* Values from an event are arguments, never code or options. */
static void test_checkout_hostile_values(void **state)
{
	struct fixture *f = *state;
	char *sha = src_commit(f, "a.txt", "a");
	char *dest = xasprintf("%s/workspaces/4", f->state);
	char *marker = xasprintf("%s/pwned", f->dir);
	char *hostile_sha = xasprintf("--output=%s", marker);
	char *hostile_branch = xasprintf("x$(touch %s)", marker);
	struct result r = {0};
	char *log = NULL;

	checkout(f, hostile_sha, NULL, dest, &r, &log);
	assert_int_equal(r.rc, -1);
	free(log);
	result_clear(&r);

	checkout(f, NULL, hostile_branch, dest, &r, &log);
	assert_int_equal(r.rc, -1);
	free(log);
	result_clear(&r);

	assert_int_not_equal(access(marker, F_OK), 0);
	free(marker);
	free(hostile_sha);
	free(hostile_branch);
	free(sha);
	free(dest);
}

static void test_checkout_bad_url(void **state)
{
	struct fixture *f = *state;
	char *dest = xasprintf("%s/workspaces/5", f->state);
	char *log_path = xasprintf("%s.log", dest);
	struct stagelog *log = stagelog_open(log_path, 1 << 20, NULL, 0);
	struct result r = {0};
	char *missing = xasprintf("%s/not-a-repo", f->dir);
	struct workspace_job *job = workspace_checkout(&f->agent, "other/repo", missing, NULL,
						       "master", dest, log, on_done, &r);
	assert_non_null(job);
	loop_until_done(f, &r);
	stagelog_close(log);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.rc, -1);
	assert_non_null(r.error);
	/* a failed clone leaves no half mirror behind */
	char *mirror = workspace_mirror_path(f->state, "other/repo");
	assert_int_not_equal(access(mirror, F_OK), 0);
	free(mirror);
	result_clear(&r);
	free(missing);
	free(log_path);
	free(dest);
}

/* A cancelled checkout still calls back exactly once, with rc -1. */
static void test_checkout_cancel(void **state)
{
	struct fixture *f = *state;
	char *sha = src_commit(f, "a.txt", "a");
	char *dest = xasprintf("%s/workspaces/6", f->state);
	char *log_path = xasprintf("%s.log", dest);
	struct stagelog *log = stagelog_open(log_path, 1 << 20, NULL, 0);
	struct result r = {0};
	struct workspace_job *job =
	    workspace_checkout(&f->agent, "owner/repo", f->src, sha, NULL, dest, log, on_done, &r);
	assert_non_null(job);
	workspace_cancel(job);
	loop_until_done(f, &r);
	/* a little longer: no second call */
	int64_t until = mono_ms() + 500;
	while (mono_ms() < until) {
		struct timeval tv = {0, 50 * 1000};
		event_base_loopexit(f->agent.base, &tv);
		event_base_loop(f->agent.base, EVLOOP_ONCE);
	}
	stagelog_close(log);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.rc, -1);
	assert_non_null(r.error);
	result_clear(&r);
	free(log_path);
	free(dest);
	free(sha);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mirror_path_sanitises),
	    cmocka_unit_test(test_mirror_path_distinct_repos),
	    cmocka_unit_test_setup_teardown(test_checkout_clone_then_fetch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_checkout_missing_commit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_checkout_branch_head, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_checkout_hostile_values, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_checkout_bad_url, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_checkout_cancel, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
