/* The kernels for one float type: kernels.c includes this file once with
 * REAL = float, SUFFIX = f32 and once with REAL = double, SUFFIX = f64, and
 * the math functions of that type (EXP, LOG, ...).
 *
 * Each kernel names the NumPy code it stands for.  "Same order" below means
 * the kernel rounds after the same operations as that code, in the same
 * dtype, so the two agree bit for bit wherever no C-library function is
 * involved (see kernels.h).
 */

/* Tells the compiler that an inner loop has no dependence between iterations. */
#if defined(__clang__)
#define HG_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define HG_IVDEP _Pragma("GCC ivdep")
#else
#define HG_IVDEP
#endif

#define HG_CAT(a, b) a##_##b
#define HG_XCAT(a, b) HG_CAT(a, b)
#define F(name) HG_XCAT(name, SUFFIX)

/* np.maximum(a, b) and np.minimum(a, b): a NaN in either operand propagates. */
static inline REAL F(np_max)(REAL a, REAL b) { return (a >= b || a != a) ? a : b; }
static inline REAL F(np_min)(REAL a, REAL b) { return (a <= b || a != a) ? a : b; }

/* NumPy's pairwise sum (numpy/_core/src/umath/loops_utils.h.src), which np.sum
 * uses along a contiguous axis: 8 accumulators in blocks of up to 128, halves
 * above that.  Summing in the same tree gives the same rounding. */
static REAL F(pairwise_sum)(const REAL *a, hg_index n)
{
    if (n < 8) {
        REAL res = (REAL)-0.0;
        for (hg_index i = 0; i < n; i++) {
            res += a[i];
        }
        return res;
    }
    if (n <= 128) {
        REAL r[8];
        hg_index i;
        for (int u = 0; u < 8; u++) {
            r[u] = a[u];
        }
        for (i = 8; i < n - (n % 8); i += 8) {
            for (int u = 0; u < 8; u++) {
                r[u] += a[i + u];
            }
        }
        REAL res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) {
            res += a[i];
        }
        return res;
    }
    hg_index n2 = n / 2;
    n2 -= n2 % 8;
    return F(pairwise_sum)(a, n2) + F(pairwise_sum)(a + n2, n - n2);
}

/* ---- optimizer updates (handgrad.optim.optimizers), one pass over the flat vector ----
 *
 * Entries below n_decayed first get the L2 gradient, g += l2 p, as
 * nn.objective.add_l2_gradient adds it (the product rounded, then added),
 * and the sum is stored back: the gradient left behind is the objective's.
 * The update then reads that g.  Elements are independent, so a range may
 * run on either thread.
 */

static inline REAL F(decayed)(REAL *g, const REAL *p, hg_index i, REAL l2)
{
    const REAL gi = g[i] + l2 * p[i];
    g[i] = gi;
    return gi;
}

/* Adam.step: m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;  θ ← θ − (m / (√v + ε̂)) · step,
 * same order as its NumPy lines (m *= b1; m += g (1 − b1); ...). */
static inline void F(adam_one)(REAL *p, REAL *m, REAL *v, hg_index i, REAL gi, REAL b1, REAL b2,
                               REAL one_minus_b1, REAL one_minus_b2, REAL step, REAL eps_hat)
{
    const REAL mi = m[i] * b1 + gi * one_minus_b1;
    const REAL vi = v[i] * b2 + (gi * gi) * one_minus_b2;
    m[i] = mi;
    v[i] = vi;
    p[i] -= (mi / (SQRT(vi) + eps_hat)) * step;
}

HG_CLONES void F(hg_adam)(const void *vargs, hg_index start, hg_index stop)
{
    const hg_update_args *a = vargs;
    REAL *p = a->p, *g = a->g, *m = a->m, *v = a->v;
    const REAL l2 = (REAL)a->l2, b1 = (REAL)a->a, b2 = (REAL)a->b, c1 = (REAL)a->c, c2 = (REAL)a->d;
    const REAL step = (REAL)a->e, eps_hat = (REAL)a->f;
    const hg_index split = a->n_decayed < start ? start : (a->n_decayed > stop ? stop : a->n_decayed);
    for (hg_index i = start; i < split; i++) {
        F(adam_one)(p, m, v, i, F(decayed)(g, p, i, l2), b1, b2, c1, c2, step, eps_hat);
    }
    for (hg_index i = split; i < stop; i++) {
        F(adam_one)(p, m, v, i, g[i], b1, b2, c1, c2, step, eps_hat);
    }
}

