/*
 * glob: the patterns pipelines use for branches, tags, paths and models.
 * `*` matches within one path segment, `**` across segments, `?` one
 * character, `[abc]`/`[a-z]`/`[!a]` a class. A leading `!` is not special
 * here (lists use *_ignore keys instead).
 */
#ifndef DROVER_GLOB_H
#define DROVER_GLOB_H

#include <stdbool.h>

bool glob_match(const char *pattern, const char *text);
/* Is the pattern well formed (no unclosed class)? */
bool glob_is_valid(const char *pattern);

#endif
