/* detect: runs a trained detector from a checkpoint on image files, prints one line per detection and writes each
 * image with its boxes and labels drawn. Uses the public API alone, like any client:
 *   checkpoint -> configuration -> model -> weights -> for each image: load, prepare, detect, draw, save.
 * stdout holds the detections (tab-separated, for scripts); progress goes to stderr. */
#include "frcnn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *usage =
    "usage: detect --ckpt FILE [--out DIR] [--threshold T] [--threads N] [--short-side N] [--max-side N]\n"
    "              [--quiet] IMAGE...\n"
    "  --ckpt FILE      a checkpoint saved by training (weights, configuration, class names)\n"
    "  --out DIR        where to write NAME.det.jpg / NAME.det.png (default: the current folder)\n"
    "  --threshold T    the lowest score printed and drawn (default 0.5; the model keeps >= its configured 0.05)\n"
    "  --threads N      threads (default: one per core)\n"
    "  --short-side N --max-side N   test scale (default: the checkpoint's training scale)\n"
    "  --quiet          no progress on stderr, only the detections on stdout and errors\n"
    "Prints IMAGE<TAB>class<TAB>score<TAB>x1 y1 x2 y2 per detection (original-image pixels). Exits 1 if any image\n"
    "failed, 2 on a usage error.\n";

/* Distinct box colours (Tableau 20), chosen by class. */
static const uint8_t palette[][3] = {
    {31, 119, 180},  {255, 127, 14},  {44, 160, 44},   {214, 39, 40},   {148, 103, 189},
    {140, 86, 75},   {227, 119, 194}, {127, 127, 127}, {188, 189, 34},  {23, 190, 207},
    {174, 199, 232}, {255, 187, 120}, {152, 223, 138}, {255, 152, 150}, {197, 176, 213},
    {196, 156, 148}, {247, 182, 210}, {199, 199, 199}, {219, 219, 141}, {158, 218, 229},
};
#define N_COLOURS (sizeof palette / sizeof palette[0])

static frcnn_ctx *ctx;

static void die(frcnn_status st, const char *what)
{
    fprintf(stderr, "detect: %s: %s: %s\n", what, frcnn_status_str(st), frcnn_ctx_last_error(ctx));
    exit(1);
}

static void log_line(void *user, frcnn_log_level level, const char *line)
{
    (void)user, (void)level;
    fprintf(stderr, "detect: %s\n", line);
}

/* DIR/<file name without extension>.det.<jpg|png>: the input's extension when it is one we write. */
static void output_path(char *buf, size_t cap, const char *dir, const char *input)
{
    const char *base = strrchr(input, '/');
    base = base ? base + 1 : input;
    const char *dot = strrchr(base, '.');
    size_t stem = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    const char *ext = "png";
    if (dot && (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0))
        ext = "jpg";
    snprintf(buf, cap, "%s/%.*s.det.%s", dir, (int)stem, base, ext);
}

/* Boxes and "class 0.93" labels for the detections scoring at least threshold (dets are by descending score, so
 * the best are drawn last, on top). */
static void draw(frcnn_image *img, const frcnn_detection *dets, size_t n, float threshold, const char **names)
{
    int w = frcnn_image_width(img), h = frcnn_image_height(img);
    int short_side = w < h ? w : h, long_side = w > h ? w : h;
    int thickness = short_side / 200 > 2 ? short_side / 200 : 2;
    int scale = long_side < 400 ? 1 : 2;
    for (size_t i = n; i-- > 0;) {
        const frcnn_detection *d = &dets[i];
        if (d->score < threshold)
            continue;
        const uint8_t *colour = palette[(size_t)d->label % N_COLOURS];
        frcnn_image_draw_box(img, d->x1, d->y1, d->x2, d->y2, thickness, colour);
        char label[96];
        snprintf(label, sizeof label, "%s %.2f", names[d->label], (double)d->score);
        int tw, th;
        frcnn_image_text_size(label, scale, &tw, &th);
        int x = (int)(d->x1 + 0.5f), top = (int)(d->y1 + 0.5f);
        int y = top - th >= 0 ? top - th : top > 0 ? top : 0; /* above the box, or inside at the top border */
        if (x > w - tw) /* slid left to stay in the image */
            x = w - tw;
        bool light = colour[0] * 299 + colour[1] * 587 + colour[2] * 114 > 140000;
        const uint8_t black[3] = {0, 0, 0}, white[3] = {255, 255, 255};
        frcnn_image_draw_text(img, x < 0 ? 0 : x, y, label, scale, light ? black : white, colour);
    }
}

