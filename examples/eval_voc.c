/* eval_voc: measures a trained detector on a Pascal VOC split with the VOC metric (py-faster-rcnn voc_eval.py):
 * each class's AP by the VOC2007 11-point rule and by the VOC2010+ area rule, their means, and VOC's comp4 result
 * files. Uses the public API alone, like any client:
 *   checkpoint -> configuration -> model -> weights -> class names -> dataset -> for each image: load, prepare,
 *   detect, add to the evaluation -> AP table -> result files.
 * The table goes to stdout, ending with the line "mAP07 0.8123 mAP10 0.8345" for scripts; progress to stderr. */
#include "frcnn.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *usage =
    "usage: eval_voc --voc-root DIR --ckpt FILE [options]\n"
    "  --voc-root DIR   a VOCdevkit folder holding VOC<year>/, or a VOC<year> folder itself\n"
    "  --ckpt FILE      a checkpoint saved by training (weights, configuration, class names)\n"
    "  --year YEAR      default 2007\n"
    "  --split NAME     the image list ImageSets/Main/NAME.txt (default test)\n"
    "  --classes FILE   class names, one per line, without the background (default: the checkpoint's, or the\n"
    "                   20 VOC classes for a checkpoint saved without names)\n"
    "  --out DIR        where comp4_det_<split>_<class>.txt go (default: the current folder)\n"
    "  --threads N      threads (default 0: one per core)\n"
    "  --limit N        evaluate only the first N images of the split\n"
    "  --short-side N --max-side N   test scale (default: the checkpoint's training scale)\n"
    "  --quiet          no progress on stderr\n"
    "Exits 0 on success, 1 on an error, 2 on a usage error.\n";

typedef struct options {
    const char *voc_root, *ckpt, *year, *split, *classes, *out;
    int threads;
    long limit; /* 0: all */
    int short_side, max_side; /* 0: the checkpoint's */
    bool quiet;
} options;

static frcnn_ctx *ctx;
static bool progress_open; /* a progress line without its newline is on the terminal */

/* "eval_voc: <what>: <detail>" on stderr, then exit 1. */
static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "%seval_voc: %s: %s\n", progress_open ? "\n" : "", what, detail);
    exit(1);
}

/* Fails with the library's message when a call failed. */
static void check(frcnn_status st, const char *what)
{
    if (st != FRCNN_OK)
        fail(what, frcnn_ctx_last_error(ctx));
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        fail("allocating memory", "out of memory");
    return p;
}

/* A count >= min for option name, or exit 2. */
static long count_arg(const char *name, const char *v, long min)
{
    char *end = NULL;
    long n = v ? strtol(v, &end, 10) : -1;
    if (!v || *end || end == v || n < min || n > 1000000000) {
        fprintf(stderr, "eval_voc: %s wants a count >= %ld\n", name, min);
        exit(2);
    }
    return n;
}

/* The options, or exit: 0 after --help, 2 on a usage error. */
static options parse_args(int argc, char **argv)
{
    options o = {NULL, NULL, "2007", "test", NULL, ".", 0, 0, 0, 0, false};
    const char *flags[] = {"--voc-root", "--ckpt", "--year", "--split", "--classes", "--out"};
    const char **slots[] = {&o.voc_root, &o.ckpt, &o.year, &o.split, &o.classes, &o.out};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL, **slot = NULL;
        for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++)
            if (strcmp(a, flags[k]) == 0)
                slot = slots[k];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            exit(0);
        } else if (strcmp(a, "--quiet") == 0) {
            o.quiet = true;
        } else if (strcmp(a, "--threads") == 0) {
            o.threads = (int)count_arg(a, v, 0), i++;
        } else if (strcmp(a, "--limit") == 0) {
            o.limit = count_arg(a, v, 1), i++;
        } else if (strcmp(a, "--short-side") == 0) {
            o.short_side = (int)count_arg(a, v, 16), i++;
        } else if (strcmp(a, "--max-side") == 0) {
            o.max_side = (int)count_arg(a, v, 16), i++;
        } else if (slot && v) {
            *slot = v, i++;
        } else {
            fprintf(stderr, "eval_voc: unknown or incomplete option %s\n%s", a, usage);
            exit(2);
        }
    }
    if (!o.voc_root || !o.ckpt) {
        fprintf(stderr, "eval_voc: --voc-root and --ckpt are required\n%s", usage);
        exit(2);
    }
    return o;
}

