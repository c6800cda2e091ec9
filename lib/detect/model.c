/* The detector object: creation (backbone table, parameters with stable names, seeded initialisation, memory
 * plan), parameter access, and the layout of a step's activation buffers. */
#include "model_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Output channels per backbone stage and whether a max-pool follows (torchvision's vgg16 "D" configuration). */
static const int vgg16_channels[] = {64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512};
static const bool vgg16_pool[] = {0, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0};
static const int small_channels[] = {32, 64, 128, 256, 256};
static const bool small_pool[] = {1, 1, 1, 1, 0};

frcnn_tensor *frcnn__param_value(const frcnn_model *m, int index)
{
    return m->params[index].value;
}

frcnn_tensor *frcnn__param_grad(const frcnn_model *m, int index)
{
    return m->params[index].grad;
}

void frcnn__view_set(frcnn__view *v, float *data, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    int64_t d[4] = {d0, d1, d2, d3};
    v->data = data;
    v->ndim = ndim;
    v->numel = 1;
    for (int i = 0; i < FRCNN_MAX_DIMS; i++) {
        v->dims[i] = i < ndim ? d[i] : 1;
        if (i < ndim)
            v->numel *= (size_t)d[i];
    }
    v->kind = FRCNN__TENSOR_WRAP;
    v->ctx = NULL;
}

void frcnn__view_rows(frcnn__view *v, int64_t rows)
{
    v->numel = v->numel / (size_t)v->dims[0] * (size_t)rows;
    v->dims[0] = rows;
}

/* Adds a weight (and, when bias_len > 0, its bias) to the table, returning the weight's index. */
static frcnn_status add_param(frcnn_model *m, const char *prefix, int ndim, const int64_t *dims, int64_t bias_len,
                              bool trainable, int *index)
{
    for (int k = 0; k < (bias_len > 0 ? 2 : 1); k++) {
        frcnn__param_slot *p = &m->params[m->n_params];
        snprintf(p->name, sizeof p->name, "%s.%s", prefix, k ? "bias" : "weight");
        frcnn_status st = frcnn_tensor_create(m->ctx, k ? 1 : ndim, k ? &bias_len : dims, &p->value);
        if (st == FRCNN_OK)
            st = frcnn_tensor_create(m->ctx, k ? 1 : ndim, k ? &bias_len : dims, &p->grad);
        if (st != FRCNN_OK)
            return st;
        p->is_bias = k == 1;
        p->trainable = trainable;
        if (k == 0)
            *index = (int)m->n_params;
        m->n_params++;
    }
    return FRCNN_OK;
}

/* He initialisation assumes inputs of unit scale. The first convolution's input channel c has a standard deviation
 * of about frcnn__imagenet_pixel_stds[c] / pixel_stds[c] (57 for VGG16's raw Caffe pixels, 1 for the small preset),
 * so its weights for that channel are divided by it: without that, a VGG16 trained from scratch started with a loss
 * of about 200 and diverged at its second iteration. The factor is exactly 1 for the small preset. */
static void scale_first_conv(frcnn_model *m)
{
    frcnn_tensor *w = m->params[m->convs[0].weight].value;
    size_t per_channel = (size_t)w->dims[2] * (size_t)w->dims[3];
    for (int64_t o = 0; o < w->dims[0]; o++)
        for (int64_t c = 0; c < w->dims[1]; c++) {
            float f = m->cfg.pixel_stds[c] / frcnn__imagenet_pixel_stds[c];
            float *k = w->data + ((size_t)o * (size_t)w->dims[1] + (size_t)c) * per_channel;
            for (size_t i = 0; i < per_channel; i++)
                k[i] *= f;
        }
}

/* Seeded initialisation in parameter order. Backbone and fc6/fc7: He normal (trained from scratch, no ImageNet
 * weights here); RPN and classifier: normal std 0.01, box regression std 0.001 (py-faster-rcnn train.prototxt). */
