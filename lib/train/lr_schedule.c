/* Learning-rate schedules: the rate at an iteration as a pure function of the schedule and the iteration (constant,
 * step decay at milestones, cosine), with an optional linear warm-up, so a resumed run needs only the iteration. */
#include "internal.h"

#include <math.h>
#include <string.h>

/* py-faster-rcnn VGG16 end2end solver.prototxt: base_lr 0.001, lr_policy "step", gamma 0.1, stepsize 50000;
 * 70000 iterations (experiments/scripts/faster_rcnn_end2end.sh). */
frcnn_lr_schedule frcnn_lr_schedule_paper(void)
{
    frcnn_lr_schedule s;
    memset(&s, 0, sizeof s);
    s.kind = FRCNN_LR_STEP;
    s.base_lr = 0.001f;
    s.gamma = 0.1f;
    s.n_milestones = 1;
    s.milestones[0] = 50000;
    s.total_iters = 70000;
    s.min_lr = 0.0f;
    s.warmup_iters = 0;
    s.warmup_factor = 1.0f;
    return s;
}

frcnn_status frcnn_lr_schedule_validate(frcnn_ctx *ctx, const frcnn_lr_schedule *s)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!s)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "lr_schedule: schedule is NULL");
    if (s->kind != FRCNN_LR_CONSTANT && s->kind != FRCNN_LR_STEP && s->kind != FRCNN_LR_COSINE)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "lr_schedule: unknown kind %d", (int)s->kind);
    if (!(isfinite(s->base_lr) && s->base_lr >= 0.0f))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "lr_schedule: base_lr %g must be finite and >= 0",
                            (double)s->base_lr);
    if (s->kind == FRCNN_LR_STEP) {
        if (!(isfinite(s->gamma) && s->gamma > 0.0f))
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "lr_schedule: gamma %g must be finite and > 0",
                                (double)s->gamma);
        if (s->n_milestones < 0 || s->n_milestones > FRCNN_MAX_LR_MILESTONES)
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "lr_schedule: n_milestones %d must be in [0, %d]",
                                s->n_milestones, FRCNN_MAX_LR_MILESTONES);
        for (int i = 0; i < s->n_milestones; i++) {
            if (s->milestones[i] < 0)
                return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "lr_schedule: milestones[%d] = %lld must be >= 0",
                                    i, (long long)s->milestones[i]);
            if (i > 0 && s->milestones[i] <= s->milestones[i - 1])
                return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG,
                                    "lr_schedule: milestones must be strictly ascending, but milestones[%d] = %lld "
                                    "follows %lld", i, (long long)s->milestones[i], (long long)s->milestones[i - 1]);
        }
    }
    if (s->kind == FRCNN_LR_COSINE) {
        if (s->total_iters < 1)
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "lr_schedule: total_iters %lld must be >= 1 for cosine",
                                (long long)s->total_iters);
        if (!(isfinite(s->min_lr) && s->min_lr >= 0.0f))
            return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "lr_schedule: min_lr %g must be finite and >= 0",
                                (double)s->min_lr);
    }
    if (s->warmup_iters < 0)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "lr_schedule: warmup_iters %lld must be >= 0",
                            (long long)s->warmup_iters);
    if (!(isfinite(s->warmup_factor) && s->warmup_factor >= 0.0f && s->warmup_factor <= 1.0f))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "lr_schedule: warmup_factor %g must be in [0, 1]",
                            (double)s->warmup_factor);
    return FRCNN_OK;
}

float frcnn_lr_at(const frcnn_lr_schedule *s, int64_t iter)
{
    if (!s)
        return 0.0f;
    if (iter < 0)
        iter = 0;
    double rate = (double)s->base_lr;
    switch (s->kind) {
    case FRCNN_LR_CONSTANT:
        break;
    case FRCNN_LR_STEP: {
        int passed = 0, n = s->n_milestones < FRCNN_MAX_LR_MILESTONES ? s->n_milestones : FRCNN_MAX_LR_MILESTONES;
        for (int i = 0; i < n; i++)
            if (s->milestones[i] <= iter)
                passed++;
        rate *= pow((double)s->gamma, passed);
        break;
    }
    case FRCNN_LR_COSINE: {
        const double pi = 3.14159265358979323846;
        double lo = (double)s->min_lr;
        if (s->total_iters < 1 || iter >= s->total_iters)
            rate = lo;
        else
            rate = lo + (rate - lo) * (1.0 + cos(pi * (double)iter / (double)s->total_iters)) / 2.0;
        break;
    }
    }
    if (iter < s->warmup_iters) {
        double f = (double)s->warmup_factor;
        rate *= f + (1.0 - f) * (double)iter / (double)s->warmup_iters;
    }
    return (float)rate;
}
