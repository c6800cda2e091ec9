/* The training sampler: every epoch a permutation of (image, flip), epochs and seeds independent of each other,
 * resumes (at the start, mid-epoch, at epoch boundaries, several times within one epoch, at an arbitrary state)
 * identical to an uninterrupted run, aspect grouping keeping pairs in one orientation, a frozen golden sequence,
 * argument errors, and allocation failures inside create. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----- helpers ---------------------------------------------------------------------------------------------- */

static frcnn_sampler_params params_of(uint64_t seed, uint32_t n_images, bool flip)
{
    frcnn_sampler_params p = frcnn_sampler_params_default();
    p.seed = seed;
    p.n_images = n_images;
    p.flip = flip;
    return p;
}

static frcnn_sampler *make(frcnn_ctx *ctx, const frcnn_sampler_params *p)
{
    frcnn_sampler *s = NULL;
    frcnn_status st = frcnn_sampler_create(ctx, p, &s);
    if (st != FRCNN_OK)
        fail_msg("sampler_create: %s: %s", frcnn_status_str(st), frcnn_ctx_last_error(ctx));
    assert_non_null(s);
    return s;
}

static frcnn_sample take(frcnn_sampler *s)
{
    frcnn_sample x;
    memset(&x, 0, sizeof x);
    assert_int_equal(frcnn_sampler_next(s, &x), FRCNN_OK);
    return x;
}

/* out[0..n) = the next n samples. */
static void take_n(frcnn_sampler *s, frcnn_sample *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = take(s);
}

static void assert_same_samples(const frcnn_sample *a, const frcnn_sample *b, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i].image != b[i].image || a[i].flip != b[i].flip || a[i].epoch != b[i].epoch ||
            a[i].index != b[i].index)
            fail_msg("%s: sample %zu differs: (image %u, flip %d, epoch %llu, index %llu) vs (image %u, flip %d, "
                     "epoch %llu, index %llu)",
                     what, i, (unsigned)a[i].image, (int)a[i].flip, (unsigned long long)a[i].epoch,
                     (unsigned long long)a[i].index, (unsigned)b[i].image, (int)b[i].flip,
                     (unsigned long long)b[i].epoch, (unsigned long long)b[i].index);
    }
}

/* True when the (image, flip) sequences of a[0..n) and b[0..n) are equal. */
static bool same_order(const frcnn_sample *a, const frcnn_sample *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i].image != b[i].image || a[i].flip != b[i].flip)
            return false;
    return true;
}

/* Fails unless ep[0..len) holds every image once plain and (with flips) once flipped, all labelled with `epoch`
 * and index i at position i. */
static void assert_epoch_is_permutation(const frcnn_sample *ep, uint32_t n_images, bool flip, uint64_t epoch)
{
    size_t len = (size_t)n_images * (flip ? 2 : 1);
    unsigned *seen = calloc(len, sizeof *seen);
    assert_non_null(seen);
    for (size_t i = 0; i < len; i++) {
        assert_true(ep[i].image < n_images);
        assert_true(flip || !ep[i].flip);
        assert_int_equal(ep[i].epoch, epoch);
        assert_int_equal(ep[i].index, i);
        seen[ep[i].image + (ep[i].flip ? n_images : 0)]++;
    }
    for (size_t k = 0; k < len; k++)
        if (seen[k] != 1)
            fail_msg("epoch %llu: image %u flip %d seen %u times", (unsigned long long)epoch,
                     (unsigned)(k % n_images), (int)(k >= n_images), seen[k]);
    free(seen);
}

/* ----- permutations and independence ------------------------------------------------------------------------ */

static void test_every_epoch_is_permutation(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const struct { uint32_t n; bool flip; } cases[] = {{1, false}, {1, true}, {2, true}, {7, true}, {7, false},
                                                        {100, true}, {33, false}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        frcnn_sampler_params p = params_of(1234 + c, cases[c].n, cases[c].flip);
        frcnn_sampler *s = make(ctx, &p);
        uint64_t len = frcnn_sampler_epoch_length(s);
        assert_int_equal(len, (uint64_t)cases[c].n * (cases[c].flip ? 2 : 1));
        frcnn_sample *ep = malloc(len * sizeof *ep);
        assert_non_null(ep);
        for (uint64_t e = 0; e < 5; e++) {
            frcnn_sampler_state st = frcnn_sampler_get_state(s);
            assert_int_equal(st.epoch, e);
            assert_int_equal(st.cursor, 0);
            take_n(s, ep, len);
            assert_epoch_is_permutation(ep, cases[c].n, cases[c].flip, e);
        }
        free(ep);
        frcnn_sampler_free(s);
    }
    frcnn_ctx_free(ctx);
}

