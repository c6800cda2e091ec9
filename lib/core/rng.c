/* The random number generator: xoshiro256** (Blackman & Vigna) seeded by SplitMix64, and what is built on it:
 * bounded integers, uniform and normal floats, shuffling, sampling without replacement. */
#include "internal.h"

#include <math.h>

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void frcnn_rng_seed(frcnn_rng *rng, uint64_t seed)
{
    if (!rng)
        return;
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&seed);
}

uint64_t frcnn_rng_next_u64(frcnn_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t frcnn_rng_below(frcnn_rng *rng, uint64_t bound)
{
    if (bound == 0)
        return 0;
    /* Reject the top partial block so every residue is equally likely. */
    uint64_t threshold = (0 - bound) % bound;
    for (;;) {
        uint64_t r = frcnn_rng_next_u64(rng);
        if (r >= threshold)
            return r % bound;
    }
}

float frcnn_rng_uniform(frcnn_rng *rng)
{
    return (float)(frcnn_rng_next_u64(rng) >> 40) * 0x1.0p-24f;
}

float frcnn_rng_normal(frcnn_rng *rng, float mean, float std)
{
    double u1 = (double)((frcnn_rng_next_u64(rng) >> 11) + 1) * 0x1.0p-53; /* (0, 1]: log is finite */
    double u2 = (double)(frcnn_rng_next_u64(rng) >> 11) * 0x1.0p-53;
    double z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
    return (float)((double)mean + (double)std * z);
}

void frcnn_rng_shuffle(frcnn_rng *rng, uint32_t *a, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)frcnn_rng_below(rng, i);
        uint32_t tmp = a[i - 1];
        a[i - 1] = a[j];
        a[j] = tmp;
    }
}

void frcnn_rng_choose(frcnn_rng *rng, uint32_t *a, size_t n, size_t k)
{
    if (k > n)
        k = n;
    for (size_t i = 0; i < k; i++) {
        size_t j = i + (size_t)frcnn_rng_below(rng, n - i);
        uint32_t tmp = a[i];
        a[i] = a[j];
        a[j] = tmp;
    }
}

void frcnn_rng_fill_normal(frcnn_rng *rng, frcnn_tensor *t, float mean, float std)
{
    if (!rng || !t)
        return;
    for (size_t i = 0; i < t->numel; i++)
        t->data[i] = frcnn_rng_normal(rng, mean, std);
}

void frcnn_rng_state_save(const frcnn_rng *rng, uint8_t out[FRCNN_RNG_STATE_BYTES])
{
    for (int i = 0; i < 4; i++)
        for (int b = 0; b < 8; b++)
            out[i * 8 + b] = (uint8_t)(rng->s[i] >> (8 * b));
}

frcnn_status frcnn_rng_state_load(frcnn_ctx *ctx, frcnn_rng *rng, const uint8_t in[FRCNN_RNG_STATE_BYTES])
{
    if (!rng || !in)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "rng_state_load: %s is NULL", rng ? "in" : "rng");
    uint64_t s[4] = {0, 0, 0, 0};
    for (int i = 0; i < 4; i++)
        for (int b = 0; b < 8; b++)
            s[i] |= (uint64_t)in[i * 8 + b] << (8 * b);
    if ((s[0] | s[1] | s[2] | s[3]) == 0)
        return frcnn__error(ctx, FRCNN_ERR_FORMAT, "rng_state_load: all-zero state is not a valid xoshiro state");
    for (int i = 0; i < 4; i++)
        rng->s[i] = s[i];
    return FRCNN_OK;
}
