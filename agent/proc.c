/*
 * proc: child processes on the event loop. Owns SIGCHLD for the whole agent, the
 * output pipe of every child and the signals sent to its process group. Never
 * blocks the loop (except at shutdown and, at start-up, while it takes down
 * the groups a killed agent left behind) and never signals a group it has let
 * go.
 */
#include "proc.h"

#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define PROC_READ_BYTES (64 * 1024)
/* Reads per wake-up before yielding to the rest of the loop (the read event
 * is level-triggered, so a still-readable pipe brings us straight back). */
#define PROC_READS_PER_WAKEUP 16
#define PROC_LINGER_DEFAULT_MS 2000
/* After the lingering group got SIGKILL: how long to wait for EOF before
 * closing the pipe anyway (a writer that escaped the group). */
#define PROC_DRAIN_AFTER_KILL_MS 1000
/* How often proc_kill_orphans looks whether the groups it signalled are gone. */
#define PROC_ORPHAN_POLL_MS 20

struct proc_table {
	struct event_base *base;
	struct event *ev_sigchld;
	struct proc *head;
	size_t count;
	char read_buf[PROC_READ_BYTES];
};

struct proc {
	struct proc_table *table;
	struct proc *prev, *next;
	pid_t pid;	     /* also the process group id */
	uint64_t start_time; /* of the leader, read at spawn; 0: unknown */
	int fd;		     /* read end of the output pipe; -1 once closed */
	struct event *ev_read;
	struct event *ev_linger; /* leader gone, pipe still open */
	struct event *ev_kill;	 /* SIGKILL after the grace period */
	int64_t linger_ms;
	int64_t kill_deadline_ms; /* mono_ms when SIGKILL is due; 0: not pending */
	bool is_reaped;
	bool is_eof;
	bool is_finished;
	bool is_lingering_killed;
	bool is_kill_requested;
	int exit_code;
	int term_signal;
	proc_output_cb on_output;
	proc_exit_cb on_exit;
	void *arg;
};

static void timeval_from_ms(struct timeval *tv, int64_t ms)
{
	if (ms < 0)
		ms = 0;
	tv->tv_sec = (time_t)(ms / 1000);
	tv->tv_usec = (suseconds_t)((ms % 1000) * 1000);
}

/* Signals the whole group; quiet when it is already empty. */
static void proc_signal_group(struct proc *p, int sig)
{
	if (p->is_finished)
		return;
	if (kill(-p->pid, sig) < 0 && errno != ESRCH)
		log_warn("proc: signalling group %ld with %s failed: %s", (long)p->pid,
			 strsignal(sig), strerror(errno));
}

static void proc_close_pipe(struct proc *p)
{
	if (p->ev_read != NULL) {
		event_free(p->ev_read);
		p->ev_read = NULL;
	}
	if (p->fd >= 0) {
		close(p->fd);
		p->fd = -1;
	}
}

static void proc_unlink(struct proc *p)
{
	struct proc_table *t = p->table;

	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		t->head = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	p->prev = p->next = NULL;
	t->count--;
}

static void proc_release(struct proc *p)
{
	proc_close_pipe(p);
	if (p->ev_linger != NULL)
		event_free(p->ev_linger);
	if (p->ev_kill != NULL)
		event_free(p->ev_kill);
	free(p);
}

/*
 * Ends p once the leader was reaped and the pipe is closed: takes it out of
 * the table first (so the callback sees a consistent table and may spawn or
 * kill others), runs on_exit exactly once, then frees p. Returns true when p
 * is gone and must not be touched again.
 */
static bool proc_finish_if_done(struct proc *p)
{
	if (!p->is_reaped || !p->is_eof || p->is_finished)
		return false;
	p->is_finished = true;
	proc_unlink(p);
	proc_close_pipe(p);
	log_debug("proc: %ld finished (exit %d, signal %d)", (long)p->pid, p->exit_code,
		  p->term_signal);
	if (p->on_exit != NULL)
		p->on_exit(p->arg, p->exit_code, p->term_signal);
	proc_release(p);
	return true;
}

static void proc_mark_eof(struct proc *p)
{
	p->is_eof = true;
	proc_close_pipe(p);
	proc_finish_if_done(p);
}