static void init_params(frcnn_model *m, uint64_t seed)
{
    frcnn_rng rng;
    frcnn_rng_seed(&rng, seed);
    const frcnn__heads *h = &m->heads;
    for (size_t i = 0; i < m->n_params; i++) {
        frcnn__param_slot *p = &m->params[i];
        if (p->is_bias)
            continue;
        int idx = (int)i;
        float std;
        if (idx == h->rpn_conv || idx == h->rpn_cls || idx == h->rpn_box || idx == h->cls_score)
            std = 0.01f;
        else if (idx == h->bbox_pred)
            std = 0.001f;
        else
            std = sqrtf(2.0f / (float)(p->value->numel / (size_t)p->value->dims[0]));
        frcnn_rng_fill_normal(&rng, p->value, 0.0f, std);
    }
    scale_first_conv(m);
    for (int i = 0; i < m->n_convs; i++) /* GroupNorm starts as the identity on normalised values */
        if (m->convs[i].norm >= 0)
            frcnn_tensor_fill(m->params[m->convs[i].norm].value, 1.0f);
}

static frcnn_status build_params(frcnn_model *m)
{
    const frcnn_config *c = &m->cfg;
    const int *channels = c->backbone == FRCNN_BACKBONE_VGG16 ? vgg16_channels : small_channels;
    const bool *pool = c->backbone == FRCNN_BACKBONE_VGG16 ? vgg16_pool : small_pool;
    m->n_convs = c->backbone == FRCNN_BACKBONE_VGG16 ? 13 : 5;
    /* Per convolution: weight, bias, and a norm's scale and shift; 7 head layers with biases. */
    size_t slots = 4 * (size_t)m->n_convs + 14;
    m->params = frcnn__alloc(m->ctx, slots * sizeof *m->params);
    m->params_cap = slots;
    if (!m->params)
        return FRCNN_ERR_NO_MEMORY;
    memset(m->params, 0, slots * sizeof *m->params);
    frcnn_status st = FRCNN_OK;
    int cin = 3, module = 0; /* torchvision numbers every module of `features`: conv, relu, [pool] */
    for (int i = 0; i < m->n_convs && st == FRCNN_OK; i++) {
        frcnn__conv_layer *l = &m->convs[i];
        l->cin = cin;
        l->cout = channels[i];
        l->pool_after = pool[i];
        char prefix[48];
        snprintf(prefix, sizeof prefix, "backbone.features.%d", module);
        int64_t dims[4] = {l->cout, l->cin, 3, 3};
        st = add_param(m, prefix, 4, dims, l->cout, i >= c->frozen_convs, &l->weight);
        l->norm = -1;
        if (c->norm_groups > 0 && st == FRCNN_OK) {
            /* Scale and shift: trained like biases (no weight decay), as is usual for normalisation layers. */
            int64_t width = l->cout;
            snprintf(prefix, sizeof prefix, "backbone.norm.%d", i);
            st = add_param(m, prefix, 1, &width, l->cout, i >= c->frozen_convs, &l->norm);
            if (st == FRCNN_OK)
                m->params[l->norm].is_bias = true;
        }
        module += l->pool_after ? 3 : 2;
        cin = l->cout;
    }
    int a = m->num_anchors, k = c->num_classes, r = c->rpn_channels, f = c->fc_channels, p = c->pooled_size;
    int64_t rpn_conv[4] = {r, cin, 3, 3}, rpn_cls[4] = {2 * a, r, 1, 1}, rpn_box[4] = {4 * a, r, 1, 1};
    int64_t fc6[2] = {f, (int64_t)cin * p * p}, fc7[2] = {f, f}, cls[2] = {k, f}, box[2] = {4 * (int64_t)k, f};
    frcnn__heads *h = &m->heads;
    if (st == FRCNN_OK)
        st = add_param(m, "rpn.head.conv", 4, rpn_conv, r, true, &h->rpn_conv);
    if (st == FRCNN_OK)
        st = add_param(m, "rpn.head.cls_logits", 4, rpn_cls, 2 * a, true, &h->rpn_cls);
    if (st == FRCNN_OK)
        st = add_param(m, "rpn.head.bbox_pred", 4, rpn_box, 4 * a, true, &h->rpn_box);
    if (st == FRCNN_OK)
        st = add_param(m, "roi_heads.box_head.fc6", 2, fc6, f, true, &h->fc6);
    if (st == FRCNN_OK)
        st = add_param(m, "roi_heads.box_head.fc7", 2, fc7, f, true, &h->fc7);
    if (st == FRCNN_OK)
        st = add_param(m, "roi_heads.box_predictor.cls_score", 2, cls, k, true, &h->cls_score);
    if (st == FRCNN_OK)
        st = add_param(m, "roi_heads.box_predictor.bbox_pred", 2, box, 4 * (int64_t)k, true, &h->bbox_pred);
    return st;
}

