/*
 * Tests for proc: real children on a real libevent loop — output capture,
 * exit codes, kills with grace, process trees, lingering grandchildren,
 * concurrency, large output and shutdown; process start times and the
 * groups a killed agent leaves behind (orphans, really re-parented here).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "proc.h"
#include "util.h"

#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SAFETY_TIMEOUT_MS 15000

/* What one child did, as seen through the callbacks. */
struct child {
	struct strbuf out;
	size_t out_bytes;
	bool has_nonzero_byte;
	bool is_capturing;
	int exits;
	int exit_code;
	int term_signal;
	int64_t exited_at_ms;
	/* Kill when the output contains this text (once). */
	const char *kill_when;
	int64_t kill_grace_ms;
	struct proc *proc;
	bool is_kill_sent;
	/* Counts finished children across a group of tests. */
	int *done_count;
};

struct fixture {
	struct event_base *base;
	struct proc_table *table;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	f->base = event_base_new();
	assert_non_null(f->base);
	f->table = proc_table_new(f->base);
	assert_non_null(f->table);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	if (f->table != NULL)
		proc_table_free(f->table);
	event_base_free(f->base);
	free(f);
	return 0;
}

static void child_init(struct child *c)
{
	memset(c, 0, sizeof(*c));
	strbuf_init(&c->out);
	strbuf_adds(&c->out, ""); /* data is a string from the start */
	c->is_capturing = true;
	c->exit_code = -100;
	c->term_signal = -100;
}

static void on_output(void *arg, const char *data, size_t len)
{
	struct child *c = arg;
	assert_true(len > 0);
	assert_true(len <= 64 * 1024);
	c->out_bytes += len;
	for (size_t i = 0; i < len && !c->has_nonzero_byte; i++)
		if (data[i] != '\0')
			c->has_nonzero_byte = true;
	if (c->is_capturing)
		strbuf_add(&c->out, data, len);
	if (c->kill_when != NULL && !c->is_kill_sent && strstr(c->out.data, c->kill_when)) {
		c->is_kill_sent = true;
		/* A later call may only bring the SIGKILL forward, never push it back. */
		proc_kill(c->proc, c->kill_grace_ms + 60000);
		proc_kill(c->proc, c->kill_grace_ms);
		proc_kill(c->proc, c->kill_grace_ms + 60000);
	}
}

static void on_exit_cb(void *arg, int exit_code, int term_signal)
{
	struct child *c = arg;
	c->exits++;
	c->exit_code = exit_code;
	c->term_signal = term_signal;
	c->exited_at_ms = mono_ms();
	if (c->done_count != NULL)
		(*c->done_count)++;
}

static void on_safety_timeout(evutil_socket_t fd, short what, void *arg)
{
	bool *is_timed_out = arg;
	(void)fd;
	(void)what;
	*is_timed_out = true;
}

/* Runs the loop until *done_count reaches want; fails the test on timeout. */
static void loop_until(struct fixture *f, const int *done_count, int want)
{
	bool is_timed_out = false;
	struct event *safety = evtimer_new(f->base, on_safety_timeout, &is_timed_out);
	struct timeval tv = {SAFETY_TIMEOUT_MS / 1000, 0};
	evtimer_add(safety, &tv);
	while (*done_count < want && !is_timed_out)
		event_base_loop(f->base, EVLOOP_ONCE);
	event_free(safety);
	if (is_timed_out)
		fail_msg("timed out waiting for %d children (%d done)", want, *done_count);
}

static void run_loop_ms(struct fixture *f, int64_t ms)
{
	struct timeval tv;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
	event_base_loopexit(f->base, &tv);
	event_base_dispatch(f->base);
}