/* Hands the pipe's output to on_output until it would block or closes. */
static void proc_on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct proc *p = arg;
	char *buf = p->table->read_buf;
	(void)what;

	for (int i = 0; i < PROC_READS_PER_WAKEUP; i++) {
		ssize_t n = read(fd, buf, PROC_READ_BYTES);
		if (n > 0) {
			if (p->on_output != NULL)
				p->on_output(p->arg, buf, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0)
			log_warn("proc: reading output of %ld failed: %s", (long)p->pid,
				 strerror(errno));
		proc_mark_eof(p);
		return;
	}
}

/*
 * The leader is gone but something still holds the pipe. First expiry: the
 * linger time is over, kill what is left of the group and give it a short
 * while to close the pipe. Second expiry: give up on EOF and finish.
 */
static void proc_on_linger(evutil_socket_t fd, short what, void *arg)
{
	struct proc *p = arg;
	(void)fd;
	(void)what;

	if (!p->is_lingering_killed) {
		log_info("proc: %ld exited but its output is still open after %lld ms; "
			 "killing its group",
			 (long)p->pid, (long long)p->linger_ms);
		p->is_lingering_killed = true;
		proc_signal_group(p, SIGKILL);
		struct timeval tv;
		timeval_from_ms(&tv, PROC_DRAIN_AFTER_KILL_MS);
		evtimer_add(p->ev_linger, &tv);
		return;
	}
	log_warn("proc: output of %ld still open after SIGKILL to its group; closing it",
		 (long)p->pid);
	proc_mark_eof(p);
}

static void proc_on_kill_timer(evutil_socket_t fd, short what, void *arg)
{
	struct proc *p = arg;
	(void)fd;
	(void)what;

	log_info("proc: group %ld still there after its grace period; sending SIGKILL",
		 (long)p->pid);
	p->kill_deadline_ms = 0;
	proc_signal_group(p, SIGKILL);
}

static struct proc *proc_table_find(struct proc_table *t, pid_t pid)
{
	for (struct proc *p = t->head; p != NULL; p = p->next)
		if (p->pid == pid)
			return p;
	return NULL;
}

/* Records the leader's wait status and either finishes p or starts lingering. */
static void proc_mark_reaped(struct proc *p, int status)
{
	p->is_reaped = true;
	if (WIFEXITED(status)) {
		p->exit_code = WEXITSTATUS(status);
		p->term_signal = 0;
	} else {
		p->exit_code = -1;
		p->term_signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
	}
	if (proc_finish_if_done(p))
		return;
	struct timeval tv;
	timeval_from_ms(&tv, p->linger_ms);
	evtimer_add(p->ev_linger, &tv);
}

/*
 * Reaps every child that has ended. Each pid is looked up afresh after the
 * previous callback ran, so callbacks may spawn or kill freely; a pid that is
 * not ours is reaped and forgotten.
 */
static void proc_on_sigchld(evutil_socket_t sig, short what, void *arg)
{
	struct proc_table *t = arg;
	(void)sig;
	(void)what;

	for (;;) {
		int status = 0;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		if (pid < 0 && errno == EINTR)
			continue;
		if (pid <= 0)
			return;
		struct proc *p = proc_table_find(t, pid);
		if (p == NULL || p->is_reaped) {
			log_debug("proc: reaped %ld, which is not one of ours", (long)pid);
			continue;
		}
		proc_mark_reaped(p, status);
	}
}

struct proc_table *proc_table_new(struct event_base *base)
{
	struct proc_table *t = xcalloc(1, sizeof(*t));

	t->base = base;
	t->ev_sigchld = evsignal_new(base, SIGCHLD, proc_on_sigchld, t);
	if (t->ev_sigchld == NULL || evsignal_add(t->ev_sigchld, NULL) < 0) {
		log_error("proc: cannot watch SIGCHLD on the event base");
		if (t->ev_sigchld != NULL)
			event_free(t->ev_sigchld);
		free(t);
		return NULL;
	}
	return t;
}

/*
 * Shutdown: SIGKILL to every group still known, a blocking reap of every
 * leader not yet reaped, and everything freed. No callback runs.
 */
