/* Model configurations: the paper's VGG16 preset, the small CPU preset, and validation of any configuration. */
#include "model_internal.h"

#include <math.h>
#include <string.h>

const char *frcnn_backbone_name(frcnn_backbone backbone)
{
    switch (backbone) {
    case FRCNN_BACKBONE_VGG16: return "vgg16";
    case FRCNN_BACKBONE_SMALL: return "small";
    }
    return "unknown";
}

const char *frcnn_roi_op_name(frcnn_roi_op op)
{
    switch (op) {
    case FRCNN_ROI_POOL: return "pool";
    case FRCNN_ROI_ALIGN: return "align";
    case FRCNN_ROI_ALIGN_LEGACY: return "align-legacy";
    }
    return NULL;
}

const float frcnn__imagenet_pixel_stds[3] = {57.375f, 57.12f, 58.395f};

/* py-faster-rcnn lib/fast_rcnn/config.py and experiments/cfgs/faster_rcnn_end2end.yml. */
frcnn_config frcnn_config_vgg16(void)
{
    frcnn_config c;
    memset(&c, 0, sizeof c); /* padding and any field added later start at 0 */
    c.backbone = FRCNN_BACKBONE_VGG16;
    c.num_classes = 21;
    c.short_side = 600; /* __C.TRAIN.SCALES = (600,) */
    c.max_side = 1000;  /* __C.TRAIN.MAX_SIZE */
    c.pixel_means[0] = 102.9801f;
    c.pixel_means[1] = 115.9465f;
    c.pixel_means[2] = 122.7717f;
    c.pixel_stds[0] = c.pixel_stds[1] = c.pixel_stds[2] = 1.0f;
    c.frozen_convs = 4; /* conv1_x and conv2_x: lr_mult 0 in train.prototxt */
    c.norm_groups = 0;  /* VGG16 has no normalisation layers */
    c.anchors = frcnn_anchor_params_default();
    c.feat_stride = 16;
    c.rpn_channels = 512;
    c.rpn_targets = frcnn_anchor_target_params_default();
    c.rpn_sigma = 3.0f; /* rpn_loss_bbox: smooth_l1_loss_param { sigma: 3.0 } */
    c.train_proposals = frcnn_proposal_params_default(true);
    c.test_proposals = frcnn_proposal_params_default(false);
    c.roi_targets = frcnn_roi_target_params_default();
    c.max_gt_boxes = 256;
    c.pooled_size = 7;
    c.roi_op = FRCNN_ROI_POOL; /* roi_pool5 */
    c.fc_channels = 4096;
    c.dropout = 0.5f;
    c.head_sigma = 1.0f;
    c.score_threshold = 0.05f; /* test_net: thresh=0.05 */
    c.test_nms_iou = 0.3f;     /* __C.TEST.NMS */
    c.max_detections = 100;    /* test_net: max_per_image=100 */
    return c;
}

/* A network sized for a 2-core CPU; see docs/model.md for why these values. Trained from scratch, so nothing is
 * frozen. */
frcnn_config frcnn_config_small(void)
{
    frcnn_config c = frcnn_config_vgg16();
    c.backbone = FRCNN_BACKBONE_SMALL;
    c.short_side = 320;
    c.max_side = 544;
    c.frozen_convs = 0;
    /* Trained from scratch: unit-scale inputs keep He-initialised activations near unit scale. */
    memcpy(c.pixel_stds, frcnn__imagenet_pixel_stds, sizeof c.pixel_stds);
    c.rpn_channels = 256;
    c.fc_channels = 1024;
    /* No dropout in the head, as torchvision's and Detectron2's box heads: measured on the synthetic demo data,
     * VOC07 mAP after 1600 iterations rose from 0.18 with the paper's 0.5 to 0.28 (docs/model.md). */
    c.dropout = 0.0f;
    /* RoI align: bilinear samples instead of integer bins. On the synthetic demo data, VOC07 mAP after the demo's
     * 3200 iterations rose from 0.76 to 0.82 (seed 1) and from 0.71 to 0.75 (seed 2), docs/training.md. */
    c.roi_op = FRCNN_ROI_ALIGN;
    /* Anchors of 32..256 px: at 320 px the paper's 128..512 px (for 600 px) miss the small objects entirely. */
    c.anchors.n_scales = 4;
    c.anchors.scales[0] = 2;
    c.anchors.scales[1] = 4;
    c.anchors.scales[2] = 8;
    c.anchors.scales[3] = 16;
    return c;
}

static bool finite_in(float v, float lo, float hi)
{
    return isfinite(v) && v >= lo && v <= hi;
}

