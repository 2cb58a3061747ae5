/*
 * store_fixture: a fresh store in a temporary directory of its own, for the
 * unit tests of the parts that read and write the store (setup/teardown of
 * test_store, test_replay, test_store_writable).
 */
#ifndef DROVER_TEST_STORE_FIXTURE_H
#define DROVER_TEST_STORE_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>

#include "store.h"
#include "util.h"

struct store_fixture {
	char dir[64];
	struct store *store;
};

/* Opens a store in a new /tmp/drover-test-<tag>-XXXXXX; 0, or -1 said on stderr. */
static inline int store_fixture_open(struct store_fixture *f, const char *tag)
{
	snprintf(f->dir, sizeof f->dir, "/tmp/drover-test-%s-XXXXXX", tag);
	if (mkdtemp(f->dir) == NULL) {
		perror("mkdtemp");
		return -1;
	}
	char err[256] = "";
	f->store = store_open(f->dir, err, sizeof err);
	if (f->store == NULL) {
		fprintf(stderr, "store_open: %s\n", err);
		return -1;
	}
	return 0;
}

/* Closes the store and removes its directory; rm_rf's result. */
static inline int store_fixture_close(struct store_fixture *f)
{
	store_close(f->store);
	f->store = NULL;
	return rm_rf(f->dir);
}

#endif
