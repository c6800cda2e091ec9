/*
 * synth_voc: writes a deterministic synthetic object-detection dataset in Pascal VOC 2007 layout, so training
 * and VOC07 evaluation can be exercised end to end without downloading VOC.
 *
 * The dataset is meant to be learnable by a small Faster R-CNN trained from scratch on a CPU in minutes, yet
 * not solvable by colour, brightness or a fixed threshold:
 *  - 6 classes that differ only by shape: circle, square, triangle, star, cross, ring (an annulus whose hole is
 *    half the outer radius). Colours are random and independent of the class. Polygons are rotated by a random
 *    angle and may be stretched 0.7..1.4 along one axis.
 *  - Image sides are uniform in [min-side, max-side]; 1..8 objects, each box's longer side log-uniform in
 *    [20, 0.85 min(W, H)], fully inside the image.
 *  - Later objects are drawn on top. A per-pixel owner map rejects a placement that would leave any earlier
 *    object with less than 60% of its pixels visible (30 tries, then the object is dropped).
 *  - Backgrounds: a two-colour gradient, two octaves of value noise, sometimes low-contrast stripes or a
 *    checkerboard, per-pixel Gaussian noise, and 2..10 distractors (thin lines, polylines, open arcs, dots) that
 *    look like no class. Each object's luminance differs from what lies under it by about 50 levels or more.
 *  - Shapes are rasterised by testing pixel centres; the GT box is the tight box of those pixels, written
 *    1-based and inclusive as VOC does. Edges are blended with 4x4 supersampled coverage; objects carry mild
 *    shading and noise, so nothing is pixel-perfect.
 *  - Every image comes from its own xoshiro256** stream seeded from (seed, split, index within the split): the
 *    same arguments give byte-identical files, and changing --test never changes the train/val images.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <stb_image_write.h>

#include "frcnn.h"

#if defined(__GNUC__)
#define PRINTF_LIKE(fmt, first) __attribute__((format(printf, fmt, first)))
#else
#define PRINTF_LIKE(fmt, first)
#endif

#define PI 3.14159265358979323846
#define MAX_IDS 999999L      /* ids are 6 digits */
#define MAX_OBJECTS 8
#define MAX_TRIES 30         /* placements tried per object before it is dropped */
#define MIN_OBJECT 20.0      /* px, the longer box side of the smallest object */
#define MAX_OBJECT_FRAC 0.85 /* of min(W, H), the longer box side of the largest object */
#define MIN_VISIBLE 0.6      /* fraction of its pixels every object keeps visible */
#define MIN_CONTRAST 50.0    /* luminance levels between an object and what lies under it */
#define DIFFICULT_SIDE 16    /* px: a box with a shorter side is marked difficult */
#define RING_INNER 0.5       /* hole radius / outer radius */
#define STAR_INNER 0.45      /* inner vertex radius / outer radius */
#define CROSS_HALF 0.36      /* bar half-width in unit coordinates (bar width = 0.36 of the cross's size) */
#define NOISE_MIN_CELL 12    /* px, the finest value-noise lattice */
#define MAX_VERTS 12
#define PATH_CAP 4096

enum { CIRCLE, SQUARE, TRIANGLE, STAR, CROSS, RING, NUM_CLASSES };
static const char *const CLASS_NAMES[NUM_CLASSES] = {"circle", "square", "triangle", "star", "cross", "ring"};

/* ---------------------------------------------------------------------------------------------------------------
 * RNG: the library's xoshiro256** stream (frcnn_rng), seeded here per (seed, split, image) with splitmix64.
 * ------------------------------------------------------------------------------------------------------------- */

typedef frcnn_rng rng;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

