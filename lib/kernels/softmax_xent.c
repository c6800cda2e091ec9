/* Softmax cross-entropy over the last dimension of (n, k) logits with an ignore label, forward and backward
 * (Caffe's SoftmaxWithLoss with normalize: true, as py-faster-rcnn's RPN and head use it). */
#include "internal.h"

#include <math.h>

/* Checks labels[0..n): each in [0, k) or equal to ignore_label. Returns the number of non-ignored rows. */
static frcnn_status check_labels(frcnn_ctx *ctx, const int32_t *labels, int64_t n, int64_t k, int32_t ignore_label,
                                 size_t *count)
{
    size_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        if (labels[i] == ignore_label)
            continue;
        if (labels[i] < 0 || labels[i] >= k)
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                                "softmax_xent: labels[%lld] is %ld, expected [0, %lld) or ignore_label %ld",
                                (long long)i, (long)labels[i], (long long)k, (long)ignore_label);
        m++;
    }
    *count = m;
    return FRCNN_OK;
}

/* logits (n, k), labels[n], prob (n, k). Overwrites prob with the row-wise softmax (every row, ignored ones
 * too) and *loss with the mean over non-ignored rows of -log prob[label], or 0 when all rows are ignored.
 * No pointer may be NULL. The softmax subtracts the row maximum; each row's loss is computed in log-sum-exp
 * form, log(sum_j exp(l_j - max)) - (l_label - max), in double, so it stays finite where prob[label] underflows
 * to 0. Labels are checked before anything is written. */
frcnn_status frcnn_softmax_xent_forward(frcnn_ctx *ctx, const frcnn_tensor *logits, const int32_t *labels,
                                        int32_t ignore_label, frcnn_tensor *prob, float *loss)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    frcnn_status st;
    if ((st = frcnn__check_tensor(ctx, logits, "softmax_xent: logits", 2)) != FRCNN_OK)
        return st;
    if ((st = frcnn__check_tensor(ctx, prob, "softmax_xent: prob", 2)) != FRCNN_OK)
        return st;
    if ((st = frcnn__check_same_shape(ctx, prob, "softmax_xent: prob", logits, "logits")) != FRCNN_OK)
        return st;
    if (!labels)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "softmax_xent: labels is NULL");
    if (!loss)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "softmax_xent: loss is NULL");
    const int64_t n = logits->dims[0], k = logits->dims[1];
    size_t count;
    if ((st = check_labels(ctx, labels, n, k, ignore_label, &count)) != FRCNN_OK)
        return st;

    double total = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float *l = logits->data + (size_t)i * (size_t)k;
        float *pr = prob->data + (size_t)i * (size_t)k;
        float mx = l[0];
        for (int64_t j = 1; j < k; j++)
            mx = l[j] > mx ? l[j] : mx;
        double sum = 0.0;
        for (int64_t j = 0; j < k; j++) {
            pr[j] = expf(l[j] - mx);
            sum += (double)pr[j];
        }
        const float inv = (float)(1.0 / sum);
        for (int64_t j = 0; j < k; j++)
            pr[j] *= inv;
        if (labels[i] != ignore_label)
            total += log(sum) - ((double)l[labels[i]] - (double)mx);
    }
    *loss = count ? (float)(total / (double)count) : 0.0f;
    return FRCNN_OK;
}

/* prob (n, k) from the forward pass, labels[n], dlogits (n, k). Accumulates
 * dlogits += dloss * (prob - onehot(label)) / count on non-ignored rows (count = their number); ignored rows,
 * and every row when count is 0, receive nothing. dlogits NULL means "not needed": the arguments are checked and
 * nothing is written. Labels are checked before anything is written. */
frcnn_status frcnn_softmax_xent_backward(frcnn_ctx *ctx, const frcnn_tensor *prob, const int32_t *labels,
                                         int32_t ignore_label, float dloss, frcnn_tensor *dlogits)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    frcnn_status st;
    if ((st = frcnn__check_tensor(ctx, prob, "softmax_xent: prob", 2)) != FRCNN_OK)
        return st;
    if (!labels)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "softmax_xent: labels is NULL");
    if (dlogits && (st = frcnn__check_same_shape(ctx, dlogits, "softmax_xent: dlogits", prob, "prob")) != FRCNN_OK)
        return st;
    const int64_t n = prob->dims[0], k = prob->dims[1];
    size_t count;
    if ((st = check_labels(ctx, labels, n, k, ignore_label, &count)) != FRCNN_OK)
        return st;
    if (!dlogits || count == 0)
        return FRCNN_OK;

    const float scale = (float)((double)dloss / (double)count);
    for (int64_t i = 0; i < n; i++) {
        if (labels[i] == ignore_label)
            continue;
        const float *pr = prob->data + (size_t)i * (size_t)k;
        float *d = dlogits->data + (size_t)i * (size_t)k;
        for (int64_t j = 0; j < k; j++)
            d[j] += scale * (j == labels[i] ? pr[j] - 1.0f : pr[j]);
    }
    return FRCNN_OK;
}
