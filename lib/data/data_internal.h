/* Internal declarations shared by the data files (image, draw, prepare, VOC): the layout behind the opaque
 * frcnn_image handle. Never installed. */
#ifndef FRCNN_DATA_INTERNAL_H
#define FRCNN_DATA_INTERNAL_H

#include "internal.h"

#include <stdio.h>
#include <sys/stat.h>

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

/* Opens path for reading ("rb") and fstats it into *st; refuses directories (fopen succeeds on them, and reading
 * then fails obscurely). Errors as frcnn__read_file. */
frcnn_status frcnn__open_file(frcnn_ctx *ctx, const char *what, const char *path, frcnn_status missing, FILE **out,
                              struct stat *st);
/* Reads a whole file of at most max_bytes into a buffer from ctx's allocator, with a NUL after the data (so text
 * can be parsed as a string): *data (*cap bytes allocated, *len read). Files without a known size (pipes) are read
 * in growing steps. Messages read "<what> '<path>': problem". A file that does not exist is `missing` (the caller's
 * status for that case); other open and read failures and directories are FRCNN_ERR_IO; more than max_bytes is
 * FRCNN_ERR_FORMAT. */
frcnn_status frcnn__read_file(frcnn_ctx *ctx, const char *what, const char *path, size_t max_bytes,
                              frcnn_status missing, uint8_t **data, size_t *cap, size_t *len);

#endif /* FRCNN_DATA_INTERNAL_H */
