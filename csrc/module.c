/* handgrad._kernels: the Python face of the compiled kernels.
 *
 * Each function checks what it is given (NumPy arrays, C-contiguous,
 * aligned, native byte order, one float dtype, writable where written,
 * matching shapes, labels and indices in range) and raises TypeError,
 * ValueError or IndexError otherwise, so no call can read or write outside
 * an array.  handgrad._compiled wraps them; it, not this module, decides
 * when they are used.  Long kernels release the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <string.h>

#include "kernels.h"

/* Kernels over at least this many elements run without the GIL.  A short
 * kernel keeps it: another thread waiting for the GIL would take it, and
 * handing it back can take a switch interval (5 ms). */
#define GIL_FREE_SIZE 16384
#define HG_WITHOUT_GIL_IF(big, statement)  \
    do {                                   \
        if (big) {                         \
            Py_BEGIN_ALLOW_THREADS         \
            statement;                     \
            Py_END_ALLOW_THREADS           \
        } else {                           \
            statement;                     \
        }                                  \
    } while (0)

/* ---- argument checks ---- */

/* obj as a C-contiguous, aligned, native-order array of ndim dimensions; with
 * *typenum == -1 it may be float32 or float64 and sets *typenum, otherwise it
 * must be of that type.  NULL (an exception set) otherwise. */
static PyArrayObject *array_arg(PyObject *obj, const char *name, int ndim, int *typenum, int writable)
{
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a NumPy array, got %.100s", name, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_NDIM(a) != ndim) {
        PyErr_Format(PyExc_ValueError, "%s must have %d dimension(s), got %d", name, ndim, PyArray_NDIM(a));
        return NULL;
    }
    if (!PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a) || !PyArray_ISNOTSWAPPED(a)) {
        PyErr_Format(PyExc_ValueError, "%s must be C-contiguous, aligned and in native byte order", name);
        return NULL;
    }
    if (writable && !PyArray_ISWRITEABLE(a)) {
        PyErr_Format(PyExc_ValueError, "%s must be writable", name);
        return NULL;
    }
    const int type = PyArray_TYPE(a);
    if (*typenum == -1) {
        if (type != NPY_FLOAT && type != NPY_DOUBLE) {
            PyErr_Format(PyExc_TypeError, "%s must be float32 or float64", name);
            return NULL;
        }
        *typenum = type;
    } else if (type != *typenum) {
        PyErr_Format(PyExc_TypeError, "%s must have the dtype of the other arrays", name);
        return NULL;
    }
    return a;
}

static int same_shape(PyArrayObject *a, PyArrayObject *b, const char *name)
{
    if (!PyArray_SAMESHAPE(a, b)) {
        PyErr_Format(PyExc_ValueError, "%s must have the shape of the first array", name);
        return 0;
    }
    return 1;
}

/* Whether b's memory overlaps a's without being the same array: then an
 * elementwise kernel would read entries it has already written. */
static int overlap_problem(PyArrayObject *a, PyArrayObject *b, const char *name, const char *other)
{
    const char *a0 = PyArray_DATA(a), *b0 = PyArray_DATA(b);
    const char *a1 = a0 + PyArray_NBYTES(a), *b1 = b0 + PyArray_NBYTES(b);
    if (a0 < b1 && b0 < a1 && !(a0 == b0 && a1 == b1)) {
        PyErr_Format(PyExc_ValueError, "%s must be %s itself or not overlap it", name, other);
        return 1;
    }
    return 0;
}

static int check_nargs(Py_ssize_t nargs, Py_ssize_t expected, const char *function)
{
    if (nargs != expected) {
        PyErr_Format(PyExc_TypeError, "%s takes %zd arguments, got %zd", function, expected, nargs);
        return 0;
    }
    return 1;
}

/* Each double argument, in order; -1 with an exception set if one is not a number. */
static int doubles(PyObject *const *args, Py_ssize_t count, double *out)
{
    for (Py_ssize_t i = 0; i < count; i++) {
        out[i] = PyFloat_AsDouble(args[i]);
        if (out[i] == -1.0 && PyErr_Occurred()) {
            return -1;
        }
    }
    return 0;
}