/* SGD.step.  Plain: θ ← θ − ηg (NumPy: p -= lr * g).  Momentum: v ← μv + g, then
 * θ ← θ − ηv, or for Nesterov θ ← θ − η(g + μv) computed as (v μ + g) η. */
static inline void F(sgd_one)(REAL *p, REAL *vel, hg_index i, REAL gi, REAL lr, REAL mu, int nesterov)
{
    if (vel == NULL) {
        p[i] -= lr * gi;
        return;
    }
    const REAL vi = vel[i] * mu + gi;
    vel[i] = vi;
    if (nesterov) {
        p[i] -= (vi * mu + gi) * lr;
    } else {
        p[i] -= vi * lr;
    }
}

HG_CLONES void F(hg_sgd)(const void *vargs, hg_index start, hg_index stop)
{
    const hg_update_args *a = vargs;
    REAL *p = a->p, *g = a->g, *vel = a->m;
    const REAL l2 = (REAL)a->l2, lr = (REAL)a->a, mu = (REAL)a->b;
    const int nesterov = a->nesterov;
    const hg_index split = a->n_decayed < start ? start : (a->n_decayed > stop ? stop : a->n_decayed);
    for (hg_index i = start; i < split; i++) {
        F(sgd_one)(p, vel, i, F(decayed)(g, p, i, l2), lr, mu, nesterov);
    }
    for (hg_index i = split; i < stop; i++) {
        F(sgd_one)(p, vel, i, g[i], lr, mu, nesterov);
    }
}

/* ---- activations (handgrad.nn.activations) ----
 *
 * Forward: the Dense layer's bias add (out += b) and then the activation's
 * forward, elementwise on the GEMM output.  Each function below is one
 * activation's forward on one pre-activation z = (XW)ᵢⱼ + bⱼ, in the order of
 * its NumPy lines.
 */

/* Sigmoid: e = e^{−|z|}; σ = (1 for z ≥ 0, e for z < 0) / (e + 1). */
static inline REAL F(sigmoid)(REAL z)
{
    const REAL e = EXP(-FABS(z));
    return (signbit(z) ? e : (REAL)1) / (e + (REAL)1);
}

/* ELU: max(z, 0) + expm1(min(z, 0)) α. */
static inline REAL F(elu)(REAL z, REAL alpha)
{
    return F(np_max)(z, 0) + EXPM1(F(np_min)(z, 0)) * alpha;
}

/* Softplus: max(z, 0) + log1p(e^{−|z|}). */
static inline REAL F(softplus)(REAL z)
{
    return F(np_max)(z, 0) + LOG1P(EXP(-FABS(z)));
}

/* LeakyReLU: max(z, sz) for s ≤ 1, min(z, sz) above (sz rounded first). */
static inline REAL F(leaky_relu)(REAL z, REAL s, int above_one)
{
    const REAL sz = z * s;
    return above_one ? F(np_min)(z, sz) : F(np_max)(z, sz);
}

/* Z (n × k, the GEMM output) += b row by row; then A = act(Z), where A may be Z
 * itself (the in-place activations) or another buffer, in which case Z keeps
 * the pre-activation.  GELU also writes Φ(Z) to Phi, which its backward reads.
 * Each inner loop runs along one row; an entry is read before it is written
 * at the same index only, so the loop may be vectorised (HG_IVDEP). */
#define HG_FORWARD_ROWS(EXPR)                                        \
    do {                                                             \
        for (hg_index r = 0; r < n; r++) {                           \
            REAL *zr = Z + r * k, *ar = A + r * k;                   \
            if (A == Z) {                                            \
                HG_IVDEP                                             \
                for (hg_index j = 0; j < k; j++) {                   \
                    const REAL z = zr[j] + b[j];                     \
                    zr[j] = (EXPR);                                  \
                }                                                    \
            } else {                                                 \
                HG_IVDEP                                             \
                for (hg_index j = 0; j < k; j++) {                   \
                    const REAL z = zr[j] + b[j];                     \
                    zr[j] = z;                                       \
                    ar[j] = (EXPR);                                  \
                }                                                    \
            }                                                        \
        }                                                            \
    } while (0)

