/* A Pascal VOC dataset in memory: the split's image ids, every annotation, the class list and a fingerprint.
 * Reads VOCdevkit/VOC<year>/{ImageSets/Main/<split>.txt, Annotations/<id>.xml} and finds JPEGImages/<id>.*; pixels
 * are read later, one image per training step (lib/data/sample.c). */
#include "data_internal.h"
#include "voc_xml.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_PATH 4096
#define MAX_ANNOTATION_BYTES ((size_t)16 << 20) /* real ones are about 1 KiB */

static const char *const voc_classes[FRCNN_VOC_NUM_CLASSES] = {
    "aeroplane", "bicycle", "bird",  "boat",        "bottle", "bus",   "car",  "cat",   "chair", "cow",
    "diningtable", "dog",   "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"};

const char *const *frcnn_voc_class_names(void)
{
    return voc_classes;
}

frcnn_voc_params frcnn_voc_params_default(void)
{
    frcnn_voc_params p;
    memset(&p, 0, sizeof p);
    p.year = "2007";
    p.split = "trainval";
    return p;
}

struct frcnn_dataset {
    frcnn_ctx *ctx;
    size_t n_images;
    frcnn_dataset_image *images;
    frcnn_object *objects;
    size_t n_objects, objects_bytes;
    int num_classes;
    const char **class_names; /* num_classes; [0] is the background */
    char *strings;            /* ids, paths and class names, NUL-separated */
    size_t strings_bytes;
    uint64_t fingerprint;
};

/* A growing byte buffer for strings; offsets stay valid while it grows, pointers are made at the end. */
typedef struct strpool {
    frcnn_ctx *ctx;
    char *data;
    size_t len, cap;
} strpool;

static frcnn_status pool_add(strpool *sp, const char *s, size_t *offset)
{
    size_t n = strlen(s) + 1, need;
    if (!frcnn__add_size(sp->len, n, &need))
        return frcnn__error(sp->ctx, FRCNN_ERR_OVERFLOW, "voc_open: too much text");
    if (need > sp->cap) {
        size_t cap = sp->cap ? sp->cap : 4096;
        while (cap < need)
            if (!frcnn__mul_size(cap, 2, &cap))
                return frcnn__error(sp->ctx, FRCNN_ERR_OVERFLOW, "voc_open: too much text");
        char *grown = frcnn__alloc(sp->ctx, cap);
        if (!grown)
            return FRCNN_ERR_NO_MEMORY;
        if (sp->len)
            memcpy(grown, sp->data, sp->len);
        frcnn__free(sp->ctx, sp->data, sp->cap);
        sp->data = grown;
        sp->cap = cap;
    }
    memcpy(sp->data + sp->len, s, n);
    *offset = sp->len;
    sp->len = need;
    return FRCNN_OK;
}

static bool is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static bool is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static frcnn_status join(frcnn_ctx *ctx, char *out, const char *a, const char *b, const char *c)
{
    int n = snprintf(out, MAX_PATH, "%s%s%s%s%s", a, *b ? "/" : "", b, *c ? "/" : "", c);
    if (n < 0 || n >= MAX_PATH)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "voc_open: path longer than %d bytes under '%s'", MAX_PATH,
                            a);
    return FRCNN_OK;
}

/* What open collects before the final arrays are built. */
typedef struct loader {
    frcnn_ctx *ctx;
    const frcnn_voc_params *params;
    char voc_dir[MAX_PATH];
    char *list;                     /* the split file, ids cut out of it in place */
    size_t list_cap;
    char **ids;
    size_t n_ids, ids_bytes;
    frcnn__voc_annotation *annotations;
    size_t *path_offsets;           /* each image's path in the string pool */
    strpool strings;
    const char **names;             /* the classes, without background */
    size_t n_names, names_bytes;
    bool names_owned;
} loader;

