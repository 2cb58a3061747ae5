/*
 * main: the one `drover` binary. `drover agent` is the daemon; every other
 * subcommand is a client (cli.c).
 */
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "cli.h"

static void usage(FILE *out)
{
	fputs(
	    "usage: drover <command> [options]\n"
	    "\n"
	    "  agent    [-c FILE]                       run the daemon (foreground)\n"
	    "  emit     [-c FILE] [--github-event NAME | --azure | --cloudevent] [--id ID] FILE|-\n"
	    "  runs     [-c FILE] [--json] [--pipeline P] [--status S] [--repo R] [--limit N]\n"
	    "  show     [-c FILE] RUN [--json]\n"
	    "  logs     [-c FILE] RUN STAGE [--attempt N]\n"
	    "  validate [-c FILE] FILE|DIR...\n"
	    "  plan     [-c FILE] [--github-event NAME | --azure | --cloudevent] [--json] FILE\n"
	    "  version\n"
	    "\n(emit and plan also take --drift for drover drift JSON)\n",
	    out);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "agent") == 0) {
		const char *config = NULL;
		for (int i = 2; i < argc; i++) {
			if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) &&
			    i + 1 < argc) {
				config = argv[++i];
			} else {
				fprintf(stderr, "drover agent: unknown argument '%s'\n", argv[i]);
				return 2;
			}
		}
		return agent_main(config);
	}
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("drover %s\n", DROVER_VERSION);
		return 0;
	}
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		usage(stdout);
		return 0;
	}
	if (cli_is_command(cmd))
		return cli_main(argc - 1, argv + 1);
	fprintf(stderr, "drover: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