static struct proc *spawn_argv(struct fixture *f, struct child *c, const char *const *argv,
			       const char *cwd, const char *const *envp, int64_t linger_ms)
{
	struct proc_spec spec = {.argv = argv, .envp = envp, .cwd = cwd, .linger_ms = linger_ms};
	char err[256] = "";
	struct proc *p = proc_spawn(f->table, &spec, on_output, on_exit_cb, c, err, sizeof(err));
	if (p == NULL)
		fail_msg("spawn %s failed: %s", argv[0], err);
	c->proc = p;
	return p;
}

static struct proc *spawn_sh(struct fixture *f, struct child *c, const char *script)
{
	const char *argv[] = {"sh", "-c", script, NULL};
	return spawn_argv(f, c, argv, NULL, NULL, 0);
}

static void run_to_end(struct fixture *f, struct child *c)
{
	loop_until(f, &c->exits, 1);
	assert_int_equal(c->exits, 1);
}

/* True when pid is gone or only a zombie waiting for someone else to reap it. */
static bool is_pid_dead(pid_t pid)
{
	if (kill(pid, 0) < 0 && errno == ESRCH)
		return true;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	size_t len = 0;
	char *stat = file_read_all(path, 4096, &len);
	if (stat == NULL)
		return errno == ENOENT;
	const char *paren = strrchr(stat, ')');
	bool is_zombie = paren != NULL && (paren[2] == 'Z' || paren[2] == 'X');
	free(stat);
	return is_zombie;
}

static void assert_pid_dies(pid_t pid)
{
	assert_true(pid > 1);
	for (int i = 0; i < 200; i++) {
		if (is_pid_dead(pid))
			return;
		usleep(10 * 1000);
	}
	fail_msg("process %ld is still alive", (long)pid);
}

/* Pulls the decimal pids out of output lines of the form "pid N". */
static size_t parse_pids(const char *text, pid_t *pids, size_t max)
{
	size_t n = 0;
	const char *s = text;
	while (n < max && (s = strstr(s, "pid ")) != NULL) {
		s += 4;
		pids[n++] = (pid_t)strtol(s, NULL, 10);
	}
	return n;
}

static void test_echo_output_and_exit_zero(void **state)
{
	struct fixture *f = *state;
	struct child c;
	child_init(&c);
	const char *argv[] = {"echo", "hello", NULL};
	struct proc *p = spawn_argv(f, &c, argv, NULL, NULL, 0);
	assert_true(proc_pid(p) > 0);
	assert_int_equal(proc_table_count(f->table), 1);
	run_to_end(f, &c);
	assert_string_equal(c.out.data, "hello\n");
	assert_int_equal(c.exit_code, 0);
	assert_int_equal(c.term_signal, 0);
	assert_int_equal(proc_table_count(f->table), 0);
	strbuf_free(&c.out);
}

static void test_exit_code(void **state)
{
	struct fixture *f = *state;
	struct child c;
	child_init(&c);
	spawn_sh(f, &c, "exit 3");
	run_to_end(f, &c);
	assert_int_equal(c.exit_code, 3);
	assert_int_equal(c.term_signal, 0);
	assert_string_equal(c.out.data, "");
	strbuf_free(&c.out);
}

static void test_stderr_on_same_stream(void **state)
{
	struct fixture *f = *state;
	struct child c;
	child_init(&c);
	spawn_sh(f, &c, "echo out; echo err >&2; echo out2");
	run_to_end(f, &c);
	assert_string_equal(c.out.data, "out\nerr\nout2\n");
	assert_int_equal(c.exit_code, 0);
	strbuf_free(&c.out);
}

static void test_stdin_is_dev_null(void **state)
{
	struct fixture *f = *state;
	struct child c;
	child_init(&c);
	spawn_sh(f, &c, "if read line; then echo got; else echo eof; fi");
	run_to_end(f, &c);
	assert_string_equal(c.out.data, "eof\n");
	strbuf_free(&c.out);
}

/* Valgrind turns glibc's CLONE_VFORK into a plain fork, so posix_spawn cannot
 * see the exec or chdir failure of its child there: it "succeeds". */
