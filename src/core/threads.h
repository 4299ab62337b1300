/* threads.h — set the thread count of OpenMP and OpenBLAS together. */
#ifndef MQ_THREADS_H
#define MQ_THREADS_H
/* n <= 0: one thread per processor. */
void mq_set_threads(int n);
int mq_get_threads(void);
#endif
