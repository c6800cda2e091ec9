/* Drawing on RGB images: box outlines and text labels (stb_easy_font's bitmap font, each font pixel drawn as a
 * scale x scale square), clipped at the image border. Nothing here allocates. */
#include "data_internal.h"

#include <limits.h>
#include <math.h>

/* stb_easy_font is header-only and all static: the function we do not call (stb_easy_font_spacing) warns under
 * -Wunused-function, and its colour struct initialiser `{ 255,255,255,255 }` under -Wmissing-braces. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-braces"
#include <stb_easy_font.h>
#pragma GCC diagnostic pop

/* Characters passed to stb_easy_font per call, and the quads its vertex buffer holds per character: the largest
 * glyph of stb_easy_font 1.1 has 11 quads (measured over ' ' .. '~'), so no glyph is ever cut short. */
#define TEXT_CHUNK 8
#define QUADS_PER_CHAR 16
/* One quad is 4 vertices of (x, y, z, rgba): 16 floats. */
#define FLOATS_PER_QUAD 16
/* The font's line height in font pixels (stb_easy_font_height of one line). */
#define FONT_HEIGHT 12

/* Fills the inclusive rectangle [x0, x1] x [y0, y1], clipped to the image. Coordinates may lie anywhere. */
static void fill_rect(frcnn_image *img, int64_t x0, int64_t y0, int64_t x1, int64_t y1, const uint8_t rgb[3])
{
    if (x0 < 0)
        x0 = 0;
    if (y0 < 0)
        y0 = 0;
    if (x1 > img->width - 1)
        x1 = img->width - 1;
    if (y1 > img->height - 1)
        y1 = img->height - 1;
    if (x0 > x1 || y0 > y1)
        return;
    for (int64_t y = y0; y <= y1; y++) {
        uint8_t *p = img->rgb + ((size_t)y * (size_t)img->width + (size_t)x0) * 3u;
        for (int64_t x = x0; x <= x1; x++, p += 3) {
            p[0] = rgb[0];
            p[1] = rgb[1];
            p[2] = rgb[2];
        }
    }
}

/* round(v), clamped to [lo, hi] before the conversion so that huge values stay defined. v is not NaN. */
static int64_t round_clamp(float v, int64_t lo, int64_t hi)
{
    double r = floor((double)v + 0.5);
    if (r < (double)lo)
        return lo;
    if (r > (double)hi)
        return hi;
    return (int64_t)r;
}

void frcnn_image_draw_box(frcnn_image *image, float x1, float y1, float x2, float y2, int thickness,
                          const uint8_t rgb[3])
{
    if (!image || !rgb || isnan(x1) || isnan(y1) || isnan(x2) || isnan(y2))
        return;
    int64_t t = thickness < 1 ? 1 : thickness;
    /* Edges far outside are clamped to a point where the band t pixels inward from them is still outside, so
     * clamping never moves a visible edge. */
    int64_t lo = -t - 1, hx = (int64_t)image->width + t, hy = (int64_t)image->height + t;
    int64_t bx1 = round_clamp(x1, lo, hx), by1 = round_clamp(y1, lo, hy);
    int64_t bx2 = round_clamp(x2, lo, hx), by2 = round_clamp(y2, lo, hy);
    if (bx2 < bx1 || by2 < by1)
        return;
    if (bx2 < 0 || by2 < 0 || bx1 >= image->width || by1 >= image->height)
        return;
    int64_t in = t - 1; /* a band is t pixels: [edge, edge + t - 1] */
    fill_rect(image, bx1, by1, bx2, by1 + in < by2 ? by1 + in : by2, rgb);   /* top */
    fill_rect(image, bx1, by2 - in > by1 ? by2 - in : by1, bx2, by2, rgb);   /* bottom */
    fill_rect(image, bx1, by1, bx1 + in < bx2 ? bx1 + in : bx2, by2, rgb);   /* left */
    fill_rect(image, bx2 - in > bx1 ? bx2 - in : bx1, by1, bx2, by2, rgb);   /* right */
}

/* Copies up to TEXT_CHUNK characters of text into chunk (NUL-terminated), printable ASCII kept and every other byte
 * turned into '?'. Returns how many were taken. */
static size_t take_chunk(const char *text, char chunk[TEXT_CHUNK + 1])
{
    size_t n = 0;
    for (; n < TEXT_CHUNK && text[n]; n++) {
        unsigned char c = (unsigned char)text[n];
        chunk[n] = c >= 32 && c < 127 ? (char)c : '?';
    }
    chunk[n] = '\0';
    return n;
}

/* The text's size in font pixels (no margin); 0 x 0 for NULL or "". */
static void font_size(const char *text, int64_t *w, int64_t *h)
{
    *w = *h = 0;
    if (!text || !text[0])
        return;
    char chunk[TEXT_CHUNK + 1];
    for (size_t n; (n = take_chunk(text, chunk)) > 0; text += n)
        *w += stb_easy_font_width(chunk);
    *h = FONT_HEIGHT;
}

static int clamp_int(int64_t v)
{
    return v > INT_MAX ? INT_MAX : (int)v;
}

/* scale < 1 is taken as 1; beyond FRCNN_IMAGE_MAX_SIDE one font pixel covers any image already, and the cap keeps
 * every coordinate far from overflow. */
static int64_t clamp_scale(int scale)
{
    return scale < 1 ? 1 : scale > FRCNN_IMAGE_MAX_SIDE ? FRCNN_IMAGE_MAX_SIDE : scale;
}

void frcnn_image_text_size(const char *text, int scale, int *width, int *height)
{
    int64_t s = clamp_scale(scale), w, h;
    font_size(text, &w, &h);
    /* a margin of one font pixel all round, on the background */
    if (width)
        *width = w ? clamp_int((w + 2) * s) : 0;
    if (height)
        *height = h ? clamp_int((h + 2) * s) : 0;
}

void frcnn_image_draw_text(frcnn_image *image, int x, int y, const char *text, int scale, const uint8_t fg[3],
                           const uint8_t bg[3])
{
    if (!image || !text || !text[0] || !fg || !bg)
        return;
    int64_t s = clamp_scale(scale), w, h;
    font_size(text, &w, &h);
    int64_t bw = (w + 2) * s, bh = (h + 2) * s;
    fill_rect(image, x, y, x + bw - 1, y + bh - 1, bg);

    float vbuf[TEXT_CHUNK * QUADS_PER_CHAR * FLOATS_PER_QUAD];
    char chunk[TEXT_CHUNK + 1];
    int64_t ox = (int64_t)x + s, oy = (int64_t)y + s; /* the glyphs' origin, inside the margin */
    for (size_t n; (n = take_chunk(text, chunk)) > 0 && ox < image->width; text += n) {
        int quads = stb_easy_font_print(0.0f, 0.0f, chunk, NULL, vbuf, (int)sizeof vbuf);
        for (int q = 0; q < quads; q++) {
            /* vertices 0 and 2 of a quad are its top-left and bottom-right corners, in whole font pixels */
            const float *v = vbuf + (size_t)q * FLOATS_PER_QUAD;
            int64_t qx0 = (int64_t)v[0], qy0 = (int64_t)v[1], qx1 = (int64_t)v[8], qy1 = (int64_t)v[9];
            fill_rect(image, ox + qx0 * s, oy + qy0 * s, ox + qx1 * s - 1, oy + qy1 * s - 1, fg);
        }
        ox += stb_easy_font_width(chunk) * s;
    }
}
