/* The parallel loop: a range split into one contiguous piece per thread, each piece written only by its thread,
 * so results never depend on the thread count. Threads are started per call: the loops it serves take
 * milliseconds, a thread start some tens of microseconds. */
#include "internal.h"

#include <pthread.h>

#define FRCNN__MAX_THREADS 64

typedef struct range_job {
    frcnn__range_fn fn;
    void *arg;
    size_t begin, end;
} range_job;

static void *run_range(void *p)
{
    range_job *job = p;
    job->fn(job->arg, job->begin, job->end);
    return NULL;
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
    range_job jobs[FRCNN__MAX_THREADS];
    pthread_t ids[FRCNN__MAX_THREADS];
    bool started[FRCNN__MAX_THREADS];
    for (size_t t = 0; t < threads; t++) {
        jobs[t].fn = fn;
        jobs[t].arg = arg;
        jobs[t].begin = n * t / threads;
        jobs[t].end = n * (t + 1) / threads;
    }
    for (size_t t = 1; t < threads; t++)
        started[t] = pthread_create(&ids[t], NULL, run_range, &jobs[t]) == 0;
    run_range(&jobs[0]);
    for (size_t t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(ids[t], NULL);
        else
            run_range(&jobs[t]); /* could not start a thread: do its share here, same result */
    }
}
