/*
 * diag: the list of file:line diagnostics. Owns the strings it copies.
 */
#include "diag.h"

#include <stdarg.h>
#include <stdlib.h>

#include "util.h"

void diags_add(struct diags *d, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	d->items = xrealloc(d->items, (d->n + 1) * sizeof *d->items);
	d->items[d->n].file = xstrdup(file != NULL ? file : "-");
	d->items[d->n].line = line;
	d->items[d->n].message = msg;
	d->n++;
}

void diags_print(const struct diags *d, FILE *out)
{
	for (size_t i = 0; i < d->n; i++)
		fprintf(out, "%s:%d: %s\n", d->items[i].file, d->items[i].line,
			d->items[i].message);
}

void diags_free(struct diags *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->items[i].file);
		free(d->items[i].message);
	}
	free(d->items);
	d->items = NULL;
	d->n = 0;
}
