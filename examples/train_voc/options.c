/* train_voc's options: parsing, --help, and the configuration, optimizer and schedule they imply. The presets'
 * defaults live here: vgg16 is the paper's recipe; small is what trains best from scratch on a CPU (docs/training.md). */
#include "options.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: train_voc --voc-root DIR --ckpt-dir DIR [options]\n"
    "\n"
    "Trains Faster R-CNN on a Pascal VOC format dataset. Resumes by default: run the same command again after any\n"
    "interruption and training continues exactly where the newest good checkpoint in --ckpt-dir left it.\n"
    "\n"
    "data\n"
    "  --voc-root DIR        VOCdevkit folder (holding VOC<year>/) or a VOC<year> folder\n"
    "  --year Y              2007\n"
    "  --split NAME          ImageSets/Main/NAME.txt: trainval\n"
    "  --classes FILE        class names, one per line (default: the 20 VOC classes)\n"
    "  --classes-from-annotations   use every class name found in the annotations, sorted\n"
    "  --keep-difficult      train on objects marked difficult too\n"
    "  --no-flip             no horizontally flipped copies\n"
    "  --skip-bad-images     warn and skip an unreadable image instead of stopping\n"
    "model\n"
    "  --preset small|vgg16  small (default): CPU-sized network trained from scratch; vgg16: the paper's\n"
    "  --short-side N --max-side N     input scale (small 320/544, vgg16 600/1000)\n"
    "  --anchor-scales A,B,..          anchor sizes in units of 16 px (small 2,4,8,16; vgg16 8,16,32)\n"
    "  --roi-batch N         RoIs sampled per image for the head (128)\n"
    "  --fc N                width of fc6 and fc7 (small 1024, vgg16 4096)\n"
    "  --roi-op pool|align|align-legacy   how the head reads a RoI's features (small align, vgg16 pool)\n"
    "  --norm-groups G       GroupNorm after each backbone convolution with G groups; 0: none\n"
    "  --dropout P           dropout after fc6 and fc7 (0.5)\n"
    "  --init-weights FILE   start from these weights (pretrained or an earlier run), counters at zero\n"
    "optimization\n"
    "  --iters N | --epochs E          length of training (small 20000, vgg16 70000 iterations)\n"
    "  --optim sgd|adam      sgd (momentum 0.9, weight decay 5e-4)\n"
    "  --lr X                base learning rate (small 0.02, vgg16 0.001)\n"
    "  --lr-policy step|cosine|constant   small cosine, vgg16 step\n"
    "  --lr-steps N,M,..     step policy: iterations where the rate is multiplied by --lr-gamma (0.1)\n"
    "  --warmup N            linear warm-up iterations (small 300, vgg16 0)\n"
    "  --weight-decay X      --accumulate K (images per update, 1)\n"
    "  --seed S              all random choices (1)\n"
    "  --threads T           0: one per core\n"
    "checkpoints and logs\n"
    "  --ckpt-dir DIR        must exist; on Colab put it on Google Drive (/content/drive/MyDrive/...)\n"
    "  --save-every N        iterations between checkpoints (1000; 0: off)\n"
    "  --save-minutes M      minutes between checkpoints (10; 0: off)\n"
    "  --keep K              checkpoints kept (3)\n"
    "  --prefix NAME         checkpoint file prefix (frcnn)\n"
    "  --resume FILE         continue from this checkpoint instead of the newest\n"
    "  --no-resume           start over; refused while --ckpt-dir holds checkpoints unless --overwrite\n"
    "  --overwrite           with --no-resume: delete the old checkpoints and log first\n"
    "  --force-schedule      resume even though the learning-rate schedule changed\n"
    "  --log FILE            JSON lines, one per iteration (default: <ckpt-dir>/<prefix>-log.jsonl)\n"
    "  --print-every N       progress line every N iterations (20)\n"
    "\n"
    "SIGINT, SIGTERM and SIGHUP finish the current step, save a checkpoint and exit.\n";

