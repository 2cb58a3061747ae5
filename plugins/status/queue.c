/*
 * queue: arrival order, one in flight per sha key, supersede then drop the
 * oldest when full (queue.h). Sizes are bounded by max, so the linear scans
 * stay small.
 */
#include "queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *queue_strdup(const char *s)
{
	size_t len = strlen(s) + 1;
	char *p = malloc(len);
	if (p == NULL) {
		fputs("status: out of memory\n", stderr);
		abort();
	}
	return memcpy(p, s, len);
}

void status_queue_init(struct status_queue *q, size_t max)
{
	memset(q, 0, sizeof *q);
	q->max = max > 0 ? max : 1;
}

struct status_item *status_item_new(const char *sha_key, const char *context, const char *url,
				    const char *body, int target)
{
	struct status_item *it = calloc(1, sizeof *it);
	if (it == NULL) {
		fputs("status: out of memory\n", stderr);
		abort();
	}
	it->sha_key = queue_strdup(sha_key);
	it->context = queue_strdup(context);
	it->url = queue_strdup(url);
	it->body = queue_strdup(body);
	it->target = target;
	return it;
}

void status_item_free(struct status_item *it)
{
	if (it == NULL)
		return;
	free(it->sha_key);
	free(it->context);
	free(it->url);
	free(it->body);
	free(it);
}

static void queue_unlink(struct status_queue *q, struct status_item *it)
{
	if (it->prev != NULL)
		it->prev->next = it->next;
	else
		q->head = it->next;
	if (it->next != NULL)
		it->next->prev = it->prev;
	else
		q->tail = it->prev;
	it->prev = it->next = NULL;
	q->n--;
}

static void queue_append(struct status_queue *q, struct status_item *it)
{
	it->prev = q->tail;
	it->next = NULL;
	if (q->tail != NULL)
		q->tail->next = it;
	else
		q->head = it;
	q->tail = it;
	q->n++;
}

void status_queue_clear(struct status_queue *q)
{
	while (q->head != NULL) {
		struct status_item *it = q->head;
		queue_unlink(q, it);
		status_item_free(it);
	}
}

enum status_push status_queue_push(struct status_queue *q, struct status_item *it)
{
	if (q->n < q->max) {
		queue_append(q, it);
		return STATUS_PUSH_QUEUED;
	}
	/* The newest waiting status of the same commit and context carries the news. */
	for (struct status_item *o = q->tail; o != NULL; o = o->prev) {
		if (!o->is_in_flight && strcmp(o->sha_key, it->sha_key) == 0 &&
		    strcmp(o->context, it->context) == 0) {
			free(o->url);
			free(o->body);
			o->url = it->url;
			o->body = it->body;
			o->attempts = 0;
			it->url = it->body = NULL;
			status_item_free(it);
			q->superseded++;
			return STATUS_PUSH_SUPERSEDED;
		}
	}
	for (struct status_item *o = q->head; o != NULL; o = o->next) {
		if (!o->is_in_flight) {
			queue_unlink(q, o);
			status_item_free(o);
			queue_append(q, it);
			q->dropped++;
			return STATUS_PUSH_DROPPED_OLDEST;
		}
	}
	status_item_free(it);
	q->dropped++;
	return STATUS_PUSH_DROPPED_NEW;
}

/* Whether an item before it has the same sha key (which must go first). */
static bool queue_has_earlier(const struct status_item *it)
{
	for (const struct status_item *o = it->prev; o != NULL; o = o->prev)
		if (strcmp(o->sha_key, it->sha_key) == 0)
			return true;
	return false;
}

struct status_item *status_queue_take(struct status_queue *q, bool (*is_ready)(void *, int),
				      void *arg)
{
	for (struct status_item *it = q->head; it != NULL; it = it->next) {
		if (it->is_in_flight || !is_ready(arg, it->target) || queue_has_earlier(it))
			continue;
		it->is_in_flight = true;
		return it;
	}
	return NULL;
}

void status_queue_remove(struct status_queue *q, struct status_item *it)
{
	queue_unlink(q, it);
	status_item_free(it);
}

void status_queue_release(struct status_queue *q, struct status_item *it)
{
	(void)q;
	it->is_in_flight = false;
}
