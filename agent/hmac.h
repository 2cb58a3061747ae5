/*
 * hmac: HMAC-SHA256 (OpenSSL's libcrypto) and constant-time comparison of
 * secrets, for the webhook receivers. Holds no state and logs nothing.
 */
#ifndef DROVER_HMAC_H
#define DROVER_HMAC_H

#include <stdbool.h>
#include <stddef.h>

#define HMAC_SHA256_BYTES 32

/* out = HMAC-SHA256(key, data). */
void hmac_sha256(const void *key, size_t key_len, const void *data, size_t data_len,
		 unsigned char out[HMAC_SHA256_BYTES]);

/*
 * Whether hex (hex_len characters, either case) is exactly the 64 hex digits
 * of HMAC-SHA256(key, data). The digest comparison takes the same time
 * wherever the first difference is. -1: hex is not 64 hex digits.
 */
int hmac_sha256_check_hex(const void *key, size_t key_len, const void *data, size_t data_len,
			  const char *hex, size_t hex_len);

/*
 * Whether two secrets are equal, in a time that depends on neither their
 * content nor where they differ (both are hashed first, so not even on
 * whether their lengths differ).
 */
bool hmac_secret_equal(const void *a, size_t a_len, const void *b, size_t b_len);

#endif