static void test_epochs_differ(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_sampler_params p = params_of(7, 20, true);
    frcnn_sampler *s = make(ctx, &p);
    enum { E = 6, L = 40 };
    frcnn_sample ep[E][L];
    for (int e = 0; e < E; e++)
        take_n(s, ep[e], L);
    for (int a = 0; a < E; a++)
        for (int b = a + 1; b < E; b++)
            if (same_order(ep[a], ep[b], L))
                fail_msg("epoch %d replays epoch %d", b, a);
    /* Not just different: epoch 1 is not epoch 0 rotated or with a few swaps either. */
    int equal_positions = 0;
    for (int i = 0; i < L; i++)
        equal_positions += ep[0][i].image == ep[1][i].image && ep[0][i].flip == ep[1][i].flip;
    assert_true(equal_positions < L / 4);
    frcnn_sampler_free(s);
    frcnn_ctx_free(ctx);
}

static void test_seeds(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    enum { N = 3 * 30 };
    frcnn_sample a[N], b[N], c[N];
    frcnn_sampler_params p = params_of(99, 15, true);
    frcnn_sampler *s1 = make(ctx, &p), *s2 = make(ctx, &p);
    p.seed = 100;
    frcnn_sampler *s3 = make(ctx, &p);
    take_n(s1, a, N);
    take_n(s2, b, N);
    take_n(s3, c, N);
    assert_same_samples(a, b, N, "same seed");
    for (int e = 0; e < 3; e++)
        if (same_order(a + 30 * e, c + 30 * e, 30))
            fail_msg("seeds 99 and 100 give the same epoch %d", e);
    frcnn_sampler_free(s1);
    frcnn_sampler_free(s2);
    frcnn_sampler_free(s3);
    frcnn_ctx_free(ctx);
}

/* The determinism golden: seed 42, 7 images, flips. Computed once from the implementation and frozen; a change
 * here changes every training run's data order (docs/determinism.md). */
static void test_golden(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_sampler_params p = params_of(42, 7, true);
    frcnn_sampler *s = make(ctx, &p);
    static const struct { uint32_t image; bool flip; } want[10] = {
        {5, false}, {3, false}, {4, true}, {6, true}, {1, true}, {6, false}, {2, false}, {1, false}, {2, true},
        {3, true}};
    for (int i = 0; i < 10; i++) {
        frcnn_sample x = take(s);
        if (x.image != want[i].image || x.flip != want[i].flip)
            fail_msg("sample %d: (image %u, flip %d), frozen (image %u, flip %d)", i, (unsigned)x.image,
                     (int)x.flip, (unsigned)want[i].image, (int)want[i].flip);
    }
    frcnn_sampler_free(s);
    frcnn_ctx_free(ctx);
}

/* ----- resume ----------------------------------------------------------------------------------------------- */

/* Takes `total` samples, and at each of cuts[0..n_cuts) samples taken (ascending) saves the state, frees the
 * sampler, creates a fresh one and restores; the whole sequence must equal an uninterrupted sampler's. */
static void check_resume(frcnn_ctx *ctx, const frcnn_sampler_params *p, const size_t *cuts, size_t n_cuts,
                         size_t total, const char *what)
{
    frcnn_sample *want = malloc(total * sizeof *want), *got = malloc(total * sizeof *got);
    assert_non_null(want);
    assert_non_null(got);
    frcnn_sampler *ref = make(ctx, p);
    take_n(ref, want, total);
    frcnn_sampler_free(ref);

    frcnn_sampler *s = make(ctx, p);
    uint64_t len = frcnn_sampler_epoch_length(s);
    size_t done = 0;
    for (size_t c = 0; c <= n_cuts; c++) {
        size_t until = c < n_cuts ? cuts[c] : total;
        assert_true(until >= done && until <= total);
        take_n(s, got + done, until - done);
        done = until;
        if (c == n_cuts)
            break;
        frcnn_sampler_state st = frcnn_sampler_get_state(s);
        assert_int_equal(st.epoch, done / len); /* the state names the NEXT sample */
        assert_int_equal(st.cursor, done % len);
        frcnn_sampler_free(s);
        s = make(ctx, p);
        assert_int_equal(frcnn_sampler_set_state(s, st), FRCNN_OK);
        frcnn_sampler_state back = frcnn_sampler_get_state(s);
        assert_int_equal(back.epoch, st.epoch);
        assert_int_equal(back.cursor, st.cursor);
    }
    assert_same_samples(got, want, total, what);
    frcnn_sampler_free(s);
    free(want);
    free(got);
}

