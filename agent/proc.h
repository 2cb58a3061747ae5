/*
 * proc: child processes on the event loop. Spawns with posix_spawn into a
 * new process group, with stdout and stderr on one pipe read
 * non-blockingly, reaps through SIGCHLD, and kills whole groups
 * (TERM, grace, KILL). Knows nothing of stages or plugins.
 */
#ifndef DROVER_PROC_H
#define DROVER_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct event_base;
struct proc_table;
struct proc;

struct proc_spec {
	const char *const *argv; /* argv[0] looked up in PATH when it has no '/' */
	const char *const *envp; /* the whole environment */
	const char *cwd;	 /* NULL: inherit */
	/* How long to wait for the output pipe to close after the leader exited
	 * before killing what is left of its group (a daemonised grandchild).
	 * 0: default 2 s. */
	int64_t linger_ms;
};

/* Output as it arrives, in chunks (not lines). */
typedef void (*proc_output_cb)(void *arg, const char *data, size_t len);
/* Exactly once: the leader was reaped and the pipe is closed. exit_code is
 * the status (0-255) or -1 when killed by term_signal. The proc is freed
 * right after this returns. */
typedef void (*proc_exit_cb)(void *arg, int exit_code, int term_signal);

/* One per event base: owns the SIGCHLD handler and every live proc. */
struct proc_table *proc_table_new(struct event_base *base);
/* Kills (SIGKILL) and reaps whatever is still running, without callbacks. */
void proc_table_free(struct proc_table *t);
size_t proc_table_count(const struct proc_table *t);

/* NULL and a message in err when the process could not be started. */
struct proc *proc_spawn(struct proc_table *t, const struct proc_spec *spec,
			proc_output_cb on_output, proc_exit_cb on_exit, void *arg, char *err,
			size_t err_len);

/* TERM to the whole group now, KILL after grace_ms if it is still there.
 * Idempotent; the exit callback still runs once. */
void proc_kill(struct proc *p, int64_t grace_ms);
pid_t proc_pid(const struct proc *p);
/* The start time of p's leader as proc_read_start_time() saw it at spawn
 * (0 when it could not be read). */
uint64_t proc_start_time(const struct proc *p);
/* Drops the callbacks (its owner is going away); the process is still
 * reaped, and killed when the table is freed. */
void proc_detach(struct proc *p);

/*
 * When a process started: field 22 of /proc/<pid>/stat (clock ticks since
 * boot). With the pid it names one process for good, even after the pid is
 * reused. 0 when there is no such process (a zombie still has one).
 */
uint64_t proc_read_start_time(pid_t pid);

/* A process group a previous agent started (its leader's pid and start time). */
struct proc_orphan {
	pid_t pgid;
	uint64_t start_time;
	bool is_killed; /* out: it was still there and was signalled */
};

/*
 * Start-up only, blocking: kills the groups a previous agent left running
 * when it died without taking them down (kill -9, a crash). A group is
 * signalled only while a member is alive and its leader still has the
 * recorded start time, so a reused pid is never hit. SIGTERM, up to
 * grace_ms for the groups to empty, then SIGKILL to what is left. Returns
 * how many groups were signalled.
 */
size_t proc_kill_orphans(struct proc_orphan *groups, size_t n, int64_t grace_ms);

#endif
