/* stream_bench.c — the machine's memory bandwidth, for the inference bench's decode bound (issue 15).
 *
 *   stream_bench THREADS [MIB] [REPS]
 *
 * STREAM-like kernels over float32 arrays of MIB MiB each (default 512, far above any cache), split into
 * THREADS contiguous slices (pthreads, each thread first-touches its own slice): copy a = b (8 bytes moved
 * per element), scale a = s·b (8), add a = b + c (12), triad a = b + s·c (12). Bytes counted as STREAM
 * counts them (reads + writes, no write-allocate). Best of REPS (default 5) after one untimed pass. One JSON
 * line: GB/s (1e9 bytes) of each kernel and "best", the largest of the four.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *A, *B, *C;
static size_t N;
static int NT;
static pthread_barrier_t bar;
static double T[4];

typedef struct { int id; int reps; } arg_t;

static void run(int k, size_t lo, size_t hi) {
    const float s = 3.0f;
    switch (k) {
    case 0: for (size_t i = lo; i < hi; i++) A[i] = B[i]; break;
    case 1: for (size_t i = lo; i < hi; i++) A[i] = s * B[i]; break;
    case 2: for (size_t i = lo; i < hi; i++) A[i] = B[i] + C[i]; break;
    default: for (size_t i = lo; i < hi; i++) A[i] = B[i] + s * C[i]; break;
    }
}

static void *worker(void *p) {
    arg_t *a = p;
    size_t lo = N * (size_t)a->id / (size_t)NT, hi = N * (size_t)(a->id + 1) / (size_t)NT;
    for (size_t i = lo; i < hi; i++) { A[i] = 0.0f; B[i] = 1.0f + (float)(i % 7); C[i] = 0.5f * (float)(i % 5); }
    for (int k = 0; k < 4; k++) {
        for (int r = 0; r <= a->reps; r++) {
            pthread_barrier_wait(&bar);
            double t0 = now();
            run(k, lo, hi);
            pthread_barrier_wait(&bar);
            double dt = now() - t0;
            if (a->id == 0 && r > 0 && (T[k] == 0 || dt < T[k])) T[k] = dt;
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: stream_bench THREADS [MIB] [REPS]\n"); return 2; }
    NT = atoi(argv[1]);
    size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 512;
    int reps = argc > 3 ? atoi(argv[3]) : 5;
    if (NT < 1 || mib < 1 || reps < 1) { fprintf(stderr, "stream_bench: bad arguments\n"); return 2; }
    N = mib * 1024 * 1024 / sizeof(float);
    A = aligned_alloc(64, N * sizeof(float));
    B = aligned_alloc(64, N * sizeof(float));
    C = aligned_alloc(64, N * sizeof(float));
    if (!A || !B || !C) { fprintf(stderr, "stream_bench: out of memory\n"); return 1; }
    pthread_barrier_init(&bar, NULL, (unsigned)NT);
    pthread_t *th = malloc(sizeof(pthread_t) * (size_t)NT);
    arg_t *args = malloc(sizeof(arg_t) * (size_t)NT);
    for (int i = 0; i < NT; i++) {
        args[i].id = i; args[i].reps = reps;
        if (i > 0) pthread_create(&th[i], NULL, worker, &args[i]);
    }
    worker(&args[0]);
    for (int i = 1; i < NT; i++) pthread_join(th[i], NULL);
    double check = 0;
    for (size_t i = 0; i < N; i += 4096) check += A[i];
    const double bytes[4] = { 8.0, 8.0, 12.0, 12.0 };
    double gb[4], best = 0;
    for (int k = 0; k < 4; k++) { gb[k] = bytes[k] * (double)N / T[k] / 1e9; if (gb[k] > best) best = gb[k]; }
    printf("{\"threads\": %d, \"mib\": %zu, \"copy_gbs\": %.2f, \"scale_gbs\": %.2f, \"add_gbs\": %.2f, "
           "\"triad_gbs\": %.2f, \"best_gbs\": %.2f, \"check\": %.1f}\n", NT, mib, gb[0], gb[1], gb[2], gb[3], best, check);
    free(A); free(B); free(C); free(th); free(args);
    return 0;
}