/* Carves 64-byte aligned pieces from the activation block; with base NULL it only counts. */
typedef struct carver {
    unsigned char *base;
    size_t used;
} carver;

static void *carve(carver *c, size_t bytes)
{
    static float dummy[16]; /* counting pass: views point here and are never touched */
    size_t off = c->used;
    c->used += (bytes + FRCNN__ALIGN - 1) & ~(size_t)(FRCNN__ALIGN - 1);
    return c->base ? (void *)(c->base + off) : (void *)dummy;
}

static float *carve_f(carver *c, size_t n)
{
    return carve(c, n * sizeof(float));
}

static void carve_view(carver *c, frcnn__view *v, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    size_t n = (size_t)d0 * (size_t)(ndim > 1 ? d1 : 1) * (size_t)(ndim > 2 ? d2 : 1) * (size_t)(ndim > 3 ? d3 : 1);
    frcnn__view_set(v, carve_f(c, n), ndim, d0, d1, d2, d3);
}

/* A side after a 2x2 stride-2 max-pool, rounded as configured. */
static int pool_half(const frcnn_config *cfg, int x)
{
    return cfg->pool_floor ? x / 2 : (x + 1) / 2;
}

/* The rows of a band of a banded layer (see backbone.c): an even number, about this many bytes of output at the
 * widest input the model plans for. Fixed per model, so that each buffer grows with the input's size and the
 * plan's largest input bounds them all. */
#define BAND_BYTES ((size_t)4 << 20)

static int band_rows(int cout, int widest)
{
    size_t rows = BAND_BYTES / ((size_t)cout * (size_t)widest * sizeof(float));
    return rows < 2 ? 2 : (int)(rows & ~(size_t)1);
}

static size_t max_size(size_t a, size_t b)
{
    return a > b ? a : b;
}

/* Where the backbone's buffers go, and the sizes place_backbone finds for the ones it does not carve itself. */
typedef struct backbone_plan {
    float *shared[2];                        /* the two shared buffers; NULL while sizing */
    size_t shared_floats[2];                 /* the most each has to hold */
    int turn;                                /* writes so far: the next one goes to shared[turn % 2] */
    size_t band_in, band_out, band_pooled;   /* the band buffers' floats */
    size_t grad;                             /* the gradient ping-pong buffers' floats */
} backbone_plan;

/* The next shared buffer in turn, grown to hold `floats`. */
static float *take_shared(backbone_plan *p, size_t floats)
{
    int b = p->turn++ % 2;
    p->shared_floats[b] = max_size(p->shared_floats[b], floats);
    return p->shared[b];
}

/* Sets the backbone's views. Layers whose outputs no backward pass reads (frozen ones, or all of them at
 * inference) write in turn into the two shared buffers; such a layer with a max-pool after it and no GroupNorm
 * runs in bands (backbone.c) and writes only its pooled output. Everything else is carved from c. */
