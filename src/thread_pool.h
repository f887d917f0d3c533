/* A persistent pool of worker threads for splitting one piece of work into tasks.
 *
 * pool_run(pool, fn, ctx, n) calls fn(ctx, task, thread) for every task in 0..n-1 and
 * returns when all are done. The calling thread takes part (as thread 0); workers are
 * threads 1..size-1. Which thread runs which task is not fixed, so a task must not depend
 * on it except to pick per-thread scratch memory. Workers spin briefly after a run (the
 * next one usually follows within microseconds), then sleep on a condition variable. */
#ifndef EMOTE_THREAD_POOL_H
#define EMOTE_THREAD_POOL_H

#include <stddef.h>

typedef struct thread_pool thread_pool;
typedef void (*pool_task_fn)(void *ctx, int task, int thread);

/* A pool of `threads` threads in all, the caller included (threads - 1 are started).
 * NULL on failure to allocate; if some threads cannot be started the pool is smaller. */
thread_pool *pool_new(int threads);
void pool_free(thread_pool *pool);
/* Threads that can run tasks at once, the caller included (1 for a NULL pool). */
int pool_size(const thread_pool *pool);
/* Runs tasks 0..num_tasks-1; on a NULL pool, in order on the calling thread. Not reentrant:
 * a task must not call pool_run on the same pool. */
void pool_run(thread_pool *pool, pool_task_fn fn, void *ctx, int num_tasks);
/* Share `part` of `parts` of [0, count), in equal runs but the last: [*first, *end), empty for
 * a part past the end. */
void pool_share(size_t count, int parts, int part, size_t *first, size_t *end);

#endif
