/*
 * workspace: checkouts through one small shell script run as a child. Every
 * value from an event (url, sha, branch) reaches the script as a positional
 * argument, never inside the script's text. A workspace's clone is made
 * without git's templates (sample hooks, description, info/exclude): about
 * twenty files fewer to create and remove per run.
 */
#include "workspace.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "log.h"
#include "proc.h"
#include "stagelog.h"
#include "util.h"

/* $1 url, $2 mirror, $3 dest, $4 sha (may be empty), $5 branch, $6 file for the resolved sha. */
static const char checkout_script[] =
    "set -eu\n"
    "url=$1 mirror=$2 dest=$3 sha=$4 branch=$5 out=$6\n"
    "mkdir -p \"$(dirname \"$mirror\")\"\n"
    "exec 9>\"$mirror.lock\"\n"
    "flock 9\n"
    "if [ ! -d \"$mirror\" ]; then\n"
    "  echo \"cloning $url into the repository cache\"\n"
    "  git clone --quiet --mirror -- \"$url\" \"$mirror.tmp.$$\"\n"
    "  mv \"$mirror.tmp.$$\" \"$mirror\"\n"
    "elif [ -z \"$sha\" ] || ! git --git-dir=\"$mirror\" cat-file -e \"$sha^{commit}\" "
    "2>/dev/null; then\n"
    "  echo \"fetching $url\"\n"
    "  git --git-dir=\"$mirror\" remote set-url origin \"$url\"\n"
    "  git --git-dir=\"$mirror\" fetch --quiet --prune origin\n"
    "fi\n"
    "if [ -z \"$sha\" ]; then\n"
    "  sha=$(git --git-dir=\"$mirror\" rev-parse --verify --quiet "
    "\"refs/heads/$branch^{commit}\") || {\n"
    "    echo \"branch $branch does not exist in $url\" >&2; exit 3; }\n"
    "fi\n"
    "git --git-dir=\"$mirror\" cat-file -e \"$sha^{commit}\" 2>/dev/null || {\n"
    "  echo \"commit $sha does not exist in $url\" >&2; exit 3; }\n"
    "flock -u 9\n"
    "rm -rf \"$dest\"\n"
    "git clone --quiet --template= --shared --no-checkout -- \"$mirror\" \"$dest\"\n"
    "git -C \"$dest\" -c advice.detachedHead=false checkout --quiet --detach \"$sha\"\n"
    "printf '%s\\n' \"$sha\" > \"$out\"\n"
    "echo \"checked out $sha\"\n";

struct workspace_job {
	struct agent *agent;
	struct proc *proc;
	struct stagelog *log;
	char *sha_file;
	workspace_done_cb cb;
	void *arg;
};

char *workspace_mirror_path(const char *state_dir, const char *repo)
{
	/* A readable part (unusual characters become '_') plus a hash of the
	 * exact name, so two repositories never share a mirror. */
	char *safe = xstrdup(repo);
	uint64_t hash = 1469598103934665603ULL; /* FNV-1a */
	for (char *p = safe; *p != '\0'; p++) {
		hash = (hash ^ (unsigned char)*p) * 1099511628211ULL;
		bool is_ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			     (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_';
		if (!is_ok)
			*p = '_';
	}
	if (safe[0] == '.')
		safe[0] = '_';
	if (strlen(safe) > 100)
		safe[100] = '\0';
	char *path =
	    xasprintf("%s/repos/%s-%016llx.git", state_dir, safe, (unsigned long long)hash);
	free(safe);
	return path;
}

static void workspace_on_output(void *arg, const char *data, size_t len)
{
	struct workspace_job *job = arg;
	stagelog_write(job->log, data, len);
}

static void workspace_on_exit(void *arg, int exit_code, int term_signal)
{
	struct workspace_job *job = arg;
	char sha[128] = "";
	char error[160] = "";
	int rc = -1;
	if (exit_code == 0) {
		char *text = file_read_all(job->sha_file, 4096, NULL);
		if (text != NULL && sscanf(text, "%127s", sha) == 1)
			rc = 0;
		else
			snprintf(error, sizeof error, "checkout left no commit id");
		free(text);
	} else if (exit_code == 3) {
		snprintf(error, sizeof error, "the commit to build does not exist (see the log)");
	} else if (exit_code < 0) {
		snprintf(error, sizeof error, "checkout killed by signal %d", term_signal);
	} else {
		snprintf(error, sizeof error, "checkout failed with exit code %d (see the log)",
			 exit_code);
	}
	unlink(job->sha_file);
	job->cb(job->arg, rc, rc == 0 ? sha : NULL, rc == 0 ? NULL : error);
	free(job->sha_file);
	free(job);
}

void workspace_git_env_init(struct workspace_git_env *e)
{
	/* git must not prompt, and must not follow odd transports from a URL. */
	const char *path = getenv("PATH"), *home = getenv("HOME");
	e->path = xasprintf("PATH=%s", path != NULL ? path : "/usr/bin:/bin");
	e->home = xasprintf("HOME=%s", home != NULL ? home : "/");
	const char *envp[] = {e->path,
			      e->home,
			      "GIT_TERMINAL_PROMPT=0",
			      "GIT_ALLOW_PROTOCOL=file:git:http:https:ssh",
			      "GIT_CONFIG_NOSYSTEM=1",
			      "LANG=C",
			      NULL};
	_Static_assert(sizeof envp <= sizeof e->envp, "workspace_git_env.envp is too small");
	memcpy(e->envp, envp, sizeof envp);
}

void workspace_git_env_clear(struct workspace_git_env *e)
{
	free(e->path);
	free(e->home);
}

struct workspace_job *workspace_checkout(struct agent *a, const char *repo, const char *url,
					 const char *sha, const char *branch, const char *dest,
					 struct stagelog *log, workspace_done_cb cb, void *arg)
{
	struct workspace_job *job = xcalloc(1, sizeof *job);
	job->agent = a;
	job->log = log;
	job->cb = cb;
	job->arg = arg;
	job->sha_file = xasprintf("%s.sha", dest);
	char *mirror = workspace_mirror_path(a->cfg->state_dir, repo);
	const char *argv[] = {"/bin/sh",
			      "-c",
			      checkout_script,
			      "drover-checkout",
			      url,
			      mirror,
			      dest,
			      sha != NULL ? sha : "",
			      branch != NULL ? branch : "",
			      job->sha_file,
			      NULL};
	struct workspace_git_env env;
	workspace_git_env_init(&env);
	struct proc_spec spec = {.argv = argv, .envp = env.envp};
	char err[256];
	job->proc = proc_spawn(a->procs, &spec, workspace_on_output, workspace_on_exit, job, err,
			       sizeof err);
	free(mirror);
	workspace_git_env_clear(&env);
	if (job->proc == NULL) {
		stagelog_printf(log, "checkout could not start: %s", err);
		free(job->sha_file);
		free(job);
		return NULL;
	}
	return job;
}

void workspace_cancel(struct workspace_job *job)
{
	proc_kill(job->proc, job->agent->cfg->stage_kill_grace_ms);
}

void workspace_abandon(struct workspace_job *job)
{
	proc_kill(job->proc, 0);
	proc_detach(job->proc);
	unlink(job->sha_file);
	free(job->sha_file);
	free(job);
}