static frcnn_status find_voc_dir(loader *ld)
{
    const frcnn_voc_params *p = ld->params;
    char probe[MAX_PATH], year_dir[32];
    frcnn_status st = join(ld->ctx, probe, p->root, "ImageSets", "Main");
    if (st != FRCNN_OK)
        return st;
    if (is_dir(probe))
        return join(ld->ctx, ld->voc_dir, p->root, "", "");
    snprintf(year_dir, sizeof year_dir, "VOC%.20s", p->year);
    if ((st = join(ld->ctx, ld->voc_dir, p->root, year_dir, "")) != FRCNN_OK)
        return st;
    if ((st = join(ld->ctx, probe, ld->voc_dir, "ImageSets", "Main")) != FRCNN_OK)
        return st;
    if (!is_dir(probe))
        return frcnn__error(ld->ctx, FRCNN_ERR_NOT_FOUND,
                            "voc_open: neither '%s' nor '%s' holds ImageSets/Main (give a VOCdevkit or VOC%s folder)",
                            p->root, ld->voc_dir, p->year);
    return FRCNN_OK;
}

static int compare_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Reads ImageSets/Main/<split>.txt: one id per line (the first word; class-specific lists add a flag after it). */
static frcnn_status read_split(loader *ld)
{
    char split_dir[MAX_PATH], path[MAX_PATH], name[300];
    snprintf(name, sizeof name, "%.256s.txt", ld->params->split);
    frcnn_status st = join(ld->ctx, split_dir, ld->voc_dir, "ImageSets", "Main");
    if (st == FRCNN_OK)
        st = join(ld->ctx, path, split_dir, name, "");
    size_t len;
    uint8_t *list = NULL;
    if (st == FRCNN_OK)
        st = frcnn__read_file(ld->ctx, "image list", path, (size_t)1 << 30, FRCNN_ERR_NOT_FOUND, &list,
                              &ld->list_cap, &len);
    if (st != FRCNN_OK)
        return st;
    ld->list = (char *)list;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += ld->list[i] == '\n';
    ld->ids_bytes = lines * sizeof *ld->ids;
    if (!(ld->ids = frcnn__alloc(ld->ctx, ld->ids_bytes)))
        return FRCNN_ERR_NO_MEMORY;
    int line = 0;
    for (char *s = ld->list; s && *s;) {
        char *next = strchr(s, '\n');
        if (next)
            *next++ = '\0';
        line++;
        s += strspn(s, " \t\r");
        size_t n = strcspn(s, " \t\r");
        s[n] = '\0';
        if (n > 0) {
            if (strchr(s, '/') || strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || n > 200)
                return frcnn__error(ld->ctx, FRCNN_ERR_FORMAT, "%s: line %d: '%.64s' is not an image id", path, line,
                                    s);
            ld->ids[ld->n_ids++] = s;
        }
        s = next;
    }
    if (ld->n_ids == 0)
        return frcnn__error(ld->ctx, FRCNN_ERR_FORMAT, "%s: lists no image", path);
    char **sorted = frcnn__alloc(ld->ctx, ld->n_ids * sizeof *sorted);
    if (!sorted)
        return FRCNN_ERR_NO_MEMORY;
    memcpy(sorted, ld->ids, ld->n_ids * sizeof *sorted);
    qsort(sorted, ld->n_ids, sizeof *sorted, compare_str_ptr);
    for (size_t i = 1; i < ld->n_ids && st == FRCNN_OK; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0)
            st = frcnn__error(ld->ctx, FRCNN_ERR_FORMAT, "%s: image id '%s' is listed twice", path, sorted[i]);
    frcnn__free(ld->ctx, sorted, ld->n_ids * sizeof *sorted);
    return st;
}

/* The image file of an annotation: JPEGImages/<id>.jpg as released, else the annotation's <filename>, else the
 * id with another common extension (annotation tools keep PNGs). */
