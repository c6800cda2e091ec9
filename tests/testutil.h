/* Helpers shared by the cmocka test binaries: float-array comparison with a useful report (Debian's cmocka 1.1.5
 * has no assert_float_equal), seeded random fills, and a central-difference gradient check. */
#ifndef FRCNN_TESTUTIL_H
#define FRCNN_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "frcnn.h"

/* Fails the test (printing the first bad index, both values and the max error) unless, for every i,
 * |a[i] - b[i]| <= atol + rtol * |b[i]|. `what` names the arrays in the report. */
void tu_assert_close(const char *what, const float *a, const float *b, size_t n, double atol, double rtol);
/* Fails unless the two arrays are bit-identical. */
void tu_assert_identical(const char *what, const float *a, const float *b, size_t n);

/* Fails unless got == want and the context holds a non-empty message (containing `needle` when not NULL);
 * then clears the message. The message is printed when the status is wrong. */
void tu_expect_error_msg(frcnn_ctx *ctx, frcnn_status got, frcnn_status want, const char *needle);
void tu_expect_error(frcnn_ctx *ctx, frcnn_status got, frcnn_status want);

/* Fills with uniform values in [lo, hi) from a seeded frcnn_rng. */
void tu_fill_uniform(float *a, size_t n, uint64_t seed, float lo, float hi);

/* A zero-filled tensor, failing the test on error. Free with frcnn_tensor_free. */
frcnn_tensor *tu_tensor(frcnn_ctx *ctx, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3);
/* A context with default parameters, failing the test on error. */
frcnn_ctx *tu_ctx(void);

/* Central-difference gradient check of a scalar function of one float array.
 *   loss(state) evaluates the function in double with the current contents of `param`.
 *   analytic[i] is the claimed derivative with respect to param[i].
 * Each param[i] is moved by +-eps (restored afterwards); the check passes when
 * |numeric - analytic| <= atol + rtol * max(|numeric|, |analytic|) for every i. `what` names the array. */
typedef double (*tu_loss_fn)(void *state);
void tu_gradcheck(const char *what, tu_loss_fn loss, void *state, float *param, const float *analytic, size_t n,
                  float eps, double atol, double rtol);

/* A detector configuration small enough for tests: the small backbone at h x w with anchors of 32..128 px,
 * num_classes 4, the given RPN and fc widths, dropout 0.5, 64 RoIs, proposals 1000/200 (train) and 500/100 (test). */
frcnn_config tu_tiny_config(int h, int w, int rpn_channels, int fc_channels);

/* A fresh directory /tmp/frcnn-<what>-XXXXXX written into dir (cap >= 64), and its recursive removal (files and
 * subdirectories, no symbolic links followed). Both return 0 on success, for use as cmocka group setup/teardown. */
int tu_make_tmpdir(char *dir, size_t cap, const char *what);
int tu_remove_tree(const char *dir);

/* sum_i y[i] * r[i] in double: turns an output into a scalar loss whose gradient with respect to y is r. */
double tu_dot(const float *y, const float *r, size_t n);

#endif /* FRCNN_TESTUTIL_H */
