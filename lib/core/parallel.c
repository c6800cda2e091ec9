/* The parallel loop: a range split into one contiguous piece per thread, each piece written only by its thread,
 * so results never depend on the thread count. Pieces beyond the first run on the context's persistent workers,
 * started once by frcnn_ctx_set_threads: a loop costs a wake-up, not a thread start.
 *
 * A worker that finished a loop, and the caller waiting for the workers, spin a little before sleeping: a step
 * runs hundreds of short loops (every matrix product is one), and a sleeping thread took tens of microseconds to
 * wake, which made the small preset's convolutions a third slower than with OpenBLAS's spinning threads. The spin
 * is bounded, so an idle pool sleeps and a busy machine loses little. */
#include "internal.h"

#include <unistd.h>

/* Checks of the flag before sleeping on it: some tens of microseconds. */
#define POOL_SPINS 2000

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker_main(void *p)
{
    frcnn__pool_worker *self = p;
    frcnn__pool *pool = self->pool;
    pthread_mutex_lock(&pool->mu);
    uint64_t seen = self->start_generation;
    for (;;) {
        if (pool->generation == seen) {
            pthread_mutex_unlock(&pool->mu);
            for (int i = 0; i < POOL_SPINS && atomic_load_explicit(&pool->generation, memory_order_relaxed) == seen;
                 i++)
                cpu_relax();
            pthread_mutex_lock(&pool->mu);
        }
        while (pool->generation == seen)
            pthread_cond_wait(&pool->wake, &pool->mu);
        seen = pool->generation;
        if (pool->stop)
            break;
        int range = self->index + 1;
        if (range <= pool->active) {
            frcnn__range_fn fn = pool->fn;
            void *arg = pool->arg;
            size_t begin = pool->begin[range], end = pool->end[range];
            pthread_mutex_unlock(&pool->mu);
            fn(arg, begin, end);
            pthread_mutex_lock(&pool->mu);
            if (--pool->pending == 0)
                pthread_cond_signal(&pool->done);
        }
    }
    pthread_mutex_unlock(&pool->mu);
    return NULL;
}

void frcnn__pool_resize(frcnn__pool *pool, int n)
{
    if (!pool->ready) {
        pthread_mutex_init(&pool->mu, NULL);
        pthread_cond_init(&pool->wake, NULL);
        pthread_cond_init(&pool->done, NULL);
        pool->ready = true;
    }
    if (pool->n_workers > 0 && pool->owner != getpid())
        pool->n_workers = 0; /* inherited through fork: those threads exist only in the parent */
    if (pool->n_workers > 0) {
        pthread_mutex_lock(&pool->mu);
        pool->stop = true;
        pool->generation++;
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->mu);
        for (int i = 0; i < pool->n_workers; i++)
            pthread_join(pool->threads[i], NULL);
        pool->n_workers = 0;
        pool->stop = false;
    }
    if (n <= 0) {
        pthread_cond_destroy(&pool->wake);
        pthread_cond_destroy(&pool->done);
        pthread_mutex_destroy(&pool->mu);
        pool->ready = false;
        return;
    }
    int want = n - 1 < FRCNN__MAX_THREADS - 1 ? n - 1 : FRCNN__MAX_THREADS - 1;
    for (int i = 0; i < want; i++) {
        pool->args[i].pool = pool;
        pool->args[i].index = i;
        pool->args[i].start_generation = pool->generation;
        if (pthread_create(&pool->threads[i], NULL, worker_main, &pool->args[i]) != 0)
            break; /* fewer workers: the caller runs the rest itself, same result */
        pool->n_workers++;
    }
    pool->owner = getpid();
}

void frcnn__parallel_for(frcnn_ctx *ctx, size_t n, size_t min_per_thread, frcnn__range_fn fn, void *arg)
{
    if (n == 0)
        return;
    size_t threads = ctx && ctx->n_threads > 1 ? (size_t)ctx->n_threads : 1;
    if (threads > FRCNN__MAX_THREADS)
        threads = FRCNN__MAX_THREADS;
    if (min_per_thread < 1)
        min_per_thread = 1;
    if (threads > n / min_per_thread)
        threads = n / min_per_thread;
    if (threads <= 1) {
        fn(arg, 0, n);
        return;
    }
    frcnn__pool *pool = &ctx->pool;
    size_t begin[FRCNN__MAX_THREADS], end[FRCNN__MAX_THREADS];
    for (size_t t = 0; t < threads; t++) {
        begin[t] = n * t / threads;
        end[t] = n * (t + 1) / threads;
    }
    int workers = pool->owner == getpid() ? pool->n_workers : 0;
    int handed = (int)threads - 1 < workers ? (int)threads - 1 : workers;
    if (handed > 0) {
        pthread_mutex_lock(&pool->mu);
        pool->fn = fn;
        pool->arg = arg;
        for (int r = 1; r <= handed; r++) {
            pool->begin[r] = begin[r];
            pool->end[r] = end[r];
        }
        pool->active = handed;
        pool->pending = handed;
        pool->generation++;
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->mu);
    }
    fn(arg, begin[0], end[0]);
    for (size_t t = (size_t)handed + 1; t < threads; t++) /* ranges no worker could take */
        fn(arg, begin[t], end[t]);
    if (handed > 0) {
        for (int i = 0; i < POOL_SPINS && atomic_load_explicit(&pool->pending, memory_order_relaxed) > 0; i++)
            cpu_relax();
        pthread_mutex_lock(&pool->mu);
        while (pool->pending > 0)
            pthread_cond_wait(&pool->done, &pool->mu);
        pool->active = 0;
        pthread_mutex_unlock(&pool->mu);
    }
}
