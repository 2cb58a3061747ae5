/*
 * claim: the ownership history of a partition, kept in the metadata of its
 * committed offset, and the verdict on an event whose commit was not seen.
 * See claim.h for why; this file only reads, writes and searches the text.
 */
#include "claim.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define CLAIM_MAGIC "drover1"

/* An agent id as the history keeps it: cut, no separators. */
static void claim_agent_clean(const char *agent, char out[CLAIM_AGENT_MAX + 1])
{
	snprintf(out, CLAIM_AGENT_MAX + 1, "%s", agent);
	for (char *c = out; *c != '\0'; c++)
		if (*c == ' ' || *c == '@')
			*c = '_';
}

/* Appends agent@start, dropping the oldest entry when the history is full. */
static void claim_history_push(struct claim_history *h, const char *agent, int64_t start)
{
	if (h->n == CLAIM_MAX_OWNERS) {
		memmove(&h->owners[0], &h->owners[1], (h->n - 1) * sizeof h->owners[0]);
		h->n--;
	}
	struct claim_owner *o = &h->owners[h->n++];
	snprintf(o->agent, sizeof o->agent, "%s", agent);
	o->start = start;
}

void claim_history_parse(const void *metadata, size_t len, struct claim_history *h)
{
	h->n = 0;
	if (metadata == NULL || len < sizeof CLAIM_MAGIC - 1 ||
	    memcmp(metadata, CLAIM_MAGIC, sizeof CLAIM_MAGIC - 1) != 0)
		return;
	char *text = xstrndup(metadata, len);
	char *save = NULL;
	char *tok = strtok_r(text + sizeof CLAIM_MAGIC - 1, " ", &save);
	while (tok != NULL) {
		char *at = strrchr(tok, '@');
		char *end = NULL;
		long long start = at != NULL ? strtoll(at + 1, &end, 10) : -1;
		/* A malformed entry makes the whole history unusable: trust none of it. */
		if (at == NULL || at == tok || (size_t)(at - tok) > CLAIM_AGENT_MAX ||
		    end == at + 1 || *end != '\0' || start < 0) {
			h->n = 0;
			break;
		}
		*at = '\0';
		claim_history_push(h, tok, start);
		tok = strtok_r(NULL, " ", &save);
	}
	free(text);
}

char *claim_history_format(const struct claim_history *h)
{
	struct strbuf sb;
	strbuf_init(&sb);
	strbuf_addf(&sb, "%s", CLAIM_MAGIC);
	for (size_t i = 0; i < h->n; i++)
		strbuf_addf(&sb, " %s@%" PRId64, h->owners[i].agent, h->owners[i].start);
	return strbuf_detach(&sb);
}

void claim_history_append(struct claim_history *h, const char *agent, int64_t start)
{
	char clean[CLAIM_AGENT_MAX + 1];
	claim_agent_clean(agent, clean);
	if (h->n > 0 && h->owners[h->n - 1].start == start &&
	    strcmp(h->owners[h->n - 1].agent, clean) == 0)
		return;
	claim_history_push(h, clean, start);
}

/*
 * Owners start where the committed offset stood when they took the
 * partition, so the owner at an offset is the last one that started at or
 * before it; and a commit past the offset means that owner consumed it.
 */
enum claim_verdict claim_decide(const struct claim_history *h, int64_t committed, const char *agent,
				int64_t offset)
{
	if (committed < 0 || committed <= offset)
		return CLAIM_PENDING;
	char clean[CLAIM_AGENT_MAX + 1];
	claim_agent_clean(agent, clean);
	for (size_t i = h->n; i > 0; i--) {
		const struct claim_owner *o = &h->owners[i - 1];
		if (o->start > offset)
			continue;
		return strcmp(o->agent, clean) == 0 ? CLAIM_MINE : CLAIM_OTHERS;
	}
	return CLAIM_UNKNOWN;
}

const char *claim_verdict_name(enum claim_verdict v)
{
	switch (v) {
	case CLAIM_MINE:
		return "mine";
	case CLAIM_OTHERS:
		return "another agent's";
	case CLAIM_PENDING:
		return "not committed";
	default:
		return "unknown";
	}
}
