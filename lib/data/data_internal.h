/* Internal declarations shared by the data files (image, draw, prepare, VOC): the layout behind the opaque
 * frcnn_image handle. Never installed. */
#ifndef FRCNN_DATA_INTERNAL_H
#define FRCNN_DATA_INTERNAL_H

#include "internal.h"

/* An 8-bit RGB image: rgb (height, width, 3), rows top to bottom, R G B per pixel, packed (stride width * 3).
 * The struct and the pixels come from ctx's allocator; 1 <= width, height <= FRCNN_IMAGE_MAX_SIDE, so
 * width * height * 3 always fits in size_t (and in int64_t). */
struct frcnn_image {
    int width, height;
    uint8_t *rgb;
    frcnn_ctx *ctx; /* for freeing */
};

/* The pixel bytes of an image: width * height * 3. */
static inline size_t frcnn__image_bytes(const frcnn_image *image)
{
    return (size_t)image->width * (size_t)image->height * 3u;
}

#endif /* FRCNN_DATA_INTERNAL_H */