int main(int argc, char **argv)
{
    const char *ckpt = NULL, *out_dir = ".";
    float threshold = 0.5f;
    int threads = 0, first_image = argc, short_side = 0, max_side = 0;
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char *end = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(a, "--quiet") == 0) {
            quiet = true;
        } else if (i + 1 < argc && strcmp(a, "--ckpt") == 0) {
            ckpt = argv[++i];
        } else if (i + 1 < argc && strcmp(a, "--out") == 0) {
            out_dir = argv[++i];
        } else if (i + 1 < argc && strcmp(a, "--threshold") == 0) {
            threshold = strtof(argv[++i], &end);
            if (*end || !(threshold >= 0.0f && threshold <= 1.0f))
                return fprintf(stderr, "detect: --threshold wants a number in [0, 1]\n"), 2;
        } else if (i + 1 < argc && strcmp(a, "--threads") == 0) {
            threads = (int)strtol(argv[++i], &end, 10);
            if (*end || threads < 0)
                return fprintf(stderr, "detect: --threads wants a count >= 0\n"), 2;
        } else if (i + 1 < argc && (strcmp(a, "--short-side") == 0 || strcmp(a, "--max-side") == 0)) {
            long n = strtol(argv[++i], &end, 10);
            if (*end || n < 16 || n > 100000)
                return fprintf(stderr, "detect: %s wants a size in pixels >= 16\n", a), 2;
            *(a[2] == 's' ? &short_side : &max_side) = (int)n;
        } else if (a[0] == '-' && a[1] == '-') {
            return fprintf(stderr, "detect: unknown or incomplete option %s\n%s", a, usage), 2;
        } else {
            first_image = i;
            break;
        }
    }
    if (!ckpt || first_image >= argc)
        return fprintf(stderr, "%s", usage), 2;

    frcnn_ctx_params params = frcnn_ctx_params_default();
    params.n_threads = threads;
    params.log = quiet ? NULL : log_line;
    params.log_level = FRCNN_LOG_WARN;
    frcnn_status st = frcnn_ctx_create(&params, &ctx);
    if (st != FRCNN_OK)
        return fprintf(stderr, "detect: cannot create a context: %s\n", frcnn_status_str(st)), 1;

    /* The model as the checkpoint describes it, then its weights: all of them, or we refuse. */
    frcnn_config config;
    frcnn_model *model = NULL;
    if ((st = frcnn_ckpt_read_config(ctx, ckpt, &config)) != FRCNN_OK)
        die(st, "reading the configuration");
    if (short_side > 0)
        config.short_side = short_side;
    if (max_side > 0)
        config.max_side = max_side;
    if ((st = frcnn_model_create(ctx, &config, 0, &model)) != FRCNN_OK)
        die(st, "creating the model");
    frcnn_weights_report report;
    if ((st = frcnn_ckpt_load_weights(ctx, ckpt, model, &report)) != FRCNN_OK)
        die(st, "loading the weights");
    if (report.missing > 0 || report.mismatched > 0) {
        fprintf(stderr, "detect: %s does not fit its own configuration: %zu parameters missing, %zu of another "
                "shape (first: %s)\n", ckpt, report.missing, report.mismatched, report.first_problem);
        return 1;
    }

    /* Class names from the checkpoint, or "class<N>" for one saved without them. */
    int k = config.num_classes;
    size_t cap = (size_t)k * 256;
    char *name_buf = malloc(cap);
    const char **names = malloc((size_t)k * sizeof *names);
    frcnn_detection *dets = malloc((size_t)config.max_detections * sizeof *dets);
    if (!name_buf || !names || !dets)
        return fprintf(stderr, "detect: out of memory\n"), 1;
    st = frcnn_ckpt_read_class_names(ctx, ckpt, name_buf, cap, names, k);
    if (st == FRCNN_ERR_NOT_FOUND) {
        for (int c = 0; c < k; c++) {
            snprintf(name_buf + 16 * c, 16, "class%d", c);
            names[c] = name_buf + 16 * c;
        }
    } else if (st != FRCNN_OK) {
        die(st, "reading the class names");
    }
    if (!quiet)
        fprintf(stderr, "detect: %s: %s backbone, %d classes, threshold %.2f\n", ckpt,
                frcnn_backbone_name(config.backbone), k - 1, (double)threshold);

    int failed = 0;
    for (int i = first_image; i < argc; i++) {
        const char *path = argv[i];
        frcnn_image *img = NULL;
        frcnn_tensor *tensor = NULL;
        float scale = 1.0f;
        size_t n = 0;
        char out[4096];
        output_path(out, sizeof out, out_dir, path);
        if ((st = frcnn_image_load(ctx, path, &img)) == FRCNN_OK &&
            (st = frcnn_image_prepare(ctx, &config, img, false, &tensor, &scale)) == FRCNN_OK) {
            frcnn_input input = {tensor, scale};
            st = frcnn_model_detect(model, &input, dets, (size_t)config.max_detections, &n);
        }
        if (st == FRCNN_OK) {
            for (size_t j = 0; j < n; j++)
                if (dets[j].score >= threshold)
                    printf("%s\t%s\t%.3f\t%.1f %.1f %.1f %.1f\n", path, names[dets[j].label], (double)dets[j].score,
                           (double)dets[j].x1, (double)dets[j].y1, (double)dets[j].x2, (double)dets[j].y2);
            fflush(stdout);
            draw(img, dets, n, threshold, names);
            st = frcnn_image_save(ctx, out, img);
        }
        if (st != FRCNN_OK) {
            fprintf(stderr, "detect: %s\n", frcnn_ctx_last_error(ctx));
            failed++;
        } else if (!quiet) {
            fprintf(stderr, "detect: %s -> %s\n", path, out);
        }
        frcnn_tensor_free(tensor);
        frcnn_image_free(img);
    }
    if (failed && !quiet)
        fprintf(stderr, "detect: %d of %d images failed\n", failed, argc - first_image);

    free(dets);
    free(names);
    free(name_buf);
    frcnn_model_free(model);
    frcnn_ctx_free(ctx);
    return failed ? 1 : 0;
}
