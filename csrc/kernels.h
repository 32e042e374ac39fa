/* handgrad's compiled kernels: declarations shared by the C files.
 *
 * Every kernel exists twice, for float (suffix _f32) and double (_f64),
 * generated from one source by including real_kernels.h with REAL set
 * (kernels.c).  The Python side is module.c; what each kernel computes, and
 * which NumPy code it equals, is said where it is defined (real_kernels.h)
 * and in src/handgrad/_compiled.py.
 *
 * Arithmetic rules, so that a kernel repeats its NumPy reference exactly:
 * every operation is done in the arrays' dtype, in the order the NumPy code
 * does it, with no fused multiply-add (-ffp-contract=off, set by setup.py)
 * and no reassociation (no -ffast-math).  Only the C library's exp, log,
 * tanh, expm1, log1p and erfc may differ from NumPy's (or SciPy's) in the
 * last bits; those kernels are tested to a few ulps.
 */
#ifndef HANDGRAD_KERNELS_H
#define HANDGRAD_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

typedef ptrdiff_t hg_index;

/* On x86-64 Linux (glibc) with GCC or Clang, the elementwise kernels are
 * compiled twice, for AVX2 and for the baseline (SSE2), and the loader picks
 * the one the CPU runs.  Wider vectors change no result: every operation is
 * still one IEEE operation per element (no FMA: -ffp-contract=off). */
#if defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define HG_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef HG_CLONES
#define HG_CLONES
#endif

/* The activations, numbered as handgrad._compiled.ACTIVATIONS numbers them. */
enum hg_activation {
    HG_IDENTITY = 0,
    HG_SIGMOID = 1,
    HG_TANH = 2,
    HG_RELU = 3,
    HG_LEAKY_RELU = 4,
    HG_ELU = 5,
    HG_SOFTPLUS = 6,
    HG_GELU = 7,
    HG_N_ACTIVATIONS = 8
};

/* Arguments of the elementwise optimizer updates; scalars arrive as doubles
 * and are rounded to the arrays' dtype inside, as NumPy rounds a Python float. */
typedef struct {
    void *p, *g, *m, *v;            /* m, v: Adam's moments; m: SGD's velocity (NULL: plain SGD) */
    hg_index n_decayed;             /* g[:n_decayed] += l2 p first */
    double l2;
    double a, b, c, d, e, f;        /* Adam: b1, b2, 1-b1, 1-b2, step size, eps_hat; SGD: lr, mu */
    int nesterov;
} hg_update_args;

typedef void (*hg_range_fn)(const void *args, hg_index start, hg_index stop);

#define HG_DECLARE(REAL, SUFFIX)                                                                        \
    void hg_adam_##SUFFIX(const void *args, hg_index start, hg_index stop);                           \
    void hg_sgd_##SUFFIX(const void *args, hg_index start, hg_index stop);                            \
    void hg_bias_activation_##SUFFIX(REAL *Z, const REAL *b, REAL *A, REAL *Phi, hg_index n, hg_index k, \
                                     int kind, double param);                                         \
    void hg_activation_gradient_bias_##SUFFIX(const REAL *G, const REAL *S, const REAL *Phi, REAL *out,  \
                                              REAL *db, hg_index n, hg_index k, int kind, double param); \
    double hg_softmax_cross_entropy_##SUFFIX(const REAL *Z, const int64_t *y, REAL *G, hg_index n,       \
                                             hg_index k, double scale, hg_index *correct);

HG_DECLARE(float, f32)
HG_DECLARE(double, f64)

/* Run fn over [0, n): on the calling thread, or split in two with a helper
 * thread (threads.c) when threads == 2 and the helper can be had.  Only for
 * kernels whose elements are independent, so the split never changes a bit. */
void hg_parallel_for(hg_range_fn fn, const void *args, hg_index n, int threads);

/* Whether hg_parallel_for can use a second thread on this build. */
int hg_threads_available(void);

#endif
