/*
 * wspool: a stack of empty directories named 0, 1, 2... under the pool
 * directory, moved in and out with rename(2), which neither allocates nor
 * frees an inode.
 */
#include "wspool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

struct wspool {
	char *dir;
	long long *names; /* the directories in the pool, a stack of cap */
	size_t n, cap;
	long long next_name;
	bool has_dir; /* dir is known to exist */
};

/* True when path is a directory with nothing in it. */
static bool dir_is_empty(const char *path)
{
	DIR *d = opendir(path);
	if (d == NULL)
		return false;
	bool is_empty = true;
	struct dirent *de;
	while (is_empty && (de = readdir(d)) != NULL)
		is_empty = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
	closedir(d);
	return is_empty;
}

struct wspool *wspool_new(const char *dir, size_t cap)
{
	struct wspool *p = xcalloc(1, sizeof *p);
	p->dir = xstrdup(dir);
	p->cap = cap;
	p->names = xcalloc(cap > 0 ? cap : 1, sizeof *p->names);
	DIR *d = opendir(dir);
	if (d == NULL)
		return p;
	p->has_dir = true;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		char *end;
		long long name = strtoll(de->d_name, &end, 10);
		char *path = xasprintf("%s/%s", dir, de->d_name);
		/* Only empty directories of our naming are taken up; anything else
		 * (or more than cap) goes. */
		if (*end == '\0' && name >= 0 && p->n < cap && dir_is_empty(path)) {
			p->names[p->n++] = name;
			if (name >= p->next_name)
				p->next_name = name + 1;
		} else {
			rm_rf(path);
		}
		free(path);
	}
	closedir(d);
	return p;
}

void wspool_free(struct wspool *p)
{
	if (p == NULL)
		return;
	free(p->names);
	free(p->dir);
	free(p);
}

size_t wspool_count(const struct wspool *p)
{
	return p->n;
}

int wspool_take(struct wspool *p, const char *path)
{
	rm_rf(path);
	while (p->n > 0) {
		char *from = xasprintf("%s/%lld", p->dir, p->names[--p->n]);
		int rc = rename(from, path);
		free(from);
		if (rc != 0)
			continue; /* gone from under us: try the next, or make one */
		/* A stage may have changed its mode; the sweep of kept workspaces
		 * goes by the mtime, which must be the run's. */
		if (chmod(path, 0750) != 0 || utimensat(AT_FDCWD, path, NULL, 0) != 0)
			return -1;
		return 0;
	}
	return mkdir_p(path, 0750);
}

void wspool_put(struct wspool *p, const char *path)
{
	if (p->n < p->cap && dir_is_empty(path)) {
		if (!p->has_dir)
			p->has_dir = mkdir_p(p->dir, 0750) == 0;
		char *to = xasprintf("%s/%lld", p->dir, p->next_name);
		if (p->has_dir && rename(path, to) == 0) {
			p->names[p->n++] = p->next_name++;
			free(to);
			return;
		}
		free(to);
	}
	rm_rf(path);
}
