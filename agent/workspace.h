/*
 * workspace: a run's own checkout of the event's exact commit. Each
 * repository has one bare mirror under state_dir/repos (cloned once,
 * fetched when the commit is missing, serialised by flock); a run's
 * workspace is a cheap `git clone --shared` of it, detached at the sha.
 * All git work happens in a child process; the loop never waits.
 */
#ifndef DROVER_WORKSPACE_H
#define DROVER_WORKSPACE_H

struct agent;
struct stagelog;
struct workspace_job;

/* rc 0: sha is the commit checked out (resolved from branch when none was
 * given). rc -1: error says why (one line). */
typedef void (*workspace_done_cb)(void *arg, int rc, const char *sha, const char *error);

/*
 * Starts a checkout of url@sha (or the head of branch when sha is NULL)
 * into dest. Git's output goes to log. NULL when it could not start (cb is
 * then not called).
 */
struct workspace_job *workspace_checkout(struct agent *a, const char *repo, const char *url,
					 const char *sha, const char *branch, const char *dest,
					 struct stagelog *log, workspace_done_cb cb, void *arg);
/* Kills the checkout; cb still runs once (with rc -1). */
void workspace_cancel(struct workspace_job *job);

/* Its owner goes away: the callback will not run; the git process is
 * still killed and reaped. Frees the job. */
void workspace_abandon(struct workspace_job *job);

/*
 * The environment of drover's git processes: PATH and HOME from the agent,
 * no prompt, no system config, only the file, git, http(s) and ssh
 * transports. envp is NULL-terminated; clear frees what init made.
 */
struct workspace_git_env {
	char *path, *home; /* owned "PATH=..." and "HOME=..." */
	const char *envp[8];
};
void workspace_git_env_init(struct workspace_git_env *e);
void workspace_git_env_clear(struct workspace_git_env *e);

/* Where a repository's mirror lives (caller frees). */
char *workspace_mirror_path(const char *state_dir, const char *repo);

#endif
