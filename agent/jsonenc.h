/*
 * jsonenc: compact JSON text of a jansson value, appended to a caller's
 * buffer that is reused from call to call. The bytes are those of
 * json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY): keys in insertion order,
 * strings escaped as jansson does, reals as jansson prints them. It is the
 * store's encoder for every event it records (intake's hot path).
 */
#ifndef DROVER_JSONENC_H
#define DROVER_JSONENC_H

#include <jansson.h>

#include "util.h"

#define JSONENC_MAX_DEPTH 2048

/*
 * Appends v's text to out. -1 where json_dumps fails too (a string that
 * is not valid UTF-8, a value that contains itself: nesting is cut at
 * JSONENC_MAX_DEPTH, the parser's own limit), and for NULL; out then holds
 * a partial text the caller discards.
 */
int jsonenc_compact(const json_t *v, struct strbuf *out);

#endif