static int activation_kind(PyObject *obj, int *kind)
{
    const long value = PyLong_AsLong(obj);
    if (value == -1 && PyErr_Occurred()) {
        return 0;
    }
    if (value < 0 || value >= HG_N_ACTIVATIONS) {
        PyErr_Format(PyExc_ValueError, "unknown activation kind %ld", value);
        return 0;
    }
    *kind = (int)value;
    return 1;
}

/* ---- optimizer updates ---- */

static int update_threads(PyObject *obj, int *threads)
{
    const long value = PyLong_AsLong(obj);
    if (value == -1 && PyErr_Occurred()) {
        return 0;
    }
    *threads = value >= 2 ? 2 : 1;
    return 1;
}

static int decayed_count(PyObject *obj, hg_index size, hg_index *n_decayed)
{
    const Py_ssize_t value = PyLong_AsSsize_t(obj);
    if (value == -1 && PyErr_Occurred()) {
        return 0;
    }
    if (value < 0 || value > size) {
        PyErr_Format(PyExc_ValueError, "n_decayed must lie in 0..%zd, got %zd", (Py_ssize_t)size, value);
        return 0;
    }
    *n_decayed = value;
    return 1;
}

static void run_update(hg_range_fn fn, const hg_update_args *args, hg_index n, int threads)
{
    HG_WITHOUT_GIL_IF(n >= GIL_FREE_SIZE, hg_parallel_for(fn, args, n, threads));
}

PyDoc_STRVAR(adam_doc,
"adam(p, g, m, v, n_decayed, l2, b1, b2, one_minus_b1, one_minus_b2, step_size, eps_hat, threads)\n\n"
"g[:n_decayed] += l2 p, then Adam's update of p, m and v in place (handgrad.Adam.step), in one pass.\n"
"Vectors of one float dtype and length; the scalars are rounded to it. threads: 1 or 2.");

