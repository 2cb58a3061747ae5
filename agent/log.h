/*
 * log: one line per message on stderr, "2026-11-29T08:35:00.123Z LEVEL text".
 * Every character a terminal would act on is escaped (\n, \xNN), so
 * foreign text (branch names, commit messages) can never break a log line.
 * The level threshold comes from DROVER_LOG_LEVEL (debug|info|warn|error).
 */
#ifndef DROVER_LOG_H
#define DROVER_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Would a message at this level be written? For work done only to log it. */
bool log_is_enabled(enum log_level level);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/*
 * One character of foreign text made safe for a terminal: \n \r \t, and
 * \xNN for C0/C1 controls, DEL, bidi overrides, line separators and
 * invalid UTF-8; anything else is copied. Returns the bytes of p consumed
 * (at least 1; p must not be at its NUL); *unit_len bytes were written.
 */
size_t log_escape_unit(const unsigned char *p, char unit[16], size_t *unit_len);

/* Escapes s into buf the way log lines do (cut with "..." when it does not
 * fit); returns buf. */
char *log_escape(const char *s, char *buf, size_t buf_len);

#endif