HG_CLONES void F(hg_bias_activation)(REAL *Z, const REAL *b, REAL *A, REAL *Phi, hg_index n, hg_index k, int kind,
                           double param)
{
    const REAL s = (REAL)param;
    switch (kind) {
    case HG_IDENTITY:
        HG_FORWARD_ROWS(z);
        break;
    case HG_SIGMOID:
        HG_FORWARD_ROWS(F(sigmoid)(z));
        break;
    case HG_TANH:
        HG_FORWARD_ROWS(TANH(z));
        break;
    case HG_RELU:
        HG_FORWARD_ROWS(F(np_max)(z, 0));
        break;
    case HG_LEAKY_RELU:
        if (s > 1) {
            HG_FORWARD_ROWS(F(leaky_relu)(z, s, 1));
        } else {
            HG_FORWARD_ROWS(F(leaky_relu)(z, s, 0));
        }
        break;
    case HG_ELU:
        HG_FORWARD_ROWS(F(elu)(z, s));
        break;
    case HG_SOFTPLUS:
        HG_FORWARD_ROWS(F(softplus)(z));
        break;
    case HG_GELU:
        /* Φ = ½ erfc(z · (−√½)), A = z Φ; A is never Z (GELU keeps Z for its backward). */
        for (hg_index r = 0; r < n; r++) {
            REAL *zr = Z + r * k, *ar = A + r * k, *pr = Phi + r * k;
            for (hg_index j = 0; j < k; j++) {
                const REAL z = zr[j] + b[j];
                const REAL phi = ERFC(z * (REAL)-HG_SQRT_HALF) * (REAL)0.5;
                zr[j] = z;
                pr[j] = phi;
                ar[j] = z * phi;
            }
        }
        break;
    }
}

/* Backward: out = G ⊙ act′, read off S (the activation's output A, or Z for
 * GELU) as the activation's backward reads it, in the order of its NumPy
 * lines; then db = Σ_rows out, the bias gradient of the Dense layer before
 * it, summed as np.sum(out, axis=0) sums: row after row (the first row
 * copied, each later one added), except that a single column is one
 * contiguous run, which NumPy sums pairwise.  out may be G or S.  EXPR reads
 * g, a (the entry of S) and phi (GELU's Φ; PHI names its row, or 0). */
#define HG_BACKWARD_ROW(EXPR, PHI, ACCUMULATE)                            \
    do {                                                                  \
        const REAL *gr = G + r * k, *sr = S + r * k, *pr = (PHI);         \
        REAL *outr = out + r * k;                                         \
        (void)pr;                                                         \
        HG_IVDEP                                                          \
        for (hg_index j = 0; j < k; j++) {                                \
            const REAL g = gr[j], a = sr[j], phi = (PHI) ? pr[j] : 0;     \
            (void)a, (void)phi;                                           \
            const REAL d = (EXPR);                                        \
            outr[j] = d;                                                  \
            db[j] = ACCUMULATE;                                           \
        }                                                                 \
    } while (0)

#define HG_BACKWARD_ROWS(EXPR, PHI)                                       \
    do {                                                                  \
        if (k == 1) {                                                     \
            for (hg_index r = 0; r < n; r++) {                            \
                const REAL g = G[r], a = S[r], phi = (PHI) ? Phi[r] : 0;  \
                (void)a, (void)phi;                                       \
                out[r] = (EXPR);                                          \
            }                                                             \
            db[0] = n ? F(pairwise_sum)(out, n) : 0;                      \
            break;                                                        \
        }                                                                 \
        for (hg_index j = 0; j < k; j++) {                                \
            db[j] = 0;                                                    \
        }                                                                 \
        for (hg_index r = 0; r < n; r++) {                                \
            if (r == 0) {                                                 \
                HG_BACKWARD_ROW(EXPR, (PHI) ? Phi : NULL, d);             \
            } else {                                                      \
                HG_BACKWARD_ROW(EXPR, (PHI) ? Phi + r * k : NULL, db[j] + d); \
            }                                                             \
        }                                                                 \
    } while (0)

/* GELU: (z Φ)′ = Φ + z φ(z), φ(z) = e^{−z²/2}/√(2π): ((e^{(z z)(−½)} /√(2π)) z + Φ) g. */
static inline REAL F(gelu_gradient)(REAL z, REAL phi, REAL g)
{
    const REAL density = EXP((z * z) * (REAL)-0.5) * (REAL)HG_INV_SQRT_2PI;
    return (density * z + phi) * g;
}