static PyObject *py_adam(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    int type = -1, threads;
    hg_update_args a = {0};
    double s[7];
    if (!check_nargs(nargs, 13, "adam")) {
        return NULL;
    }
    PyArrayObject *p = array_arg(args[0], "p", 1, &type, 1);
    PyArrayObject *g = p ? array_arg(args[1], "g", 1, &type, 1) : NULL;
    PyArrayObject *m = g ? array_arg(args[2], "m", 1, &type, 1) : NULL;
    PyArrayObject *v = m ? array_arg(args[3], "v", 1, &type, 1) : NULL;
    if (!v || !same_shape(p, g, "g") || !same_shape(p, m, "m") || !same_shape(p, v, "v") ||
        overlap_problem(p, g, "g", "p") || overlap_problem(p, m, "m", "p") || overlap_problem(p, v, "v", "p") ||
        overlap_problem(g, m, "m", "g") || overlap_problem(g, v, "v", "g") || overlap_problem(m, v, "v", "m")) {
        return NULL;
    }
    const hg_index n = PyArray_SIZE(p);
    if (!decayed_count(args[4], n, &a.n_decayed) || doubles(args + 5, 7, s) < 0 ||
        !update_threads(args[12], &threads)) {
        return NULL;
    }
    a.p = PyArray_DATA(p);
    a.g = PyArray_DATA(g);
    a.m = PyArray_DATA(m);
    a.v = PyArray_DATA(v);
    a.l2 = s[0];
    a.a = s[1];
    a.b = s[2];
    a.c = s[3];
    a.d = s[4];
    a.e = s[5];
    a.f = s[6];
    run_update(type == NPY_FLOAT ? hg_adam_f32 : hg_adam_f64, &a, n, threads);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(sgd_doc,
"sgd(p, g, velocity, n_decayed, l2, lr, momentum, nesterov, threads)\n\n"
"g[:n_decayed] += l2 p, then SGD's update in place (handgrad.SGD.step), in one pass; velocity None:\n"
"plain SGD.  Vectors of one float dtype and length; the scalars are rounded to it. threads: 1 or 2.");

static PyObject *py_sgd(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    int type = -1, threads;
    hg_update_args a = {0};
    double s[3];
    if (!check_nargs(nargs, 9, "sgd")) {
        return NULL;
    }
    PyArrayObject *p = array_arg(args[0], "p", 1, &type, 1);
    PyArrayObject *g = p ? array_arg(args[1], "g", 1, &type, 1) : NULL;
    if (!g || !same_shape(p, g, "g") || overlap_problem(p, g, "g", "p")) {
        return NULL;
    }
    PyArrayObject *velocity = NULL;
    if (args[2] != Py_None) {
        velocity = array_arg(args[2], "velocity", 1, &type, 1);
        if (!velocity || !same_shape(p, velocity, "velocity") || overlap_problem(p, velocity, "velocity", "p") ||
            overlap_problem(g, velocity, "velocity", "g")) {
            return NULL;
        }
    }
    const hg_index n = PyArray_SIZE(p);
    if (!decayed_count(args[3], n, &a.n_decayed) || doubles(args + 4, 3, s) < 0) {
        return NULL;
    }
    const int nesterov = PyObject_IsTrue(args[7]);
    if (nesterov < 0 || !update_threads(args[8], &threads)) {
        return NULL;
    }
    a.p = PyArray_DATA(p);
    a.g = PyArray_DATA(g);
    a.m = velocity ? PyArray_DATA(velocity) : NULL;
    a.l2 = s[0];
    a.a = s[1];
    a.b = s[2];
    a.nesterov = nesterov;
    run_update(type == NPY_FLOAT ? hg_sgd_f32 : hg_sgd_f64, &a, n, threads);
    Py_RETURN_NONE;
}

/* ---- activations ---- */

PyDoc_STRVAR(bias_activation_doc,
"bias_activation(Z, b, A, kind, param, Phi)\n\n"
"Z += b (row by row), then A = act(Z): the Dense layer's bias add and the activation's forward.\n"
"A may be Z (in place); otherwise Z keeps Z + b.  kind numbers the activation\n"
"(handgrad._compiled.ACTIVATIONS); param is LeakyReLU's slope or ELU's alpha; Phi receives\n"
"Φ(Z) for GELU (None for the others).  Z, A, Phi: (n, k); b: (k,).");

static PyObject *py_bias_activation(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    int type = -1, kind;
    double param;
    if (!check_nargs(nargs, 6, "bias_activation")) {
        return NULL;
    }
    PyArrayObject *Z = array_arg(args[0], "Z", 2, &type, 1);
    PyArrayObject *b = Z ? array_arg(args[1], "b", 1, &type, 0) : NULL;
    PyArrayObject *A = b ? array_arg(args[2], "A", 2, &type, 1) : NULL;
    if (!A || !same_shape(Z, A, "A") || !activation_kind(args[3], &kind) || doubles(args + 4, 1, &param) < 0) {
        return NULL;
    }
    const hg_index n = PyArray_DIM(Z, 0), k = PyArray_DIM(Z, 1);
    if (PyArray_DIM(b, 0) != k) {
        PyErr_Format(PyExc_ValueError, "b must have %zd entries, one per column of Z", (Py_ssize_t)k);
        return NULL;
    }
    PyArrayObject *Phi = NULL;
    if (kind == HG_GELU) {
        Phi = args[5] == Py_None ? NULL : array_arg(args[5], "Phi", 2, &type, 1);
        if (!Phi || !same_shape(Z, Phi, "Phi")) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ValueError, "GELU needs Phi, an array of Z's shape, for Φ(Z)");
            }
            return NULL;
        }
        if (PyArray_DATA(A) == PyArray_DATA(Z)) {
            PyErr_SetString(PyExc_ValueError, "GELU keeps Z for its backward: A must not be Z");
            return NULL;
        }
    }
    if (overlap_problem(Z, A, "A", "Z") || overlap_problem(Z, b, "b", "Z") || overlap_problem(A, b, "b", "A") ||
        (Phi && (overlap_problem(Z, Phi, "Phi", "Z") || overlap_problem(A, Phi, "Phi", "A") ||
                 overlap_problem(b, Phi, "Phi", "b")))) {
        return NULL;
    }
    void *z = PyArray_DATA(Z), *a = PyArray_DATA(A), *phi = Phi ? PyArray_DATA(Phi) : NULL;
    const void *bias = PyArray_DATA(b);
    if (type == NPY_FLOAT) {
        HG_WITHOUT_GIL_IF(n * k >= GIL_FREE_SIZE, hg_bias_activation_f32(z, bias, a, phi, n, k, kind, param));
    } else {
        HG_WITHOUT_GIL_IF(n * k >= GIL_FREE_SIZE, hg_bias_activation_f64(z, bias, a, phi, n, k, kind, param));
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(activation_gradient_bias_doc,
"activation_gradient_bias(G, S, out, db, kind, param, Phi)\n\n"
"out = G ⊙ act′ (the activation's backward, read off S: its output A, or Z for GELU), then\n"
"db = Σ_rows out (the bias gradient of the Dense layer before it).  out may be G.\n"
"Phi: GELU's Φ(Z) from the forward pass (None for the others).  G, S, out, Phi: (n, k); db: (k,).");

static PyObject *py_activation_gradient_bias(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    int type = -1, kind;
    double param;
    if (!check_nargs(nargs, 7, "activation_gradient_bias")) {
        return NULL;
    }
    PyArrayObject *G = array_arg(args[0], "G", 2, &type, 0);
    PyArrayObject *S = G ? array_arg(args[1], "S", 2, &type, 0) : NULL;
    PyArrayObject *out = S ? array_arg(args[2], "out", 2, &type, 1) : NULL;
    PyArrayObject *db = out ? array_arg(args[3], "db", 1, &type, 1) : NULL;
    if (!db || !same_shape(G, S, "S") || !same_shape(G, out, "out") || !activation_kind(args[4], &kind) ||
        doubles(args + 5, 1, &param) < 0) {
        return NULL;
    }
    const hg_index n = PyArray_DIM(G, 0), k = PyArray_DIM(G, 1);
    if (PyArray_DIM(db, 0) != k) {
        PyErr_Format(PyExc_ValueError, "db must have %zd entries, one per column of G", (Py_ssize_t)k);
        return NULL;
    }
    PyArrayObject *Phi = NULL;
    if (kind == HG_GELU) {
        Phi = args[6] == Py_None ? NULL : array_arg(args[6], "Phi", 2, &type, 0);
        if (!Phi || !same_shape(G, Phi, "Phi")) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ValueError, "GELU needs Phi, its forward pass's Φ(Z) of G's shape");
            }
            return NULL;
        }
    }
    if (overlap_problem(G, out, "out", "G") || overlap_problem(S, out, "out", "S") ||
        (Phi && overlap_problem(Phi, out, "out", "Phi")) || overlap_problem(db, out, "db", "out") ||
        overlap_problem(db, G, "db", "G") || overlap_problem(db, S, "db", "S")) {
        return NULL;
    }
    const void *g = PyArray_DATA(G), *s = PyArray_DATA(S), *phi = Phi ? PyArray_DATA(Phi) : NULL;
    void *o = PyArray_DATA(out), *d = PyArray_DATA(db);
    const int big = n * k >= GIL_FREE_SIZE;
    if (type == NPY_FLOAT) {
        HG_WITHOUT_GIL_IF(big, hg_activation_gradient_bias_f32(g, s, phi, o, d, n, k, kind, param));
    } else {
        HG_WITHOUT_GIL_IF(big, hg_activation_gradient_bias_f64(g, s, phi, o, d, n, k, kind, param));
    }
    Py_RETURN_NONE;
}