static bool is_under_valgrind(void)
{
	const char *preload = getenv("LD_PRELOAD");
	return preload != NULL && strstr(preload, "vgpreload") != NULL;
}

static void test_missing_program(void **state)
{
	struct fixture *f = *state;
	if (is_under_valgrind())
		skip();
	struct child c;
	child_init(&c);
	char err[256] = "";

	const char *argv1[] = {"drover-no-such-program-here", NULL};
	struct proc_spec spec = {.argv = argv1};
	assert_null(proc_spawn(f->table, &spec, on_output, on_exit_cb, &c, err, sizeof(err)));
	assert_non_null(strstr(err, "drover-no-such-program-here"));
	assert_non_null(strstr(err, strerror(ENOENT)));

	const char *argv2[] = {"/nonexistent/dir/prog", NULL};
	spec.argv = argv2;
	err[0] = '\0';
	assert_null(proc_spawn(f->table, &spec, on_output, on_exit_cb, &c, err, sizeof(err)));
	assert_non_null(strstr(err, strerror(ENOENT)));

	const char *argv3[] = {"true", NULL};
	spec.argv = argv3;
	spec.cwd = "/nonexistent/dir";
	err[0] = '\0';
	assert_null(proc_spawn(f->table, &spec, on_output, on_exit_cb, &c, err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/dir"));

	const char *argv4[] = {NULL};
	spec.argv = argv4;
	spec.cwd = NULL;
	err[0] = '\0';
	assert_null(proc_spawn(f->table, &spec, on_output, on_exit_cb, &c, err, sizeof(err)));
	assert_true(err[0] != '\0');

	assert_int_equal(proc_table_count(f->table), 0);
	assert_int_equal(c.exits, 0);
	strbuf_free(&c.out);
}

static void test_cwd_honoured(void **state)
{
	struct fixture *f = *state;
	char dir[] = "/tmp/drover-test-proc-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char real[PATH_MAX];
	assert_non_null(realpath(dir, real));

	struct child c;
	child_init(&c);
	const char *argv[] = {"pwd", NULL};
	spawn_argv(f, &c, argv, dir, NULL, 0);
	run_to_end(f, &c);
	char *want = xasprintf("%s\n", real);
	assert_string_equal(c.out.data, want);
	free(want);
	strbuf_free(&c.out);
	assert_int_equal(rm_rf(dir), 0);
}

static void test_env_honoured(void **state)
{
	struct fixture *f = *state;
	struct child c;
	child_init(&c);
	const char *envp[] = {"DROVER_TEST_VALUE=a b$c", "PATH=/usr/bin:/bin", NULL};
	const char *argv[] = {"sh", "-c", "echo \"[$DROVER_TEST_VALUE][${HOME-unset}]\"", NULL};
	spawn_argv(f, &c, argv, NULL, envp, 0);
	run_to_end(f, &c);
	assert_string_equal(c.out.data, "[a b$c][unset]\n");
	strbuf_free(&c.out);
}

static void test_kill_sleep_terminates_quickly(void **state)
{
	struct fixture *f = *state;
	struct child c;
	child_init(&c);
	const char *argv[] = {"sleep", "100", NULL};
	struct proc *p = spawn_argv(f, &c, argv, NULL, NULL, 0);
	run_loop_ms(f, 50);
	int64_t start_ms = mono_ms();
	proc_kill(p, 10000);
	proc_kill(p, 20000); /* idempotent */
	run_to_end(f, &c);
	assert_int_equal(c.exit_code, -1);
	assert_int_equal(c.term_signal, SIGTERM);
	assert_true(c.exited_at_ms - start_ms < 2000);
	strbuf_free(&c.out);
}

static void test_kill_after_grace_when_term_ignored(void **state)
{
	struct fixture *f = *state;
	struct child c;
	child_init(&c);
	c.kill_when = "ready";
	c.kill_grace_ms = 300;
	int64_t start_ms = mono_ms();
	spawn_sh(f, &c, "trap '' TERM; echo ready; sleep 100; echo survived");
	run_to_end(f, &c);
	assert_true(c.is_kill_sent);
	assert_int_equal(c.exit_code, -1);
	assert_int_equal(c.term_signal, SIGKILL);
	assert_true(c.exited_at_ms - start_ms >= 300);
	assert_true(c.exited_at_ms - start_ms < 5000);
	assert_null(strstr(c.out.data, "survived"));
	strbuf_free(&c.out);
}

static void test_kill_takes_down_process_tree(void **state)
{
	struct fixture *f = *state;
	struct child c;
	child_init(&c);
	c.kill_when = "both\n";
	c.kill_grace_ms = 3000;
	spawn_sh(
	    f, &c,
	    "sleep 100 & echo pid $!; sleep 100 & echo pid $!; echo both; wait; echo survived");
	run_to_end(f, &c);
	assert_true(c.is_kill_sent);
	assert_int_equal(c.exit_code, -1);
	assert_int_equal(c.term_signal, SIGTERM);
	assert_null(strstr(c.out.data, "survived"));
	pid_t pids[2] = {0, 0};
	assert_int_equal(parse_pids(c.out.data, pids, 2), 2);
	assert_pid_dies(pids[0]);
	assert_pid_dies(pids[1]);
	strbuf_free(&c.out);
}

static void test_linger_kills_daemonised_grandchild(void **state)
{
	struct fixture *f = *state;
	struct child c;
	child_init(&c);
	const char *argv[] = {"sh", "-c", "sleep 100 & echo pid $!; echo started", NULL};
	int64_t start_ms = mono_ms();
	spawn_argv(f, &c, argv, NULL, NULL, 200);
	run_to_end(f, &c);
	assert_int_equal(c.exit_code, 0);
	assert_int_equal(c.term_signal, 0);
	assert_non_null(strstr(c.out.data, "started\n"));
	assert_true(c.exited_at_ms - start_ms >= 200);
	assert_true(c.exited_at_ms - start_ms < 3000);
	pid_t pid = 0;
	assert_int_equal(parse_pids(c.out.data, &pid, 1), 1);
	assert_pid_dies(pid);
	strbuf_free(&c.out);
}

static void test_many_concurrent(void **state)
{
	struct fixture *f = *state;
	enum { N = 50 };
	struct child *kids = xcalloc(N, sizeof(*kids));
	int done = 0;
	for (int i = 0; i < N; i++) {
		child_init(&kids[i]);
		kids[i].done_count = &done;
		char *script = xasprintf("echo child %d; exit %d", i, (i * 7) % 256);
		spawn_sh(f, &kids[i], script);
		free(script);
	}
	assert_int_equal(proc_table_count(f->table), N);
	loop_until(f, &done, N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(kids[i].exits, 1);
		assert_int_equal(kids[i].exit_code, (i * 7) % 256);
		char *want = xasprintf("child %d\n", i);
		assert_string_equal(kids[i].out.data, want);
		free(want);
		strbuf_free(&kids[i].out);
	}
	assert_int_equal(proc_table_count(f->table), 0);
	free(kids);
}

static void test_large_output(void **state)
{
	struct fixture *f = *state;
	struct child c;
	child_init(&c);
	c.is_capturing = false;
	const char *argv[] = {"head", "-c", "5000000", "/dev/zero", NULL};
	spawn_argv(f, &c, argv, NULL, NULL, 0);
	run_to_end(f, &c);
	assert_int_equal(c.exit_code, 0);
	assert_int_equal(c.out_bytes, 5000000);
	assert_false(c.has_nonzero_byte);
	strbuf_free(&c.out);
}

/* Spawns a follow-up child from inside the first one's exit callback. */
struct chain {
	struct fixture *f;
	struct child first, second;
	struct child *victim;
};

static void on_chain_exit(void *arg, int exit_code, int term_signal)
{
	struct chain *ch = arg;
	on_exit_cb(&ch->first, exit_code, term_signal);
	proc_kill(ch->victim->proc, 5000);
	spawn_sh(ch->f, &ch->second, "echo second; exit 4");
}

static void test_callbacks_may_spawn_and_kill(void **state)
{
	struct fixture *f = *state;
	struct chain ch;
	ch.f = f;
	child_init(&ch.first);
	child_init(&ch.second);
	struct child victim;
	child_init(&victim);
	ch.victim = &victim;
	spawn_sh(f, &victim, "sleep 100");

	const char *argv[] = {"sh", "-c", "exit 2", NULL};
	struct proc_spec spec = {.argv = argv};
	char err[128];
	assert_non_null(
	    proc_spawn(f->table, &spec, on_output, on_chain_exit, &ch, err, sizeof(err)));
	loop_until(f, &ch.second.exits, 1);
	loop_until(f, &victim.exits, 1);
	assert_int_equal(ch.first.exit_code, 2);
	assert_int_equal(ch.second.exit_code, 4);
	assert_string_equal(ch.second.out.data, "second\n");
	assert_int_equal(victim.term_signal, SIGTERM);
	assert_int_equal(proc_table_count(f->table), 0);
	strbuf_free(&ch.first.out);
	strbuf_free(&ch.second.out);
	strbuf_free(&victim.out);
}

static void test_table_free_kills_live_children(void **state)
{
	struct fixture *f = *state;
	struct child a, b;
	child_init(&a);
	child_init(&b);
	const char *argv[] = {"sleep", "100", NULL};
	struct proc *pa = spawn_argv(f, &a, argv, NULL, NULL, 0);
	spawn_sh(f, &b, "sleep 100 & echo pid $!; sleep 100 & echo pid $!; echo both; wait");
	pid_t leader_a = proc_pid(pa);
	pid_t leader_b = proc_pid(b.proc);
	bool is_timed_out = false;
	struct event *safety = evtimer_new(f->base, on_safety_timeout, &is_timed_out);
	struct timeval tv = {SAFETY_TIMEOUT_MS / 1000, 0};
	evtimer_add(safety, &tv);
	while (strstr(b.out.data, "both\n") == NULL && !is_timed_out)
		event_base_loop(f->base, EVLOOP_ONCE);
	event_free(safety);
	assert_false(is_timed_out);
	pid_t pids[2] = {0, 0};
	assert_int_equal(parse_pids(b.out.data, pids, 2), 2);
	assert_int_equal(proc_table_count(f->table), 2);

	proc_table_free(f->table);
	f->table = NULL;
	assert_int_equal(a.exits, 0);
	assert_int_equal(b.exits, 0);
	assert_pid_dies(leader_a);
	assert_pid_dies(leader_b);
	assert_pid_dies(pids[0]);
	assert_pid_dies(pids[1]);
	strbuf_free(&a.out);
	strbuf_free(&b.out);
}

/* ---- start times and orphaned groups ---- */

static uint64_t start_time_of_child(struct fixture *f, struct child *c, const char *const *argv)
{
	struct proc *p = spawn_argv(f, c, argv, NULL, NULL, 0);
	uint64_t t = proc_start_time(p);
	assert_true(t > 0);
	assert_true(proc_read_start_time(proc_pid(p)) == t);
	return t;
}

static void test_start_time(void **state)
{
	struct fixture *f = *state;
	uint64_t self = proc_read_start_time(getpid());
	assert_true(self > 0);
	assert_true(proc_read_start_time(getpid()) == self);
	assert_true(proc_read_start_time(0) == 0);
	assert_true(proc_read_start_time(-1) == 0);
	/* Above pid_max no process can exist. */
	char *text = file_read_all("/proc/sys/kernel/pid_max", 64, NULL);
	assert_non_null(text);
	long pid_max = strtol(text, NULL, 10);
	free(text);
	assert_true(pid_max > 0 && pid_max < INT_MAX);
	assert_true(proc_read_start_time((pid_t)pid_max + 1) == 0);

	/* A command name with spaces and parentheses does not shift the fields:
	 * the odd one started between two others, and so did its start time. */
	char dir[] = "/tmp/drover-test-proc-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *odd = xasprintf("%s/a) b (c", dir);
	char *copy = xasprintf("cp /bin/sleep '%s'", odd);
	assert_int_equal(system(copy), 0);
	free(copy);
	struct child a, b, c;
	child_init(&a);
	child_init(&b);
	child_init(&c);
	const char *normal[] = {"sleep", "5", NULL};
	const char *odd_argv[] = {odd, "5", NULL};
	uint64_t t_a = start_time_of_child(f, &a, normal);
	usleep(30 * 1000);
	uint64_t t_b = start_time_of_child(f, &b, odd_argv);
	usleep(30 * 1000);
	uint64_t t_c = start_time_of_child(f, &c, normal);
	assert_true(self <= t_a && t_a <= t_b && t_b <= t_c);
	assert_true(t_a < t_c); /* 60 ms apart: at least one clock tick */
	proc_kill(a.proc, 0);
	proc_kill(b.proc, 0);
	proc_kill(c.proc, 0);
	int done = 0;
	a.done_count = b.done_count = c.done_count = &done;
	loop_until(f, &done, 3);
	assert_int_equal(rm_rf(dir), 0);
	free(odd);
	strbuf_free(&a.out);
	strbuf_free(&b.out);
	strbuf_free(&c.out);
}

/* A process group as a killed agent leaves it: not our child (its parent
 * exited), its own group, one background member. */
struct orphan {
	pid_t leader;
	pid_t member;
	uint64_t start_time;
};

/* Reads the orphan's "leader N", "pid N", "ready" lines (10 s at most). */
static void orphan_read(int fd, struct orphan *o)
{
	struct strbuf out;
	strbuf_init(&out);
	strbuf_adds(&out, "");
	int64_t deadline = mono_ms() + 10000;
	while (strstr(out.data, "ready\n") == NULL) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int64_t left = deadline - mono_ms();
		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			fail_msg("the orphan did not say ready: '%s'", out.data);
		char buf[256];
		ssize_t n = read(fd, buf, sizeof buf);
		if (n <= 0)
			fail_msg("the orphan's output ended: '%s'", out.data);
		strbuf_add(&out, buf, (size_t)n);
	}
	const char *l = strstr(out.data, "leader ");
	assert_non_null(l);
	o->leader = (pid_t)strtol(l + 7, NULL, 10);
	pid_t pids[1] = {0};
	assert_int_equal(parse_pids(out.data, pids, 1), 1);
	o->member = pids[0];
	strbuf_free(&out);
}

static void orphan_start(struct orphan *o, const char *script)
{
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t middle = fork();
	assert_true(middle >= 0);
	if (middle == 0) {
		if (fork() == 0) {
			setpgid(0, 0);
			dup2(fds[1], STDOUT_FILENO);
			close(fds[0]);
			close(fds[1]);
			execl("/bin/sh", "sh", "-c", script, (char *)NULL);
			_exit(127);
		}
		_exit(0);
	}
	close(fds[1]);
	int status;
	assert_int_equal(waitpid(middle, &status, 0), middle);
	orphan_read(fds[0], o);
	close(fds[0]);
	o->start_time = proc_read_start_time(o->leader);
	assert_true(o->start_time > 0);
	assert_int_equal(getpgid(o->leader), o->leader);
	assert_int_equal(getpgid(o->member), o->leader);
}

static void orphan_kill(struct orphan *o)
{
	kill(-o->leader, SIGKILL);
	assert_pid_dies(o->leader);
	assert_pid_dies(o->member);
}

#define ORPHAN_SCRIPT "echo leader $$; sleep 60 & echo pid $!; echo ready; wait"

static void test_kill_orphans_checks_start_time(void **state)
{
	(void)state;
	struct orphan o;
	orphan_start(&o, ORPHAN_SCRIPT);
	/* Another start time: the pid names someone else now. Unknown: never. */
	struct proc_orphan g[] = {{.pgid = o.leader, .start_time = o.start_time + 1},
				  {.pgid = o.leader, .start_time = 0},
				  {.pgid = o.leader + 1000000, .start_time = o.start_time}};
	assert_int_equal(proc_kill_orphans(g, ARRAY_LEN(g), 100), 0);
	for (size_t i = 0; i < ARRAY_LEN(g); i++)
		assert_false(g[i].is_killed);
	usleep(100 * 1000);
	assert_false(is_pid_dead(o.leader));
	assert_false(is_pid_dead(o.member));
	orphan_kill(&o);
}

static void test_kill_orphans_terminates_group(void **state)
{
	(void)state;
	struct orphan a, b, gone;
	orphan_start(&a, ORPHAN_SCRIPT);
	orphan_start(&b, ORPHAN_SCRIPT);
	orphan_start(&gone, ORPHAN_SCRIPT);
	orphan_kill(&gone);
	struct proc_orphan g[] = {{.pgid = a.leader, .start_time = a.start_time},
				  {.pgid = gone.leader, .start_time = gone.start_time},
				  {.pgid = b.leader, .start_time = b.start_time}};
	/* SIGTERM is enough: no waiting for the (long) grace. */
	int64_t t0 = mono_ms();
	assert_int_equal(proc_kill_orphans(g, ARRAY_LEN(g), 60000), 2);
	assert_true(mono_ms() - t0 < 30000);
	assert_true(g[0].is_killed);
	assert_false(g[1].is_killed);
	assert_true(g[2].is_killed);
	assert_pid_dies(a.leader);
	assert_pid_dies(a.member);
	assert_pid_dies(b.leader);
	assert_pid_dies(b.member);
}

/* A member that ignores SIGTERM outlives its leader; SIGKILL after the grace. */
static void test_kill_orphans_sigkill_after_grace(void **state)
{
	(void)state;
	struct orphan o;
	/* "ready" only once the member ignores SIGTERM (else TERM could win the race). */
	orphan_start(&o,
		     "echo leader $$; m=/tmp/drover-test-armed.$$;"
		     " (trap '' TERM; : >\"$m\"; exec sleep 60) & echo pid $!;"
		     " while [ ! -e \"$m\" ]; do sleep 0.01; done; rm -f \"$m\"; echo ready; wait");
	struct proc_orphan g = {.pgid = o.leader, .start_time = o.start_time};
	int64_t t0 = mono_ms();
	assert_int_equal(proc_kill_orphans(&g, 1, 300), 1);
	assert_true(g.is_killed);
	assert_true(mono_ms() - t0 >= 300); /* the member was given its grace */
	assert_pid_dies(o.leader);
	assert_pid_dies(o.member);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_echo_output_and_exit_zero, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_exit_code, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stderr_on_same_stream, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stdin_is_dev_null, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_missing_program, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cwd_honoured, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_env_honoured, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_kill_sleep_terminates_quickly, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_kill_after_grace_when_term_ignored, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_kill_takes_down_process_tree, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_linger_kills_daemonised_grandchild, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_many_concurrent, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_large_output, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_callbacks_may_spawn_and_kill, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_table_free_kills_live_children, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_start_time, setup, teardown),
	    cmocka_unit_test(test_kill_orphans_checks_start_time),
	    cmocka_unit_test(test_kill_orphans_terminates_group),
	    cmocka_unit_test(test_kill_orphans_sigkill_after_grace),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
