/* The detector's internal layout: parameters, backbone layer table, planned activation buffers. Shared by
 * model.c (create, parameters, planning), train_step.c and detect.c. Internal. */
#ifndef FRCNN_MODEL_INTERNAL_H
#define FRCNN_MODEL_INTERNAL_H

#include "internal.h"

#define FRCNN__MAX_CONVS 16
#define FRCNN__PARAM_NAME 64

/* The standard deviations of natural images' pixel values, B G R in 0..255 (ImageNet's, 0.225 0.224 0.229 times
 * 255): the small preset's pixel_stds, and the input scale the first convolution's initialisation assumes. */
extern const float frcnn__imagenet_pixel_stds[3];

typedef struct frcnn__param_slot {
    char name[FRCNN__PARAM_NAME];
    frcnn_tensor *value, *grad;
    bool is_bias, trainable;
} frcnn__param_slot;

/* One backbone stage: 3x3 convolution (padding 1), GroupNorm when configured, ReLU, optionally followed by a
 * 2x2 / stride 2 max-pool in Caffe's ceil mode. */
typedef struct frcnn__conv_layer {
    int cin, cout;
    bool pool_after;
    int weight; /* index of the weight in the parameter table; the bias follows it */
    int norm;   /* index of the GroupNorm scale (its shift follows), or -1 */
} frcnn__conv_layer;

/* Indices of the head parameters (weights; each bias follows its weight). */
typedef struct frcnn__heads {
    int rpn_conv, rpn_cls, rpn_box, fc6, fc7, cls_score, bbox_pred;
} frcnn__heads;

/* A tensor header over planned memory: views are re-pointed at every step. */
typedef struct frcnn_tensor frcnn__view;

/* The buffers of one step for an input of h x w. Tensors are views into the model's activation block. */
typedef struct frcnn__acts {
    int h, w;                               /* input */
    int fh, fw;                             /* feature map */
    size_t anchors_n;                       /* fh * fw * A */
    frcnn__view out[FRCNN__MAX_CONVS];      /* post-ReLU conv outputs (frozen layers share two buffers) */
    frcnn__view conv[FRCNN__MAX_CONVS];     /* with GroupNorm: the convolution's output, normalised into out */
    frcnn__view norm_mean[FRCNN__MAX_CONVS], norm_rstd[FRCNN__MAX_CONVS]; /* (1, groups) */
    frcnn__view pooled[FRCNN__MAX_CONVS];   /* after the max-pool, when there is one */
    bool banded[FRCNN__MAX_CONVS];          /* run in bands of rows: out[i] has no memory (backbone.c) */
    int band_rows[FRCNN__MAX_CONVS];        /* a band's output rows, even */
    float *band_in, *band_out, *band_pooled; /* one band: input rows with halo, output, pooled output */
    int32_t *pool_argmax[FRCNN__MAX_CONVS];
    frcnn__view grad_a, grad_b;             /* backbone gradient ping-pong, sized per use */
    float *grad_a_mem, *grad_b_mem;
    frcnn__view rpn_h, rpn_cls, rpn_box;    /* (1, R, fh, fw), (1, 2A, fh, fw), (1, 4A, fh, fw) */
    frcnn__view d_rpn_h, d_rpn_cls, d_rpn_box;
    float *anchors;                         /* (anchors_n, 4) */
    frcnn__view rpn_logits, rpn_prob, d_rpn_logits;          /* (anchors_n, 2) */
    frcnn__view rpn_deltas, rpn_targets, rpn_in_w, rpn_out_w, d_rpn_deltas; /* (anchors_n, 4) */
    int32_t *rpn_labels;
    float *fg_scores;                       /* (anchors_n) */
    float *proposals;                       /* (post_nms_top_n, 4) */
    float *proposal_scores;
    frcnn__view rois;                       /* (n_rois, 5) */
    frcnn__view align_rois;                 /* (n_rois, 5): the rois in continuous coordinates, for RoI align */
    float *roi_boxes;                       /* (batch, 4) sampled */
    int32_t *roi_labels;
    frcnn__view roi_targets, roi_in_w;      /* (n_rois, 4K) */
    frcnn__view pool5, d_pool5;             /* (n_rois, C, P, P) */
    int32_t *pool5_argmax;
    frcnn__view fc6, fc7, mask6, mask7, d_fc6, d_fc7; /* (n_rois, F) */
    frcnn__view cls, cls_prob, d_cls;       /* (n_rois, K) */
    frcnn__view box, d_box;                 /* (n_rois, 4K) */
} frcnn__acts;