static void place_backbone(frcnn_model *m, int h, int w, bool train, carver *c, backbone_plan *p)
{
    frcnn__acts *a = &m->a;
    const frcnn_config *cfg = &m->cfg;
    int first_kept = train ? cfg->frozen_convs : m->n_convs; /* layers from here on keep their outputs */
    int ch = h, cw = w, widest = m->plan_long;               /* widest: the plan's widest input at this layer */
    const int groups = cfg->norm_groups;
    for (int i = 0; i < m->n_convs; i++) {
        const frcnn__conv_layer *l = &m->convs[i];
        size_t out = (size_t)l->cout * (size_t)ch * (size_t)cw;
        int ph = pool_half(cfg, ch), pw = pool_half(cfg, cw);
        size_t pooled = l->pool_after ? (size_t)l->cout * (size_t)ph * (size_t)pw : 0;
        bool shared = i < first_kept;
        a->banded[i] = shared && l->pool_after && groups == 0;
        if (!shared)
            p->grad = max_size(p->grad, max_size(out, pooled));
        if (groups > 0) { /* the convolution writes here, GroupNorm reads it into out */
            frcnn__view_set(&a->conv[i], shared ? take_shared(p, out) : carve_f(c, out), 4, 1, l->cout, ch, cw);
            carve_view(c, &a->norm_mean[i], 2, 1, groups, 0, 0);
            carve_view(c, &a->norm_rstd[i], 2, 1, groups, 0, 0);
        }
        if (a->banded[i]) { /* its output exists a band at a time only: the view has no memory */
            int rows = band_rows(l->cout, widest), even_h = ch + (ch & 1);
            rows = rows < even_h ? rows : even_h; /* one band for all of a short map */
            a->band_rows[i] = rows;
            p->band_in = max_size(p->band_in, (size_t)l->cin * (size_t)(rows + 2) * (size_t)cw);
            p->band_out = max_size(p->band_out, (size_t)l->cout * (size_t)rows * (size_t)cw);
            p->band_pooled = max_size(p->band_pooled, (size_t)l->cout * (size_t)(rows / 2) * (size_t)pw);
            frcnn__view_set(&a->out[i], NULL, 4, 1, l->cout, ch, cw);
        } else {
            frcnn__view_set(&a->out[i], shared ? take_shared(p, out) : carve_f(c, out), 4, 1, l->cout, ch, cw);
        }
        a->pool_argmax[i] = NULL;
        if (l->pool_after) {
            frcnn__view_set(&a->pooled[i], shared ? take_shared(p, pooled) : carve_f(c, pooled), 4, 1, l->cout, ph,
                            pw);
            if (train && !shared)
                a->pool_argmax[i] = carve(c, pooled * sizeof(int32_t));
            ch = ph;
            cw = pw;
            widest = pool_half(cfg, widest);
        }
    }
    a->fh = ch;
    a->fw = cw;
}

/* The backbone's buffers: a sizing pass, the shared and band buffers, then the views. Returns the size of the
 * backbone's gradient ping-pong buffers, and in *free_mem / *free_floats the shared buffer that holds nothing the
 * later stages read (NULL, 0 when there is none). */
static size_t layout_backbone(frcnn_model *m, int h, int w, bool train, carver *c, float **free_mem,
                              size_t *free_floats)
{
    backbone_plan sized = {{NULL, NULL}, {0, 0}, 0, 0, 0, 0, 0};
    carver count = {NULL, 0};
    place_backbone(m, h, w, train, &count, &sized);
    backbone_plan placed = sized;
    for (int b = 0; b < 2; b++)
        placed.shared[b] = sized.shared_floats[b] ? carve_f(c, sized.shared_floats[b]) : NULL;
    placed.turn = 0;
    frcnn__acts *a = &m->a;
    a->band_in = sized.band_in ? carve_f(c, sized.band_in) : NULL;
    a->band_out = sized.band_out ? carve_f(c, sized.band_out) : NULL;
    a->band_pooled = sized.band_pooled ? carve_f(c, sized.band_pooled) : NULL;
    place_backbone(m, h, w, train, c, &placed);
    int last = sized.turn; /* the other buffer holds the last of the shared layers' outputs */
    *free_mem = last > 0 ? placed.shared[last % 2] : NULL;
    *free_floats = last > 0 ? sized.shared_floats[last % 2] : 0;
    return sized.grad;
}