/* One independent stream per (seed, split, index): each step re-mixes, so nearby keys give unrelated streams. */
static void rng_seed(rng *r, uint64_t seed, uint64_t split, uint64_t index)
{
    uint64_t x = seed;
    x = splitmix64(&x) ^ (split * 0xD1B54A32D192ED03u);
    x = splitmix64(&x) ^ (index * 0x9E3779B97F4A7C15u);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static uint64_t rng_next(rng *r) { return frcnn_rng_next_u64(r); }

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

static double rng_range(rng *r, double lo, double hi) { return lo + (hi - lo) * rng_uniform(r); }

/* Uniform integer in [lo, hi], inclusive. */
static int rng_int(rng *r, int lo, int hi) { return lo + (int)(rng_uniform(r) * (double)(hi - lo + 1)); }

static double rng_log_uniform(rng *r, double lo, double hi) { return exp(rng_range(r, log(lo), log(hi))); }

/* Approximately standard normal: the centred sum of the four 16-bit fields of one draw (Irwin-Hall, n = 4),
 * scaled to unit variance. Bounded at +-3.46; plenty for pixel noise, and many times cheaper than Box-Muller,
 * which dominated the run time. */
static double rng_normal(rng *r)
{
    uint64_t x = rng_next(r);
    uint64_t sum = (x & 0xFFFF) + ((x >> 16) & 0xFFFF) + ((x >> 32) & 0xFFFF) + (x >> 48);
    return ((double)sum - 4.0 * 32767.5) * (1.7320508075688772 / 65536.0);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Canvas: the working image and its bookkeeping, allocated once for the largest image and reused.
 * ------------------------------------------------------------------------------------------------------------- */

typedef struct canvas {
    int w, h;
    float *rgb;          /* (h, w, 3) working image in levels 0..255, unclamped until quantised */
    signed char *owner;  /* (h, w) index of the object visible at each pixel, -1 for background */
    unsigned char *mask; /* (area h, area w) pixel centres inside the candidate shape, area-local */
    float *grid;         /* (gh, gw, 3) value-noise lattice */
    float *grid_row;     /* (gw, 3) the lattice interpolated to one image row */
    int *col_cell;       /* (w) lattice column left of each image column */
    float *col_t;        /* (w) smoothstep weight of the lattice column to its right */
    unsigned char *rgb8; /* (h, w, 3) the quantised image */
} canvas;

static void canvas_free(canvas *c)
{
    free(c->rgb);
    free(c->owner);
    free(c->mask);
    free(c->grid);
    free(c->grid_row);
    free(c->col_cell);
    free(c->col_t);
    free(c->rgb8);
}

static int canvas_alloc(canvas *c, int max_side)
{
    size_t n = (size_t)max_side * (size_t)max_side;
    size_t g = (size_t)(max_side / NOISE_MIN_CELL + 3);
    memset(c, 0, sizeof(*c));
    c->rgb = malloc(n * 3 * sizeof(float));
    c->owner = malloc(n);
    c->mask = malloc(n);
    c->grid = malloc(g * g * 3 * sizeof(float));
    c->grid_row = malloc(g * 3 * sizeof(float));
    c->col_cell = malloc((size_t)max_side * sizeof(int));
    c->col_t = malloc((size_t)max_side * sizeof(float));
    c->rgb8 = malloc(n * 3);
    if (!c->rgb || !c->owner || !c->mask || !c->grid || !c->grid_row || !c->col_cell || !c->col_t || !c->rgb8) {
        canvas_free(c);
        fprintf(stderr, "synth_voc: out of memory for %dx%d images\n", max_side, max_side);
        return -1;
    }
    return 0;
}

static double luminance(const float *px) { return 0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2]; }

static void blend(float *px, const float col[3], double cov)
{
    for (int ch = 0; ch < 3; ch++)
        px[ch] = (float)(cov * col[ch] + (1.0 - cov) * px[ch]);
}

static void random_colour(rng *r, float col[3], double lo, double hi)
{
    for (int ch = 0; ch < 3; ch++)
        col[ch] = (float)rng_range(r, lo, hi);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Background: gradient + value noise + optional stripes/checker + per-pixel noise.
 * ------------------------------------------------------------------------------------------------------------- */

static double smoothstep(double t) { return t * t * (3.0 - 2.0 * t); }

/* Adds smooth low-frequency colour variation: random offsets in [-amp, amp] on a lattice of `cell` px, blended
 * with smoothstep weights. A random lattice offset keeps cell borders from lining up with the image edges.
 * Separable: each row first interpolates the lattice vertically, then every pixel only horizontally. */
static void add_value_noise(canvas *c, rng *r, int cell, double amp)
{
    int gw = c->w / cell + 3, gh = c->h / cell + 3;
    for (int i = 0; i < gw * gh * 3; i++)
        c->grid[i] = (float)rng_range(r, -amp, amp);
    double ox = rng_range(r, 0.0, cell), oy = rng_range(r, 0.0, cell);
    for (int x = 0; x < c->w; x++) {
        double fx = (x + 0.5 + ox) / cell;
        c->col_cell[x] = (int)fx;
        c->col_t[x] = (float)smoothstep(fx - (int)fx);
    }
    for (int y = 0; y < c->h; y++) {
        double fy = (y + 0.5 + oy) / cell;
        int iy = (int)fy;
        float ty = (float)smoothstep(fy - iy);
        const float *g0 = c->grid + (size_t)iy * gw * 3, *g1 = g0 + (size_t)gw * 3;
        for (int j = 0; j < gw * 3; j++)
            c->grid_row[j] = g0[j] + ty * (g1[j] - g0[j]);
        float *px = c->rgb + (size_t)y * c->w * 3;
        for (int x = 0; x < c->w; x++, px += 3) {
            const float *g = c->grid_row + (size_t)c->col_cell[x] * 3;
            float tx = c->col_t[x];
            for (int ch = 0; ch < 3; ch++)
                px[ch] += g[ch] + tx * (g[ch + 3] - g[ch]);
        }
    }
}

/* A low-contrast regular texture on some images, so "textured" never means "object". */
static void add_texture(canvas *c, rng *r)
{
    double kind = rng_uniform(r);
    if (kind >= 0.3)
        return;
    double amp = rng_range(r, 6.0, 12.0);
    if (kind < 0.18) { /* stripes at a random angle */
        double period = rng_range(r, 6.0, 24.0), a = rng_range(r, 0.0, PI), phase = rng_range(r, 0.0, 2.0 * PI);
        double kx = 2.0 * PI * cos(a) / period, ky = 2.0 * PI * sin(a) / period;
        for (int y = 0; y < c->h; y++)
            for (int x = 0; x < c->w; x++) {
                float d = (float)(amp * sin(kx * x + ky * y + phase));
                float *px = c->rgb + ((size_t)y * c->w + x) * 3;
                px[0] += d, px[1] += d, px[2] += d;
            }
    } else { /* axis-aligned checkerboard */
        int cell = rng_int(r, 6, 24);
        for (int y = 0; y < c->h; y++)
            for (int x = 0; x < c->w; x++) {
                float d = (float)((((x / cell) + (y / cell)) & 1) ? amp : -amp);
                float *px = c->rgb + ((size_t)y * c->w + x) * 3;
                px[0] += d, px[1] += d, px[2] += d;
            }
    }
}

static void draw_background(canvas *c, rng *r)
{
    float c0[3], c1[3];
    random_colour(r, c0, 20.0, 235.0);
    random_colour(r, c1, 20.0, 235.0);
    double a = rng_range(r, 0.0, 2.0 * PI), dx = cos(a), dy = sin(a);
    /* project the corners to normalise the gradient parameter to [0, 1] over the image */
    double p0 = 0.0, p1 = 0.0;
    for (int k = 0; k < 4; k++) {
        double p = (k & 1 ? c->w : 0) * dx + (k & 2 ? c->h : 0) * dy;
        p0 = p < p0 ? p : p0;
        p1 = p > p1 ? p : p1;
    }
    double inv = 1.0 / (p1 - p0);
    for (int y = 0; y < c->h; y++)
        for (int x = 0; x < c->w; x++) {
            float t = (float)(((x + 0.5) * dx + (y + 0.5) * dy - p0) * inv);
            float *px = c->rgb + ((size_t)y * c->w + x) * 3;
            for (int ch = 0; ch < 3; ch++)
                px[ch] = c0[ch] + t * (c1[ch] - c0[ch]);
        }
    add_value_noise(c, r, rng_int(r, 48, 128), 30.0);
    add_value_noise(c, r, rng_int(r, NOISE_MIN_CELL, 32), 10.0);
    add_texture(c, r);
    float sigma = (float)rng_range(r, 8.0, 12.0);
    for (size_t i = 0; i < (size_t)c->w * c->h * 3; i++)
        c->rgb[i] += sigma * (float)rng_normal(r);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Distractors: antialiased thin strokes (lines, polylines, open arcs) and small dots. None is a filled shape.
 * ------------------------------------------------------------------------------------------------------------- */

#define MAX_STROKE 25

static double segment_distance(double px, double py, double ax, double ay, double bx, double by)
{
    double vx = bx - ax, vy = by - ay, len2 = vx * vx + vy * vy;
    double t = len2 > 0.0 ? ((px - ax) * vx + (py - ay) * vy) / len2 : 0.0;
    t = t < 0.0 ? 0.0 : t > 1.0 ? 1.0 : t;
    double ex = px - (ax + t * vx), ey = py - (ay + t * vy);
    return sqrt(ex * ex + ey * ey);
}

/* Blends a polyline of n points (n == 1: a dot) of half-width hw; coverage falls off over one pixel. */
static void draw_stroke(canvas *c, const double *sx, const double *sy, int n, double hw, const float col[3])
{
    double x0 = sx[0], x1 = sx[0], y0 = sy[0], y1 = sy[0];
    for (int i = 1; i < n; i++) {
        x0 = sx[i] < x0 ? sx[i] : x0, x1 = sx[i] > x1 ? sx[i] : x1;
        y0 = sy[i] < y0 ? sy[i] : y0, y1 = sy[i] > y1 ? sy[i] : y1;
    }
    int px0 = (int)floor(x0 - hw - 1.0), px1 = (int)ceil(x1 + hw + 1.0);
    int py0 = (int)floor(y0 - hw - 1.0), py1 = (int)ceil(y1 + hw + 1.0);
    px0 = px0 < 0 ? 0 : px0, py0 = py0 < 0 ? 0 : py0;
    px1 = px1 > c->w - 1 ? c->w - 1 : px1, py1 = py1 > c->h - 1 ? c->h - 1 : py1;
    for (int y = py0; y <= py1; y++)
        for (int x = px0; x <= px1; x++) {
            double d = 1e30;
            for (int i = 0; i < (n > 1 ? n - 1 : 1); i++) {
                int j = n > 1 ? i + 1 : i;
                double di = segment_distance(x + 0.5, y + 0.5, sx[i], sy[i], sx[j], sy[j]);
                d = di < d ? di : d;
            }
            double cov = hw + 0.5 - d;
            if (cov > 0.0)
                blend(c->rgb + ((size_t)y * c->w + x) * 3, col, cov > 1.0 ? 1.0 : cov);
        }
}

static void draw_distractors(canvas *c, rng *r)
{
    int count = rng_int(r, 2, 10);
    double side = c->w < c->h ? c->w : c->h;
    for (int k = 0; k < count; k++) {
        double sx[MAX_STROKE], sy[MAX_STROKE], hw = rng_range(r, 0.5, 1.3);
        int n = 0, kind = rng_int(r, 0, 3);
        float col[3];
        random_colour(r, col, 0.0, 255.0);
        sx[0] = rng_range(r, 0.0, c->w), sy[0] = rng_range(r, 0.0, c->h);
        if (kind == 0 || kind == 1) { /* line, or polyline of 3..5 points as a random walk */
            int points = kind == 0 ? 2 : rng_int(r, 3, 5);
            double a = rng_range(r, 0.0, 2.0 * PI);
            for (n = 1; n < points; n++) {
                double len = kind == 0 ? rng_range(r, 15.0, 0.6 * side) : rng_range(r, 10.0, 50.0);
                a += kind == 0 ? 0.0 : rng_range(r, -2.0, 2.0);
                sx[n] = sx[n - 1] + len * cos(a), sy[n] = sy[n - 1] + len * sin(a);
            }
        } else if (kind == 2) { /* open arc: at most 216 degrees, so it never reads as a ring */
            double rad = rng_range(r, 10.0, 60.0), a0 = rng_range(r, 0.0, 2.0 * PI);
            double span = rng_range(r, PI / 3.0, 1.2 * PI);
            double cx = sx[0], cy = sy[0];
            for (n = 0; n < MAX_STROKE; n++) {
                double a = a0 + span * n / (MAX_STROKE - 1);
                sx[n] = cx + rad * cos(a), sy[n] = cy + rad * sin(a);
            }
        } else { /* dot: at most 7 px across, far below the smallest object */
            n = 1;
            hw = rng_range(r, 1.5, 3.5);
        }
        draw_stroke(c, sx, sy, n, hw, col);
    }
}

/* ---------------------------------------------------------------------------------------------------------------
 * Shapes: geometry in image coordinates, point tests, rasterisation.
 * ------------------------------------------------------------------------------------------------------------- */

typedef struct shape {
    int cls;
    double cx, cy, radius;              /* circle and ring: centre and outer radius, px */
    int n;                              /* polygons: vertex count and vertices, px */
    double vx[MAX_VERTS], vy[MAX_VERTS];
    double xmin, ymin, xmax, ymax;      /* extent, px */
} shape;

typedef struct rect {
    int x0, y0, x1, y1; /* inclusive pixel range */
} rect;

typedef struct object {
    int cls;
    rect box;      /* tight box of the pixel centres inside the full shape, 0-based */
    long total;    /* pixels of the full shape */
    long visible;  /* of those, pixels no later object covers */
} object;

/* The polygon classes in unit coordinates, all spanning [-1, 1] (y down). Returns the vertex count. */
static int unit_polygon(int cls, double *u, double *v)
{
    static const double square[4][2] = {{-1, -1}, {1, -1}, {1, 1}, {-1, 1}};
    static const double triangle[3][2] = {{0, -1}, {0.8660254037844386, 0.5}, {-0.8660254037844386, 0.5}};
    static const double h = CROSS_HALF;
    const double cross[12][2] = {{-h, -1}, {h, -1}, {h, -h}, {1, -h}, {1, h},  {h, h},
                                 {h, 1},   {-h, 1}, {-h, h}, {-1, h}, {-1, -h}, {-h, -h}};
    switch (cls) {
    case SQUARE:
        for (int i = 0; i < 4; i++)
            u[i] = square[i][0], v[i] = square[i][1];
        return 4;
    case TRIANGLE: /* equilateral, circumradius 1, centred on its centroid */
        for (int i = 0; i < 3; i++)
            u[i] = triangle[i][0], v[i] = triangle[i][1];
        return 3;
    case STAR: /* 5 points, alternating outer and inner vertices, first point up */
        for (int i = 0; i < 10; i++) {
            double a = -PI / 2.0 + i * PI / 5.0, rad = (i & 1) ? STAR_INNER : 1.0;
            u[i] = rad * cos(a), v[i] = rad * sin(a);
        }
        return 10;
    default: /* CROSS: the union of two bars, as one 12-gon */
        for (int i = 0; i < 12; i++)
            u[i] = cross[i][0], v[i] = cross[i][1];
        return 12;
    }
}

/* Draws a shape of class cls: size, rotation, stretch and a position that keeps it inside the image. */
static void shape_make(shape *s, int cls, int w, int h, rng *r)
{
    double size = rng_log_uniform(r, MIN_OBJECT, MAX_OBJECT_FRAC * (w < h ? w : h));
    double lx0, ly0, lx1, ly1; /* extent relative to the centre */
    s->cls = cls;
    if (cls == CIRCLE || cls == RING) {
        s->radius = size / 2.0;
        s->n = 0;
        lx0 = ly0 = -s->radius, lx1 = ly1 = s->radius;
    } else {
        double u[MAX_VERTS], v[MAX_VERTS];
        s->n = unit_polygon(cls, u, v);
        double a = rng_uniform(r) < 0.75 ? rng_range(r, 0.0, 2.0 * PI) : 0.0;
        double stretch = rng_uniform(r) < 0.5 ? rng_log_uniform(r, 0.7, 1.4) : 1.0;
        double ca = cos(a), sa = sin(a);
        lx0 = ly0 = 1e30, lx1 = ly1 = -1e30;
        for (int i = 0; i < s->n; i++) {
            s->vx[i] = ca * u[i] - sa * stretch * v[i];
            s->vy[i] = sa * u[i] + ca * stretch * v[i];
            lx0 = s->vx[i] < lx0 ? s->vx[i] : lx0, lx1 = s->vx[i] > lx1 ? s->vx[i] : lx1;
            ly0 = s->vy[i] < ly0 ? s->vy[i] : ly0, ly1 = s->vy[i] > ly1 ? s->vy[i] : ly1;
        }
        /* scale so the longer side of the extent is `size` */
        double scale = size / (lx1 - lx0 > ly1 - ly0 ? lx1 - lx0 : ly1 - ly0);
        for (int i = 0; i < s->n; i++)
            s->vx[i] *= scale, s->vy[i] *= scale;
        lx0 *= scale, lx1 *= scale, ly0 *= scale, ly1 *= scale;
    }
    /* keep the extent within [1, side - 1] so the antialiasing margin stays inside the image too */
    s->cx = rng_range(r, 1.0 - lx0, w - 1.0 - lx1);
    s->cy = rng_range(r, 1.0 - ly0, h - 1.0 - ly1);
    for (int i = 0; i < s->n; i++)
        s->vx[i] += s->cx, s->vy[i] += s->cy;
    s->xmin = s->cx + lx0, s->xmax = s->cx + lx1;
    s->ymin = s->cy + ly0, s->ymax = s->cy + ly1;
}

static int shape_contains(const shape *s, double x, double y)
{
    if (s->cls == CIRCLE || s->cls == RING) {
        double dx = x - s->cx, dy = y - s->cy, d2 = dx * dx + dy * dy;
        if (d2 > s->radius * s->radius)
            return 0;
        return s->cls == CIRCLE || d2 >= RING_INNER * RING_INNER * s->radius * s->radius;
    }
    /* crossing number: odd count of edges crossed by a ray to +x means inside (works for the concave star).
     * "x left of the edge at height y", multiplied through by the edge's dy to avoid a division */
    int inside = 0;
    for (int i = 0, j = s->n - 1; i < s->n; j = i++) {
        double dy = s->vy[j] - s->vy[i];
        if ((s->vy[i] > y) != (s->vy[j] > y)) {
            double lhs = (x - s->vx[i]) * dy, rhs = (s->vx[j] - s->vx[i]) * (y - s->vy[i]);
            if (dy > 0.0 ? lhs < rhs : lhs > rhs)
                inside = !inside;
        }
    }
    return inside;
}

/* Fraction of a 4x4 grid of sample points in pixel (x, y) that lie inside the shape. */
static double shape_coverage(const shape *s, int x, int y)
{
    int hits = 0;
    for (int j = 0; j < 4; j++)
        for (int i = 0; i < 4; i++)
            hits += shape_contains(s, x + (i + 0.5) / 4.0, y + (j + 0.5) / 4.0);
    return hits / 16.0;
}

/* Tests the pixel centres of the shape's extent plus a one-pixel margin (the area) into c->mask, and fills the
 * object's tight box and pixel count. Returns the pixel count (0: the shape hit no pixel centre). */
static long shape_raster(canvas *c, const shape *s, rect *area, object *o)
{
    area->x0 = (int)floor(s->xmin) - 1, area->x1 = (int)ceil(s->xmax) + 1;
    area->y0 = (int)floor(s->ymin) - 1, area->y1 = (int)ceil(s->ymax) + 1;
    area->x0 = area->x0 < 0 ? 0 : area->x0, area->y0 = area->y0 < 0 ? 0 : area->y0;
    area->x1 = area->x1 > c->w - 1 ? c->w - 1 : area->x1, area->y1 = area->y1 > c->h - 1 ? c->h - 1 : area->y1;
    int aw = area->x1 - area->x0 + 1;
    o->cls = s->cls;
    o->box = (rect){c->w, c->h, -1, -1};
    o->total = 0;
    for (int y = area->y0; y <= area->y1; y++)
        for (int x = area->x0; x <= area->x1; x++) {
            int in = shape_contains(s, x + 0.5, y + 0.5);
            c->mask[(size_t)(y - area->y0) * aw + (x - area->x0)] = (unsigned char)in;
            if (!in)
                continue;
            o->total++;
            o->box.x0 = x < o->box.x0 ? x : o->box.x0, o->box.x1 = x > o->box.x1 ? x : o->box.x1;
            o->box.y0 = y < o->box.y0 ? y : o->box.y0, o->box.y1 = y > o->box.y1 ? y : o->box.y1;
        }
    o->visible = o->total;
    return o->total;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Occlusion bookkeeping and object drawing.
 * ------------------------------------------------------------------------------------------------------------- */

/* Whether every earlier object would keep MIN_VISIBLE of its pixels under the candidate in c->mask. */
static int occlusion_ok(const canvas *c, const rect *area, const object *objs, int nobj)
{
    long hidden[MAX_OBJECTS] = {0};
    int aw = area->x1 - area->x0 + 1;
    for (int y = area->y0; y <= area->y1; y++)
        for (int x = area->x0; x <= area->x1; x++) {
            int k = c->owner[(size_t)y * c->w + x];
            if (k >= 0 && c->mask[(size_t)(y - area->y0) * aw + (x - area->x0)])
                hidden[k]++;
        }
    for (int k = 0; k < nobj; k++)
        if ((double)(objs[k].visible - hidden[k]) < MIN_VISIBLE * (double)objs[k].total)
            return 0;
    return 1;
}

/* Makes the candidate object `index` own its pixels, taking them from the objects it covers. */
static void occlusion_commit(canvas *c, const rect *area, object *objs, int index)
{
    int aw = area->x1 - area->x0 + 1;
    for (int y = area->y0; y <= area->y1; y++)
        for (int x = area->x0; x <= area->x1; x++) {
            signed char *owner = &c->owner[(size_t)y * c->w + x];
            if (!c->mask[(size_t)(y - area->y0) * aw + (x - area->x0)])
                continue;
            if (*owner >= 0)
                objs[(int)*owner].visible--;
            *owner = (signed char)index;
        }
}

/* A random colour whose luminance differs from the mean under the mask by MIN_CONTRAST, else the best of 8. */
static void pick_colour(const canvas *c, const rect *area, rng *r, float col[3])
{
    int aw = area->x1 - area->x0 + 1;
    double sum = 0.0;
    long n = 0;
    for (int y = area->y0; y <= area->y1; y++)
        for (int x = area->x0; x <= area->x1; x++)
            if (c->mask[(size_t)(y - area->y0) * aw + (x - area->x0)])
                sum += luminance(c->rgb + ((size_t)y * c->w + x) * 3), n++;
    double under = n > 0 ? sum / n : 128.0, best = -1.0;
    for (int t = 0; t < 8 && best < MIN_CONTRAST; t++) {
        float cand[3];
        random_colour(r, cand, 0.0, 255.0);
        double d = fabs(luminance(cand) - under);
        if (d > best)
            best = d, memcpy(col, cand, sizeof(cand));
    }
}

/* Blends the shape in colour col with a gentle linear shading and per-pixel noise. Pixels whose 3x3
 * neighbourhood of centre tests agrees are fully in or out; only edge pixels pay for supersampling. */
static void draw_object(canvas *c, const shape *s, const rect *area, const float col[3], rng *r)
{
    int aw = area->x1 - area->x0 + 1, ah = area->y1 - area->y0 + 1;
    double half = 0.5 * (s->xmax - s->xmin > s->ymax - s->ymin ? s->xmax - s->xmin : s->ymax - s->ymin);
    double gx = rng_range(r, -15.0, 15.0) / half, gy = rng_range(r, -15.0, 15.0) / half;
    double sigma = rng_range(r, 3.0, 6.0);
    for (int ly = 0; ly < ah; ly++)
        for (int lx = 0; lx < aw; lx++) {
            int in = c->mask[(size_t)ly * aw + lx], edge = 0;
            for (int dy = -1; dy <= 1 && !edge; dy++)
                for (int dx = -1; dx <= 1 && !edge; dx++) {
                    int nx = lx + dx, ny = ly + dy;
                    int nin = nx >= 0 && ny >= 0 && nx < aw && ny < ah ? c->mask[(size_t)ny * aw + nx] : 0;
                    edge = nin != in;
                }
            int x = area->x0 + lx, y = area->y0 + ly;
            double cov = edge ? shape_coverage(s, x, y) : in;
            if (cov <= 0.0)
                continue;
            double shade = gx * (x + 0.5 - s->cx) + gy * (y + 0.5 - s->cy);
            float px[3];
            for (int ch = 0; ch < 3; ch++)
                px[ch] = (float)(col[ch] + shade + sigma * rng_normal(r));
            blend(c->rgb + ((size_t)y * c->w + x) * 3, px, cov);
        }
}

/* Places 1..MAX_OBJECTS objects, each in up to MAX_TRIES placements; returns how many were kept. */
static int place_objects(canvas *c, rng *r, object *objs)
{
    int want = rng_int(r, 1, MAX_OBJECTS), n = 0;
    memset(c->owner, -1, (size_t)c->w * c->h);
    for (int k = 0; k < want; k++) {
        int cls = rng_int(r, 0, NUM_CLASSES - 1);
        for (int t = 0; t < MAX_TRIES; t++) {
            shape s;
            rect area;
            shape_make(&s, cls, c->w, c->h, r);
            if (shape_raster(c, &s, &area, &objs[n]) == 0 || !occlusion_ok(c, &area, objs, n))
                continue;
            float col[3];
            occlusion_commit(c, &area, objs, n);
            pick_colour(c, &area, r, col);
            draw_object(c, &s, &area, col, r);
            n++;
            break;
        }
    }
    return n;
}

static void quantise(canvas *c)
{
    for (size_t i = 0; i < (size_t)c->w * c->h * 3; i++) {
        float v = c->rgb[i];
        c->rgb8[i] = (unsigned char)(v <= 0.0f ? 0 : v >= 255.0f ? 255 : (int)(v + 0.5f)); /* round half up */
    }
}

/* One whole image: size, background, distractors, objects. Returns the object count. */
static int generate_image(canvas *c, rng *r, int min_side, int max_side, object *objs)
{
    c->w = rng_int(r, min_side, max_side);
    c->h = rng_int(r, min_side, max_side);
    draw_background(c, r);
    draw_distractors(c, r);
    int n = place_objects(c, r, objs);
    quantise(c);
    return n;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Output: a growable byte buffer, checked file writes, paths, XML, splits.
 * ------------------------------------------------------------------------------------------------------------- */

typedef struct buf {
    char *data;
    size_t len, cap;
    int failed; /* an allocation failed; the contents are incomplete */
} buf;

static int buf_reserve(buf *b, size_t extra)
{
    if (b->failed)
        return 0;
    if (b->len + extra <= b->cap)
        return 1;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra)
        cap *= 2;
    char *data = realloc(b->data, cap);
    if (!data) {
        b->failed = 1;
        return 0;
    }
    b->data = data, b->cap = cap;
    return 1;
}

static void buf_append(buf *b, const void *data, size_t n)
{
    if (buf_reserve(b, n)) {
        memcpy(b->data + b->len, data, n);
        b->len += n;
    }
}

static void buf_printf(buf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void buf_printf(buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if (!buf_reserve(b, (size_t)n + 1))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void jpeg_sink(void *context, void *data, int size) { buf_append(context, data, (size_t)size); }

/* Writes the buffer to path; any failure, including a full disk found only at fclose, is reported. */
static int write_file(const char *path, const buf *b)
{
    if (b->failed) {
        fprintf(stderr, "synth_voc: out of memory while preparing '%s'\n", path);
        return -1;
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "synth_voc: cannot write '%s': %s\n", path, strerror(errno));
        return -1;
    }
    int err = 0;
    if (b->len > 0 && fwrite(b->data, 1, b->len, f) != b->len)
        err = errno ? errno : EIO;
    if (fclose(f) != 0 && err == 0)
        err = errno ? errno : EIO;
    if (err) {
        fprintf(stderr, "synth_voc: cannot write '%s': %s\n", path, strerror(err));
        return -1;
    }
    return 0;
}

static int make_path(char *out, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* Formats a path into out (PATH_CAP bytes); refuses one that would not fit. */
static int make_path(char *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, PATH_CAP, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= PATH_CAP) {
        fprintf(stderr, "synth_voc: path too long (over %d bytes) under '%s'\n", PATH_CAP - 1, out);
        return -1;
    }
    return 0;
}

static int make_dir(const char *path)
{
    struct stat st;
    if (mkdir(path, 0777) == 0)
        return 0;
    int err = errno;
    if (err == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    fprintf(stderr, "synth_voc: cannot create folder '%s': %s\n", path, strerror(err));
    return -1;
}

static void xml_annotation(buf *b, const char *id, int w, int h, const object *objs, int n)
{
    buf_printf(b, "<annotation>\n\t<folder>VOC2007</folder>\n\t<filename>%s.jpg</filename>\n", id);
    buf_printf(b, "\t<source><database>libfrcnn synthetic shapes</database></source>\n");
    buf_printf(b, "\t<size><width>%d</width><height>%d</height><depth>3</depth></size>\n", w, h);
    buf_printf(b, "\t<segmented>0</segmented>\n");
    for (int k = 0; k < n; k++) {
        const rect *bb = &objs[k].box;
        int bw = bb->x1 - bb->x0 + 1, bh = bb->y1 - bb->y0 + 1;
        buf_printf(b, "\t<object>\n\t\t<name>%s</name>\n\t\t<pose>Unspecified</pose>\n", CLASS_NAMES[objs[k].cls]);
        buf_printf(b, "\t\t<truncated>0</truncated>\n\t\t<difficult>%d</difficult>\n",
                   (bw < bh ? bw : bh) < DIFFICULT_SIDE);
        /* VOC boxes are 1-based and inclusive */
        buf_printf(b, "\t\t<bndbox><xmin>%d</xmin><ymin>%d</ymin><xmax>%d</xmax><ymax>%d</ymax></bndbox>\n",
                   bb->x0 + 1, bb->y0 + 1, bb->x1 + 1, bb->y1 + 1);
        buf_printf(b, "\t</object>\n");
    }
    buf_printf(b, "</annotation>\n");
}

/* Spreads n_val of the n trainval ids evenly over the range, so val is a fair sample of it. */
static int is_val(long i, long n, long n_val)
{
    return (long long)(i + 1) * n_val / n > (long long)i * n_val / n;
}

/* train, val, trainval (ids 1..n_trainval) and test (the next n_test ids), one id per line in id order. */
static int write_splits(const char *main_dir, long n_trainval, long n_val, long n_test, buf *b)
{
    static const char *const names[4] = {"train", "val", "trainval", "test"};
    char path[PATH_CAP];
    for (int s = 0; s < 4; s++) {
        b->len = 0;
        long first = s == 3 ? n_trainval : 0, last = s == 3 ? n_trainval + n_test : n_trainval;
        for (long i = first; i < last; i++) {
            int val = s < 3 && is_val(i, n_trainval, n_val);
            if ((s == 0 && val) || (s == 1 && !val))
                continue;
            buf_printf(b, "%06ld\n", i + 1);
        }
        if (make_path(path, "%s/%s.txt", main_dir, names[s]) != 0 || write_file(path, b) != 0)
            return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Command line and main.
 * ------------------------------------------------------------------------------------------------------------- */

typedef struct options {
    const char *out;
    uint64_t seed;
    long train, test;
    double val_fraction;
    long min_side, max_side;
} options;

static void usage(FILE *f)
{
    fprintf(f, "usage: synth_voc --out DIR [--seed S] [--train N] [--test M] [--val-fraction F]\n"
               "                 [--min-side A] [--max-side B]\n"
               "Writes a synthetic 6-class shapes dataset (circle square triangle star cross ring) in Pascal VOC\n"
               "2007 layout under DIR/VOC2007. DIR must exist. The same arguments give byte-identical files.\n"
               "  --seed S          dataset seed (default 1)\n"
               "  --train N         trainval images, ids 000001..N (default 480)\n"
               "  --test M          test images, the next M ids (default 160)\n"
               "  --val-fraction F  share of trainval listed in val.txt, the rest in train.txt (default 0.1)\n"
               "  --min-side A      smallest image width/height in px (default 240, at least 48)\n"
               "  --max-side B      largest image width/height in px (default 352, at most 4096)\n");
}

static int parse_long(const char *name, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "synth_voc: %s wants an integer in [%ld, %ld], got '%s'\n", name, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Returns 0 to run, 1 when --help was printed, -1 on a bad command line (already reported). */
static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){NULL, 1, 480, 160, 0.1, 240, 352};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0 || !v) {
            fprintf(stderr, "synth_voc: %s '%s' (see --help)\n", v ? "unexpected argument" : "missing value after",
                    a);
            return -1;
        }
        i++;
        int rc = 0;
        if (strcmp(a, "--out") == 0) {
            o->out = v;
        } else if (strcmp(a, "--seed") == 0) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-') {
                fprintf(stderr, "synth_voc: --seed wants an unsigned integer, got '%s'\n", v);
                return -1;
            }
            o->seed = (uint64_t)s;
        } else if (strcmp(a, "--train") == 0) {
            rc = parse_long(a, v, 0, MAX_IDS, &o->train);
        } else if (strcmp(a, "--test") == 0) {
            rc = parse_long(a, v, 0, MAX_IDS, &o->test);
        } else if (strcmp(a, "--min-side") == 0) {
            rc = parse_long(a, v, 48, 4096, &o->min_side);
        } else if (strcmp(a, "--max-side") == 0) {
            rc = parse_long(a, v, 48, 4096, &o->max_side);
        } else if (strcmp(a, "--val-fraction") == 0) {
            char *end;
            o->val_fraction = strtod(v, &end);
            if (end == v || *end || !(o->val_fraction >= 0.0 && o->val_fraction <= 1.0)) {
                fprintf(stderr, "synth_voc: --val-fraction wants a number in [0, 1], got '%s'\n", v);
                return -1;
            }
        } else {
            fprintf(stderr, "synth_voc: unknown option '%s' (see --help)\n", a);
            return -1;
        }
        if (rc != 0)
            return -1;
    }
    if (!o->out) {
        fprintf(stderr, "synth_voc: --out DIR is required (see --help)\n");
        return -1;
    }
    if (o->max_side < o->min_side) {
        fprintf(stderr, "synth_voc: --max-side %ld is below --min-side %ld\n", o->max_side, o->min_side);
        return -1;
    }
    if (o->train + o->test < 1 || o->train + o->test > MAX_IDS) {
        fprintf(stderr, "synth_voc: --train + --test must be in [1, %ld], got %ld\n", MAX_IDS, o->train + o->test);
        return -1;
    }
    return 0;
}

/* Generates, encodes and writes image `index` (0-based over all ids) and its annotation. */
static int write_image(const options *o, const char *root, long index, canvas *c, buf *b, long *per_class)
{
    object objs[MAX_OBJECTS];
    char id[24], path[PATH_CAP]; /* 24: room for any long */
    rng r;
    int split = index < o->train ? 0 : 1; /* trainval and test streams are keyed apart */
    rng_seed(&r, o->seed, (uint64_t)split, (uint64_t)(split ? index - o->train : index));
    int n = generate_image(c, &r, (int)o->min_side, (int)o->max_side, objs);
    snprintf(id, sizeof(id), "%06ld", index + 1);

    b->len = 0;
    if (!stbi_write_jpg_to_func(jpeg_sink, b, c->w, c->h, 3, c->rgb8, 90)) {
        fprintf(stderr, "synth_voc: cannot encode %s.jpg\n", id);
        return -1;
    }
    if (make_path(path, "%s/JPEGImages/%s.jpg", root, id) != 0 || write_file(path, b) != 0)
        return -1;
    b->len = 0;
    xml_annotation(b, id, c->w, c->h, objs, n);
    if (make_path(path, "%s/Annotations/%s.xml", root, id) != 0 || write_file(path, b) != 0)
        return -1;
    for (int k = 0; k < n; k++)
        per_class[objs[k].cls]++;
    return 0;
}

int main(int argc, char **argv)
{
    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : 1;

    struct stat st;
    int found = stat(o.out, &st) == 0;
    if (!found || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "synth_voc: output folder '%s' %s\n", o.out, found ? "is not a folder" : "does not exist");
        return 1;
    }

    char root[PATH_CAP], path[PATH_CAP];
    static const char *const subdirs[] = {"", "/JPEGImages", "/Annotations", "/ImageSets", "/ImageSets/Main"};
    if (make_path(root, "%s/VOC2007", o.out) != 0)
        return 1;
    for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++)
        if (make_path(path, "%s%s", root, subdirs[i]) != 0 || make_dir(path) != 0)
            return 1;

    canvas c;
    buf b = {0};
    long per_class[NUM_CLASSES] = {0}, n_val = (long)(o.val_fraction * o.train + 0.5), objects = 0;
    if (canvas_alloc(&c, (int)o.max_side) != 0)
        return 1;
    rc = 1;

    for (int k = 0; k < NUM_CLASSES; k++)
        buf_printf(&b, "%s\n", CLASS_NAMES[k]);
    if (make_path(path, "%s/classes.txt", root) != 0 || write_file(path, &b) != 0)
        goto done;
    for (long i = 0; i < o.train + o.test; i++)
        if (write_image(&o, root, i, &c, &b, per_class) != 0)
            goto done;
    if (make_path(path, "%s/ImageSets/Main", root) != 0 || write_splits(path, o.train, n_val, o.test, &b) != 0)
        goto done;

    for (int k = 0; k < NUM_CLASSES; k++)
        objects += per_class[k];
    printf("synth_voc: %ld train + %ld val + %ld test images, %ld objects (", o.train - n_val, n_val, o.test,
           objects);
    for (int k = 0; k < NUM_CLASSES; k++)
        printf("%s%s %ld", k ? ", " : "", CLASS_NAMES[k], per_class[k]);
    printf(") in %d classes -> %s\n", NUM_CLASSES, root);
    rc = 0;
done:
    canvas_free(&c);
    free(b.data);
    return rc;
}
