/*
 * stagelog: one stage attempt's log file. Output is cut into lines, every
 * secret is replaced by "***", and the file stops growing at max_bytes
 * (with one line saying so, which comes on top of max_bytes).
 */
#ifndef DROVER_STAGELOG_H
#define DROVER_STAGELOG_H

#include <stddef.h>

struct stagelog;

/* secrets are borrowed (they live in the config). NULL and errno on failure. */
struct stagelog *stagelog_open(const char *path, size_t max_bytes, char *const *secrets,
			       size_t n_secrets);
void stagelog_write(struct stagelog *l, const char *data, size_t len);
/* A line of drover's own, prefixed "[drover] ". */
void stagelog_printf(struct stagelog *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Flushes a last partial line and closes. */
void stagelog_close(struct stagelog *l);

/* Masks every secret in line (in place when shorter; returns a new string the caller frees). */
char *stagelog_mask(const char *line, size_t len, char *const *secrets, size_t n_secrets,
		    size_t *out_len);

#endif
