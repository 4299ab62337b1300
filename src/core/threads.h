/* threads.h — set the thread count of OpenMP and OpenBLAS together. */
#ifndef MQ_THREADS_H
#define MQ_THREADS_H
/* n <= 0: one thread per processor. */
void mq_set_threads(int n);
int mq_get_threads(void);
/* The rows [*lo, *hi) of n that thread t of nt takes, in whole pieces of
 * `align` rows (so threads never share a cache line of outputs); the last
 * thread's piece ends at n, and a thread with nothing gets lo == hi. */
void mq_thread_slice(int n, int align, int t, int nt, int *lo, int *hi);
#endif