/* After the backbone: RPN, proposals and RoI head. */
static void layout_heads(frcnn_model *m, bool train, carver *c)
{
    frcnn__acts *a = &m->a;
    const frcnn_config *cfg = &m->cfg;
    int fc = m->convs[m->n_convs - 1].cout, r = cfg->rpn_channels, na = m->num_anchors, k = cfg->num_classes;
    size_t n = (size_t)a->fh * (size_t)a->fw * (size_t)na;
    a->anchors_n = n;
    carve_view(c, &a->rpn_h, 4, 1, r, a->fh, a->fw);
    carve_view(c, &a->rpn_cls, 4, 1, 2 * na, a->fh, a->fw);
    carve_view(c, &a->rpn_box, 4, 1, 4 * na, a->fh, a->fw);
    a->anchors = carve_f(c, n * 4);
    carve_view(c, &a->rpn_logits, 2, (int64_t)n, 2, 0, 0);
    carve_view(c, &a->rpn_deltas, 2, (int64_t)n, 4, 0, 0);
    a->fg_scores = carve_f(c, n);
    const frcnn_proposal_params *pp = train ? &cfg->train_proposals : &cfg->test_proposals;
    a->proposals = carve_f(c, (size_t)pp->post_nms_top_n * 4);
    a->proposal_scores = carve_f(c, (size_t)pp->post_nms_top_n);
    int rois = train ? cfg->roi_targets.batch_size : pp->post_nms_top_n;
    int p = cfg->pooled_size, f = cfg->fc_channels;
    carve_view(c, &a->rois, 2, rois, 5, 0, 0);
    carve_view(c, &a->align_rois, 2, rois, 5, 0, 0);
    carve_view(c, &a->pool5, 4, rois, fc, p, p);
    carve_view(c, &a->fc6, 2, rois, f, 0, 0);
    carve_view(c, &a->fc7, 2, rois, f, 0, 0);
    carve_view(c, &a->cls, 2, rois, k, 0, 0);
    carve_view(c, &a->cls_prob, 2, rois, k, 0, 0);
    carve_view(c, &a->box, 2, rois, 4 * (int64_t)k, 0, 0);
}

/* What only training needs after the backbone: targets and every gradient. */
static void layout_train(frcnn_model *m, size_t grad_size, carver *c)
{
    frcnn__acts *a = &m->a;
    const frcnn_config *cfg = &m->cfg;
    int fc = m->convs[m->n_convs - 1].cout, r = cfg->rpn_channels, na = m->num_anchors, k = cfg->num_classes;
    size_t n = a->anchors_n;
    int rois = cfg->roi_targets.batch_size, p = cfg->pooled_size, f = cfg->fc_channels;
    /* The feature map's gradient lives in the ping-pong buffers too. */
    size_t feat = (size_t)fc * (size_t)a->fh * (size_t)a->fw;
    grad_size = max_size(feat, grad_size);
    a->grad_a_mem = carve_f(c, grad_size);
    a->grad_b_mem = carve_f(c, grad_size);
    carve_view(c, &a->d_rpn_h, 4, 1, r, a->fh, a->fw);
    carve_view(c, &a->d_rpn_cls, 4, 1, 2 * na, a->fh, a->fw);
    carve_view(c, &a->d_rpn_box, 4, 1, 4 * na, a->fh, a->fw);
    carve_view(c, &a->rpn_prob, 2, (int64_t)n, 2, 0, 0);
    carve_view(c, &a->d_rpn_logits, 2, (int64_t)n, 2, 0, 0);
    carve_view(c, &a->rpn_targets, 2, (int64_t)n, 4, 0, 0);
    carve_view(c, &a->rpn_in_w, 2, (int64_t)n, 4, 0, 0);
    carve_view(c, &a->rpn_out_w, 2, (int64_t)n, 4, 0, 0);
    carve_view(c, &a->d_rpn_deltas, 2, (int64_t)n, 4, 0, 0);
    a->rpn_labels = carve(c, n * sizeof(int32_t));
    a->roi_boxes = carve_f(c, (size_t)rois * 4);
    a->roi_labels = carve(c, (size_t)rois * sizeof(int32_t));
    carve_view(c, &a->roi_targets, 2, rois, 4 * (int64_t)k, 0, 0);
    carve_view(c, &a->roi_in_w, 2, rois, 4 * (int64_t)k, 0, 0);
    carve_view(c, &a->d_pool5, 4, rois, fc, p, p);
    a->pool5_argmax = cfg->roi_op == FRCNN_ROI_POOL /* RoI align's backward needs only the rois */
                          ? carve(c, (size_t)rois * (size_t)fc * (size_t)p * (size_t)p * sizeof(int32_t))
                          : NULL;
    carve_view(c, &a->mask6, 2, rois, f, 0, 0);
    carve_view(c, &a->mask7, 2, rois, f, 0, 0);
    carve_view(c, &a->d_fc6, 2, rois, f, 0, 0);
    carve_view(c, &a->d_fc7, 2, rois, f, 0, 0);
    carve_view(c, &a->d_cls, 2, rois, k, 0, 0);
    carve_view(c, &a->d_box, 2, rois, 4 * (int64_t)k, 0, 0);
}