void proc_table_free(struct proc_table *t)
{
	if (t == NULL)
		return;
	for (struct proc *p = t->head; p != NULL; p = p->next) {
		proc_signal_group(p, SIGKILL);
		/* Never block below on a leader that the group kill missed. */
		if (!p->is_reaped)
			kill(p->pid, SIGKILL);
	}
	while (t->head != NULL) {
		struct proc *p = t->head;
		while (!p->is_reaped) {
			int status;
			pid_t r = waitpid(p->pid, &status, 0);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				log_warn("proc: reaping %ld at shutdown failed: %s", (long)p->pid,
					 strerror(errno));
			p->is_reaped = true;
		}
		p->is_finished = true;
		proc_unlink(p);
		proc_release(p);
	}
	event_free(t->ev_sigchld);
	free(t);
}

size_t proc_table_count(const struct proc_table *t)
{
	return t->count;
}

/* Moves fd above the standard descriptors (keeping O_CLOEXEC), so the
 * child's dup2 and open of 0, 1 and 2 can never clobber it. */
static int fd_move_high(int fd)
{
	if (fd > STDERR_FILENO)
		return fd;
	int high = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
	int saved = errno;
	close(fd);
	errno = saved;
	return high;
}

/*
 * Starts the child with posix_spawn: its own process group, an empty signal
 * mask, default dispositions, stdin from /dev/null, stdout and stderr on the
 * one pipe given. Returns 0 with *pid set, or an errno value.
 */
static int proc_start_child(const struct proc_spec *spec, int wfd, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t mask, defaults;
	int rc;

	rc = posix_spawn_file_actions_init(&fa);
	if (rc != 0)
		return rc;
	rc = posix_spawnattr_init(&attr);
	if (rc != 0) {
		posix_spawn_file_actions_destroy(&fa);
		return rc;
	}

	sigemptyset(&mask);
	sigfillset(&defaults);
	sigdelset(&defaults, SIGKILL);
	sigdelset(&defaults, SIGSTOP);
	short flags = POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
	rc = posix_spawnattr_setflags(&attr, flags);
	if (rc == 0)
		rc = posix_spawnattr_setpgroup(&attr, 0);
	if (rc == 0)
		rc = posix_spawnattr_setsigmask(&attr, &mask);
	if (rc == 0)
		rc = posix_spawnattr_setsigdefault(&attr, &defaults);
	if (rc == 0)
		rc = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	if (rc == 0)
		rc = posix_spawn_file_actions_adddup2(&fa, wfd, STDOUT_FILENO);
	if (rc == 0)
		rc = posix_spawn_file_actions_adddup2(&fa, wfd, STDERR_FILENO);
	if (rc == 0 && spec->cwd != NULL)
		rc = posix_spawn_file_actions_addchdir_np(&fa, spec->cwd);
	if (rc != 0)
		goto out;

	char *const *argv = (char *const *)spec->argv;
	char *const *envp = spec->envp != NULL ? (char *const *)spec->envp : environ;
	if (strchr(spec->argv[0], '/') != NULL)
		rc = posix_spawn(pid, spec->argv[0], &fa, &attr, argv, envp);
	else
		rc = posix_spawnp(pid, spec->argv[0], &fa, &attr, argv, envp);
out:
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	return rc;
}

/*
 * Starts spec as a new process group leader and watches its output and exit.
 * On failure nothing is left behind and err says why (missing program, bad
 * cwd, no descriptors).
 */
