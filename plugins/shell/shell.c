/*
 * shell: runs `with.run` under /bin/sh -e in the stage's workspace. The
 * command text comes from the pipeline file, never from the event: event
 * facts reach it only as DROVER_* environment variables set by the host.
 * Exit 0 → succeeded; anything else → failed.
 */
#include <drover/plugin.h>
#include <stdio.h>

static const struct drover_host *host_of(void *state)
{
	return state;
}

static int shell_init(const struct drover_host *host, const json_t *config, void **state)
{
	(void)config;
	if (host->size < sizeof(struct drover_host))
		return -1;
	*state = (void *)host;
	return 0;
}

static void shell_exited(void *arg, struct drover_stage *stage, int exit_code, int term_signal)
{
	const struct drover_host *host = arg;
	char summary[64];
	if (exit_code == 0) {
		host->done(stage, DROVER_SUCCEEDED, NULL);
		return;
	}
	if (exit_code < 0)
		snprintf(summary, sizeof summary, "killed by signal %d", term_signal);
	else
		snprintf(summary, sizeof summary, "exit code %d", exit_code);
	host->done(stage, DROVER_FAILED, summary);
}

static int shell_start(void *state, struct drover_stage *stage)
{
	const struct drover_host *host = host_of(state);
	const char *run = host->stage_param(stage, "run");
	if (run == NULL) {
		host->log(stage, "shell: no `run:` command");
		return -1;
	}
	const char *shell = host->stage_param(stage, "shell");
	const char *argv[] = {shell != NULL ? shell : "/bin/sh", "-e", "-c", run, NULL};
	struct drover_spawn spec = {.argv = argv, .on_exit = shell_exited, .arg = (void *)host};
	return host->spawn(stage, &spec);
}

static const struct drover_param shell_params[] = {
    {"run", DROVER_PARAM_STRING, true, "the commands, run by /bin/sh -e"},
    {"shell", DROVER_PARAM_STRING, false, "another shell than /bin/sh (it gets -e -c RUN)"},
    {NULL, DROVER_PARAM_ANY, false, NULL},
};

static const struct drover_plugin shell_plugin = {
    DROVER_PLUGIN_INIT,	    .name = "shell",
    .version = "1.0.0",	    .description = "runs shell commands in the workspace",
    .params = shell_params, .init = shell_init,
    .start = shell_start,
};

__attribute__((visibility("default"))) const struct drover_plugin *drover_plugin_entry(void)
{
	return &shell_plugin;
}
