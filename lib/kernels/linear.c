/* Fully connected layer, forward and backward: y = x w^T + b as sgemm on row-major data. The products go through
 * frcnn__sgemm, which keeps OpenBLAS's results independent of its thread count (see gemm.h). */
#include "gemm.h"
#include "internal.h"

#include <limits.h>
#include <stdio.h>

/* Columns of db summed per pass of the bias gradient (a stack buffer of doubles). */
#define DB_CHUNK 256

/* The sizes of one call: n rows, `in` input features (x's dimensions after the first, multiplied), `out`
 * output features. All fit in the int that the BLAS interface takes. */
typedef struct linear_dims {
    int n, in, out;
} linear_dims;

/* Checks x (n, ...) against w (out, in); fills *d. `op` starts the messages. */
static frcnn_status check_x_w(frcnn_ctx *ctx, const char *op, const frcnn_tensor *x, const frcnn_tensor *w,
                              linear_dims *d)
{
    char name[64];
    snprintf(name, sizeof name, "%s: x", op);
    frcnn_status st = frcnn__check_tensor(ctx, x, name, 0);
    if (st == FRCNN_OK) {
        snprintf(name, sizeof name, "%s: w", op);
        st = frcnn__check_tensor(ctx, w, name, 2);
    }
    if (st != FRCNN_OK)
        return st;
    char sx[96], sw[96];
    frcnn__shape_str(x, sx, sizeof sx);
    frcnn__shape_str(w, sw, sizeof sw);
    if (x->ndim < 2)
        return frcnn__error(ctx, FRCNN_ERR_SHAPE, "%s: x has shape %s, expected 2 to 4 dimensions (n, in, ...)", op,
                            sx);
    size_t in = x->numel / (size_t)x->dims[0];
    if (in != (size_t)w->dims[1])
        return frcnn__error(ctx, FRCNN_ERR_SHAPE, "%s: w %s does not match x %s: in-features %zu vs %lld", op, sw,
                            sx, in, (long long)w->dims[1]);
    /* Tensor dimensions are at most INT32_MAX; only the flattened `in` can exceed the BLAS int. */
    if (in > INT_MAX)
        return frcnn__error(ctx, FRCNN_ERR_OVERFLOW, "%s: x %s has %zu in-features, more than the BLAS limit %d", op,
                            sx, in, INT_MAX);
    d->n = (int)x->dims[0];
    d->in = (int)in;
    d->out = (int)w->dims[0];
    return FRCNN_OK;
}

/* x (n, in) or (n, ...) with the trailing dimensions multiplying to in; w (out, in); b (out) or NULL;
 * y (n, out), overwritten. y must not overlap x, w or b. */
frcnn_status frcnn_linear_forward(frcnn_ctx *ctx, const frcnn_tensor *x, const frcnn_tensor *w,
                                  const frcnn_tensor *b, frcnn_tensor *y)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    linear_dims d;
    frcnn_status st = check_x_w(ctx, "linear", x, w, &d);
    if (st == FRCNN_OK)
        st = frcnn__check_tensor(ctx, y, "linear: y", 2);
    if (st != FRCNN_OK)
        return st;
    if (y->dims[0] != d.n || y->dims[1] != d.out) {
        char sy[96], sx[96], sw[96];
        frcnn__shape_str(y, sy, sizeof sy);
        frcnn__shape_str(x, sx, sizeof sx);
        frcnn__shape_str(w, sw, sizeof sw);
        return frcnn__error(ctx, FRCNN_ERR_SHAPE, "linear: y %s does not match x %s and w %s: expected (%d, %d)", sy,
                            sx, sw, d.n, d.out);
    }
    if (b && (b->ndim != 1 || b->dims[0] != d.out)) {
        char sb[96], sw[96];
        frcnn__shape_str(b, sb, sizeof sb);
        frcnn__shape_str(w, sw, sizeof sw);
        return frcnn__error(ctx, FRCNN_ERR_SHAPE, "linear: b %s does not match w %s: expected (%d)", sb, sw, d.out);
    }
    /* y (n, out) = x (n, in) * w (out, in)^T */
    frcnn__sgemm(ctx, false, true, d.n, d.out, d.in, 1.0f, x->data, d.in, w->data, d.in, 0.0f, y->data, d.out);
    if (b) {
        const float *bd = b->data;
        for (int i = 0; i < d.n; i++) {
            float *row = y->data + (size_t)i * (size_t)d.out;
            for (int j = 0; j < d.out; j++)
                row[j] += bd[j];
        }
    }
    return FRCNN_OK;
}

