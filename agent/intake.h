/*
 * intake: the Kafka consumer group on the events topic. Each record is
 * normalized, recorded with its runs in one SQLite transaction, and only
 * then is its offset stored; bad records go to the dead letter (through the
 * outbox) and the offset moves on. Pauses its partitions under backpressure.
 */
#ifndef DROVER_INTAKE_H
#define DROVER_INTAKE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct agent;
struct intake;

struct intake *intake_new(struct agent *a, char *err, size_t err_len);
/* Stops consuming, commits stored offsets and leaves the group (blocking; for shutdown). */
void intake_free(struct intake *in);

/* Backpressure: pause or resume every assigned partition (idempotent). */
void intake_set_paused(struct intake *in, bool is_paused);
bool intake_is_assigned(const struct intake *in);
bool intake_is_paused(const struct intake *in);
/* A broker answered in the last statistics interval (or assigned partitions). */
bool intake_is_connected(const struct intake *in);
/* {"<partition>": lag} of the events topic from the last statistics, or NULL. */
const json_t *intake_lag(const struct intake *in);

#endif
