/*
 * Tests for hmac: HMAC-SHA256 against the RFC 4231 test vectors and
 * GitHub's documented X-Hub-Signature-256 example; the hex check's refusal
 * of malformed signatures; the constant-time secret comparison.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmac.h"
#include "util.h"

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", in[i]);
}

/* Bytes of a hex string (test vectors are written in hex); caller frees. */
static unsigned char *hex_decode(const char *hex, size_t *n)
{
	*n = strlen(hex) / 2;
	unsigned char *out = xmalloc(*n + 1);
	for (size_t i = 0; i < *n; i++) {
		unsigned v;
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (unsigned char)v;
	}
	return out;
}

/* 131 bytes of 0xaa: the key of RFC 4231 test cases 6 and 7. */
#define AA_16 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define KEY_131_AA AA_16 AA_16 AA_16 AA_16 AA_16 AA_16 AA_16 AA_16 "aaaaaa"

/* RFC 4231 section 4: test cases 1-4, 6 and 7 (5 is a truncated output). */
static void test_rfc4231(void **state)
{
	(void)state;
	static const struct {
		const char *key_hex, *data_hex, *want;
	} cases[] = {
	    {"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "4869205468657265",
	     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
	    {"4a656665", "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
	     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
	    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	     "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
	     "dddddddddddddddddd",
	     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
	    {"0102030405060708090a0b0c0d0e0f10111213141516171819",
	     "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"
	     "cdcdcdcdcdcdcdcdcd",
	     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
	    {KEY_131_AA,
	     "54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a65204b6579202d2048"
	     "617368204b6579204669727374",
	     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
	    {KEY_131_AA,
	     "5468697320697320612074657374207573696e672061206c6172676572207468616e20626c6f636b2d"
	     "73697a65206b657920616e642061206c6172676572207468616e20626c6f636b2d73697a6520646174"
	     "612e20546865206b6579206e6565647320746f20626520686173686564206265666f7265206265696e"
	     "6720757365642062792074686520484d414320616c676f726974686d2e",
	     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		size_t key_len, data_len;
		unsigned char *key = hex_decode(cases[i].key_hex, &key_len);
		unsigned char *data = hex_decode(cases[i].data_hex, &data_len);
		unsigned char mac[HMAC_SHA256_BYTES];
		char hex[2 * HMAC_SHA256_BYTES + 1];
		hmac_sha256(key, key_len, data, data_len, mac);
		hex_encode(mac, sizeof mac, hex);
		assert_string_equal(hex, cases[i].want);
		assert_int_equal(
		    hmac_sha256_check_hex(key, key_len, data, data_len, cases[i].want, 64), 1);
		free(key);
		free(data);
	}
}

/* GitHub's "Validating webhook deliveries" example. */
static void test_github_example(void **state)
{
	(void)state;
	static const char secret[] = "It's a Secret to Everybody";
	static const char payload[] = "Hello, World!";
	static const char want[] =
	    "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
	unsigned char mac[HMAC_SHA256_BYTES];
	char hex[2 * HMAC_SHA256_BYTES + 1];
	hmac_sha256(secret, strlen(secret), payload, strlen(payload), mac);
	hex_encode(mac, sizeof mac, hex);
	assert_string_equal(hex, want);
	assert_int_equal(hmac_sha256_check_hex(secret, strlen(secret), payload, strlen(payload),
					       want, strlen(want)),
			 1);
	/* Upper case is the same digest. */
	char upper[sizeof want];
	for (size_t i = 0; i < sizeof want; i++)
		upper[i] = (char)(want[i] >= 'a' && want[i] <= 'f' ? want[i] - 32 : want[i]);
	assert_int_equal(
	    hmac_sha256_check_hex(secret, strlen(secret), payload, strlen(payload), upper, 64), 1);
	/* Another body, another secret, one flipped digit: no. */
	assert_int_equal(
	    hmac_sha256_check_hex(secret, strlen(secret), "Hello, World?", 13, want, 64), 0);
	assert_int_equal(hmac_sha256_check_hex("It's a Secret to Everybodx", 26, payload,
					       strlen(payload), want, 64),
			 0);
	char flipped[sizeof want];
	memcpy(flipped, want, sizeof want);
	flipped[63] = '6';
	assert_int_equal(
	    hmac_sha256_check_hex(secret, strlen(secret), payload, strlen(payload), flipped, 64),
	    0);
}

static void test_malformed_hex(void **state)
{
	(void)state;
	static const char want[] =
	    "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
	assert_int_equal(hmac_sha256_check_hex("k", 1, "d", 1, NULL, 0), -1);
	assert_int_equal(hmac_sha256_check_hex("k", 1, "d", 1, "", 0), -1);
	assert_int_equal(hmac_sha256_check_hex("k", 1, "d", 1, want, 63), -1);
	assert_int_equal(hmac_sha256_check_hex("k", 1, "d", 1, want, 64), 0);
	char bad[sizeof want];
	memcpy(bad, want, sizeof want);
	bad[10] = 'g';
	assert_int_equal(hmac_sha256_check_hex("k", 1, "d", 1, bad, 64), -1);
	bad[10] = '\0';
	assert_int_equal(hmac_sha256_check_hex("k", 1, "d", 1, bad, 64), -1);
	/* An empty key and an empty body are valid inputs. */
	unsigned char mac[HMAC_SHA256_BYTES];
	char hex[2 * HMAC_SHA256_BYTES + 1];
	hmac_sha256("", 0, "", 0, mac);
	hex_encode(mac, sizeof mac, hex);
	assert_string_equal(hex,
			    "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

static void test_secret_equal(void **state)
{
	(void)state;
	assert_true(hmac_secret_equal("token", 5, "token", 5));
	assert_false(hmac_secret_equal("token", 5, "tokem", 5));
	assert_false(hmac_secret_equal("token", 5, "token ", 6));
	assert_false(hmac_secret_equal("token", 5, "toke", 4));
	assert_false(hmac_secret_equal("token", 5, "", 0));
	assert_true(hmac_secret_equal("", 0, "", 0));
	/* Bytes after a NUL count. */
	assert_false(hmac_secret_equal("a\0b", 3, "a\0c", 3));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rfc4231),
	    cmocka_unit_test(test_github_example),
	    cmocka_unit_test(test_malformed_hex),
	    cmocka_unit_test(test_secret_equal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
