/* Turns an RGB image into the model's input: the paper's rescaling (shorter side to short_side, longer side at
 * most max_side), bilinear resampling, optional mirroring, B G R channel order and per-channel normalisation. */
#include "internal.h"

#include <math.h>
#include <string.h>

frcnn_status frcnn_image_prepared_size(frcnn_ctx *ctx, const frcnn_config *config, int width, int height,
                                       int *prepared_width, int *prepared_height, float *scale)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!config || !prepared_width || !prepared_height || !scale)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "image_prepared_size: an argument is NULL");
    if (width < 1 || height < 1 || width > FRCNN_IMAGE_MAX_SIDE || height > FRCNN_IMAGE_MAX_SIDE)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "image_prepared_size: image %dx%d, expected 1 to %d a side",
                            width, height, FRCNN_IMAGE_MAX_SIDE);
    if (config->short_side < 1 || config->max_side < config->short_side)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "image_prepared_size: short_side %d, max_side %d",
                            config->short_side, config->max_side);
    /* py-faster-rcnn blob.py prep_im_for_blob: the scale is computed in double, sizes rounded as cv2.resize does. */
    const int lo = width < height ? width : height, hi = width < height ? height : width;
    double s = (double)config->short_side / lo;
    if (s * hi > config->max_side)
        s = (double)config->max_side / hi;
    long w = lround(width * s), h = lround(height * s);
    *prepared_width = w < 1 ? 1 : (int)w;
    *prepared_height = h < 1 ? 1 : (int)h;
    *scale = (float)s;
    return FRCNN_OK;
}

/* Source coordinate of each output column or row for bilinear sampling with half-pixel centres (OpenCV's
 * INTER_LINEAR and PyTorch's align_corners=False): i0, i1 and the weight of i1. */
typedef struct tap {
    int i0, i1;
    float w1;
} tap;

static void make_taps(tap *taps, int out_n, int in_n)
{
    const double ratio = (double)in_n / out_n;
    for (int o = 0; o < out_n; o++) {
        double src = (o + 0.5) * ratio - 0.5;
        if (src < 0)
            src = 0;
        int i0 = (int)src;
        if (i0 > in_n - 1)
            i0 = in_n - 1;
        taps[o].i0 = i0;
        taps[o].i1 = i0 + 1 < in_n ? i0 + 1 : in_n - 1;
        taps[o].w1 = (float)(src - i0);
    }
}

frcnn_status frcnn_image_prepare(frcnn_ctx *ctx, const frcnn_config *config, const frcnn_image *image, bool flip,
                                 frcnn_tensor **out, float *scale)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!config || !image || !out || !scale)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "image_prepare: an argument is NULL");
    for (int c = 0; c < 3; c++)
        if (!isfinite(config->pixel_means[c]) || !isfinite(config->pixel_stds[c]) || !(config->pixel_stds[c] > 0))
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "image_prepare: pixel_means / pixel_stds[%d] invalid", c);
    const int in_w = frcnn_image_width(image), in_h = frcnn_image_height(image);
    const uint8_t *rgb = frcnn_image_pixels(image);
    int w, h;
    float s;
    frcnn_status st = frcnn_image_prepared_size(ctx, config, in_w, in_h, &w, &h, &s);
    if (st != FRCNN_OK)
        return st;
    const int64_t dims[4] = {1, 3, h, w};
    frcnn_tensor *t = NULL;
    size_t taps_bytes = ((size_t)w + (size_t)h) * sizeof(tap);
    tap *taps = frcnn__alloc(ctx, taps_bytes);
    if (!taps)
        return FRCNN_ERR_NO_MEMORY;
    if ((st = frcnn_tensor_create(ctx, 4, dims, &t)) != FRCNN_OK) {
        frcnn__free(ctx, taps, taps_bytes);
        return st;
    }
    tap *xt = taps, *yt = taps + w;
    make_taps(xt, w, in_w);
    make_taps(yt, h, in_h);
    float *dst = frcnn_tensor_data(t);
    const size_t plane = (size_t)w * h;
    const float *mean = config->pixel_means, *std = config->pixel_stds;
    for (int y = 0; y < h; y++) {
        const uint8_t *r0 = rgb + (size_t)yt[y].i0 * in_w * 3, *r1 = rgb + (size_t)yt[y].i1 * in_w * 3;
        const float wy = yt[y].w1;
        for (int x = 0; x < w; x++) {
            const int a = xt[x].i0 * 3, b = xt[x].i1 * 3;
            const float wx = xt[x].w1;
            const size_t o = (size_t)y * w + (size_t)(flip ? w - 1 - x : x);
            for (int c = 0; c < 3; c++) { /* output B G R reads input channel 2 - c */
                const int k = 2 - c;
                float top = r0[a + k] + wx * (float)(r0[b + k] - r0[a + k]);
                float bot = r1[a + k] + wx * (float)(r1[b + k] - r1[a + k]);
                dst[c * plane + o] = (top + wy * (bot - top) - mean[c]) / std[c];
            }
        }
    }
    frcnn__free(ctx, taps, taps_bytes);
    *out = t;
    *scale = s;
    return FRCNN_OK;
}