static int bad(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "train_voc: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (see --help)\n");
    return -1;
}

static bool parse_i64(const char *s, int64_t lo, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo)
        return false;
    *out = v;
    return true;
}

static bool parse_f(const char *s, double lo, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo) || v > 1e12)
        return false;
    *out = v;
    return true;
}

/* A comma-separated list of at most max positive numbers. */
static int parse_list(const char *s, double *out, int max)
{
    int n = 0;
    char buf[256];
    if (strlen(s) >= sizeof buf)
        return -1;
    strcpy(buf, s);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (n == max || !parse_f(tok, 0, &out[n]) || out[n] <= 0)
            return -1;
        n++;
    }
    return n;
}

static void set_defaults(train_options *o)
{
    memset(o, 0, sizeof *o);
    o->year = "2007";
    o->split = "trainval";
    o->preset = "small";
    o->prefix = "frcnn";
    o->optim = "sgd";
    o->n_lr_steps = -1;
    o->lr_gamma = 0.1f;
    o->warmup = -1;
    o->weight_decay = -1;
    o->seed = 1;
    o->accumulate = 1;
    o->save_every = 1000;
    o->save_minutes = 10;
    o->keep = 3;
    o->print_every = 20;
    o->norm_groups = -1;
    o->dropout = -1;
}

/* The op frcnn_roi_op_name calls `name`; false when there is none. */
static bool roi_op_named(const char *name, frcnn_roi_op *op)
{
    for (int i = FRCNN_ROI_POOL; frcnn_roi_op_name((frcnn_roi_op)i); i++)
        if (!strcmp(name, frcnn_roi_op_name((frcnn_roi_op)i))) {
            *op = (frcnn_roi_op)i;
            return true;
        }
    return false;
}