/* The whole layout. With use_free, the sections after the backbone go into the backbone's free shared buffer as
 * far as they fit there (VGG16's frozen conv1-conv2 leave 123 MB at 600x800 that nothing reads after them: the
 * training section fits), the others after it. Without, always after it: sizes then grow with the input's, so the
 * plan's largest input bounds the block, which use_free alone would not (a larger input can fit where a smaller
 * one does not). */
static void layout(frcnn_model *m, int h, int w, bool train, bool use_free, carver *c)
{
    m->a.h = h;
    m->a.w = w;
    float *free_mem;
    size_t free_floats;
    size_t grad_size = layout_backbone(m, h, w, train, c, &free_mem, &free_floats);
    carver heads = {NULL, 0}, training = {NULL, 0}; /* counting passes first */
    layout_heads(m, train, &heads);
    if (train)
        layout_train(m, grad_size, &training);
    size_t room = use_free ? free_floats * sizeof(float) : 0;
    carver in_free = {c->base ? (unsigned char *)free_mem : NULL, 0};
    bool both = heads.used + training.used <= room, train_there = training.used <= room;
    layout_heads(m, train, both || (!train_there && heads.used <= room) ? &in_free : c);
    if (train)
        layout_train(m, grad_size, both || train_there ? &in_free : c);
}

frcnn_status frcnn__acts_layout(frcnn_model *m, int h, int w, bool train)
{
    int s = h < w ? h : w, l = h < w ? w : h;
    if (h < 16 || w < 16 || s > m->plan_short || l > m->plan_long)
        return frcnn__error(m->ctx, FRCNN_ERR_SHAPE,
                            "input %dx%d is outside the model's plan: sides 16 to %d x %d (short_side x max_side)",
                            h, w, m->plan_short, m->plan_long);
    carver c = {m->act_mem, 0};
    layout(m, h, w, train, true, &c);
    return FRCNN_OK;
}

/* Scratch for NMS and target assignment at the largest input. */
static size_t scratch_bytes(const frcnn_model *m, size_t anchors_n)
{
    const frcnn_config *c = &m->cfg;
    size_t g = (size_t)c->max_gt_boxes, np = (size_t)c->train_proposals.post_nms_top_n;
    size_t a = frcnn_proposal_scratch_bytes(anchors_n), t = anchors_n * (g + 8) * 4 + 4096;
    size_t r = (np + g) * (g + 4) * 4 + 4096;
    size_t test_rois = (size_t)c->test_proposals.post_nms_top_n * (size_t)c->num_classes;
    size_t d = frcnn_nms_scratch_bytes(test_rois) + test_rois * 32 + 4096;
    size_t best = a > t ? a : t;
    best = r > best ? r : best;
    return (d > best ? d : best) + 64 * FRCNN__ALIGN;
}