/* Where a stage-by-stage step stands (frcnn_model_stage_begin and the stage calls). */
typedef struct frcnn__stage {
    bool begun, train;
    const frcnn_tensor *image;
    frcnn_tensor *feature;     /* set by the backbone forward */
    bool rpn_done, head_done;  /* forward stages run */
    bool d_feature_started;    /* the feature map's gradient was zeroed and has received a backward */
    bool head_back, rpn_back;  /* backward stages run */
    size_t n_rois;
} frcnn__stage;

struct frcnn_model {
    frcnn_ctx *ctx;
    frcnn_config cfg;
    frcnn__param_slot *params;
    size_t n_params, params_cap; /* used and allocated slots */
    int n_convs;
    frcnn__conv_layer convs[FRCNN__MAX_CONVS];
    frcnn__heads heads;
    int num_anchors;
    float base_anchors[FRCNN_MAX_ANCHOR_SHAPES * FRCNN_MAX_ANCHOR_SHAPES * 4];
    int max_rois;                /* the largest RoI batch: max(train roi batch, test post-NMS top-N) */
    int plan_short, plan_long;   /* the largest input: sides sorted */
    unsigned char *act_mem;      /* activations: one block carved anew at every step */
    size_t act_bytes;
    frcnn_arena *scratch;        /* NMS, targets */
    void *kernel_ws;             /* the convolutions' and RoI align's workspace, sized for the largest input */
    size_t kernel_ws_bytes;
    frcnn__acts a;
    frcnn__stage stage;
};

frcnn_tensor *frcnn__param_value(const frcnn_model *m, int index);
frcnn_tensor *frcnn__param_grad(const frcnn_model *m, int index);

/* Lays out every buffer of a step for an h x w input in the activation block. train: also what only training
 * needs. Fails with FRCNN_ERR_SHAPE when the input exceeds the plan. */
frcnn_status frcnn__acts_layout(frcnn_model *m, int h, int w, bool train);

/* The backbone forward pass over acts->out/pooled: returns the feature map view. */
frcnn_status frcnn__backbone_forward(frcnn_model *m, const frcnn_tensor *image, bool train, frcnn_tensor **feature);
/* Backward from d_feature (in grad_a, shaped like the feature map) down to the first trainable layer. */
frcnn_status frcnn__backbone_backward(frcnn_model *m, const frcnn_tensor *image);

/* RPN head forward: rpn_h, rpn_cls, rpn_box from the feature map; then logits/deltas in anchor order. */
frcnn_status frcnn__rpn_forward(frcnn_model *m, const frcnn_tensor *feature);
/* Foreground probability per anchor from rpn_logits into fg_scores (no loss). */
void frcnn__rpn_fg_scores(frcnn_model *m);
/* Backward of the RPN head from d_logits (n, 2) / d_deltas (n, 4) in anchor order into d_feature (added). */
frcnn_status frcnn__rpn_backward(frcnn_model *m, const frcnn_tensor *feature, const float *d_logits,
                                 const float *d_deltas, frcnn_tensor *d_feature);

/* Head forward on acts->rois: pool5, fc6, fc7 (+ dropout in training), cls, box. */
frcnn_status frcnn__head_forward(frcnn_model *m, const frcnn_tensor *feature, bool train, frcnn_rng *rng);
/* Head backward from d_cls (r, K) / d_box (r, 4K) into d_feature (added). */
frcnn_status frcnn__head_backward(frcnn_model *m, const frcnn_tensor *d_cls, const frcnn_tensor *d_box,
                                  frcnn_tensor *d_feature);

/* Changes a view's first dimension (the number of RoIs of this step); the memory was planned for the most. */
void frcnn__view_rows(frcnn__view *v, int64_t rows);

/* Views a tensor as (n, ...) over memory. */
void frcnn__view_set(frcnn__view *v, float *data, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3);

#endif /* FRCNN_MODEL_INTERNAL_H */
