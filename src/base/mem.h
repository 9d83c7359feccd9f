/*
 * mem.h — allocator shim. Every allocation in dkimpress goes through here.
 * Normal builds link jemalloc, which replaces malloc for the whole process
 * (OpenSSL included); sanitizer builds link libc's malloc instead.
 *
 * Out-of-memory is fatal: these never return NULL. That is safe because the
 * queue protocol loses nothing when the process dies (DESIGN.md).
 */
#ifndef DKP_MEM_H
#define DKP_MEM_H

#include <stddef.h>

void *dkp_malloc(size_t n);
void *dkp_calloc(size_t nmemb, size_t size);
void *dkp_realloc(void *p, size_t n);
char *dkp_strdup(const char *s);
char *dkp_strndup(const char *s, size_t n);
void dkp_free(void *p);
/* Zero n bytes in a way the compiler may not elide, then free. */
void dkp_free_wipe(void *p, size_t n);

#endif
