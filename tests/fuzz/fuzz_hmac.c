/*
 * Fuzz harness for the webhook signature checks of hmac. The input is a key
 * length byte, the key, then a signature candidate up to the first newline,
 * then the body. Checks the promises admin_hooks relies on: a signature is
 * accepted exactly when it is the body's HMAC in hex (either case), refused
 * as malformed exactly when it is not 64 hex digits, and secrets compare
 * equal exactly when their bytes are equal.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmac.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t key_len = data[0];
	if (key_len > size - 1)
		key_len = size - 1;
	const uint8_t *key = data + 1, *rest = key + key_len;
	size_t rest_len = size - 1 - key_len;
	const uint8_t *nl = memchr(rest, '\n', rest_len);
	size_t sig_len = nl != NULL ? (size_t)(nl - rest) : rest_len;
	const char *sig = (const char *)rest;
	const uint8_t *body = nl != NULL ? nl + 1 : rest + rest_len;
	size_t body_len = (size_t)(rest + rest_len - body);

	unsigned char mac[HMAC_SHA256_BYTES];
	char want[2 * HMAC_SHA256_BYTES + 1];
	hmac_sha256(key, key_len, body, body_len, mac);
	for (size_t i = 0; i < HMAC_SHA256_BYTES; i++)
		snprintf(want + 2 * i, 3, "%02x", mac[i]);
	bool is_hex = sig_len == 2 * HMAC_SHA256_BYTES;
	bool is_match = is_hex;
	for (size_t i = 0; i < sig_len && is_hex; i++) {
		is_hex = isxdigit((unsigned char)sig[i]) != 0;
		is_match = is_match && tolower((unsigned char)sig[i]) == want[i];
	}
	int rc = hmac_sha256_check_hex(key, key_len, body, body_len, sig, sig_len);
	if (rc != (!is_hex ? -1 : is_match ? 1 : 0))
		abort();
	if (hmac_sha256_check_hex(key, key_len, body, body_len, want, 64) != 1)
		abort();
	bool is_equal = sig_len == key_len && memcmp(sig, key, key_len) == 0;
	if (hmac_secret_equal(sig, sig_len, key, key_len) != is_equal)
		abort();
	if (!hmac_secret_equal(key, key_len, key, key_len))
		abort();
	return 0;
}
