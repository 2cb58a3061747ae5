/*
 * Tests for the status plugin's delivery queue (plugins/status/queue.c):
 * order per sha key with one in flight each, independent keys in parallel,
 * a retried item keeps its place, a host that is not ready holds only its
 * own items, and when full: supersede by (sha key, context), else drop the
 * oldest waiting item, never one in flight.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "queue.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static bool all_ready(void *arg, int target)
{
	(void)arg, (void)target;
	return true;
}

static bool ready_unless_target_1(void *arg, int target)
{
	(void)arg;
	return target != 1;
}

static void push(struct status_queue *q, const char *sha, const char *ctx, const char *body,
		 int target, enum status_push want)
{
	assert_int_equal(status_queue_push(q, status_item_new(sha, ctx, "http://x/", body, target)),
			 want);
}

static void test_order_per_sha_one_in_flight(void **state)
{
	(void)state;
	struct status_queue q;
	status_queue_init(&q, 10);
	push(&q, "a", "run", "a1", 0, STATUS_PUSH_QUEUED);
	push(&q, "a", "stage", "a2", 0, STATUS_PUSH_QUEUED);
	push(&q, "b", "run", "b1", 0, STATUS_PUSH_QUEUED);
	push(&q, "a", "run", "a3", 0, STATUS_PUSH_QUEUED);
	struct status_item *x = status_queue_take(&q, all_ready, NULL);
	assert_string_equal(x->body, "a1");
	/* a2 waits for a1; b1 is another commit and may go at once. */
	struct status_item *y = status_queue_take(&q, all_ready, NULL);
	assert_string_equal(y->body, "b1");
	assert_null(status_queue_take(&q, all_ready, NULL));
	/* a1 fails: it is retried before a2 and a3. */
	status_queue_release(&q, x);
	assert_ptr_equal(status_queue_take(&q, all_ready, NULL), x);
	status_queue_remove(&q, x);
	struct status_item *z = status_queue_take(&q, all_ready, NULL);
	assert_string_equal(z->body, "a2");
	status_queue_remove(&q, z);
	z = status_queue_take(&q, all_ready, NULL);
	assert_string_equal(z->body, "a3");
	status_queue_remove(&q, z);
	status_queue_remove(&q, y);
	assert_int_equal(q.n, 0);
	assert_null(q.head);
	assert_null(q.tail);
}

static void test_target_not_ready_holds_only_its_items(void **state)
{
	(void)state;
	struct status_queue q;
	status_queue_init(&q, 10);
	push(&q, "gh|a", "run", "gh", 1, STATUS_PUSH_QUEUED);
	push(&q, "gl|a", "run", "gl", 2, STATUS_PUSH_QUEUED);
	struct status_item *x = status_queue_take(&q, ready_unless_target_1, NULL);
	assert_string_equal(x->body, "gl");
	assert_null(status_queue_take(&q, ready_unless_target_1, NULL));
	assert_string_equal(status_queue_take(&q, all_ready, NULL)->body, "gh");
	status_queue_clear(&q);
	assert_int_equal(q.n, 0);
}

static void test_full_supersedes_same_context(void **state)
{
	(void)state;
	struct status_queue q;
	status_queue_init(&q, 3);
	push(&q, "a", "run", "pending", 0, STATUS_PUSH_QUEUED);
	push(&q, "a", "unit", "unit pending", 0, STATUS_PUSH_QUEUED);
	push(&q, "b", "run", "b pending", 0, STATUS_PUSH_QUEUED);
	/* Full: the new status of (a, unit) replaces the queued one in its place. */
	push(&q, "a", "unit", "unit success", 0, STATUS_PUSH_SUPERSEDED);
	assert_int_equal(q.n, 3);
	assert_int_equal(q.superseded, 1);
	assert_string_equal(q.head->next->body, "unit success");
	assert_int_equal(q.dropped, 0);
	status_queue_clear(&q);
}

static void test_full_drops_oldest_waiting_not_in_flight(void **state)
{
	(void)state;
	struct status_queue q;
	status_queue_init(&q, 3);
	push(&q, "a", "run", "a1", 0, STATUS_PUSH_QUEUED);
	push(&q, "b", "run", "b1", 0, STATUS_PUSH_QUEUED);
	push(&q, "c", "run", "c1", 0, STATUS_PUSH_QUEUED);
	struct status_item *x = status_queue_take(&q, all_ready, NULL);
	assert_string_equal(x->body, "a1");
	/* a1 is in flight: b1, the oldest waiting, goes. */
	push(&q, "d", "run", "d1", 0, STATUS_PUSH_DROPPED_OLDEST);
	assert_int_equal(q.n, 3);
	assert_int_equal(q.dropped, 1);
	assert_string_equal(q.head->body, "a1");
	assert_string_equal(q.head->next->body, "c1");
	assert_string_equal(q.tail->body, "d1");
	status_queue_remove(&q, x);
	status_queue_clear(&q);
}

static void test_full_of_in_flight_drops_new(void **state)
{
	(void)state;
	struct status_queue q;
	status_queue_init(&q, 2);
	push(&q, "a", "run", "a1", 0, STATUS_PUSH_QUEUED);
	push(&q, "b", "run", "b1", 0, STATUS_PUSH_QUEUED);
	assert_non_null(status_queue_take(&q, all_ready, NULL));
	assert_non_null(status_queue_take(&q, all_ready, NULL));
	/* Same (sha, context) as one in flight: that one cannot be changed. */
	push(&q, "a", "run", "a2", 0, STATUS_PUSH_DROPPED_NEW);
	assert_int_equal(q.n, 2);
	assert_int_equal(q.dropped, 1);
	status_queue_clear(&q);
}

static void test_bounded_under_flood(void **state)
{
	(void)state;
	struct status_queue q;
	status_queue_init(&q, 100);
	char sha[32], body[32];
	for (int i = 0; i < 10000; i++) {
		snprintf(sha, sizeof sha, "sha%d", i);
		snprintf(body, sizeof body, "%d", i);
		status_queue_push(&q, status_item_new(sha, "run", "http://x/", body, 0));
		assert_true(q.n <= 100);
	}
	/* The newest 100 are kept, oldest first. */
	assert_string_equal(q.head->body, "9900");
	assert_string_equal(q.tail->body, "9999");
	assert_int_equal(q.dropped, 9900);
	status_queue_clear(&q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_order_per_sha_one_in_flight),
	    cmocka_unit_test(test_target_not_ready_holds_only_its_items),
	    cmocka_unit_test(test_full_supersedes_same_context),
	    cmocka_unit_test(test_full_drops_oldest_waiting_not_in_flight),
	    cmocka_unit_test(test_full_of_in_flight_drops_new),
	    cmocka_unit_test(test_bounded_under_flood),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
