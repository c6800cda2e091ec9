/* The backward of ReLU followed by max pooling in one pass, for the backbone. Internal. */
#ifndef FRCNN_MAXPOOL_RELU_H
#define FRCNN_MAXPOOL_RELU_H

#include "internal.h"

/* y = maxpool(relu(x)) with argmax from frcnn_maxpool_forward; dy the gradient of y. dx (the shape of x) is
 * overwritten with the gradient of x: dy at each window's argmax where y > 0, zero elsewhere. The same bits as
 * zeroing dx, frcnn_maxpool_backward, then the in-place frcnn_relu_backward on relu(x), in one pass over dx
 * instead of three. */
frcnn_status frcnn__maxpool_relu_backward(frcnn_ctx *ctx, const frcnn_maxpool_params *p, const frcnn_tensor *y,
                                          const frcnn_tensor *dy, const int32_t *argmax, frcnn_tensor *dx);

#endif /* FRCNN_MAXPOOL_RELU_H */
