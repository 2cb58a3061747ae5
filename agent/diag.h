/*
 * diag: "file:line: message" diagnostics gathered while reading a user's
 * file (pipelines, agent.yaml), printed by `drover validate` and at load.
 */
#ifndef DROVER_DIAG_H
#define DROVER_DIAG_H

#include <stddef.h>
#include <stdio.h>

struct diag {
	char *file;
	int line; /* 1-based; 0 when not known */
	char *message;
};

struct diags {
	struct diag *items;
	size_t n;
};

void diags_add(struct diags *d, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* One "file:line: message" per line. */
void diags_print(const struct diags *d, FILE *out);
void diags_free(struct diags *d);

#endif