/* The model the checkpoint describes, with all of its weights, at the test scale of the options. */
static frcnn_model *load_model(const options *o, frcnn_config *config)
{
    const char *ckpt = o->ckpt;
    frcnn_model *model = NULL;
    frcnn_weights_report report;
    check(frcnn_ckpt_read_config(ctx, ckpt, config), "reading the configuration");
    if (o->short_side > 0)
        config->short_side = o->short_side;
    if (o->max_side > 0)
        config->max_side = o->max_side;
    check(frcnn_model_create(ctx, config, 0, &model), "creating the model");
    check(frcnn_ckpt_load_weights(ctx, ckpt, model, &report), "loading the weights");
    if (report.missing > 0 || report.mismatched > 0) {
        fprintf(stderr, "eval_voc: loading the weights: %s does not fit its own configuration: %zu missing, %zu of "
                "another shape (first: %s)\n", ckpt, report.missing, report.mismatched, report.first_problem);
        exit(1);
    }
    return model;
}

/* Class names: num_classes pointers into buf, [0] the background. */
typedef struct class_list {
    const char **names;
    char *buf;
} class_list;

/* From --classes FILE (one per line, surrounding blanks and blank lines ignored), else from the checkpoint; names
 * NULL when the checkpoint has none (the dataset's default classes then apply). */
static class_list read_class_names(const options *o, int num_classes)
{
    size_t cap = 65536 + (size_t)num_classes * 256;
    class_list l = {xmalloc((size_t)num_classes * sizeof *l.names), xmalloc(cap)};
    if (!o->classes) {
        frcnn_status st = frcnn_ckpt_read_class_names(ctx, o->ckpt, l.buf, cap, l.names, num_classes);
        if (st == FRCNN_ERR_NOT_FOUND) {
            free(l.names);
            l.names = NULL;
        } else {
            check(st, "reading the class names");
        }
        return l;
    }
    FILE *f = fopen(o->classes, "r");
    if (!f)
        fail(o->classes, "cannot open the class list");
    size_t len = fread(l.buf, 1, cap - 1, f);
    if (ferror(f) || !feof(f))
        fail(o->classes, "cannot read the class list, or it is too large");
    fclose(f);
    l.buf[len] = '\0';
    int found = 0;
    l.names[0] = "__background__";
    for (char *line = strtok(l.buf, "\r\n"); line; line = strtok(NULL, "\r\n")) {
        size_t end = strlen(line);
        while (end > 0 && (line[end - 1] == ' ' || line[end - 1] == '\t'))
            line[--end] = '\0';
        line += strspn(line, " \t");
        if (*line && ++found < num_classes)
            l.names[found] = line;
    }
    if (found != num_classes - 1) {
        fprintf(stderr, "eval_voc: %s: %d classes, the model has %d\n", o->classes, found, num_classes - 1);
        exit(1);
    }
    return l;
}

