/* The float32 and float64 kernels, generated from real_kernels.h. */
#include <math.h>
#include <stdlib.h>

#include "kernels.h"

/* The constants of handgrad.nn.activations.GELU, bit for bit:
 * math.sqrt(0.5) and 1.0 / math.sqrt(2.0 * math.pi). */
#define HG_SQRT_HALF 0x1.6a09e667f3bcdp-1
#define HG_INV_SQRT_2PI 0x1.9884533d43651p-2

/* NumPy's pairwise sum of doubles: real_kernels.h's pairwise_sum, instantiated for double below. */
static double pairwise_sum_f64(const double *a, hg_index n);

/* Σ terms as NumPy's x.sum(dtype=np.float64) adds the n values of x: one
 * pairwise sum for float64 x; for float32 x, which NumPy casts through a
 * buffer of 8192 elements, one pairwise sum per buffer, added in turn. */
static double hg_sum_float_terms(const double *terms, hg_index n, int from_float32)
{
    if (!from_float32) {
        return pairwise_sum_f64(terms, n);
    }
    const hg_index buffer = 8192;
    double total = 0;
    for (hg_index start = 0; start < n; start += buffer) {
        const hg_index len = n - start < buffer ? n - start : buffer;
        total = start ? total + pairwise_sum_f64(terms + start, len) : pairwise_sum_f64(terms, len);
    }
    return total;
}

#define REAL float
#define SUFFIX f32
#define EXP expf
#define EXPM1 expm1f
#define LOG logf
#define LOG1P log1pf
#define TANH tanhf
#define SQRT sqrtf
#define FABS fabsf
/* SciPy's float32 erfc evaluates the double one and rounds. */
#define ERFC(x) ((float)erfc((double)(x)))
#include "real_kernels.h"
#undef REAL
#undef SUFFIX
#undef EXP
#undef EXPM1
#undef LOG
#undef LOG1P
#undef TANH
#undef SQRT
#undef FABS
#undef ERFC

#define REAL double
#define SUFFIX f64
#define EXP exp
#define EXPM1 expm1
#define LOG log
#define LOG1P log1p
#define TANH tanh
#define SQRT sqrt
#define FABS fabs
#define ERFC erfc
#include "real_kernels.h"
