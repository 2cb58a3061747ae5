/*
 * queue: the status plugin's bounded delivery queue, plain C with no I/O so
 * that it is unit-tested on its own. Items are kept in arrival order; at
 * most one item per sha key is in flight, and an item is handed out only
 * when every earlier item of its sha key is gone, so statuses reach the git
 * host in order per commit. When the queue is full, a new status replaces
 * the last queued one with the same (sha key, context); failing that, the
 * oldest item not in flight is dropped.
 */
#ifndef DROVER_STATUS_QUEUE_H
#define DROVER_STATUS_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct status_item {
	char *sha_key; /* "<host>|<repo>|<sha>": order is kept per key (owned) */
	char *context; /* what supersedes what within a sha key (owned) */
	char *url;     /* where the status goes (owned) */
	char *body;    /* the JSON body (owned) */
	int target;    /* which git host: auth and back-off (the plugin's index) */
	int attempts;  /* deliveries tried so far */
	bool is_in_flight;
	struct status_item *prev, *next;
};

struct status_queue {
	struct status_item *head, *tail;
	size_t n, max;
	uint64_t superseded, dropped; /* counters: replaced when full, dropped when full */
};

enum status_push {
	STATUS_PUSH_QUEUED,
	STATUS_PUSH_SUPERSEDED,	    /* replaced a queued status of the same context */
	STATUS_PUSH_DROPPED_OLDEST, /* queued; the oldest waiting item was dropped */
	STATUS_PUSH_DROPPED_NEW,    /* full of items in flight: the new one was dropped */
};

void status_queue_init(struct status_queue *q, size_t max);
void status_queue_clear(struct status_queue *q); /* frees every item */

/* A new item (the strings are copied). */
struct status_item *status_item_new(const char *sha_key, const char *context, const char *url,
				    const char *body, int target);
void status_item_free(struct status_item *it);

/* Takes it (owned by the queue from now on, or freed when dropped). */
enum status_push status_queue_push(struct status_queue *q, struct status_item *it);

/*
 * The first item that may go now: not in flight, no earlier item of its sha
 * key in the queue, and is_ready(arg, target) true. Marks it in flight.
 * NULL when none may go.
 */
struct status_item *status_queue_take(struct status_queue *q, bool (*is_ready)(void *, int),
				      void *arg);
/* Delivered or given up: removes and frees it. */
void status_queue_remove(struct status_queue *q, struct status_item *it);
/* To be tried again later: stays where it is, no longer in flight. */
void status_queue_release(struct status_queue *q, struct status_item *it);

#endif