frcnn_status frcnn_config_validate(frcnn_ctx *ctx, const frcnn_config *c)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!c)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "config is NULL");
#define BAD(...) return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "config: " __VA_ARGS__)
    if (c->backbone != FRCNN_BACKBONE_VGG16 && c->backbone != FRCNN_BACKBONE_SMALL)
        BAD("backbone %d is not a known backbone", (int)c->backbone);
    int convs = c->backbone == FRCNN_BACKBONE_VGG16 ? 13 : 5;
    if (c->num_classes < 2 || c->num_classes > 100000)
        BAD("num_classes %d, expected 2 (background + one class) or more", c->num_classes);
    if (c->short_side < 32 || c->max_side < c->short_side || c->max_side > 8192)
        BAD("short_side %d / max_side %d, expected 32 <= short_side <= max_side <= 8192", c->short_side,
            c->max_side);
    for (int i = 0; i < 3; i++)
        if (!finite_in(c->pixel_means[i], -1e6f, 1e6f) || !finite_in(c->pixel_stds[i], 1e-6f, 1e6f))
            BAD("pixel_means[%d] must be finite and pixel_stds[%d] positive", i, i);
    if (c->frozen_convs < 0 || c->frozen_convs > convs)
        BAD("frozen_convs %d, the %s backbone has %d convolutions", c->frozen_convs,
            frcnn_backbone_name(c->backbone), convs);
    /* Every width is a multiple of the first (small 32, vgg16 64), so dividing it divides them all. */
    const int first_width = c->backbone == FRCNN_BACKBONE_VGG16 ? 64 : 32;
    if (c->norm_groups < 0 || (c->norm_groups > 0 && first_width % c->norm_groups != 0))
        BAD("norm_groups %d, expected 0 (none) or a divisor of %d, the first convolution's width", c->norm_groups,
            first_width);
    if (c->anchors.n_ratios < 1 || c->anchors.n_ratios > FRCNN_MAX_ANCHOR_SHAPES || c->anchors.n_scales < 1 ||
        c->anchors.n_scales > FRCNN_MAX_ANCHOR_SHAPES)
        BAD("anchors: %d ratios and %d scales, expected 1 to %d each", c->anchors.n_ratios, c->anchors.n_scales,
            FRCNN_MAX_ANCHOR_SHAPES);
    if (c->feat_stride != 16)
        BAD("feat_stride %d, both backbones have stride 16", c->feat_stride);
    if (c->rpn_channels < 1 || c->rpn_channels > 65536)
        BAD("rpn_channels %d out of range", c->rpn_channels);
    const frcnn_anchor_target_params *r = &c->rpn_targets;
    if (!finite_in(r->positive_iou, 0, 1) || !finite_in(r->negative_iou, 0, 1) || r->negative_iou > r->positive_iou ||
        r->batch_size < 1 || !finite_in(r->fg_fraction, 0, 1))
        BAD("rpn_targets: thresholds must satisfy 0 <= negative_iou <= positive_iou <= 1, batch_size >= 1, "
            "fg_fraction in [0, 1]");
    const frcnn_proposal_params *pp[2] = {&c->train_proposals, &c->test_proposals};
    for (int i = 0; i < 2; i++)
        if (pp[i]->pre_nms_top_n < 1 || pp[i]->post_nms_top_n < 1 || !finite_in(pp[i]->nms_iou, 0, 1) ||
            !finite_in(pp[i]->min_size, 0, 1e6f))
            BAD("%s_proposals: top-N counts must be >= 1, nms_iou in [0, 1], min_size >= 0", i ? "test" : "train");
    const frcnn_roi_target_params *t = &c->roi_targets;
    if (t->batch_size < 1 || !finite_in(t->fg_fraction, 0, 1) || !finite_in(t->fg_iou, 0, 1) ||
        !finite_in(t->bg_iou_lo, 0, 1) || !finite_in(t->bg_iou_hi, 0, 1) || t->bg_iou_lo > t->bg_iou_hi)
        BAD("roi_targets: batch_size >= 1, fractions and IoUs in [0, 1], bg_iou_lo <= bg_iou_hi");
    for (int i = 0; i < 4; i++)
        if (!finite_in(t->stds[i], 1e-6f, 1e6f) || !finite_in(t->means[i], -1e6f, 1e6f))
            BAD("roi_targets: stds must be positive and means finite");
    if (c->max_gt_boxes < 1 || c->max_gt_boxes > 100000)
        BAD("max_gt_boxes %d out of range", c->max_gt_boxes);
    if (c->pooled_size < 1 || c->pooled_size > 64)
        BAD("pooled_size %d, expected 1 to 64", c->pooled_size);
    if (!frcnn_roi_op_name(c->roi_op))
        BAD("roi_op %d, expected 0 (pool), 1 (align) or 2 (align-legacy)", (int)c->roi_op);
    if (c->fc_channels < 1 || c->fc_channels > 65536)
        BAD("fc_channels %d out of range", c->fc_channels);
    if (!isfinite(c->dropout) || c->dropout < 0 || c->dropout >= 1)
        BAD("dropout %g, expected [0, 1)", (double)c->dropout);
    if (!finite_in(c->rpn_sigma, 1e-3f, 1e3f) || !finite_in(c->head_sigma, 1e-3f, 1e3f))
        BAD("smooth-L1 sigmas must be positive");
    if (!finite_in(c->score_threshold, 0, 1) || !finite_in(c->test_nms_iou, 0, 1) || c->max_detections < 1)
        BAD("test: score_threshold and test_nms_iou in [0, 1], max_detections >= 1");
    if (c->pool_floor != 0 && c->pool_floor != 1)
        BAD("pool_floor %d, expected 0 (ceil mode) or 1 (floor)", c->pool_floor);
    if (!frcnn_box_convention_name(c->box_convention))
        BAD("box_convention %d, expected 0 (inclusive) or 1 (continuous)", (int)c->box_convention);
#undef BAD
    return FRCNN_OK;
}