static frcnn_status find_image(loader *ld, size_t i, const char *annotation_path)
{
    static const char *const extensions[] = {".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG", ".bmp"};
    char dir[MAX_PATH], path[MAX_PATH], name[300];
    frcnn_status st = join(ld->ctx, dir, ld->voc_dir, "JPEGImages", "");
    for (size_t k = 0; st == FRCNN_OK && k <= sizeof extensions / sizeof extensions[0]; k++) {
        const char *fn = ld->annotations[i].filename;
        if (k == 1 && (!*fn || strchr(fn, '/')))
            continue;
        if (k == 1)
            snprintf(name, sizeof name, "%.256s", fn);
        else
            snprintf(name, sizeof name, "%.200s%s", ld->ids[i], extensions[k ? k - 1 : 0]);
        if ((st = join(ld->ctx, path, dir, name, "")) == FRCNN_OK && is_file(path))
            return pool_add(&ld->strings, path, &ld->path_offsets[i]);
    }
    if (st != FRCNN_OK)
        return st;
    return frcnn__error(ld->ctx, FRCNN_ERR_NOT_FOUND, "%s/%s.jpg: no such image (for %s)", dir, ld->ids[i],
                        annotation_path);
}

static frcnn_status read_annotations(loader *ld)
{
    size_t bytes;
    if (!frcnn__mul_size(ld->n_ids, sizeof *ld->annotations, &bytes))
        return frcnn__error(ld->ctx, FRCNN_ERR_OVERFLOW, "voc_open: too many images");
    if (!(ld->annotations = frcnn__alloc(ld->ctx, bytes)))
        return FRCNN_ERR_NO_MEMORY;
    memset(ld->annotations, 0, bytes); /* before anything can fail: loader_free frees every annotation */
    if (!(ld->path_offsets = frcnn__alloc(ld->ctx, ld->n_ids * sizeof *ld->path_offsets)))
        return FRCNN_ERR_NO_MEMORY;
    char dir[MAX_PATH], path[MAX_PATH], name[300];
    frcnn_status st = join(ld->ctx, dir, ld->voc_dir, "Annotations", "");
    for (size_t i = 0; i < ld->n_ids && st == FRCNN_OK; i++) {
        snprintf(name, sizeof name, "%.200s.xml", ld->ids[i]);
        uint8_t *text = NULL;
        size_t len = 0, cap = 0;
        if ((st = join(ld->ctx, path, dir, name, "")) != FRCNN_OK ||
            (st = frcnn__read_file(ld->ctx, "annotation", path, MAX_ANNOTATION_BYTES, FRCNN_ERR_NOT_FOUND,
                                   &text, &cap, &len)) != FRCNN_OK)
            break;
        st = frcnn__voc_parse(ld->ctx, path, (const char *)text, len, &ld->annotations[i]);
        frcnn__free(ld->ctx, text, cap);
        if (st == FRCNN_OK)
            st = find_image(ld, i, path);
        frcnn__voc_annotation *a = &ld->annotations[i];
        if (st == FRCNN_OK && (a->width == 0 || a->height == 0)) /* tools sometimes write <size> as 0 */
            st = frcnn_image_read_size(ld->ctx, ld->strings.data + ld->path_offsets[i], &a->width, &a->height);
    }
    return st;
}