static void resume_cases(frcnn_ctx *ctx, const frcnn_sampler_params *p)
{
    size_t L = (size_t)p->n_images * (p->flip ? 2 : 1), total = 4 * L;
    const size_t at0[] = {0}, at1[] = {1}, mid[] = {L / 2}, last[] = {L - 1}, one_epoch[] = {L}, two[] = {2 * L};
    const size_t twice[] = {L + 2, L + 5}, thrice[] = {2 * L + 1, 2 * L + 3, 2 * L + L - 2};
    const size_t twice0[] = {0, 3}, same_point[] = {5, 5, 5}, many[] = {1, L, L + 1, 2 * L - 1, 2 * L, 3 * L + 3};
    check_resume(ctx, p, NULL, 0, total, "no cut");
    check_resume(ctx, p, at0, 1, total, "N = 0");
    check_resume(ctx, p, at1, 1, total, "N = 1");
    check_resume(ctx, p, mid, 1, total, "N = L/2");
    check_resume(ctx, p, last, 1, total, "N = L - 1");
    check_resume(ctx, p, one_epoch, 1, total, "N = L");
    check_resume(ctx, p, two, 1, total, "N = 2L");
    check_resume(ctx, p, twice, 2, total, "two cycles inside epoch 1");
    check_resume(ctx, p, thrice, 3, total, "three cycles inside epoch 2");
    check_resume(ctx, p, twice0, 2, total, "two cycles inside epoch 0");
    check_resume(ctx, p, same_point, 3, total, "three cycles without a step between");
    check_resume(ctx, p, many, 6, total, "cycles across boundaries");
}

static void test_resume(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_sampler_params p = params_of(5, 7, true);
    resume_cases(ctx, &p);
    p = params_of(6, 9, false);
    resume_cases(ctx, &p);
    frcnn_ctx_free(ctx);
}

static void test_set_state_arbitrary(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_sampler_params p = params_of(11, 6, true);
    frcnn_sampler *ref = make(ctx, &p);
    size_t L = 12, skip = 5 * L + 7;
    frcnn_sample want[20], got[20];
    for (size_t i = 0; i < skip; i++)
        (void)take(ref);
    take_n(ref, want, 20);
    assert_int_equal(want[0].epoch, 5);
    assert_int_equal(want[0].index, 7);

    frcnn_sampler *s = make(ctx, &p);
    (void)take(s); /* a sampler that has moved on before restoring */
    frcnn_sampler_state st = {5, 7};
    assert_int_equal(frcnn_sampler_set_state(s, st), FRCNN_OK);
    take_n(s, got, 20);
    assert_same_samples(got, want, 20, "set_state(5, 7)");

    /* Going back to an earlier epoch recomputes its order too. */
    frcnn_sampler *fresh = make(ctx, &p);
    frcnn_sample first[12], again[12];
    take_n(fresh, first, 12);
    frcnn_sampler_state zero = {0, 0};
    assert_int_equal(frcnn_sampler_set_state(s, zero), FRCNN_OK);
    take_n(s, again, 12);
    assert_same_samples(again, first, 12, "set_state back to (0, 0)");

    /* A large epoch number is fine: the order is computed directly, not by stepping through the epochs. */
    frcnn_sampler_state far = {UINT64_C(1) << 40, 11};
    assert_int_equal(frcnn_sampler_set_state(s, far), FRCNN_OK);
    frcnn_sample x = take(s), y = take(s);
    assert_int_equal(x.epoch, far.epoch);
    assert_int_equal(x.index, 11);
    assert_int_equal(y.epoch, far.epoch + 1);
    assert_int_equal(y.index, 0);
    frcnn_sampler_free(fresh);
    frcnn_sampler_free(s);
    frcnn_sampler_free(ref);
    frcnn_ctx_free(ctx);
}

/* ----- aspect grouping -------------------------------------------------------------------------------------- */

