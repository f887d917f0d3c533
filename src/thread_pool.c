/* Persistent thread pool (see pool.h).
 *
 * One 64-bit word, `ticket`, publishes a run and hands out its tasks:
 *   bits 63..32 generation, 31..16 number of tasks, 15..0 next unclaimed task.
 * A thread claims a task by compare-and-swap on the whole word, so a thread that is late
 * for one run can never claim a task of the next: its generation no longer matches. The
 * run's function and context are written before the ticket is published (release) and read
 * after a successful claim (acquire); they cannot change until every task of the run has
 * finished, which pool_run waits for. */
#include "thread_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "util.h"

#define MAX_TASKS 0xffff
#define SPIN_NS 100000 /* how long an idle worker polls before it sleeps */

struct thread_pool {
    _Atomic uint64_t ticket;
    atomic_int remaining; /* tasks of the current run not yet finished */
    pool_task_fn fn;
    void *ctx;
    int first; /* task number of the round's task 0 */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;       /* under lock */
    int size;        /* threads, the caller included */
    pthread_t *threads;
    struct worker_arg {
        thread_pool *pool;
        int index;
    } *args;
};

static uint32_t ticket_generation(uint64_t t) { return (uint32_t)(t >> 32); }

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Claims and runs tasks of generation `gen` until none are left. */
static void run_tasks(thread_pool *p, uint32_t gen, int thread) {
    uint64_t t = atomic_load_explicit(&p->ticket, memory_order_acquire);
    for (;;) {
        uint32_t next = (uint32_t)(t & 0xffff), count = (uint32_t)(t >> 16) & 0xffff;
        if (ticket_generation(t) != gen || next >= count) return;
        if (!atomic_compare_exchange_weak_explicit(&p->ticket, &t, t + 1, memory_order_acquire, memory_order_acquire))
            continue;
        p->fn(p->ctx, p->first + (int)next, thread);
        atomic_fetch_sub_explicit(&p->remaining, 1, memory_order_release);
        t = atomic_load_explicit(&p->ticket, memory_order_acquire);
    }
}

/* Waits for a generation other than `seen`, polling for spin_ns first; false when the pool
 * is stopping. */
static bool wait_for_run(thread_pool *p, uint32_t seen, uint32_t *gen, uint64_t spin_ns) {
    uint64_t start = spin_ns ? now_ns() : 0;
    for (int spins = 0; spin_ns; spins++) {
        *gen = ticket_generation(atomic_load_explicit(&p->ticket, memory_order_acquire));
        if (*gen != seen) return true;
        if ((spins & 255) == 255 && now_ns() - start > spin_ns) break;
        cpu_relax();
    }
    pthread_mutex_lock(&p->lock);
    while (!p->stop && (*gen = ticket_generation(atomic_load(&p->ticket))) == seen) pthread_cond_wait(&p->wake, &p->lock);
    bool stop = p->stop;
    pthread_mutex_unlock(&p->lock);
    return !stop;
}

static void *worker_main(void *arg) {
    struct worker_arg *a = arg;
    thread_pool *p = a->pool;
    uint32_t seen = ticket_generation(atomic_load(&p->ticket)), gen;
    /* A new worker sleeps at once: the first run is a model or an image away, and on a busy
     * machine a thread that polls as it starts takes the core from the one creating it
     * (seen: pool_new 0.4-2 ms on two loaded cores). After a run, polling catches the next. */
    for (uint64_t spin_ns = 0; wait_for_run(p, seen, &gen, spin_ns); spin_ns = SPIN_NS) {
        run_tasks(p, gen, a->index);
        seen = gen;
    }
    return NULL;
}

thread_pool *pool_new(int threads) {
    thread_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    if (threads < 1) threads = 1;
    p->size = 1;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    if (threads > 1) {
        p->threads = calloc_array((size_t)threads, sizeof *p->threads);
        p->args = calloc_array((size_t)threads, sizeof *p->args);
        if (!p->threads || !p->args) {
            pool_free(p);
            return NULL;
        }
    }
    for (int i = 1; i < threads; i++) {
        p->args[i] = (struct worker_arg){p, i};
        if (pthread_create(&p->threads[i], NULL, worker_main, &p->args[i]) != 0) break;
        p->size = i + 1;
    }
    return p;
}

void pool_free(thread_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->size; i++) pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p->args);
    free(p);
}

int pool_size(const thread_pool *p) { return p ? p->size : 1; }

void pool_share(size_t count, int parts, int part, size_t *first, size_t *end) {
    const size_t per = (count + (size_t)parts - 1) / (size_t)parts;
    *first = per * (size_t)part < count ? per * (size_t)part : count;
    *end = *first + per < count ? *first + per : count;
}

static void run_round(thread_pool *p, pool_task_fn fn, void *ctx, int first, int count);

void pool_run(thread_pool *p, pool_task_fn fn, void *ctx, int num_tasks) {
    if (num_tasks <= 0) return;
    if (!p || p->size == 1 || num_tasks == 1) {
        for (int i = 0; i < num_tasks; i++) fn(ctx, i, 0);
        return;
    }
    /* More tasks than fit in a ticket run in rounds. */
    for (int first = 0; first < num_tasks; first += MAX_TASKS)
        run_round(p, fn, ctx, first, num_tasks - first > MAX_TASKS ? MAX_TASKS : num_tasks - first);
}

static void run_round(thread_pool *p, pool_task_fn fn, void *ctx, int first, int count) {
    p->fn = fn;
    p->ctx = ctx;
    p->first = first;
    atomic_store_explicit(&p->remaining, count, memory_order_relaxed);
    uint32_t gen = ticket_generation(atomic_load(&p->ticket)) + 1;
    atomic_store_explicit(&p->ticket, (uint64_t)gen << 32 | (uint64_t)count << 16, memory_order_release);
    pthread_mutex_lock(&p->lock);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    run_tasks(p, gen, 0);
    for (int spins = 0; atomic_load_explicit(&p->remaining, memory_order_acquire) > 0; spins++) {
        if (spins < 4096) cpu_relax();
        else sched_yield();
    }
}