/* The class list: given, the 20 VOC classes, or every name in the annotations sorted. */
static frcnn_status choose_classes(loader *ld)
{
    const frcnn_voc_params *p = ld->params;
    if (p->class_names) {
        ld->names = (const char **)p->class_names;
        ld->n_names = p->n_classes;
    } else if (!p->classes_from_annotations) {
        ld->names = (const char **)voc_classes;
        ld->n_names = FRCNN_VOC_NUM_CLASSES;
    } else {
        size_t total = 0;
        for (size_t i = 0; i < ld->n_ids; i++)
            total += ld->annotations[i].n_objects;
        if (total == 0)
            return frcnn__error(ld->ctx, FRCNN_ERR_FORMAT, "voc_open: no object in split '%s' to take classes from",
                                p->split);
        ld->names_bytes = total * sizeof *ld->names;
        if (!(ld->names = frcnn__alloc(ld->ctx, ld->names_bytes)))
            return FRCNN_ERR_NO_MEMORY;
        ld->names_owned = true;
        for (size_t i = 0; i < ld->n_ids; i++)
            for (size_t k = 0; k < ld->annotations[i].n_objects; k++)
                ld->names[ld->n_names++] = ld->annotations[i].objects[k].name;
        qsort(ld->names, ld->n_names, sizeof *ld->names, compare_str_ptr);
        size_t unique = 0;
        for (size_t i = 0; i < ld->n_names; i++)
            if (unique == 0 || strcmp(ld->names[unique - 1], ld->names[i]) != 0)
                ld->names[unique++] = ld->names[i];
        ld->n_names = unique;
    }
    if (ld->n_names < 1 || ld->n_names > 4095)
        return frcnn__error(ld->ctx, FRCNN_ERR_INVALID_ARG, "voc_open: %zu classes, expected 1 to 4095",
                            ld->n_names);
    for (size_t i = 0; i < ld->n_names; i++)
        if (!ld->names[i] || !*ld->names[i])
            return frcnn__error(ld->ctx, FRCNN_ERR_INVALID_ARG, "voc_open: class %zu has no name", i + 1);
    return FRCNN_OK;
}

