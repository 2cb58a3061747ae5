/*
 * log: one line per message on stderr, "2026-11-29T08:35:00.123Z LEVEL text".
 * Every byte of a message that is not printable is escaped (\n, \xNN), so
 * foreign text (branch names, commit messages) can never break a log line.
 * The level threshold comes from DROVER_LOG_LEVEL (debug|info|warn|error).
 */
#ifndef DROVER_LOG_H
#define DROVER_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* Escapes s into buf the way log lines do; returns buf. */
char *log_escape(const char *s, char *buf, size_t buf_len);

#endif
