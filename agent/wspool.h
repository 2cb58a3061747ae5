/*
 * wspool: empty workspace directories kept for reuse. A run of a
 * `checkout: false` pipeline needs an empty directory as its workspace; a
 * new one per run is an inode to allocate and, at the end, one to free, and
 * on ext4 without a journal every allocation scans past the inodes freed in
 * the last minutes. A workspace left empty is instead renamed into
 * state_dir/workspaces/.free/ and renamed back for the next run: no inode is
 * made or freed. A workspace with anything in it is removed as before.
 */
#ifndef DROVER_WSPOOL_H
#define DROVER_WSPOOL_H

#include <stddef.h>

struct wspool;

/* Pool under dir (state_dir/workspaces/.free) holding at most cap
 * directories; what a previous agent left there is taken up. */
struct wspool *wspool_new(const char *dir, size_t cap);
void wspool_free(struct wspool *p);

/* Makes path an empty directory (mode 0750, its mtime now): one from the
 * pool when there is one, else a new one. Whatever was at path goes first.
 * 0, or -1 and errno. */
int wspool_take(struct wspool *p, const char *path);

/* The workspace at path is done with: into the pool when it is an empty
 * directory and the pool has room, else removed with all it holds. */
void wspool_put(struct wspool *p, const char *path);

/* How many directories wait in the pool. */
size_t wspool_count(const struct wspool *p);

#endif