int options_parse(int argc, char **argv, train_options *o)
{
    set_defaults(o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 1;
        }
        /* Flags without a value. */
        struct { const char *name; bool *flag; } flags[] = {
            {"--classes-from-annotations", &o->classes_from_annotations}, {"--no-resume", &o->no_resume},
            {"--overwrite", &o->overwrite}, {"--skip-bad-images", &o->skip_bad_images},
            {"--keep-difficult", &o->keep_difficult}, {"--no-flip", &o->no_flip},
            {"--force-schedule", &o->force_schedule}};
        bool matched = false;
        for (size_t k = 0; k < sizeof flags / sizeof flags[0] && !matched; k++)
            if (!strcmp(a, flags[k].name))
                matched = *flags[k].flag = true;
        if (matched)
            continue;
        if (strncmp(a, "--", 2) != 0)
            return bad("unexpected argument '%s'%s", a, "");
        if (i + 1 >= argc)
            return bad("%s needs a value%s", a, "");
        const char *v = argv[++i];
        int64_t n;
        double d, list[FRCNN_MAX_LR_MILESTONES];
        /* Options with a string value. */
        struct { const char *name; const char **dst; } strings[] = {
            {"--voc-root", &o->voc_root}, {"--ckpt-dir", &o->ckpt_dir}, {"--year", &o->year},
            {"--split", &o->split}, {"--preset", &o->preset}, {"--classes", &o->classes_file},
            {"--log", &o->log_path}, {"--resume", &o->resume_path}, {"--init-weights", &o->init_weights},
            {"--prefix", &o->prefix}, {"--optim", &o->optim}, {"--lr-policy", &o->lr_policy},
            {"--roi-op", &o->roi_op}};
        for (size_t k = 0; k < sizeof strings / sizeof strings[0] && !matched; k++)
            if (!strcmp(a, strings[k].name)) {
                *strings[k].dst = v;
                matched = true;
            }
        if (matched)
            continue;
        if (!strcmp(a, "--iters") && parse_i64(v, 1, &n))
            o->iters = n;
        else if (!strcmp(a, "--epochs") && parse_f(v, 1e-6, &d))
            o->epochs = d;
        else if (!strcmp(a, "--lr") && parse_f(v, 1e-9, &d) && d < 10)
            o->lr = (float)d;
        else if (!strcmp(a, "--lr-gamma") && parse_f(v, 1e-6, &d) && d <= 1)
            o->lr_gamma = (float)d;
        else if (!strcmp(a, "--warmup") && parse_i64(v, 0, &n))
            o->warmup = n;
        else if (!strcmp(a, "--weight-decay") && parse_f(v, 0, &d) && d < 1)
            o->weight_decay = (float)d;
        else if (!strcmp(a, "--seed") && parse_i64(v, 0, &n))
            o->seed = (uint64_t)n;
        else if (!strcmp(a, "--threads") && parse_i64(v, 0, &n) && n <= 1024)
            o->threads = (int)n;
        else if (!strcmp(a, "--accumulate") && parse_i64(v, 1, &n) && n <= 1024)
            o->accumulate = (int)n;
        else if (!strcmp(a, "--save-every") && parse_i64(v, 0, &n))
            o->save_every = n;
        else if (!strcmp(a, "--save-minutes") && parse_f(v, 0, &d))
            o->save_minutes = d;
        else if (!strcmp(a, "--keep") && parse_i64(v, 1, &n) && n <= 1000)
            o->keep = (int)n;
        else if (!strcmp(a, "--print-every") && parse_i64(v, 1, &n) && n <= 1000000)
            o->print_every = (int)n;
        else if (!strcmp(a, "--short-side") && parse_i64(v, 32, &n) && n <= 8192)
            o->short_side = (int)n;
        else if (!strcmp(a, "--max-side") && parse_i64(v, 32, &n) && n <= 8192)
            o->max_side = (int)n;
        else if (!strcmp(a, "--roi-batch") && parse_i64(v, 1, &n) && n <= 4096)
            o->roi_batch = (int)n;
        else if (!strcmp(a, "--fc") && parse_i64(v, 1, &n) && n <= 65536)
            o->fc_channels = (int)n;
        else if (!strcmp(a, "--norm-groups") && parse_i64(v, 0, &n) && n <= 64)
            o->norm_groups = (int)n;
        else if (!strcmp(a, "--dropout") && parse_f(v, 0, &d) && d < 1)
            o->dropout = (float)d;
        else if (!strcmp(a, "--lr-steps") && (o->n_lr_steps = parse_list(v, list, FRCNN_MAX_LR_MILESTONES)) >= 0)
            for (int k = 0; k < o->n_lr_steps; k++)
                o->lr_steps[k] = (int64_t)list[k];
        else if (!strcmp(a, "--anchor-scales") &&
                 (o->n_anchor_scales = parse_list(v, list, FRCNN_MAX_ANCHOR_SHAPES)) > 0)
            for (int k = 0; k < o->n_anchor_scales; k++)
                o->anchor_scales[k] = (float)list[k];
        else
            return bad("bad option or value: %s %s", a, v);
    }
    if (!o->voc_root || !o->ckpt_dir)
        return bad("%s is required%s", o->voc_root ? "--ckpt-dir" : "--voc-root", "");
    if (strcmp(o->preset, "small") && strcmp(o->preset, "vgg16"))
        return bad("--preset is '%s'; choose small or vgg16%s", o->preset, "");
    if (strcmp(o->optim, "sgd") && strcmp(o->optim, "adam"))
        return bad("--optim is '%s'; choose sgd or adam%s", o->optim, "");
    if (o->lr_policy && strcmp(o->lr_policy, "step") && strcmp(o->lr_policy, "cosine") &&
        strcmp(o->lr_policy, "constant"))
        return bad("--lr-policy is '%s'; choose step, cosine or constant%s", o->lr_policy, "");
    frcnn_roi_op op;
    if (o->roi_op && !roi_op_named(o->roi_op, &op))
        return bad("--roi-op is '%s'; choose pool, align or align-legacy%s", o->roi_op, "");
    if (o->iters && o->epochs)
        return bad("give --iters or --epochs, not both%s%s", "", "");
    if (o->overwrite && !o->no_resume)
        return bad("--overwrite only goes with --no-resume%s%s", "", "");
    if (o->resume_path && o->no_resume)
        return bad("--resume and --no-resume contradict each other%s%s", "", "");
    if (o->classes_file && o->classes_from_annotations)
        return bad("give --classes or --classes-from-annotations, not both%s%s", "", "");
    if (!*o->prefix || strchr(o->prefix, '/'))
        return bad("--prefix '%s' must be a plain name%s", o->prefix, "");
    return 0;
}