/* ---- losses ---- */

/* labels as an int64 vector of n entries, each in 0..k-1. */
static const int64_t *labels_arg(PyObject *obj, hg_index n, hg_index k)
{
    if (!PyArray_Check(obj) || PyArray_TYPE((PyArrayObject *)obj) != NPY_INT64 ||
        PyArray_NDIM((PyArrayObject *)obj) != 1 || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)obj) ||
        !PyArray_ISALIGNED((PyArrayObject *)obj) || !PyArray_ISNOTSWAPPED((PyArrayObject *)obj)) {
        PyErr_SetString(PyExc_TypeError, "y must be a contiguous int64 vector of labels");
        return NULL;
    }
    PyArrayObject *y = (PyArrayObject *)obj;
    if (PyArray_DIM(y, 0) != n) {
        PyErr_Format(PyExc_ValueError, "y must have one label per row of Z (%zd), got %zd", (Py_ssize_t)n,
                     (Py_ssize_t)PyArray_DIM(y, 0));
        return NULL;
    }
    const int64_t *labels = PyArray_DATA(y);
    for (hg_index r = 0; r < n; r++) {
        if (labels[r] < 0 || labels[r] >= k) {
            PyErr_Format(PyExc_ValueError, "label y[%zd] = %lld is outside 0..%zd", (Py_ssize_t)r,
                         (long long)labels[r], (Py_ssize_t)(k - 1));
            return NULL;
        }
    }
    return labels;
}