static int32_t label_of(const loader *ld, const char *name)
{
    for (size_t i = 0; i < ld->n_names; i++)
        if (strcmp(ld->names[i], name) == 0)
            return (int32_t)i + 1;
    return 0;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Fingerprint of what training sees, byte order fixed: ids, sizes, objects and class names. */
static uint64_t fingerprint(const frcnn_dataset *ds)
{
    uint64_t h = 0;
    for (int c = 0; c < ds->num_classes; c++)
        h = frcnn_fingerprint(ds->class_names[c], strlen(ds->class_names[c]) + 1, h);
    for (size_t i = 0; i < ds->n_images; i++) {
        const frcnn_dataset_image *im = &ds->images[i];
        uint8_t b[24];
        h = frcnn_fingerprint(im->id, strlen(im->id) + 1, h);
        put_u32(b, (uint32_t)im->width);
        put_u32(b + 4, (uint32_t)im->height);
        put_u32(b + 8, (uint32_t)im->n_objects);
        h = frcnn_fingerprint(b, 12, h);
        for (size_t k = 0; k < im->n_objects; k++) {
            const frcnn_object *o = &im->objects[k];
            const float v[4] = {o->x1, o->y1, o->x2, o->y2};
            for (int j = 0; j < 4; j++) {
                uint32_t bits;
                memcpy(&bits, &v[j], 4);
                put_u32(b + 4 * j, bits);
            }
            put_u32(b + 16, (uint32_t)o->label);
            put_u32(b + 20, o->difficult);
            h = frcnn_fingerprint(b, 24, h);
        }
    }
    return h;
}

/* Boxes to 0-based pixels clipped to the image, labels from names; builds the final arrays. */
static frcnn_status build(loader *ld, frcnn_dataset *ds)
{
    frcnn_ctx *ctx = ld->ctx;
    size_t total = 0, clipped = 0, bytes;
    for (size_t i = 0; i < ld->n_ids; i++)
        total += ld->annotations[i].n_objects;
    size_t id_offsets_bytes = ld->n_ids * sizeof(size_t);
    size_t *id_offsets = frcnn__alloc(ctx, id_offsets_bytes);
    size_t name_offsets[4096];
    if (!id_offsets)
        return FRCNN_ERR_NO_MEMORY;
    frcnn_status st = FRCNN_OK;
    for (size_t i = 0; i < ld->n_ids && st == FRCNN_OK; i++)
        st = pool_add(&ld->strings, ld->ids[i], &id_offsets[i]);
    if (st == FRCNN_OK)
        st = pool_add(&ld->strings, "__background__", &name_offsets[0]);
    for (size_t c = 0; c < ld->n_names && st == FRCNN_OK; c++)
        st = pool_add(&ld->strings, ld->names[c], &name_offsets[c + 1]);
    if (st != FRCNN_OK)
        goto done;
    ds->num_classes = (int)ld->n_names + 1;
    ds->n_images = ld->n_ids;
    if (!frcnn__mul_size(ld->n_ids, sizeof *ds->images, &bytes) ||
        !(ds->images = frcnn__alloc(ctx, bytes)) ||
        !(ds->objects = frcnn__alloc(ctx, ds->objects_bytes = (total ? total : 1) * sizeof *ds->objects)) ||
        !(ds->class_names = frcnn__alloc(ctx, (size_t)ds->num_classes * sizeof *ds->class_names))) {
        st = FRCNN_ERR_NO_MEMORY;
        goto done;
    }
    /* The pool no longer grows: hand it over and make pointers. */
    ds->strings = ld->strings.data;
    ds->strings_bytes = ld->strings.cap;
    ld->strings.data = NULL;
    ld->strings.cap = ld->strings.len = 0;
    for (int c = 0; c < ds->num_classes; c++)
        ds->class_names[c] = ds->strings + name_offsets[c];
    for (size_t i = 0; i < ld->n_ids && st == FRCNN_OK; i++) {
        const frcnn__voc_annotation *a = &ld->annotations[i];
        frcnn_dataset_image *im = &ds->images[i];
        im->id = ds->strings + id_offsets[i];
        im->path = ds->strings + ld->path_offsets[i];
        im->width = a->width;
        im->height = a->height;
        im->objects = ds->objects + ds->n_objects;
        im->n_objects = a->n_objects;
        for (size_t k = 0; k < a->n_objects; k++) {
            const frcnn__voc_object *src = &a->objects[k];
            frcnn_object *o = &ds->objects[ds->n_objects++];
            const float w1 = (float)(a->width - 1), h1 = (float)(a->height - 1);
            o->label = label_of(ld, src->name);
            o->difficult = src->difficult;
            if (o->label == 0) {
                st = frcnn__error(ctx, FRCNN_ERR_MISMATCH,
                                  "%s/Annotations/%s.xml: line %d: class '%s' is not in the class list (%zu classes, "
                                  "from '%s' to '%s')",
                                  ld->voc_dir, im->id, src->line, src->name, ld->n_names, ld->names[0],
                                  ld->names[ld->n_names - 1]);
                break;
            }
            /* VOC coordinates are 1-based (py-faster-rcnn pascal_voc.py subtracts 1). */
            o->x1 = (float)(src->xmin - 1);
            o->y1 = (float)(src->ymin - 1);
            o->x2 = (float)(src->xmax - 1);
            o->y2 = (float)(src->ymax - 1);
            if (o->x1 > w1 || o->y1 > h1 || o->x2 < 0 || o->y2 < 0) {
                st = frcnn__error(ctx, FRCNN_ERR_FORMAT,
                                  "%s/Annotations/%s.xml: line %d: box of '%s' lies outside the %dx%d image",
                                  ld->voc_dir, im->id, src->line, src->name, a->width, a->height);
                break;
            }
            if (o->x1 < 0 || o->y1 < 0 || o->x2 > w1 || o->y2 > h1) {
                clipped++;
                o->x1 = o->x1 < 0 ? 0 : o->x1;
                o->y1 = o->y1 < 0 ? 0 : o->y1;
                o->x2 = o->x2 > w1 ? w1 : o->x2;
                o->y2 = o->y2 > h1 ? h1 : o->y2;
            }
        }
    }
    if (st == FRCNN_OK && clipped)
        frcnn_ctx_log(ctx, FRCNN_LOG_WARN, "%s: %zu boxes reached past their image and were clipped to it",
                      ld->voc_dir, clipped);
    if (st == FRCNN_OK)
        ds->fingerprint = fingerprint(ds);
done:
    frcnn__free(ctx, id_offsets, id_offsets_bytes);
    return st;
}

static void loader_free(loader *ld)
{
    frcnn_ctx *ctx = ld->ctx;
    for (size_t i = 0; ld->annotations && i < ld->n_ids; i++)
        frcnn__voc_annotation_free(ctx, &ld->annotations[i]);
    frcnn__free(ctx, ld->annotations, ld->n_ids * sizeof *ld->annotations);
    frcnn__free(ctx, ld->path_offsets, ld->n_ids * sizeof *ld->path_offsets);
    frcnn__free(ctx, ld->ids, ld->ids_bytes);
    frcnn__free(ctx, ld->list, ld->list_cap);
    frcnn__free(ctx, ld->strings.data, ld->strings.cap);
    if (ld->names_owned)
        frcnn__free(ctx, (void *)ld->names, ld->names_bytes);
}

frcnn_status frcnn_voc_open(frcnn_ctx *ctx, const frcnn_voc_params *params, frcnn_dataset **out)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!params || !out || !params->root || !params->year || !params->split)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "voc_open: %s is NULL",
                            !params ? "params" : !out ? "out" : !params->root ? "params.root"
                                                 : !params->year ? "params.year" : "params.split");
    if (params->class_names && (params->n_classes < 1 || params->n_classes > 4095))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "voc_open: n_classes %zu, expected 1 to 4095",
                            params->n_classes);
    loader ld;
    memset(&ld, 0, sizeof ld);
    ld.ctx = ctx;
    ld.params = params;
    ld.strings.ctx = ctx;
    frcnn_dataset *ds = frcnn__alloc(ctx, sizeof *ds);
    if (!ds)
        return FRCNN_ERR_NO_MEMORY;
    memset(ds, 0, sizeof *ds);
    ds->ctx = ctx;
    frcnn_status st = find_voc_dir(&ld);
    if (st == FRCNN_OK)
        st = read_split(&ld);
    if (st == FRCNN_OK)
        st = read_annotations(&ld);
    if (st == FRCNN_OK)
        st = choose_classes(&ld);
    if (st == FRCNN_OK)
        st = build(&ld, ds);
    loader_free(&ld);
    if (st != FRCNN_OK) {
        frcnn_dataset_free(ds);
        return st;
    }
    *out = ds;
    return FRCNN_OK;
}

