/* One training sample from a dataset: the image decoded and prepared, and its ground truth moved into the prepared
 * image's pixels (mirrored with it), ready for frcnn_model_train_step. */
#include "internal.h"

frcnn_status frcnn_dataset_load_sample(frcnn_ctx *ctx, const frcnn_dataset *dataset, size_t i, bool flip,
                                       bool keep_difficult, const frcnn_config *config, frcnn_tensor **image,
                                       float *scale, float *gt, int32_t *labels, size_t capacity, size_t *n_gt)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!dataset || !config || !image || !scale || !n_gt || (capacity && (!gt || !labels)))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "dataset_load_sample: an argument is NULL");
    frcnn_dataset_image info;
    frcnn_status st = frcnn_dataset_image_info(dataset, i, &info);
    if (st != FRCNN_OK)
        return st;
    size_t n = 0;
    for (size_t k = 0; k < info.n_objects; k++)
        n += keep_difficult || !info.objects[k].difficult;
    if (n > capacity)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "%s: %zu objects, more than the %zu the caller plans for",
                            info.path, n, capacity);
    frcnn_image *img = NULL;
    if ((st = frcnn_image_load(ctx, info.path, &img)) != FRCNN_OK)
        return st;
    /* A picture stored rotated or replaced after annotating would silently misplace every box. */
    if (frcnn_image_width(img) != info.width || frcnn_image_height(img) != info.height) {
        st = frcnn__error(ctx, FRCNN_ERR_MISMATCH, "%s: image is %dx%d but its annotation says %dx%d", info.path,
                          frcnn_image_width(img), frcnn_image_height(img), info.width, info.height);
        frcnn_image_free(img);
        return st;
    }
    frcnn_tensor *t = NULL;
    float s = 0;
    st = frcnn_image_prepare(ctx, config, img, flip, &t, &s);
    frcnn_image_free(img);
    if (st != FRCNN_OK)
        return st;
    /* Objects cover pixels x1..x2 inclusive; the continuous convention's box ends at the far edge, x2 + 1. */
    const float extent = config->box_convention == FRCNN_BOXES_CONTINUOUS ? 1.0f : 0.0f;
    const float mirror = (float)info.width - 1.0f + extent;
    size_t g = 0;
    for (size_t k = 0; k < info.n_objects; k++) {
        const frcnn_object *o = &info.objects[k];
        if (o->difficult && !keep_difficult)
            continue;
        /* py-faster-rcnn imdb.append_flipped_images: x1' = width - x2 - 1, x2' = width - x1 - 1 (inclusive);
         * x1' = width - x2, x2' = width - x1 (continuous). */
        float x2 = o->x2 + extent;
        gt[4 * g + 0] = (flip ? mirror - x2 : o->x1) * s;
        gt[4 * g + 1] = o->y1 * s;
        gt[4 * g + 2] = (flip ? mirror - o->x1 : x2) * s;
        gt[4 * g + 3] = (o->y2 + extent) * s;
        labels[g++] = o->label;
    }
    *image = t;
    *scale = s;
    *n_gt = g;
    return FRCNN_OK;
}