HG_CLONES void F(hg_activation_gradient_bias)(const REAL *G, const REAL *S, const REAL *Phi, REAL *out, REAL *db,
                                    hg_index n, hg_index k, int kind, double param)
{
    const REAL s = (REAL)param;
    switch (kind) {
    case HG_IDENTITY:                   /* G */
        HG_BACKWARD_ROWS(g, 0);
        break;
    case HG_SIGMOID:                    /* ((1 − A) A) G */
        HG_BACKWARD_ROWS((((REAL)1 - a) * a) * g, 0);
        break;
    case HG_TANH:                       /* (1 − A²) G */
        HG_BACKWARD_ROWS(((REAL)1 - a * a) * g, 0);
        break;
    case HG_RELU:                       /* I(A > 0) G, the indicator as 0 or 1 times G */
        HG_BACKWARD_ROWS((a > 0 ? (REAL)1 : (REAL)0) * g, 0);
        break;
    case HG_LEAKY_RELU:                 /* G where A > 0, else G s */
        HG_BACKWARD_ROWS(a > 0 ? g : g * s, 0);
        break;
    case HG_ELU:                        /* (1 where A > 0, else A + α) G */
        HG_BACKWARD_ROWS((a > 0 ? (REAL)1 : a + s) * g, 0);
        break;
    case HG_SOFTPLUS:                   /* σ(z) G = (−expm1(−A)) G */
        HG_BACKWARD_ROWS((-EXPM1(-a)) * g, 0);
        break;
    case HG_GELU:                       /* S is Z */
        HG_BACKWARD_ROWS(F(gelu_gradient)(a, phi, g), 1);
        break;
    }
}

/* ---- softmax cross-entropy on integer labels (handgrad.nn.losses.SoftmaxCrossEntropy) ----
 *
 * Per row r with label t: the max shift m = max z; e = exp(z − m); s = Σ e
 * (pairwise, as NumPy's row sum); log p_t = (z_t − m) − log s; P = e / s.
 * G = (P − Y) κ with κ = (REAL)scale (1/n for "mean", 1 for "sum"): the
 * NumPy code's P, then −1 at the label, then ×κ.  The value is
 * −Σ_r log p_t, the float terms summed in double as NumPy's
 * sum(dtype=float64) sums them, times scale.  G may be Z itself.  Labels
 * are in range (module.c checks them).  *correct (unless NULL) receives the
 * number of rows whose largest logit is at the label, as the training
 * loop's accuracy counts them (argmax(Z, axis=1) == y; see F(argmax)).
 */

/* np.argmax of one row: the first largest entry, or the first NaN (NumPy's
 * loop: a NaN is maximal and ends the search). */
static inline hg_index F(argmax)(const REAL *z, hg_index k)
{
    REAL top = z[0];
    hg_index best = 0;
    if (top != top) {
        return 0;
    }
    for (hg_index j = 1; j < k; j++) {
        if (!(z[j] <= top)) {
            top = z[j];
            best = j;
            if (top != top) {
                break;
            }
        }
    }
    return best;
}

double F(hg_softmax_cross_entropy)(const REAL *Z, const int64_t *y, REAL *G, hg_index n, hg_index k,
                                   double scale, hg_index *correct)
{
    const REAL kappa = (REAL)scale;
    double *terms = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    double total = 0;
    hg_index right = 0;
    for (hg_index r = 0; r < n; r++) {
        const REAL *z = Z + r * k;
        REAL *g = G + r * k;
        const int64_t t = y[r];
        REAL m = z[0];
        for (hg_index j = 1; j < k; j++) {
            m = F(np_max)(m, z[j]);
        }
        if (correct) {
            right += F(argmax)(z, k) == t;          /* read before g (maybe z) is written */
        }
        const REAL shifted_t = z[t] - m;        /* read before g (maybe z) is written */
        for (hg_index j = 0; j < k; j++) {
            g[j] = EXP(z[j] - m);
        }
        const REAL sum = F(pairwise_sum)(g, k);
        const REAL log_p = shifted_t - LOG(sum);
        if (terms) {
            terms[r] = (double)log_p;
        } else {
            total += (double)log_p;             /* out of memory: a plain sum, off by rounding only */
        }
        const REAL p_t = g[t] / sum;
        for (hg_index j = 0; j < k; j++) {
            g[j] = (g[j] / sum) * kappa;
        }
        g[t] = (p_t - (REAL)1) * kappa;
    }
    if (terms) {
        total = hg_sum_float_terms(terms, n, sizeof(REAL) == sizeof(float));
        free(terms);
    }
    if (correct) {
        *correct = right;
    }
    return -total * scale;
}

#undef HG_FORWARD_ROWS
#undef HG_BACKWARD_ROWS
#undef HG_BACKWARD_ROW
#undef HG_IVDEP
#undef F
#undef HG_XCAT
#undef HG_CAT
