/* Internal accessors the checkpoint needs from the training objects. */
#ifndef FRCNN_TRAIN_INTERNAL_H
#define FRCNN_TRAIN_INTERNAL_H

#include "internal.h"

/* The parameters a sampler was created with (what its order depends on). */
void frcnn__sampler_describe(const frcnn_sampler *s, uint64_t *seed, uint32_t *n_images, bool *flip,
                             bool *group_by_aspect);

#endif /* FRCNN_TRAIN_INTERNAL_H */
