/* tiny_classifier: trains a 2-layer convolutional classifier with the public kernel API alone, on built-in
 * synthetic images (horizontal vs vertical bars in noise), and checks that it learns. A template for writing
 * your own training loop over the kernels: forward in order, backward in reverse order into zeroed gradients,
 * then a plain SGD update. Exits 0 when the loss fell at least 10x and the held-out accuracy is >= 95%. */
#include "frcnn.h"

#include <stdio.h>
#include <stdlib.h>

enum { BATCH = 16, SIDE = 12, CH = 8, CLASSES = 2, STEPS = 300 };

static frcnn_ctx *ctx;

static void check(frcnn_status st, const char *what)
{
    if (st != FRCNN_OK) {
        fprintf(stderr, "tiny_classifier: %s: %s: %s\n", what, frcnn_status_str(st), frcnn_ctx_last_error(ctx));
        exit(1);
    }
}

static frcnn_tensor *tensor(int ndim, int64_t a, int64_t b, int64_t c, int64_t d)
{
    int64_t dims[4] = {a, b, c, d};
    frcnn_tensor *t;
    check(frcnn_tensor_create(ctx, ndim, dims, &t), "tensor");
    return t;
}

/* One batch: a bright bar (row for class 0, column for class 1) at a random place, plus noise. */
static void make_batch(frcnn_rng *rng, frcnn_tensor *x, int32_t *labels)
{
    float *px = frcnn_tensor_data(x);
    for (int i = 0; i < BATCH; i++) {
        labels[i] = (int32_t)frcnn_rng_below(rng, CLASSES);
        int at = 1 + (int)frcnn_rng_below(rng, SIDE - 2);
        for (int r = 0; r < SIDE; r++)
            for (int c = 0; c < SIDE; c++) {
                float bar = (labels[i] == 0 ? r == at : c == at) ? 1.0f : 0.0f;
                px[(i * SIDE + r) * SIDE + c] = bar + frcnn_rng_normal(rng, 0.0f, 0.3f);
            }
    }
}

static void sgd(frcnn_tensor *param, const frcnn_tensor *grad, float lr)
{
    float *p = frcnn_tensor_data(param);
    const float *g = frcnn_tensor_data(grad);
    for (size_t i = 0; i < frcnn_tensor_numel(param); i++)
        p[i] -= lr * g[i];
}