/* Checks that an optional gradient g has exactly the shape of its tensor t. */
static frcnn_status check_grad(frcnn_ctx *ctx, const frcnn_tensor *g, const char *g_name, const frcnn_tensor *t,
                               const char *t_name)
{
    return g ? frcnn__check_same_shape(ctx, g, g_name, t, t_name) : FRCNN_OK;
}

/* x and w as in forward; dy (n, out) required. Accumulates (+=), each skipped when NULL:
 *   dx (the shape of x) += dy w      dw (out, in) += dy^T x      db (out) += column sums of dy.
 * The column sums are taken in double over the rows in order, then added once, so they do not depend on the
 * BLAS or on the thread count. Gradients must not overlap x, w, dy or each other. */
frcnn_status frcnn_linear_backward(frcnn_ctx *ctx, const frcnn_tensor *x, const frcnn_tensor *w,
                                   const frcnn_tensor *dy, frcnn_tensor *dx, frcnn_tensor *dw, frcnn_tensor *db)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    linear_dims d;
    frcnn_status st = check_x_w(ctx, "linear backward", x, w, &d);
    if (st == FRCNN_OK)
        st = frcnn__check_tensor(ctx, dy, "linear backward: dy", 2);
    if (st != FRCNN_OK)
        return st;
    if (dy->dims[0] != d.n || dy->dims[1] != d.out) {
        char sdy[96], sx[96], sw[96];
        frcnn__shape_str(dy, sdy, sizeof sdy);
        frcnn__shape_str(x, sx, sizeof sx);
        frcnn__shape_str(w, sw, sizeof sw);
        return frcnn__error(ctx, FRCNN_ERR_SHAPE,
                            "linear backward: dy %s does not match x %s and w %s: expected (%d, %d)", sdy, sx, sw,
                            d.n, d.out);
    }
    st = check_grad(ctx, dx, "linear backward: dx", x, "x");
    if (st == FRCNN_OK)
        st = check_grad(ctx, dw, "linear backward: dw", w, "w");
    if (st == FRCNN_OK && db && (db->ndim != 1 || db->dims[0] != d.out)) {
        char sdb[96], sw[96];
        frcnn__shape_str(db, sdb, sizeof sdb);
        frcnn__shape_str(w, sw, sizeof sw);
        st = frcnn__error(ctx, FRCNN_ERR_SHAPE, "linear backward: db %s does not match w %s: expected (%d)", sdb, sw,
                          d.out);
    }
    if (st != FRCNN_OK)
        return st;

    /* dx (n, in) += dy (n, out) * w (out, in) */
    if (dx)
        frcnn__sgemm(ctx, false, false, d.n, d.in, d.out, 1.0f, dy->data, d.out, w->data, d.in, 1.0f, dx->data, d.in);
    /* dw (out, in) += dy (n, out)^T * x (n, in) */
    if (dw)
        frcnn__sgemm(ctx, true, false, d.out, d.in, d.n, 1.0f, dy->data, d.out, x->data, d.in, 1.0f, dw->data, d.in);
    if (db) {
        double acc[DB_CHUNK];
        for (int j0 = 0; j0 < d.out; j0 += DB_CHUNK) {
            int m = d.out - j0 < DB_CHUNK ? d.out - j0 : DB_CHUNK;
            for (int j = 0; j < m; j++)
                acc[j] = 0.0;
            for (int i = 0; i < d.n; i++) {
                const float *row = dy->data + (size_t)i * (size_t)d.out + (size_t)j0;
                for (int j = 0; j < m; j++)
                    acc[j] += (double)row[j];
            }
            for (int j = 0; j < m; j++)
                db->data[j0 + j] += (float)acc[j];
        }
    }
    return FRCNN_OK;
}
