/*
 * stagelog: line-buffered, secret-masking, size-capped stage logs. A line
 * longer than the buffer is written in pieces (a secret cut across such a
 * boundary could escape masking, so the buffer is far larger than any
 * sensible secret).
 */
#include "stagelog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define STAGELOG_LINE_MAX (64 * 1024)

struct stagelog {
	int fd;
	size_t max_bytes, written;
	bool is_truncated;
	char *const *secrets;
	size_t n_secrets;
	struct strbuf line;
};

struct stagelog *stagelog_open(const char *path, size_t max_bytes, char *const *secrets,
			       size_t n_secrets)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0)
		return NULL;
	struct stagelog *l = xcalloc(1, sizeof *l);
	l->fd = fd;
	l->max_bytes = max_bytes;
	l->written = (size_t)lseek(fd, 0, SEEK_END);
	l->secrets = secrets;
	l->n_secrets = n_secrets;
	strbuf_init(&l->line);
	return l;
}

char *stagelog_mask(const char *line, size_t len, char *const *secrets, size_t n_secrets,
		    size_t *out_len)
{
	/* Mark every byte any secret covers (overlaps included), then replace
	 * each run of marked bytes by one "***". */
	bool *hidden = xcalloc(len + 1, sizeof *hidden);
	/* Where a match starts and where one ends: two secrets side by side stay
	 * two "***", overlapping ones become one. */
	bool *starts = xcalloc(len + 1, sizeof *starts);
	bool *ends = xcalloc(len + 1, sizeof *ends);
	for (size_t s = 0; s < n_secrets; s++) {
		size_t sl = strlen(secrets[s]);
		if (sl == 0 || sl > len)
			continue;
		for (size_t i = 0; i + sl <= len; i++)
			if (line[i] == secrets[s][0] && memcmp(line + i, secrets[s], sl) == 0) {
				starts[i] = true;
				ends[i + sl - 1] = true;
				for (size_t k = i; k < i + sl; k++)
					hidden[k] = true;
			}
	}
	struct strbuf out;
	strbuf_init(&out);
	size_t i = 0;
	while (i < len) {
		if (hidden[i]) {
			strbuf_adds(&out, "***");
			i++;
			while (i < len && hidden[i] && !(starts[i] && ends[i - 1]))
				i++;
			continue;
		}
		size_t start = i;
		while (i < len && !hidden[i])
			i++;
		strbuf_add(&out, line + start, i - start);
	}
	free(hidden);
	free(starts);
	free(ends);
	*out_len = out.len;
	return strbuf_detach(&out);
}

static void stagelog_emit(struct stagelog *l, const char *data, size_t len)
{
	if (l->is_truncated)
		return;
	size_t masked_len;
	char *masked = stagelog_mask(data, len, l->secrets, l->n_secrets, &masked_len);
	if (l->written + masked_len > l->max_bytes) {
		static const char note[] = "[drover] log truncated: the stage wrote more than the "
					   "configured max_log_bytes\n";
		l->is_truncated = true;
		masked_len = 0;
		if (write(l->fd, note, sizeof note - 1) < 0) {
			/* nothing more to do: the log is best effort past this point */
		}
	}
	size_t off = 0;
	while (off < masked_len) {
		ssize_t n = write(l->fd, masked + off, masked_len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		off += (size_t)n;
	}
	l->written += masked_len;
	free(masked);
}

void stagelog_write(struct stagelog *l, const char *data, size_t len)
{
	while (len > 0) {
		const char *nl = memchr(data, '\n', len);
		size_t take = nl != NULL ? (size_t)(nl - data) + 1 : len;
		if (l->line.len + take > STAGELOG_LINE_MAX)
			take = STAGELOG_LINE_MAX - l->line.len;
		strbuf_add(&l->line, data, take);
		data += take;
		len -= take;
		if (l->line.data[l->line.len - 1] == '\n' || l->line.len >= STAGELOG_LINE_MAX) {
			stagelog_emit(l, l->line.data, l->line.len);
			strbuf_reset(&l->line);
		}
	}
}

void stagelog_printf(struct stagelog *l, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	if (l->line.len > 0) {
		strbuf_adds(&l->line, "\n");
		stagelog_emit(l, l->line.data, l->line.len);
		strbuf_reset(&l->line);
	}
	char *text = xasprintf("[drover] %s\n", msg);
	stagelog_emit(l, text, strlen(text));
	free(text);
	free(msg);
}

void stagelog_close(struct stagelog *l)
{
	if (l == NULL)
		return;
	if (l->line.len > 0)
		stagelog_emit(l, l->line.data, l->line.len);
	strbuf_free(&l->line);
	close(l->fd);
	free(l);
}