/* The split, with the classes in the model's order; refused when the counts differ. */
static frcnn_dataset *open_dataset(const options *o, const char *const *names, int num_classes)
{
    frcnn_voc_params p = frcnn_voc_params_default();
    frcnn_dataset *dataset = NULL;
    p.root = o->voc_root;
    p.year = o->year;
    p.split = o->split;
    if (names) {
        p.class_names = names + 1;
        p.n_classes = (size_t)num_classes - 1;
    }
    check(frcnn_voc_open(ctx, &p, &dataset), "opening the dataset");
    if (frcnn_dataset_num_classes(dataset) != num_classes) {
        fprintf(stderr, "eval_voc: opening the dataset: the model has %d classes, the dataset %d (background "
                "included); give the model's with --classes\n", num_classes, frcnn_dataset_num_classes(dataset));
        exit(1);
    }
    return dataset;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* "eval 120/4952 images, 0.41 s/image, ETA 33m": over itself on a terminal, one line each otherwise. */
static void progress(size_t done, size_t n, double elapsed)
{
    static int tty = -1;
    if (tty < 0)
        tty = isatty(fileno(stderr));
    double per = done ? elapsed / (double)done : 0.0, eta = per * (double)(n - done);
    char eta_s[32];
    if (eta < 60.0)
        snprintf(eta_s, sizeof eta_s, "%.0fs", eta);
    else if (eta < 3600.0)
        snprintf(eta_s, sizeof eta_s, "%.0fm", eta / 60.0);
    else
        snprintf(eta_s, sizeof eta_s, "%dh%02dm", (int)(eta / 3600.0), (int)fmod(eta / 60.0, 60.0));
    progress_open = tty && done < n;
    fprintf(stderr, "%seval %zu/%zu images, %.2f s/image, ETA %s%s", tty ? "\r" : "", done, n, per, eta_s,
            progress_open ? "" : "\n");
}

/* Detects on images [0, n) and gives the evaluation their detections and ground truth; ids[i] receives image
 * i's id. */
static void run(const options *o, frcnn_model *model, const frcnn_config *config, const frcnn_dataset *dataset,
                frcnn_voc_eval *eval, size_t n, const char **ids)
{
    frcnn_detection *dets = xmalloc((size_t)config->max_detections * sizeof *dets);
    double start = now(), last = start;
    for (size_t i = 0; i < n; i++) {
        frcnn_dataset_image info;
        frcnn_image *img = NULL;
        frcnn_tensor *tensor = NULL;
        float scale = 1.0f;
        size_t n_dets = 0;
        check(frcnn_dataset_image_info(dataset, i, &info), "reading the dataset");
        ids[i] = info.id;
        check(frcnn_voc_eval_set_truth(eval, i, info.objects, info.n_objects), "adding the ground truth");
        check(frcnn_image_load(ctx, info.path, &img), "loading an image");
        check(frcnn_image_prepare(ctx, config, img, false, &tensor, &scale), "preparing an image");
        frcnn_image_free(img);
        frcnn_input input = {tensor, scale};
        check(frcnn_model_detect(model, &input, dets, (size_t)config->max_detections, &n_dets), "detecting");
        frcnn_tensor_free(tensor);
        if (config->box_convention == FRCNN_BOXES_CONTINUOUS)
            for (size_t d = 0; d < n_dets; d++) { /* VOC's boxes end on their last pixel */
                dets[d].x2 -= 1.0f;
                dets[d].y2 -= 1.0f;
            }
        check(frcnn_voc_eval_add(eval, i, dets, n_dets), "adding the detections");
        double t = now();
        if (!o->quiet && (t - last >= 2.0 || i + 1 == n)) {
            progress(i + 1, n, t - start);
            last = t;
        }
    }
    free(dets);
}

/* Per class AP by both rules, then the means; NaN (a class without non-difficult objects) as "-". */
static void print_table(const char *const *names, int num_classes, const float *ap07, const float *ap10, float map07,
                        float map10)
{
    printf("%-20s %8s %8s\n", "class", "AP07", "AP10");
    for (int c = 1; c < num_classes; c++) {
        if (isnan(ap07[c]))
            printf("%-20s %8s %8s   (no objects)\n", names[c], "-", "-");
        else
            printf("%-20s %8.4f %8.4f\n", names[c], (double)ap07[c], (double)ap10[c]);
    }
    printf("%-20s %8.4f %8.4f\n", "mean", (double)map07, (double)map10);
}

int main(int argc, char **argv)
{
    options o = parse_args(argc, argv);
    frcnn_ctx_params params = frcnn_ctx_params_default();
    params.n_threads = o.threads;
    frcnn_status st = frcnn_ctx_create(&params, &ctx);
    if (st != FRCNN_OK)
        return fprintf(stderr, "eval_voc: creating a context: %s\n", frcnn_status_str(st)), 1;

    if (access(o.out, W_OK | X_OK) != 0) /* found now, not after the whole run */
        fail(o.out, strerror(errno));
    frcnn_config config;
    frcnn_model *model = load_model(&o, &config);
    class_list classes = read_class_names(&o, config.num_classes);
    frcnn_dataset *dataset = open_dataset(&o, classes.names, config.num_classes);
    const char *const *names = classes.names ? classes.names : frcnn_dataset_class_names(dataset);
    size_t n = frcnn_dataset_size(dataset);
    if (o.limit > 0 && (size_t)o.limit < n)
        n = (size_t)o.limit;
    if (!o.quiet)
        fprintf(stderr, "eval_voc: %s (%s backbone, %d classes) on %zu images of %s/%s at scale %d/%d\n", o.ckpt,
                frcnn_backbone_name(config.backbone), config.num_classes - 1, n, o.voc_root, o.split,
                config.short_side, config.max_side);

    frcnn_voc_eval *eval = NULL;
    const char **ids = xmalloc(n * sizeof *ids);
    float *ap07 = xmalloc((size_t)config.num_classes * sizeof *ap07);
    float *ap10 = xmalloc((size_t)config.num_classes * sizeof *ap10), map07, map10;
    check(frcnn_voc_eval_create(ctx, config.num_classes, n, &eval), "starting the evaluation");
    run(&o, model, &config, dataset, eval, n, ids);
    check(frcnn_voc_eval_compute(eval, true, ap07, &map07), "computing the VOC07 AP");
    check(frcnn_voc_eval_compute(eval, false, ap10, &map10), "computing the AP");
    print_table(names, config.num_classes, ap07, ap10, map07, map10);
    fflush(stdout);
    check(frcnn_voc_eval_write(eval, o.out, o.split, ids, names), "writing the result files");
    printf("result files: %s/comp4_det_%s_<class>.txt (%d files)\n", o.out, o.split, config.num_classes - 1);
    printf("mAP07 %.4f mAP10 %.4f\n", (double)map07, (double)map10);

    frcnn_voc_eval_free(eval);
    free(ap10);
    free(ap07);
    free(ids);
    free(classes.names);
    free(classes.buf);
    frcnn_dataset_free(dataset);
    frcnn_model_free(model);
    frcnn_ctx_free(ctx);
    return 0;
}
