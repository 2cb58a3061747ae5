/*
 * Fuzz harness for jsonenc: a differential check. Any JSON text jansson
 * accepts (NUL in strings allowed) is encoded by jsonenc and by json_dumps;
 * the bytes must be the same, and so must a refusal.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsonenc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_error_t err;
	json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
	if (v == NULL)
		return 0;
	char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	struct strbuf got;
	strbuf_init(&got);
	int rc = jsonenc_compact(v, &got);
	if ((want == NULL) != (rc != 0))
		abort();
	if (want != NULL && (got.len != strlen(want) || memcmp(got.data, want, got.len) != 0))
		abort();
	strbuf_free(&got);
	free(want);
	json_decref(v);
	return 0;
}