PyDoc_STRVAR(softmax_cross_entropy_doc,
"softmax_cross_entropy(Z, y, G, scale[, count]) -> float, or (float, int) with count true\n\n"
"The softmax cross-entropy of logits Z (n, k) with integer labels y (n,) int64, times scale, and\n"
"its gradient G = (softmax(Z) − Y) scale (handgrad.SoftmaxCrossEntropy forward and backward).\n"
"G may be Z.  scale: 1/n for the mean, 1 for the sum.  n ≥ 1 and k ≥ 1.  With count true, also\n"
"the number of rows whose np.argmax is the label (the training loop's accuracy).");

static PyObject *py_softmax_cross_entropy(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    int type = -1;
    double scale;
    if (nargs != 5 && !check_nargs(nargs, 4, "softmax_cross_entropy")) {
        return NULL;
    }
    const int count = nargs == 5 ? PyObject_IsTrue(args[4]) : 0;
    if (count < 0) {
        return NULL;
    }
    PyArrayObject *Z = array_arg(args[0], "Z", 2, &type, 0);
    PyArrayObject *G = Z ? array_arg(args[2], "G", 2, &type, 1) : NULL;
    if (!G || !same_shape(Z, G, "G") || doubles(args + 3, 1, &scale) < 0) {
        return NULL;
    }
    const hg_index n = PyArray_DIM(Z, 0), k = PyArray_DIM(Z, 1);
    if (k < 1) {
        PyErr_SetString(PyExc_ValueError, "Z must have at least one column");
        return NULL;
    }
    const int64_t *y = labels_arg(args[1], n, k);
    if (!y) {
        return NULL;
    }
    if (overlap_problem(Z, G, "G", "Z")) {
        return NULL;
    }
    const void *z = PyArray_DATA(Z);
    void *g = PyArray_DATA(G);
    double value;
    hg_index correct = 0, *right = count ? &correct : NULL;
    if (type == NPY_FLOAT) {
        HG_WITHOUT_GIL_IF(n * k >= GIL_FREE_SIZE,
                          value = hg_softmax_cross_entropy_f32(z, y, g, n, k, scale, right));
    } else {
        HG_WITHOUT_GIL_IF(n * k >= GIL_FREE_SIZE,
                          value = hg_softmax_cross_entropy_f64(z, y, g, n, k, scale, right));
    }
    if (count) {
        return Py_BuildValue("(dn)", value, (Py_ssize_t)correct);
    }
    return PyFloat_FromDouble(value);
}

/* ---- the minibatch gather ---- */

PyDoc_STRVAR(take_rows_doc,
"take_rows(src, idx, out)\n\n"
"out[i] = src[idx[i]] for each i: the rows of a C-contiguous array (1-D: its entries) by an\n"
"int64 index vector, into a C-contiguous array of the same dtype and row shape.\n"
"Every index must lie in 0..len(src)-1 (IndexError otherwise).");

