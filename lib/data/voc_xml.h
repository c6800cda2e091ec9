/* Parsing one Pascal VOC annotation file (internal to lib/data). */
#ifndef FRCNN_VOC_XML_H
#define FRCNN_VOC_XML_H

#include "internal.h"

/* Longest class name kept; longer names are an error. */
#define FRCNN__VOC_MAX_NAME 128

typedef struct frcnn__voc_object {
    char name[FRCNN__VOC_MAX_NAME]; /* trimmed, entities decoded */
    double xmin, ymin, xmax, ymax;  /* as written: 1-based inclusive pixels */
    bool difficult;
    int line;                       /* of the <object> tag, for messages */
} frcnn__voc_object;

typedef struct frcnn__voc_annotation {
    int width, height;              /* 0 when <size> is missing or says 0 */
    char filename[256];             /* <filename>, "" when missing */
    frcnn__voc_object *objects;     /* n_objects, from the context allocator */
    size_t n_objects, capacity;
} frcnn__voc_annotation;

/* Parses the annotation `text` (len bytes; need not be NUL-terminated) read from `path`. Keeps <size>,
 * <filename> and each <object>'s <name>, <difficult> and <bndbox>; ignores every other element (pose, truncated,
 * part boxes, attributes, tool-specific extras), comments, processing instructions and DOCTYPE. Malformed XML, an
 * object without name or box, a coordinate that is not a finite number, or xmax < xmin is FRCNN_ERR_FORMAT with
 * "path: line N: problem". Free the result with frcnn__voc_annotation_free, also after a failure. */
frcnn_status frcnn__voc_parse(frcnn_ctx *ctx, const char *path, const char *text, size_t len,
                              frcnn__voc_annotation *out);
void frcnn__voc_annotation_free(frcnn_ctx *ctx, frcnn__voc_annotation *a);

#endif /* FRCNN_VOC_XML_H */