frcnn_status frcnn_model_create(frcnn_ctx *ctx, const frcnn_config *config, uint64_t seed, frcnn_model **out)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!out)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "model_create: out is NULL");
    *out = NULL;
    frcnn_status st = frcnn_config_validate(ctx, config);
    if (st != FRCNN_OK)
        return st;
    frcnn_model *m = frcnn__alloc(ctx, sizeof *m);
    if (!m)
        return FRCNN_ERR_NO_MEMORY;
    memset(m, 0, sizeof *m);
    m->ctx = ctx;
    m->cfg = *config;
    /* One convention for every box computation; the stage functions read it from their own parameters. */
    m->cfg.rpn_targets.box_convention = config->box_convention;
    m->cfg.train_proposals.box_convention = config->box_convention;
    m->cfg.test_proposals.box_convention = config->box_convention;
    m->cfg.roi_targets.box_convention = config->box_convention;
    m->num_anchors = config->anchors.n_ratios * config->anchors.n_scales;
    st = frcnn_anchors_base_conv(ctx, config->box_convention, &config->anchors, m->base_anchors);
    if (st == FRCNN_OK)
        st = build_params(m);
    if (st != FRCNN_OK)
        goto fail;
    init_params(m, seed);

    /* Plan for the largest input either way round, in training mode (a superset of inference). */
    m->plan_short = config->short_side;
    m->plan_long = config->max_side;
    size_t bytes = 0, anchors_n = 0;
    int64_t feat_h = 0, feat_w = 0;
    for (int turn = 0; turn < 4; turn++) { /* both orientations, training and detection (its bands are its own) */
        carver c = {NULL, 0};
        layout(m, turn & 1 ? m->plan_long : m->plan_short, turn & 1 ? m->plan_short : m->plan_long, turn < 2, false,
               &c);
        bytes = c.used > bytes ? c.used : bytes;
        anchors_n = m->a.anchors_n > anchors_n ? m->a.anchors_n : anchors_n;
        feat_h = m->a.fh > feat_h ? m->a.fh : feat_h;
        feat_w = m->a.fw > feat_w ? m->a.fw : feat_w;
    }
    m->act_bytes = bytes;
    m->act_mem = frcnn__alloc(ctx, bytes);
    if (!m->act_mem) {
        st = frcnn__error(ctx, FRCNN_ERR_NO_MEMORY, "model_create: cannot allocate %zu bytes of activations",
                          bytes);
        goto fail;
    }
    st = frcnn_arena_create(ctx, scratch_bytes(m, anchors_n), &m->scratch);
    if (st != FRCNN_OK)
        goto fail;
    for (int i = 0; i < m->n_convs; i++) {
        int64_t x[4] = {1, m->convs[i].cin, m->plan_long, m->plan_long}, w[4] = {m->convs[i].cout, m->convs[i].cin, 3, 3};
        frcnn_conv2d_params p = {1, 1, 1, 1};
        size_t need;
        if ((st = frcnn_conv2d_workspace_bytes(ctx, &p, x, w, &need)) != FRCNN_OK)
            goto fail;
        m->kernel_ws_bytes = need > m->kernel_ws_bytes ? need : m->kernel_ws_bytes;
    }
    if (config->roi_op != FRCNN_ROI_POOL) { /* a map of the largest height and the largest width bounds them all */
        const int64_t feat[4] = {1, m->convs[m->n_convs - 1].cout, feat_h, feat_w};
        size_t need;
        if ((st = frcnn_roi_align_workspace_bytes(ctx, feat, &need)) != FRCNN_OK)
            goto fail;
        m->kernel_ws_bytes = need > m->kernel_ws_bytes ? need : m->kernel_ws_bytes;
    }
    m->kernel_ws = frcnn__alloc(ctx, m->kernel_ws_bytes);
    if (!m->kernel_ws) {
        st = FRCNN_ERR_NO_MEMORY;
        goto fail;
    }
    *out = m;
    return FRCNN_OK;
fail:
    frcnn_model_free(m);
    return st;
}