void frcnn_dataset_free(frcnn_dataset *ds)
{
    if (!ds)
        return;
    frcnn_ctx *ctx = ds->ctx;
    frcnn__free(ctx, ds->images, ds->n_images * sizeof *ds->images);
    frcnn__free(ctx, ds->objects, ds->objects_bytes);
    frcnn__free(ctx, (void *)ds->class_names, (size_t)ds->num_classes * sizeof *ds->class_names);
    frcnn__free(ctx, ds->strings, ds->strings_bytes);
    frcnn__free(ctx, ds, sizeof *ds);
}

size_t frcnn_dataset_size(const frcnn_dataset *ds)
{
    return ds ? ds->n_images : 0;
}

int frcnn_dataset_num_classes(const frcnn_dataset *ds)
{
    return ds ? ds->num_classes : 0;
}

const char *const *frcnn_dataset_class_names(const frcnn_dataset *ds)
{
    return ds ? ds->class_names : NULL;
}

frcnn_status frcnn_dataset_image_info(const frcnn_dataset *ds, size_t i, frcnn_dataset_image *out)
{
    if (!ds || !out)
        return FRCNN_ERR_INVALID_ARG;
    if (i >= ds->n_images)
        return frcnn__error(ds->ctx, FRCNN_ERR_INVALID_ARG, "dataset_image_info: image %zu of %zu", i, ds->n_images);
    *out = ds->images[i];
    return FRCNN_OK;
}

uint64_t frcnn_dataset_fingerprint(const frcnn_dataset *ds)
{
    return ds ? ds->fingerprint : 0;
}
