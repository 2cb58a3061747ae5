/*
 * Tests for claim: the ownership history in commit metadata (round trip,
 * foreign or hostile metadata, the bound) and the verdict on an event whose
 * commit was not seen, for the hand-overs that decide between a lost event
 * and a duplicate run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "claim.h"

static void parse_text(const char *text, struct claim_history *h)
{
	claim_history_parse(text, text != NULL ? strlen(text) : 0, h);
}

static void test_round_trip(void **state)
{
	(void)state;
	struct claim_history h = {0};
	claim_history_append(&h, "agent-a", 0);
	claim_history_append(&h, "agent-b", 120);
	claim_history_append(&h, "agent-b", 120);   /* the same claim twice: one entry */
	claim_history_append(&h, "agent a@x", 151); /* separators are replaced */
	char *text = claim_history_format(&h);
	assert_string_equal(text, "drover1 agent-a@0 agent-b@120 agent_a_x@151");
	struct claim_history back;
	parse_text(text, &back);
	assert_int_equal(back.n, 3);
	assert_string_equal(back.owners[1].agent, "agent-b");
	assert_int_equal(back.owners[1].start, 120);
	assert_int_equal(back.owners[2].start, 151);
	free(text);
}

static void test_parse_foreign_and_hostile(void **state)
{
	(void)state;
	const char *bad[] = {NULL,
			     "",
			     "consumer-metadata",
			     "drover1 a@",
			     "drover1 @5",
			     "drover1 a@-3",
			     "drover1 a@5x",
			     "drover1 a5",
			     "drover1 a@1 b@2 c",
			     "drover1 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@1"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct claim_history h = {.n = 7};
		parse_text(bad[i], &h);
		assert_int_equal(h.n, 0);
	}
	/* Not NUL-terminated: only len bytes are read. */
	const char buf[] = {'d', 'r', 'o', 'v', 'e', 'r', '1', ' ', 'a', '@', '9', '9'};
	struct claim_history h;
	claim_history_parse(buf, 11, &h);
	assert_int_equal(h.n, 1);
	assert_int_equal(h.owners[0].start, 9);
	/* Extra spaces are tolerated. */
	parse_text("drover1  a@1   b@2 ", &h);
	assert_int_equal(h.n, 2);
}

static void test_bound(void **state)
{
	(void)state;
	struct claim_history h = {0};
	for (int i = 0; i < CLAIM_MAX_OWNERS + 5; i++) {
		char agent[16];
		snprintf(agent, sizeof agent, "a%d", i);
		claim_history_append(&h, agent, i * 10);
	}
	assert_int_equal(h.n, CLAIM_MAX_OWNERS);
	assert_string_equal(h.owners[0].agent, "a5"); /* the oldest went */
	char *text = claim_history_format(&h);
	struct claim_history back;
	parse_text(text, &back);
	assert_int_equal(back.n, CLAIM_MAX_OWNERS);
	assert_int_equal(back.owners[CLAIM_MAX_OWNERS - 1].start, (CLAIM_MAX_OWNERS + 4) * 10);
	free(text);
}

static void test_decide(void **state)
{
	(void)state;
	struct claim_history h;
	/* A owned from 100; its commit past 150 landed; B took over at 151. */
	parse_text("drover1 A@100 B@151", &h);
	assert_int_equal(claim_decide(&h, 200, "A", 150), CLAIM_MINE);
	assert_int_equal(claim_decide(&h, 200, "B", 150), CLAIM_OTHERS);
	/* A's commit did not land: B took over at 120 and consumed 150 itself. */
	parse_text("drover1 A@100 B@120", &h);
	assert_int_equal(claim_decide(&h, 200, "A", 150), CLAIM_OTHERS);
	assert_int_equal(claim_decide(&h, 200, "A", 119), CLAIM_MINE);
	/* Nothing commits past the event yet: whoever consumes next gets it again. */
	assert_int_equal(claim_decide(&h, 150, "A", 150), CLAIM_PENDING);
	assert_int_equal(claim_decide(&h, 120, "A", 150), CLAIM_PENDING);
	assert_int_equal(claim_decide(&h, -1001, "A", 150), CLAIM_PENDING);
	/* A restarted in place (same id): still A's. */
	parse_text("drover1 A@100 A@151", &h);
	assert_int_equal(claim_decide(&h, 160, "A", 150), CLAIM_MINE);
	/* Covered, but the history starts after the event. */
	parse_text("drover1 C@300", &h);
	assert_int_equal(claim_decide(&h, 400, "A", 150), CLAIM_UNKNOWN);
	parse_text("", &h);
	assert_int_equal(claim_decide(&h, 400, "A", 150), CLAIM_UNKNOWN);
	assert_string_equal(claim_verdict_name(CLAIM_OTHERS), "another agent's");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_parse_foreign_and_hostile),
	    cmocka_unit_test(test_bound),
	    cmocka_unit_test(test_decide),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