static void check_grouping(frcnn_ctx *ctx, const float *aspect, uint32_t n, bool flip, bool exact_pairs)
{
    frcnn_sampler_params p = params_of(3, n, flip);
    p.group_by_aspect = true;
    p.aspect = aspect;
    frcnn_sampler *s = make(ctx, &p);
    size_t len = frcnn_sampler_epoch_length(s);
    frcnn_sample *ep = malloc(len * sizeof *ep), *prev = malloc(len * sizeof *prev);
    assert_non_null(ep);
    assert_non_null(prev);
    for (uint64_t e = 0; e < 6; e++) {
        take_n(s, ep, len);
        assert_epoch_is_permutation(ep, n, flip, e);
        if (exact_pairs)
            for (size_t i = 0; i + 1 < len; i += 2) {
                bool a = aspect[ep[i].image] >= 1.0f, b = aspect[ep[i + 1].image] >= 1.0f;
                if (a != b)
                    fail_msg("epoch %llu: samples %zu and %zu (images %u, %u) differ in orientation",
                             (unsigned long long)e, i, i + 1, (unsigned)ep[i].image, (unsigned)ep[i + 1].image);
            }
        if (e > 0 && len > 3 && same_order(ep, prev, len)) /* a tiny epoch has few orders */
            fail_msg("grouped epoch %llu replays the one before", (unsigned long long)e);
        memcpy(prev, ep, len * sizeof *ep);
    }
    free(ep);
    free(prev);
    frcnn_sampler_free(s);
}

static void test_group_by_aspect(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    /* 4 landscape (1.0 counts as landscape) and 6 portrait: even group sizes, so every pair is exact. */
    const float even[10] = {1.333f, 0.75f, 1.0f, 0.5f, 0.999f, 1.5f, 0.66f, 0.8f, 2.0f, 0.7f};
    check_grouping(ctx, even, 10, false, true);
    check_grouping(ctx, even, 10, true, true);
    /* 3 landscape, 2 portrait without flips: odd groups leave a unit of one; still a permutation. */
    const float odd[5] = {1.2f, 0.7f, 1.1f, 0.9f, 3.0f};
    check_grouping(ctx, odd, 5, false, false);
    check_grouping(ctx, odd, 5, true, true); /* flips double each group: even again */
    /* All one orientation, and a single image. */
    const float same[4] = {1.5f, 1.5f, 1.2f, 1.0f};
    check_grouping(ctx, same, 4, true, true);
    check_grouping(ctx, same, 1, false, false);

    /* Resume with grouping. */
    frcnn_sampler_params p = params_of(8, 10, true);
    p.group_by_aspect = true;
    p.aspect = even;
    resume_cases(ctx, &p);

    /* The aspects are copied at create: changing the caller's array afterwards changes nothing. */
    float mine[10];
    memcpy(mine, even, sizeof mine);
    p.aspect = mine;
    frcnn_sampler *s = make(ctx, &p);
    for (int i = 0; i < 10; i++)
        mine[i] = 1.0f / mine[i];
    p.aspect = even;
    frcnn_sampler *ref = make(ctx, &p);
    frcnn_sample a[60], b[60];
    take_n(s, a, 60);
    take_n(ref, b, 60);
    assert_same_samples(a, b, 60, "aspect copied at create");
    frcnn_sampler_free(ref);
    frcnn_sampler_free(s);
    frcnn_ctx_free(ctx);
}

/* ----- errors ----------------------------------------------------------------------------------------------- */