struct proc *proc_spawn(struct proc_table *t, const struct proc_spec *spec,
			proc_output_cb on_output, proc_exit_cb on_exit, void *arg, char *err,
			size_t err_len)
{
	int fds[2];
	pid_t pid;
	int rc;

	if (spec->argv == NULL || spec->argv[0] == NULL || spec->argv[0][0] == '\0') {
		snprintf(err, err_len, "no program to run");
		return NULL;
	}
	if (pipe2(fds, O_CLOEXEC) < 0) {
		snprintf(err, err_len, "cannot create a pipe for %s: %s", spec->argv[0],
			 strerror(errno));
		return NULL;
	}
	if ((fds[0] = fd_move_high(fds[0])) < 0 || (fds[1] = fd_move_high(fds[1])) < 0) {
		snprintf(err, err_len, "cannot create a pipe for %s: %s", spec->argv[0],
			 strerror(errno));
		if (fds[0] >= 0)
			close(fds[0]);
		if (fds[1] >= 0)
			close(fds[1]);
		return NULL;
	}
	if (fd_set_flags(fds[0], true) < 0) {
		snprintf(err, err_len, "cannot set up the pipe for %s: %s", spec->argv[0],
			 strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return NULL;
	}

	rc = proc_start_child(spec, fds[1], &pid);
	close(fds[1]);
	if (rc != 0) {
		if (spec->cwd != NULL)
			snprintf(err, err_len, "cannot start %s in %s: %s", spec->argv[0],
				 spec->cwd, strerror(rc));
		else
			snprintf(err, err_len, "cannot start %s: %s", spec->argv[0], strerror(rc));
		close(fds[0]);
		return NULL;
	}

	struct proc *p = xcalloc(1, sizeof(*p));
	p->table = t;
	p->pid = pid;
	/* Not reaped before the loop runs again, so the pid is still this child's. */
	p->start_time = proc_read_start_time(pid);
	p->fd = fds[0];
	p->linger_ms = spec->linger_ms > 0 ? spec->linger_ms : PROC_LINGER_DEFAULT_MS;
	p->on_output = on_output;
	p->on_exit = on_exit;
	p->arg = arg;
	p->ev_read = event_new(t->base, p->fd, EV_READ | EV_PERSIST, proc_on_readable, p);
	p->ev_linger = evtimer_new(t->base, proc_on_linger, p);
	p->ev_kill = evtimer_new(t->base, proc_on_kill_timer, p);
	p->next = t->head;
	if (t->head != NULL)
		t->head->prev = p;
	t->head = p;
	t->count++;
	if (p->ev_read == NULL || p->ev_linger == NULL || p->ev_kill == NULL ||
	    event_add(p->ev_read, NULL) < 0) {
		/* The child runs already: it must not be left behind unwatched. */
		snprintf(err, err_len, "cannot watch %s on the event loop", spec->argv[0]);
		proc_signal_group(p, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		proc_unlink(p);
		proc_release(p);
		return NULL;
	}
	log_debug("proc: started %s as %ld", spec->argv[0], (long)pid);
	return p;
}

/*
 * SIGTERM to the group now (once) and SIGKILL after grace_ms unless p has
 * finished by then. A later call can only bring the SIGKILL forward.
 */
void proc_kill(struct proc *p, int64_t grace_ms)
{
	if (p == NULL || p->is_finished)
		return;
	if (grace_ms < 0)
		grace_ms = 0;
	int64_t deadline_ms = mono_ms() + grace_ms;
	if (!p->is_kill_requested) {
		p->is_kill_requested = true;
		log_debug("proc: terminating group %ld (grace %lld ms)", (long)p->pid,
			  (long long)grace_ms);
		proc_signal_group(p, SIGTERM);
	} else if (p->kill_deadline_ms == 0 || p->kill_deadline_ms <= deadline_ms) {
		return; /* SIGKILL already sent, or due sooner anyway */
	}
	p->kill_deadline_ms = deadline_ms;
	struct timeval tv;
	timeval_from_ms(&tv, grace_ms);
	evtimer_add(p->ev_kill, &tv);
}

pid_t proc_pid(const struct proc *p)
{
	return p->pid;
}

uint64_t proc_start_time(const struct proc *p)
{
	return p->start_time;
}

void proc_detach(struct proc *p)
{
	p->on_output = NULL;
	p->on_exit = NULL;
	p->arg = NULL;
}

/* ---- groups a previous agent left behind ---- */

/*
 * Reads the state (field 3), process group (5) and start time (22) of pid
 * from /proc/<pid>/stat. The command name (field 2) is in parentheses and may
 * hold spaces and ')', so the fields are counted from the last ')'. -1 when
 * there is no such process or the line is not understood.
 */
static int proc_stat_read(pid_t pid, char *state, pid_t *pgrp, uint64_t *start_time)
{
	char path[64], buf[2048];
	snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n;
	do
		n = read(fd, buf, sizeof buf - 1);
	while (n < 0 && errno == EINTR);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	if (p == NULL)
		return -1;
	char *save = NULL, *end;
	int field = 3;
	for (char *tok = strtok_r(p + 1, " \n", &save); tok != NULL;
	     tok = strtok_r(NULL, " \n", &save), field++) {
		if (field == 3) {
			*state = tok[0];
		} else if (field == 5) {
			*pgrp = (pid_t)strtol(tok, &end, 10);
			if (*end != '\0')
				return -1;
		} else if (field == 22) {
			*start_time = strtoull(tok, &end, 10);
			return *end == '\0' && *start_time != 0 ? 0 : -1;
		}
	}
	return -1;
}

uint64_t proc_read_start_time(pid_t pid)
{
	char state;
	pid_t pgrp;
	uint64_t start_time;
	if (pid <= 0 || proc_stat_read(pid, &state, &pgrp, &start_time) != 0)
		return 0;
	return start_time;
}

/* Whether any process of group pgid is alive (zombies waiting for their reaper are not). */
static bool proc_group_is_alive(pid_t pgid)
{
	DIR *d = opendir("/proc");
	if (d == NULL)
		return kill(-pgid, 0) == 0;
	bool is_alive = false;
	struct dirent *de;
	while (!is_alive && (de = readdir(d)) != NULL) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		char state;
		pid_t pgrp;
		uint64_t start_time;
		if (de->d_name[0] < '1' || de->d_name[0] > '9' || *end != '\0' ||
		    proc_stat_read((pid_t)pid, &state, &pgrp, &start_time) != 0)
			continue;
		is_alive = pgrp == pgid && state != 'Z' && state != 'X';
	}
	closedir(d);
	return is_alive;
}

static void proc_sleep_ms(int64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/*
 * A group counts as there while any member is alive (a leader that is a
 * zombie is still the same process, and its group may live on). The
 * identity check comes first and the signal right after, so a pid
 * reused in between is practically impossible (Linux hands pids out in
 * order). At the SIGKILL the leader may already have died of the SIGTERM
 * and been reaped while its group lives on: that is still safe, because
 * Linux does not give a number to a new process while it is the group id
 * of a live one; only a leader with another start time means the number
 * now names someone else.
 */
size_t proc_kill_orphans(struct proc_orphan *groups, size_t n, int64_t grace_ms)
{
	size_t n_killed = 0;
	for (size_t i = 0; i < n; i++) {
		struct proc_orphan *g = &groups[i];
		g->is_killed = false;
		if (g->pgid <= 1 || g->pgid == getpgrp() || g->start_time == 0 ||
		    proc_read_start_time(g->pgid) != g->start_time || !proc_group_is_alive(g->pgid))
			continue;
		if (kill(-g->pgid, SIGTERM) < 0) {
			if (errno != ESRCH)
				log_warn("proc: signalling group %ld with SIGTERM failed: %s",
					 (long)g->pgid, strerror(errno));
			continue;
		}
		g->is_killed = true;
		n_killed++;
	}
	if (n_killed == 0)
		return 0;
	int64_t deadline = mono_ms() + (grace_ms > 0 ? grace_ms : 0);
	for (;;) {
		bool is_any_alive = false;
		for (size_t i = 0; i < n && !is_any_alive; i++)
			is_any_alive = groups[i].is_killed && proc_group_is_alive(groups[i].pgid);
		if (!is_any_alive)
			return n_killed;
		if (mono_ms() >= deadline)
			break;
		proc_sleep_ms(PROC_ORPHAN_POLL_MS);
	}
	for (size_t i = 0; i < n; i++) {
		struct proc_orphan *g = &groups[i];
		if (!g->is_killed || !proc_group_is_alive(g->pgid))
			continue;
		uint64_t now = proc_read_start_time(g->pgid);
		if (now != 0 && now != g->start_time)
			continue;
		log_warn("proc: group %ld still there %lld ms after SIGTERM: sending SIGKILL",
			 (long)g->pgid, (long long)grace_ms);
		if (kill(-g->pgid, SIGKILL) < 0 && errno != ESRCH)
			log_warn("proc: signalling group %ld with SIGKILL failed: %s",
				 (long)g->pgid, strerror(errno));
	}
	return n_killed;
}