void frcnn_model_free(frcnn_model *m)
{
    if (!m)
        return;
    frcnn_ctx *ctx = m->ctx;
    if (m->params) {
        for (size_t i = 0; i < m->n_params; i++) {
            frcnn_tensor_free(m->params[i].value);
            frcnn_tensor_free(m->params[i].grad);
        }
        frcnn__free(ctx, m->params, m->params_cap * sizeof *m->params);
    }
    frcnn__free(ctx, m->act_mem, m->act_bytes);
    frcnn__free(ctx, m->kernel_ws, m->kernel_ws_bytes);
    frcnn_arena_free(m->scratch);
    frcnn__free(ctx, m, sizeof *m);
}

const frcnn_config *frcnn_model_config(const frcnn_model *m)
{
    return m ? &m->cfg : NULL;
}

size_t frcnn_model_param_bytes(const frcnn_model *m)
{
    size_t n = 0;
    for (size_t i = 0; m && i < m->n_params; i++)
        n += 2 * m->params[i].value->numel * sizeof(float);
    return n;
}

size_t frcnn_model_activation_bytes(const frcnn_model *m)
{
    return m ? m->act_bytes + frcnn_arena_capacity(m->scratch) + m->kernel_ws_bytes : 0;
}

size_t frcnn_model_param_count(const frcnn_model *m)
{
    return m ? m->n_params : 0;
}

static void fill_param(const frcnn__param_slot *s, frcnn_param *out)
{
    out->name = s->name;
    out->value = s->value;
    out->grad = s->grad;
    out->is_bias = s->is_bias;
    out->trainable = s->trainable;
}

frcnn_status frcnn_model_param(const frcnn_model *m, size_t i, frcnn_param *out)
{
    if (!m || !out)
        return FRCNN_ERR_INVALID_ARG;
    if (i >= m->n_params)
        return frcnn__error(m->ctx, FRCNN_ERR_INVALID_ARG, "model_param: index %zu, the model has %zu parameters",
                            i, m->n_params);
    fill_param(&m->params[i], out);
    return FRCNN_OK;
}

frcnn_status frcnn_model_find_param(const frcnn_model *m, const char *name, frcnn_param *out)
{
    if (!m || !out || !name)
        return m ? frcnn__error(m->ctx, FRCNN_ERR_INVALID_ARG, "model_find_param: NULL argument")
                 : FRCNN_ERR_INVALID_ARG;
    for (size_t i = 0; i < m->n_params; i++) {
        if (strcmp(m->params[i].name, name) == 0) {
            fill_param(&m->params[i], out);
            return FRCNN_OK;
        }
    }
    return frcnn__error(m->ctx, FRCNN_ERR_NOT_FOUND, "model has no parameter named '%s'", name);
}

/* The gradients are zeroed in slices of this many floats, as one sequence, on all threads: a single thread's memset
 * gets about half the memory bandwidth of two (the small preset's 68 MB: 4-6 ms on one thread, 1.4-3 ms on two). */
#define ZERO_GRAD_SLICE_FLOATS ((size_t)1 << 18)

/* Zeroes slices [first, end) of the concatenated gradients. */
static void zero_grad_slices(void *arg, size_t first, size_t end)
{
    const frcnn_model *m = arg;
    size_t lo = first * ZERO_GRAD_SLICE_FLOATS, hi = end * ZERO_GRAD_SLICE_FLOATS, at = 0;
    for (size_t i = 0; i < m->n_params && at < hi; i++) {
        frcnn_tensor *g = m->params[i].grad;
        size_t s = lo > at ? lo : at, e = hi < at + g->numel ? hi : at + g->numel;
        if (s < e)
            memset(g->data + (s - at), 0, (e - s) * sizeof(float));
        at += g->numel;
    }
}

void frcnn_model_zero_grad(frcnn_model *m)
{
    if (!m)
        return;
    size_t floats = 0;
    for (size_t i = 0; i < m->n_params; i++)
        floats += m->params[i].grad->numel;
    frcnn__parallel_for(m->ctx, (floats + ZERO_GRAD_SLICE_FLOATS - 1) / ZERO_GRAD_SLICE_FLOATS, 1, zero_grad_slices, m);
}