static PyObject *py_take_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (!check_nargs(nargs, 3, "take_rows")) {
        return NULL;
    }
    PyObject *src_obj = args[0], *idx_obj = args[1], *out_obj = args[2];
    if (!PyArray_Check(src_obj) || !PyArray_Check(idx_obj) || !PyArray_Check(out_obj)) {
        PyErr_SetString(PyExc_TypeError, "take_rows takes three NumPy arrays");
        return NULL;
    }
    PyArrayObject *src = (PyArrayObject *)src_obj, *idx = (PyArrayObject *)idx_obj, *out = (PyArrayObject *)out_obj;
    const int ndim = PyArray_NDIM(src);
    if (ndim < 1 || PyArray_NDIM(out) != ndim || !PyArray_IS_C_CONTIGUOUS(src) || !PyArray_IS_C_CONTIGUOUS(out) ||
        !PyArray_EquivTypes(PyArray_DESCR(src), PyArray_DESCR(out)) || PyArray_DESCR(src)->type_num == NPY_OBJECT ||
        !PyArray_ISWRITEABLE(out)) {
        PyErr_SetString(PyExc_ValueError, "src and out must be C-contiguous arrays of one dtype, out writable");
        return NULL;
    }
    for (int d = 1; d < ndim; d++) {
        if (PyArray_DIM(src, d) != PyArray_DIM(out, d)) {
            PyErr_SetString(PyExc_ValueError, "out must have the row shape of src");
            return NULL;
        }
    }
    if (PyArray_TYPE(idx) != NPY_INT64 || PyArray_NDIM(idx) != 1 || !PyArray_IS_C_CONTIGUOUS(idx) ||
        !PyArray_ISALIGNED(idx) || !PyArray_ISNOTSWAPPED(idx)) {
        PyErr_SetString(PyExc_TypeError, "idx must be a contiguous int64 vector");
        return NULL;
    }
    const hg_index count = PyArray_DIM(idx, 0), rows = PyArray_DIM(src, 0);
    if (PyArray_DIM(out, 0) != count) {
        PyErr_SetString(PyExc_ValueError, "out must have one row per index");
        return NULL;
    }
    const int64_t *index = PyArray_DATA(idx);
    for (hg_index i = 0; i < count; i++) {
        if (index[i] < 0 || index[i] >= rows) {
            PyErr_Format(PyExc_IndexError, "index %lld is out of bounds for %zd rows", (long long)index[i],
                         (Py_ssize_t)rows);
            return NULL;
        }
    }
    const size_t row_bytes = (size_t)(rows ? PyArray_NBYTES(src) / rows : 0);
    const char *from = PyArray_DATA(src);
    char *to = PyArray_DATA(out);
    for (hg_index i = 0; i < count; i++) {
        memcpy(to + (size_t)i * row_bytes, from + (size_t)index[i] * row_bytes, row_bytes);
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(threads_available_doc,
"threads_available() -> bool\n\nWhether this build can run the updates on two threads (POSIX threads).");

static PyObject *py_threads_available(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyBool_FromLong(hg_threads_available());
}

static PyMethodDef methods[] = {
    {"adam", (PyCFunction)(void (*)(void))py_adam, METH_FASTCALL, adam_doc},
    {"sgd", (PyCFunction)(void (*)(void))py_sgd, METH_FASTCALL, sgd_doc},
    {"bias_activation", (PyCFunction)(void (*)(void))py_bias_activation, METH_FASTCALL, bias_activation_doc},
    {"activation_gradient_bias", (PyCFunction)(void (*)(void))py_activation_gradient_bias, METH_FASTCALL,
     activation_gradient_bias_doc},
    {"softmax_cross_entropy", (PyCFunction)(void (*)(void))py_softmax_cross_entropy, METH_FASTCALL,
     softmax_cross_entropy_doc},
    {"take_rows", (PyCFunction)(void (*)(void))py_take_rows, METH_FASTCALL, take_rows_doc},
    {"threads_available", py_threads_available, METH_NOARGS, threads_available_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "handgrad._kernels",
    "handgrad's compiled kernels (C): see handgrad._compiled, which wraps them.", -1, methods,
};

#ifndef HANDGRAD_SOURCES
#define HANDGRAD_SOURCES "unknown"
#endif

PyMODINIT_FUNC PyInit__kernels(void)
{
    import_array();
    PyObject *m = PyModule_Create(&module);
    /* the digest of csrc/ this module was built from (setup.py): handgrad._compiled refuses a stale build */
    if (m != NULL && PyModule_AddStringConstant(m, "SOURCES", HANDGRAD_SOURCES) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
