/* alloc_count.so: counts heap allocations of a program, for scripts/bench --account.
 *
 *   LD_PRELOAD=alloc_count.so ALLOC_COUNT_OUT=FILE program ...
 *
 * Counts calls of malloc, calloc, realloc, posix_memalign, aligned_alloc and memalign
 * (every thread) and, at exit, appends one line "allocs N" to FILE (stderr without
 * it). `alloc_count_now()` (found with dlsym(RTLD_DEFAULT, "alloc_count_now")) gives
 * the count so far to a program that wants to count a part of its run itself.
 * calloc before the real one is known (dlsym itself calls calloc) is served from a
 * small static arena. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_ulong count;
static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);
static void (*real_free)(void *);

static char arena[8192];
static size_t arena_used;

static void resolve(void) {
    if (real_malloc) return;
    real_calloc = dlsym(RTLD_NEXT, "calloc");
    real_malloc = dlsym(RTLD_NEXT, "malloc");
    real_realloc = dlsym(RTLD_NEXT, "realloc");
    real_posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
    real_memalign = dlsym(RTLD_NEXT, "memalign");
    real_free = dlsym(RTLD_NEXT, "free");
}

unsigned long alloc_count_now(void) { return atomic_load(&count); }

void *malloc(size_t n) {
    resolve();
    atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
    return real_malloc(n);
}

void *calloc(size_t a, size_t b) {
    if (!real_calloc) {
        /* dlsym's own allocation, before the real calloc is known */
        size_t n = (a * b + 15) & ~(size_t)15;
        if (arena_used + n > sizeof arena) return NULL;
        void *p = arena + arena_used;
        arena_used += n;
        return p;
    }
    atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
    return real_calloc(a, b);
}

void *realloc(void *p, size_t n) {
    resolve();
    atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
    return real_realloc(p, n);
}

int posix_memalign(void **out, size_t al, size_t n) {
    resolve();
    atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
    return real_posix_memalign(out, al, n);
}

void *aligned_alloc(size_t al, size_t n) {
    resolve();
    atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
    return real_aligned_alloc(al, n);
}

void *memalign(size_t al, size_t n) {
    resolve();
    atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
    return real_memalign(al, n);
}

void free(void *p) {
    if ((char *)p >= arena && (char *)p < arena + sizeof arena) return;
    resolve();
    real_free(p);
}

__attribute__((destructor)) static void report(void) {
    const char *f = getenv("ALLOC_COUNT_OUT");
    FILE *o = f ? fopen(f, "a") : NULL;
    fprintf(o ? o : stderr, "allocs %lu\n", alloc_count_now());
    if (o) fclose(o);
}