static void test_errors(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_sampler *s = (frcnn_sampler *)&s; /* must be reset to NULL on failure */
    frcnn_sampler_params p = params_of(1, 4, true);

    assert_int_equal(frcnn_sampler_create(NULL, &p, &s), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_sampler_create(ctx, &p, NULL), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_sampler_create(ctx, NULL, &s), FRCNN_ERR_INVALID_ARG);
    assert_null(s);

    p.n_images = 0;
    s = (frcnn_sampler *)&s;
    tu_expect_error_msg(ctx, frcnn_sampler_create(ctx, &p, &s), FRCNN_ERR_INVALID_ARG, "n_images");
    assert_null(s);
    p.n_images = UINT32_MAX / 2 + 1;
    tu_expect_error(ctx, frcnn_sampler_create(ctx, &p, &s), FRCNN_ERR_OVERFLOW);

    p = params_of(1, 4, true);
    p.group_by_aspect = true;
    tu_expect_error_msg(ctx, frcnn_sampler_create(ctx, &p, &s), FRCNN_ERR_INVALID_ARG, "aspect");
    const float bad[][4] = {{1.0f, NAN, 1.0f, 1.0f},
                            {1.0f, 1.0f, INFINITY, 1.0f},
                            {0.0f, 1.0f, 1.0f, 1.0f},
                            {1.0f, 1.0f, 1.0f, -0.5f},
                            {1.0f, 1.0f, 1.0f, -INFINITY}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p.aspect = bad[i];
        tu_expect_error_msg(ctx, frcnn_sampler_create(ctx, &p, &s), FRCNN_ERR_INVALID_ARG, "aspect[");
        assert_null(s);
    }
    /* Without grouping the aspects are not looked at. */
    p.group_by_aspect = false;
    p.aspect = bad[0];
    s = make(ctx, &p);

    assert_int_equal(frcnn_sampler_next(NULL, NULL), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_sampler_next(s, NULL), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_sampler_epoch_length(NULL), 0);
    frcnn_sampler_state st = {0, 0};
    assert_int_equal(frcnn_sampler_set_state(NULL, st), FRCNN_ERR_INVALID_ARG);

    /* A cursor must lie inside the epoch (8 samples); the failed call leaves the sampler as it was. */
    frcnn_sample before[3], after[3];
    frcnn_sampler *ref = make(ctx, &p);
    take_n(ref, before, 3);
    (void)take(s);
    frcnn_sampler_state good = {0, 0};
    assert_int_equal(frcnn_sampler_set_state(s, good), FRCNN_OK);
    st.epoch = 3;
    st.cursor = 8;
    tu_expect_error_msg(ctx, frcnn_sampler_set_state(s, st), FRCNN_ERR_INVALID_ARG, "cursor 8");
    st.cursor = UINT64_MAX;
    tu_expect_error_msg(ctx, frcnn_sampler_set_state(s, st), FRCNN_ERR_INVALID_ARG, "cursor");
    take_n(s, after, 3);
    assert_same_samples(after, before, 3, "after a rejected set_state");
    st.cursor = 7;
    assert_int_equal(frcnn_sampler_set_state(s, st), FRCNN_OK);

    frcnn_sampler_free(ref);
    frcnn_sampler_free(s);
    frcnn_sampler_free(NULL);
    frcnn_ctx_free(ctx);
}

/* ----- allocation failures ---------------------------------------------------------------------------------- */

static void test_allocation_failures(void **state)
{
    (void)state;
    const float aspect[3] = {1.5f, 0.5f, 1.0f};
    for (int fail_at = 1;; fail_at++) {
        tu_alloc_state ca;
        tu_alloc_init(&ca, 0);
        frcnn_ctx *ctx = tu_alloc_ctx(&ca, NULL);
        tu_alloc_mark base = tu_alloc_mark_now(&ca);
        tu_alloc_fail_next(&ca, (size_t)fail_at);
        frcnn_sampler_params p = params_of(2, 3, true);
        p.group_by_aspect = true;
        p.aspect = aspect;
        frcnn_sampler *s = NULL;
        frcnn_status st = frcnn_sampler_create(ctx, &p, &s);
        if (st == FRCNN_OK) {
            assert_true(fail_at > 1); /* at least one allocation was made to fail before */
            frcnn_sample x;
            size_t before = ca.calls;
            for (int i = 0; i < 50; i++)
                assert_int_equal(frcnn_sampler_next(s, &x), FRCNN_OK);
            frcnn_sampler_state far = {77, 2};
            assert_int_equal(frcnn_sampler_set_state(s, far), FRCNN_OK);
            assert_int_equal(ca.calls, before); /* next and set_state allocate nothing */
            frcnn_sampler_free(s);
            tu_alloc_assert_since(&ca, base);
            frcnn_ctx_free(ctx);
            tu_alloc_assert_clean(&ca);
            break;
        }
        tu_expect_error(ctx, st, FRCNN_ERR_NO_MEMORY);
        assert_null(s);
        tu_alloc_assert_since(&ca, base); /* the half-built sampler was freed */
        frcnn_ctx_free(ctx);
        tu_alloc_assert_clean(&ca);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_epoch_is_permutation),
        cmocka_unit_test(test_epochs_differ),
        cmocka_unit_test(test_seeds),
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_resume),
        cmocka_unit_test(test_set_state_arbitrary),
        cmocka_unit_test(test_group_by_aspect),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