static bool is_vgg16(const train_options *o)
{
    return strcmp(o->preset, "vgg16") == 0;
}

frcnn_config options_config(const train_options *o, int num_classes)
{
    frcnn_config c = is_vgg16(o) ? frcnn_config_vgg16() : frcnn_config_small();
    c.num_classes = num_classes;
    if (o->short_side)
        c.short_side = o->short_side;
    if (o->max_side)
        c.max_side = o->max_side;
    if (o->roi_batch)
        c.roi_targets.batch_size = o->roi_batch;
    if (o->fc_channels)
        c.fc_channels = o->fc_channels;
    if (o->norm_groups >= 0)
        c.norm_groups = o->norm_groups;
    if (o->roi_op)
        roi_op_named(o->roi_op, &c.roi_op); /* checked by options_parse */
    if (o->dropout >= 0)
        c.dropout = o->dropout;
    if (o->n_anchor_scales) {
        c.anchors.n_scales = o->n_anchor_scales;
        memcpy(c.anchors.scales, o->anchor_scales, sizeof(float) * (size_t)o->n_anchor_scales);
    }
    return c;
}

frcnn_optim_params options_optim(const train_options *o)
{
    frcnn_optim_params p = strcmp(o->optim, "adam") == 0 ? frcnn_optim_params_adam() : frcnn_optim_params_sgd();
    if (o->weight_decay >= 0)
        p.weight_decay = o->weight_decay;
    p.accumulate = o->accumulate;
    if (!is_vgg16(o))
        p.clip_norm = 10.0f; /* from scratch, the first steps can be large */
    return p;
}

int64_t options_total_iters(const train_options *o, uint64_t epoch_length)
{
    if (o->iters)
        return o->iters;
    if (o->epochs) {
        double n = o->epochs * (double)epoch_length / o->accumulate;
        return n < 1 ? 1 : (int64_t)(n + 0.5);
    }
    return is_vgg16(o) ? 70000 : 20000;
}

frcnn_lr_schedule options_schedule(const train_options *o, int64_t total_iters)
{
    frcnn_lr_schedule s = frcnn_lr_schedule_paper();
    const char *policy = o->lr_policy ? o->lr_policy : is_vgg16(o) ? "step" : "cosine";
    if (!is_vgg16(o)) {
        s.base_lr = 0.02f; /* measured on the demo data: 0.25 mAP at 1600 iterations against 0.18 with 0.01 */
        s.warmup_iters = 300;
        s.warmup_factor = 0.1f;
    }
    if (o->lr > 0)
        s.base_lr = o->lr;
    if (strcmp(o->optim, "adam") == 0 && o->lr <= 0)
        s.base_lr = 0.0001f;
    if (o->warmup >= 0)
        s.warmup_iters = o->warmup;
    s.total_iters = total_iters;
    s.kind = !strcmp(policy, "cosine") ? FRCNN_LR_COSINE : !strcmp(policy, "constant") ? FRCNN_LR_CONSTANT
                                                                                      : FRCNN_LR_STEP;
    s.gamma = o->lr_gamma;
    if (o->n_lr_steps >= 0) {
        s.n_milestones = o->n_lr_steps;
        memcpy(s.milestones, o->lr_steps, sizeof(int64_t) * (size_t)o->n_lr_steps);
    } else if (!is_vgg16(o) || o->iters || o->epochs) {
        s.n_milestones = 1; /* the paper's proportion: the rate drops for the last 2/7 */
        s.milestones[0] = total_iters * 5 / 7;
    }
    return s;
}
