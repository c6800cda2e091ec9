/* train_voc's command line: every option, its default per preset, and the run objects it implies. */
#ifndef TRAIN_VOC_OPTIONS_H
#define TRAIN_VOC_OPTIONS_H

#include "frcnn.h"

typedef struct train_options {
    const char *voc_root, *ckpt_dir, *year, *split, *preset, *classes_file, *log_path, *resume_path,
        *init_weights, *prefix, *optim, *lr_policy;
    bool classes_from_annotations, no_resume, overwrite, skip_bad_images, keep_difficult, no_flip,
        force_schedule;
    int64_t iters;        /* 0: from epochs, else the preset's */
    double epochs;
    float lr;             /* 0: the preset's */
    int64_t lr_steps[FRCNN_MAX_LR_MILESTONES];
    int n_lr_steps;       /* -1: the preset's */
    float lr_gamma;
    int64_t warmup;       /* -1: the preset's */
    float weight_decay;   /* < 0: the optimizer's */
    uint64_t seed;
    int threads;
    int accumulate;
    int64_t save_every;   /* iterations; 0: off */
    double save_minutes;  /* 0: off */
    int keep;
    int print_every;
    int short_side, max_side; /* 0: the preset's */
    int roi_batch, fc_channels; /* 0: the preset's */
    int norm_groups;      /* -1: the preset's */
    const char *roi_op;   /* NULL: the preset's */
    float dropout;        /* < 0: the preset's */
    float anchor_scales[FRCNN_MAX_ANCHOR_SHAPES];
    int n_anchor_scales;  /* 0: the preset's */
} train_options;

/* Parses argv into *o. Returns 0 to run, 1 after printing --help, -1 after printing an error. */
int options_parse(int argc, char **argv, train_options *o);

/* The model configuration the options ask for, for a dataset of num_classes classes (background included). */
frcnn_config options_config(const train_options *o, int num_classes);
frcnn_optim_params options_optim(const train_options *o);
/* The schedule and the number of iterations to train, for an epoch of epoch_length samples. */
frcnn_lr_schedule options_schedule(const train_options *o, int64_t total_iters);
int64_t options_total_iters(const train_options *o, uint64_t epoch_length);

#endif /* TRAIN_VOC_OPTIONS_H */
