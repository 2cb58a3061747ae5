/*
 * hmac: HMAC-SHA256 and constant-time comparisons on OpenSSL's libcrypto.
 * Never prints, logs or keeps a key.
 */
#include "hmac.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdlib.h>

void hmac_sha256(const void *key, size_t key_len, const void *data, size_t data_len,
		 unsigned char out[HMAC_SHA256_BYTES])
{
	static const unsigned char empty[1];
	unsigned int out_len = HMAC_SHA256_BYTES;
	/* HMAC() wants a non-NULL key even when it is empty. */
	if (HMAC(EVP_sha256(), key_len > 0 ? key : empty, (int)key_len, data_len > 0 ? data : empty,
		 data_len, out, &out_len) == NULL ||
	    out_len != HMAC_SHA256_BYTES)
		abort(); /* only out of memory: as xmalloc would */
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int hmac_sha256_check_hex(const void *key, size_t key_len, const void *data, size_t data_len,
			  const char *hex, size_t hex_len)
{
	unsigned char given[HMAC_SHA256_BYTES], want[HMAC_SHA256_BYTES];
	if (hex == NULL || hex_len != 2 * HMAC_SHA256_BYTES)
		return -1;
	for (size_t i = 0; i < HMAC_SHA256_BYTES; i++) {
		int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		given[i] = (unsigned char)(hi << 4 | lo);
	}
	hmac_sha256(key, key_len, data, data_len, want);
	return CRYPTO_memcmp(given, want, HMAC_SHA256_BYTES) == 0;
}

bool hmac_secret_equal(const void *a, size_t a_len, const void *b, size_t b_len)
{
	static const unsigned char empty[1];
	unsigned char da[SHA256_DIGEST_LENGTH], db[SHA256_DIGEST_LENGTH];
	if (SHA256(a_len > 0 ? a : empty, a_len, da) == NULL ||
	    SHA256(b_len > 0 ? b : empty, b_len, db) == NULL)
		abort();
	/* Both checks always run; equal digests of different lengths would be a
	 * SHA-256 collision. */
	int is_same_digest = CRYPTO_memcmp(da, db, sizeof da) == 0;
	int is_same_len = a_len == b_len;
	return (is_same_digest & is_same_len) != 0;
}