int main(void)
{
    check(frcnn_ctx_create(NULL, &ctx), "context");
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 2026);

    /* conv 3x3 (1 -> CH, pad 1) + ReLU + max-pool 2x2 + fully connected (CH*6*6 -> 2) + softmax cross-entropy */
    frcnn_conv2d_params conv = {1, 1, 1, 1};
    frcnn_maxpool_params pool = frcnn_maxpool_params_default();
    frcnn_tensor *x = tensor(4, BATCH, 1, SIDE, SIDE), *w1 = tensor(4, CH, 1, 3, 3), *b1 = tensor(1, CH, 0, 0, 0);
    frcnn_tensor *h = tensor(4, BATCH, CH, SIDE, SIDE), *p = tensor(4, BATCH, CH, SIDE / 2, SIDE / 2);
    frcnn_tensor *w2 = tensor(2, CLASSES, CH * 36, 0, 0), *b2 = tensor(1, CLASSES, 0, 0, 0);
    frcnn_tensor *logits = tensor(2, BATCH, CLASSES, 0, 0), *prob = tensor(2, BATCH, CLASSES, 0, 0);
    frcnn_tensor *dw1 = tensor(4, CH, 1, 3, 3), *db1 = tensor(1, CH, 0, 0, 0), *dh = tensor(4, BATCH, CH, SIDE, SIDE);
    frcnn_tensor *dp = tensor(4, BATCH, CH, SIDE / 2, SIDE / 2), *dw2 = tensor(2, CLASSES, CH * 36, 0, 0);
    frcnn_tensor *db2 = tensor(1, CLASSES, 0, 0, 0), *dlogits = tensor(2, BATCH, CLASSES, 0, 0);
    frcnn_rng_fill_normal(&rng, w1, 0.0f, 0.3f);
    frcnn_rng_fill_normal(&rng, w2, 0.0f, 0.05f);
    int32_t labels[BATCH], argmax[BATCH * CH * 36];
    int64_t x_dims[4] = {BATCH, 1, SIDE, SIDE}, w_dims[4] = {CH, 1, 3, 3};
    size_t ws_bytes;
    check(frcnn_conv2d_workspace_bytes(ctx, &conv, x_dims, w_dims, &ws_bytes), "workspace size");
    void *ws = malloc(ws_bytes);

    float first = 0.0f, loss = 0.0f;
    for (int step = 0; step <= STEPS; step++) {
        make_batch(&rng, x, labels);
        check(frcnn_conv2d_forward(ctx, &conv, x, w1, b1, h, ws, ws_bytes), "conv forward");
        check(frcnn_relu_forward(ctx, h, h), "relu forward");
        check(frcnn_maxpool_forward(ctx, &pool, h, p, argmax), "pool forward");
        check(frcnn_linear_forward(ctx, p, w2, b2, logits), "linear forward");
        check(frcnn_softmax_xent_forward(ctx, logits, labels, -1, prob, &loss), "loss");
        if (step == 0)
            first = loss;
        if (step % 50 == 0)
            printf("step %3d  loss %.4f\n", step, (double)loss);
        if (step == STEPS)
            break;
        frcnn_tensor *grads[] = {dw1, db1, dh, dp, dw2, db2, dlogits};
        for (size_t i = 0; i < sizeof grads / sizeof grads[0]; i++)
            frcnn_tensor_zero(grads[i]);
        check(frcnn_softmax_xent_backward(ctx, prob, labels, -1, 1.0f, dlogits), "loss backward");
        check(frcnn_linear_backward(ctx, p, w2, dlogits, dp, dw2, db2), "linear backward");
        check(frcnn_maxpool_backward(ctx, &pool, dp, argmax, dh), "pool backward");
        check(frcnn_relu_backward(ctx, h, dh, dh), "relu backward"); /* in place: gates dh */
        check(frcnn_conv2d_backward(ctx, &conv, x, w1, dh, NULL, dw1, db1, ws, ws_bytes), "conv backward");
        sgd(w1, dw1, 0.1f);
        sgd(b1, db1, 0.1f);
        sgd(w2, dw2, 0.1f);
        sgd(b2, db2, 0.1f);
    }

    /* held-out accuracy on fresh batches */
    int correct = 0, total = 0;
    for (int batch = 0; batch < 20; batch++) {
        make_batch(&rng, x, labels);
        check(frcnn_conv2d_forward(ctx, &conv, x, w1, b1, h, ws, ws_bytes), "conv forward");
        check(frcnn_relu_forward(ctx, h, h), "relu forward");
        check(frcnn_maxpool_forward(ctx, &pool, h, p, NULL), "pool forward");
        check(frcnn_linear_forward(ctx, p, w2, b2, logits), "linear forward");
        const float *l = frcnn_tensor_data(logits);
        for (int i = 0; i < BATCH; i++, total++)
            correct += (l[2 * i + 1] > l[2 * i]) == (labels[i] == 1);
    }
    double accuracy = (double)correct / total;
    printf("loss %.4f -> %.4f, held-out accuracy %.1f%% (%d images)\n", (double)first, (double)loss,
           100.0 * accuracy, total);

    frcnn_tensor *all[] = {x, w1, b1, h, p, w2, b2, logits, prob, dw1, db1, dh, dp, dw2, db2, dlogits};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        frcnn_tensor_free(all[i]);
    free(ws);
    frcnn_ctx_free(ctx);
    return loss * 10.0f <= first && accuracy >= 0.95 ? 0 : 1;
}
