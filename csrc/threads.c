/* A second thread for the elementwise kernels: one helper, started on first
 * use, that runs the upper half of a range while the caller runs the lower.
 *
 * The helper sleeps on a condition variable between calls (it never spins,
 * so an idle helper costs nothing on a busy machine); waking it costs a few
 * microseconds, which is why handgrad._compiled asks for two threads only
 * above a measured size.  Without POSIX threads (Windows), when the helper
 * cannot be started, or while it serves another caller (two Python threads
 * in kernels at once), everything runs on the calling thread.  After fork() the
 * child has no helper, so it starts its own when it first needs one.
 */
#include "kernels.h"

#if !(defined(__unix__) || defined(__APPLE__))

void hg_parallel_for(hg_range_fn fn, const void *args, hg_index n, int threads)
{
    (void)threads;
    fn(args, 0, n);
}

int hg_threads_available(void) { return 0; }

#else

#include <pthread.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_posted = PTHREAD_COND_INITIALIZER;
static pthread_cond_t work_done = PTHREAD_COND_INITIALIZER;

/* Guarded by lock.  posted counts jobs handed to the helper, finished the ones it has done. */
static struct {
    int started, failed;
    unsigned long posted, finished;
    hg_range_fn fn;
    const void *args;
    hg_index start, stop;
} helper;

static void *helper_main(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (helper.finished == helper.posted) {
            pthread_cond_wait(&work_posted, &lock);
        }
        hg_range_fn fn = helper.fn;
        const void *args = helper.args;
        hg_index start = helper.start, stop = helper.stop;
        pthread_mutex_unlock(&lock);
        fn(args, start, stop);
        pthread_mutex_lock(&lock);
        helper.finished = helper.posted;
        pthread_cond_signal(&work_done);
    }
    return NULL;
}

/* In a forked child the helper thread does not exist: forget it, and the locks its parent may have held. */
static void forget_helper(void)
{
    pthread_mutex_init(&lock, NULL);
    pthread_cond_init(&work_posted, NULL);
    pthread_cond_init(&work_done, NULL);
    helper.started = helper.failed = 0;
    helper.posted = helper.finished = 0;
}

/* With lock held: whether the helper runs (starting it if need be). */
static int helper_ready(void)
{
    if (!helper.started && !helper.failed) {
        pthread_attr_t attr;
        pthread_t thread;
        int ok = pthread_attr_init(&attr) == 0;
        ok = ok && pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0;
        ok = ok && pthread_create(&thread, &attr, helper_main, NULL) == 0;
        pthread_attr_destroy(&attr);
        if (ok) {
            pthread_atfork(NULL, NULL, forget_helper);
            helper.started = 1;
        } else {
            helper.failed = 1;
        }
    }
    return helper.started;
}

void hg_parallel_for(hg_range_fn fn, const void *args, hg_index n, int threads)
{
    /* The halves meet on a multiple of 64 elements (a cache line for either type). */
    const hg_index middle = (n / 2) & ~(hg_index)63;
    if (threads < 2 || middle == 0) {
        fn(args, 0, n);
        return;
    }
    pthread_mutex_lock(&lock);
    if (!helper_ready() || helper.finished != helper.posted) {
        pthread_mutex_unlock(&lock);
        fn(args, 0, n);
        return;
    }
    helper.fn = fn;
    helper.args = args;
    helper.start = middle;
    helper.stop = n;
    helper.posted++;
    pthread_cond_signal(&work_posted);
    pthread_mutex_unlock(&lock);

    fn(args, 0, middle);

    pthread_mutex_lock(&lock);
    while (helper.finished != helper.posted) {
        pthread_cond_wait(&work_done, &lock);
    }
    pthread_mutex_unlock(&lock);
}

int hg_threads_available(void) { return 1; }

#endif
