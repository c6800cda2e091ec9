/* Images: decoding (PNG RGB / grey / grey+alpha / RGBA exactly, JPEG within a tolerance), header-only sizes,
 * every kind of bad file (missing, directory, empty, text, truncated, bit-flipped, a header claiming 100000 x 100000
 * pixels) giving a clear error and never a crash, allocation failures, saving (PNG, JPEG, atomic through NAME.tmp),
 * and drawing boxes and text (exact pixels against a reference, clipping, nothing outside). Test files are written
 * with stb_image_write into a fresh folder. */
#include "testutil.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb_image_write.h>

/* ---------------------------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------------------------- */

static char tmpdir[128];

static int setup(void **state)
{
    (void)state;
    return tu_make_tmpdir(tmpdir, sizeof tmpdir, "image");
}

static int teardown(void **state)
{
    (void)state;
    return tu_remove_tree(tmpdir);
}

/* tmpdir/name into buf. */
static const char *path_of(char *buf, size_t cap, const char *name)
{
    int n = snprintf(buf, cap, "%s/%s", tmpdir, name);
    assert_true(n > 0 && (size_t)n < cap);
    return buf;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void write_file(const char *path, const uint8_t *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n)
        assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* The whole file, malloc'ed; *n its size. */
static uint8_t *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long len = ftell(f);
    assert_true(len >= 0);
    rewind(f);
    uint8_t *d = malloc((size_t)len + 1);
    assert_non_null(d);
    assert_int_equal(fread(d, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return d;
}

/* A deterministic pattern of w x h pixels of c channels, every byte different from its neighbours. */
static uint8_t *pattern(int w, int h, int c)
{
    uint8_t *p = malloc((size_t)w * (size_t)h * (size_t)c);
    assert_non_null(p);
    for (int i = 0; i < w * h * c; i++)
        p[i] = (uint8_t)(i * 37 + i / 7 + 11);
    return p;
}

/* A smooth RGB gradient (JPEG-friendly). */
static uint8_t *gradient(int w, int h)
{
    uint8_t *p = malloc((size_t)w * (size_t)h * 3);
    assert_non_null(p);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = p + ((size_t)y * w + x) * 3;
            q[0] = (uint8_t)(40 + 160 * x / w);
            q[1] = (uint8_t)(200 - 150 * y / h);
            q[2] = (uint8_t)(90 + 60 * (x + y) / (w + h));
        }
    return p;
}

static frcnn_image *load_ok(frcnn_ctx *ctx, const char *path)
{
    frcnn_image *img = NULL;
    frcnn_status st = frcnn_image_load(ctx, path, &img);
    if (st != FRCNN_OK) {
        print_error("load '%s': %s: %s\n", path, frcnn_status_str(st), frcnn_ctx_last_error(ctx));
        fail();
    }
    assert_non_null(img);
    return img;
}

/* Loading must fail with `want` (message naming the path), leave *out NULL, and read_size must not crash. */
static void expect_load_error(frcnn_ctx *ctx, const char *path, frcnn_status want)
{
    frcnn_image *img = (frcnn_image *)&img; /* not NULL, so that the reset to NULL is seen */
    tu_expect_error_msg(ctx, frcnn_image_load(ctx, path, &img), want, path);
    assert_null(img);
}

/* CRC-32 of the PNG spec, to craft and repair chunks. */
static uint32_t crc32_png(const uint8_t *d, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= d[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Offset of the first chunk of the given type in a PNG, and its data length. */
static size_t find_chunk(const uint8_t *d, size_t n, const char *type, uint32_t *len)
{
    for (size_t at = 8; at + 12 <= n; at += 12 + get_be32(d + at))
        if (memcmp(d + at + 4, type, 4) == 0) {
            *len = get_be32(d + at);
            return at;
        }
    fail_msg("no %s chunk", type);
    return 0;
}

/* Appends a chunk with a correct CRC at d + at; returns the offset after it. */
static size_t put_chunk(uint8_t *d, size_t at, const char *type, const uint8_t *data, uint32_t len)
{
    put_be32(d + at, len);
    memcpy(d + at + 4, type, 4);
    if (len)
        memcpy(d + at + 8, data, len);
    put_be32(d + at + 8 + len, crc32_png(d + at + 4, len + 4));
    return at + 12 + len;
}

/* A small RGB PNG written by stb_image_write; returns its bytes (malloc'ed) and the pixels (malloc'ed). */
static uint8_t *write_test_png(const char *path, int w, int h, uint8_t **pixels, size_t *n)
{
    uint8_t *px = pattern(w, h, 3);
    assert_true(stbi_write_png(path, w, h, 3, px, w * 3));
    if (pixels)
        *pixels = px;
    else
        free(px);
    return read_file(path, n);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Decoding
 * ------------------------------------------------------------------------------------------------------------- */

static void test_png_rgb_round_trip(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    char path[256];
    path_of(path, sizeof path, "rgb.png");
    uint8_t *px;
    size_t n;
    free(write_test_png(path, 7, 5, &px, &n));
    frcnn_image *img = load_ok(ctx, path);
    assert_int_equal(frcnn_image_width(img), 7);
    assert_int_equal(frcnn_image_height(img), 5);
    assert_memory_equal(frcnn_image_pixels(img), px, 7 * 5 * 3);
    int w = 0, h = 0;
    assert_int_equal(frcnn_image_read_size(ctx, path, &w, &h), FRCNN_OK);
    assert_int_equal(w, 7);
    assert_int_equal(h, 5);
    frcnn_image_free(img);
    free(px);
    frcnn_ctx_free(ctx);
}

/* Grey replicated to R, G and B; alpha dropped (not applied) for grey+alpha and RGBA. */
static void test_png_channels(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const int w = 6, h = 4;
    for (int c = 1; c <= 4; c++) {
        char name[32], path[256];
        snprintf(name, sizeof name, "c%d.png", c);
        path_of(path, sizeof path, name);
        uint8_t *px = pattern(w, h, c);
        assert_true(stbi_write_png(path, w, h, c, px, w * c));
        frcnn_image *img = load_ok(ctx, path);
        assert_int_equal(frcnn_image_width(img), w);
        assert_int_equal(frcnn_image_height(img), h);
        const uint8_t *got = frcnn_image_pixels(img);
        for (int i = 0; i < w * h; i++)
            for (int k = 0; k < 3; k++) {
                uint8_t want = c <= 2 ? px[i * c] : px[i * c + k];
                if (got[i * 3 + k] != want)
                    fail_msg("%d channels: pixel %d channel %d: %u, expected %u", c, i, k, got[i * 3 + k], want);
            }
        frcnn_image_free(img);
        free(px);
    }
    frcnn_ctx_free(ctx);
}

static void test_jpeg_round_trip(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const int w = 40, h = 27;
    char path[256];
    path_of(path, sizeof path, "smooth.jpg");
    uint8_t *px = gradient(w, h);
    assert_true(stbi_write_jpg(path, w, h, 3, px, 95));
    frcnn_image *img = load_ok(ctx, path);
    assert_int_equal(frcnn_image_width(img), w);
    assert_int_equal(frcnn_image_height(img), h);
    const uint8_t *got = frcnn_image_pixels(img);
    int max_err = 0;
    double sum = 0;
    for (int i = 0; i < w * h * 3; i++) {
        int e = abs((int)got[i] - (int)px[i]);
        max_err = e > max_err ? e : max_err;
        sum += e;
    }
    if (max_err > 16 || sum / (w * h * 3) > 3.0)
        fail_msg("JPEG error: max %d, mean %.2f", max_err, sum / (w * h * 3));
    int rw, rh;
    assert_int_equal(frcnn_image_read_size(ctx, path, &rw, &rh), FRCNN_OK);
    assert_int_equal(rw, w);
    assert_int_equal(rh, h);
    frcnn_image_free(img);
    free(px);
    frcnn_ctx_free(ctx);
}

/* read_size needs the header alone: a PNG cut right after IHDR has a size but no pixels. */
static void test_read_size_header_only(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    char path[256];
    path_of(path, sizeof path, "header-only.png");
    size_t n;
    uint8_t *d = write_test_png(path, 13, 9, NULL, &n);
    uint32_t len;
    size_t ihdr = find_chunk(d, n, "IHDR", &len);
    write_file(path, d, ihdr + 12 + len);
    int w = -1, h = -1;
    assert_int_equal(frcnn_image_read_size(ctx, path, &w, &h), FRCNN_OK);
    assert_int_equal(w, 13);
    assert_int_equal(h, 9);
    expect_load_error(ctx, path, FRCNN_ERR_FORMAT);
    free(d);
    frcnn_ctx_free(ctx);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Bad files
 * ------------------------------------------------------------------------------------------------------------- */

static void test_missing_file_and_directory(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    char path[256];
    path_of(path, sizeof path, "no-such-file.jpg");
    expect_load_error(ctx, path, FRCNN_ERR_IO);
    int w = 5, h = 5;
    tu_expect_error_msg(ctx, frcnn_image_read_size(ctx, path, &w, &h), FRCNN_ERR_IO, path);
    assert_int_equal(w, 0);
    assert_int_equal(h, 0);

    path_of(path, sizeof path, "a-folder.png");
    assert_int_equal(mkdir(path, 0755), 0);
    expect_load_error(ctx, path, FRCNN_ERR_IO);
    tu_expect_error_msg(ctx, frcnn_image_read_size(ctx, path, &w, &h), FRCNN_ERR_IO, "directory");
    frcnn_ctx_free(ctx);
}

static void test_empty_and_text_files(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    char path[256];
    int w, h;
    path_of(path, sizeof path, "empty.jpg");
    write_file(path, NULL, 0);
    expect_load_error(ctx, path, FRCNN_ERR_FORMAT);
    tu_expect_error_msg(ctx, frcnn_image_read_size(ctx, path, &w, &h), FRCNN_ERR_FORMAT, "empty");

    path_of(path, sizeof path, "notes.jpg");
    const char *text = "These are my holiday notes, not a picture.\n";
    write_file(path, (const uint8_t *)text, strlen(text));
    expect_load_error(ctx, path, FRCNN_ERR_FORMAT);
    tu_expect_error_msg(ctx, frcnn_image_read_size(ctx, path, &w, &h), FRCNN_ERR_FORMAT, path);
    frcnn_ctx_free(ctx);
}

/* Every cut of a PNG short of its end is a truncated file: FORMAT, with "truncated" once the signature is whole. */
static void test_truncated_png(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    char full[256], cut[256];
    path_of(full, sizeof full, "whole.png");
    path_of(cut, sizeof cut, "cut.png");
    size_t n;
    uint8_t *d = write_test_png(full, 20, 16, NULL, &n);
    for (size_t len = 1; len < n; len += len < 64 ? 1 : 17) {
        write_file(cut, d, len);
        frcnn_image *img = NULL;
        frcnn_status st = frcnn_image_load(ctx, cut, &img);
        if (st != FRCNN_ERR_FORMAT)
            fail_msg("PNG cut to %zu of %zu bytes: %s (%s)", len, n, frcnn_status_str(st), frcnn_ctx_last_error(ctx));
        assert_null(img);
        if (len >= 8)
            assert_non_null(strstr(frcnn_ctx_last_error(ctx), "truncated"));
        int w, h;
        st = frcnn_image_read_size(ctx, cut, &w, &h);
        assert_true(st == FRCNN_OK || st == FRCNN_ERR_FORMAT);
    }
    frcnn_image_free(load_ok(ctx, full));
    free(d);
    frcnn_ctx_free(ctx);
}

/* A JPEG cut before its first scan has no pixels at all: FORMAT. Cut inside the scan, stb_image may decode what
 * is there: either result is fine, a crash is not. */
static void test_truncated_jpeg(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    char full[256], cut[256];
    path_of(full, sizeof full, "whole.jpg");
    path_of(cut, sizeof cut, "cut.jpg");
    uint8_t *px = gradient(48, 32);
    assert_true(stbi_write_jpg(full, 48, 32, 3, px, 90));
    size_t n;
    uint8_t *d = read_file(full, &n);
    size_t sos = 0;
    for (size_t i = 2; i + 1 < n && !sos; i++)
        if (d[i] == 0xFF && d[i + 1] == 0xDA)
            sos = i;
    assert_true(sos > 0);
    for (size_t len = 1; len < n; len += len < sos + 16 ? 1 : 13) {
        write_file(cut, d, len);
        frcnn_image *img = NULL;
        frcnn_status st = frcnn_image_load(ctx, cut, &img);
        if (len <= sos + 2 && st != FRCNN_ERR_FORMAT)
            fail_msg("JPEG cut to %zu bytes (scan at %zu): %s", len, sos, frcnn_status_str(st));
        assert_true(st == FRCNN_OK || st == FRCNN_ERR_FORMAT);
        if (st == FRCNN_OK) {
            assert_int_equal(frcnn_image_width(img), 48);
            assert_int_equal(frcnn_image_height(img), 32);
        } else {
            assert_null(img);
            if (len >= 3) /* enough to recognise the format */
                assert_non_null(strstr(frcnn_ctx_last_error(ctx), "JPEG"));
        }
        frcnn_image_free(img);
    }
    free(d);
    free(px);
    frcnn_ctx_free(ctx);
}

/* Flipped bits in the compressed pixels: the CRC catches them; with the CRC repaired (corruption the CRC cannot
 * see), the decoder gets the damaged stream and must fail cleanly or decode something of the right size. */
static void test_png_bit_flips(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    char full[256], bad[256];
    path_of(full, sizeof full, "flip-source.png");
    path_of(bad, sizeof bad, "flipped.png");
    size_t n;
    uint8_t *d = write_test_png(full, 24, 18, NULL, &n);
    uint32_t len;
    size_t idat = find_chunk(d, n, "IDAT", &len);
    uint8_t *copy = malloc(n);
    assert_non_null(copy);
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 77);
    int decoded = 0, refused = 0;
    for (int trial = 0; trial < 200; trial++) {
        memcpy(copy, d, n);
        int flips = 1 + trial % 4;
        for (int k = 0; k < flips; k++) {
            uint32_t at = frcnn_rng_below(&rng, len);
            copy[idat + 8 + at] ^= (uint8_t)(1u << frcnn_rng_below(&rng, 8));
        }
        write_file(bad, copy, n);
        expect_load_error(ctx, bad, FRCNN_ERR_FORMAT);
        put_be32(copy + idat + 8 + len, crc32_png(copy + idat + 4, len + 4));
        write_file(bad, copy, n);
        frcnn_image *img = NULL;
        frcnn_status st = frcnn_image_load(ctx, bad, &img);
        assert_true(st == FRCNN_OK || st == FRCNN_ERR_FORMAT);
        if (st == FRCNN_OK) {
            assert_int_equal(frcnn_image_width(img), 24);
            assert_int_equal(frcnn_image_height(img), 18);
            decoded++;
        } else {
            assert_null(img);
            assert_non_null(strstr(frcnn_ctx_last_error(ctx), "PNG"));
            refused++;
        }
        frcnn_image_free(img);
    }
    assert_true(refused > 0); /* most damage to a deflate stream is detectable */
    (void)decoded;
    free(copy);
    free(d);
    frcnn_ctx_free(ctx);
}

/* A valid PNG claiming width x height (one tiny IDAT that cannot hold them). */
static void write_claiming_png(const char *path, uint32_t width, uint32_t height)
{
    uint8_t d[128];
    memcpy(d, "\x89PNG\r\n\x1a\n", 8);
    uint8_t ihdr[13] = {0};
    put_be32(ihdr, width);
    put_be32(ihdr + 4, height);
    ihdr[8] = 8; /* bit depth */
    ihdr[9] = 2; /* RGB */
    size_t at = put_chunk(d, 8, "IHDR", ihdr, 13);
    static const uint8_t zlib_empty[] = {0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01};
    at = put_chunk(d, at, "IDAT", zlib_empty, sizeof zlib_empty);
    at = put_chunk(d, at, "IEND", NULL, 0);
    write_file(path, d, at);
}

/* A header claiming 100000 x 100000 pixels is refused from the header, before anything that size is allocated. */
static void test_huge_header(void **state)
{
    (void)state;
    tu_alloc_state ta; /* its max_request: the largest allocation asked for */
    tu_alloc_init(&ta, 0);
    frcnn_ctx *ctx = tu_alloc_ctx(&ta, NULL);
    char path[256];
    const uint32_t sizes[][2] = {{100000, 100000}, {FRCNN_IMAGE_MAX_SIDE + 1, 1}, {1, FRCNN_IMAGE_MAX_SIDE + 1}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        path_of(path, sizeof path, "huge.png");
        write_claiming_png(path, sizes[i][0], sizes[i][1]);
        ta.max_request = 0;
        expect_load_error(ctx, path, FRCNN_ERR_FORMAT);
        assert_true(ta.max_request < 4096);
        int w, h;
        tu_expect_error_msg(ctx, frcnn_image_read_size(ctx, path, &w, &h), FRCNN_ERR_FORMAT, "FRCNN_IMAGE_MAX_SIDE");
    }
    /* The largest allowed size passes the header check and fails for want of pixel data. */
    write_claiming_png(path, FRCNN_IMAGE_MAX_SIDE, 2);
    int w, h;
    assert_int_equal(frcnn_image_read_size(ctx, path, &w, &h), FRCNN_OK);
    assert_int_equal(w, FRCNN_IMAGE_MAX_SIDE);
    expect_load_error(ctx, path, FRCNN_ERR_FORMAT);

    /* A BMP header: 14-byte file header + 40-byte info header claiming 100000 x 100000, 24 bits, no pixels. */
    uint8_t bmp[54] = {'B', 'M'};
    bmp[10] = 54;
    bmp[14] = 40;
    bmp[18] = 0xA0, bmp[19] = 0x86, bmp[20] = 0x01; /* 100000 */
    bmp[22] = 0xA0, bmp[23] = 0x86, bmp[24] = 0x01;
    bmp[26] = 1;
    bmp[28] = 24;
    path_of(path, sizeof path, "huge.bmp");
    write_file(path, bmp, sizeof bmp);
    ta.max_request = 0;
    tu_expect_error_msg(ctx, frcnn_image_load(ctx, path, &(frcnn_image *){NULL}), FRCNN_ERR_FORMAT, "100000 x 100000");
    assert_true(ta.max_request < 4096);
    tu_expect_error_msg(ctx, frcnn_image_read_size(ctx, path, &w, &h), FRCNN_ERR_FORMAT, "FRCNN_IMAGE_MAX_SIDE");

    /* A JPEG whose frame header says 60000 x 50000. */
    path_of(path, sizeof path, "huge.jpg");
    uint8_t grey[64] = {0};
    assert_true(stbi_write_jpg(path, 8, 8, 1, grey, 90));
    size_t n;
    uint8_t *d = read_file(path, &n);
    size_t sof = 0;
    for (size_t i = 2; i + 9 < n && !sof; i++)
        if (d[i] == 0xFF && d[i + 1] == 0xC0)
            sof = i;
    assert_true(sof > 0);
    d[sof + 5] = 50000 >> 8, d[sof + 6] = 50000 & 0xFF;
    d[sof + 7] = 60000 >> 8, d[sof + 8] = 60000 & 0xFF;
    write_file(path, d, n);
    ta.max_request = 0;
    tu_expect_error_msg(ctx, frcnn_image_load(ctx, path, &(frcnn_image *){NULL}), FRCNN_ERR_FORMAT, "60000 x 50000");
    assert_true(ta.max_request < 4096);
    tu_expect_error_msg(ctx, frcnn_image_read_size(ctx, path, &w, &h), FRCNN_ERR_FORMAT, "FRCNN_IMAGE_MAX_SIDE");
    free(d);
    frcnn_ctx_free(ctx);
    tu_alloc_assert_clean(&ta);
}

static void test_null_arguments(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    char path[256];
    path_of(path, sizeof path, "null-args.png");
    free(write_test_png(path, 3, 3, NULL, &(size_t){0}));
    frcnn_image *img = NULL;
    int w, h;
    assert_int_equal(frcnn_image_load(NULL, path, &img), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_image_load(ctx, NULL, &img), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_image_load(ctx, path, NULL), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_image_read_size(NULL, path, &w, &h), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_image_read_size(ctx, NULL, &w, &h), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_image_read_size(ctx, path, NULL, &h), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_image_read_size(ctx, path, &w, NULL), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_image_create(NULL, 2, 2, &img), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_image_create(ctx, 2, 2, NULL), FRCNN_ERR_INVALID_ARG);
    img = load_ok(ctx, path);
    assert_int_equal(frcnn_image_save(NULL, path, img), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_image_save(ctx, NULL, img), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn_image_save(ctx, path, NULL), FRCNN_ERR_INVALID_ARG);
    frcnn_image_free(img);
    frcnn_image_free(NULL);
    assert_int_equal(frcnn_image_width(NULL), 0);
    assert_int_equal(frcnn_image_height(NULL), 0);
    assert_null(frcnn_image_pixels(NULL));
    const uint8_t c[3] = {1, 2, 3};
    frcnn_image_draw_box(NULL, 0, 0, 1, 1, 1, c);
    frcnn_image_draw_text(NULL, 0, 0, "x", 1, c, c);
    frcnn_image_text_size(NULL, 1, &w, &h);
    assert_int_equal(w, 0);
    assert_int_equal(h, 0);
    frcnn_image_text_size("x", 1, NULL, NULL);
    frcnn_ctx_free(ctx);
}

static void test_create(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_image *img = NULL;
    assert_int_equal(frcnn_image_create(ctx, 5, 3, &img), FRCNN_OK);
    assert_int_equal(frcnn_image_width(img), 5);
    assert_int_equal(frcnn_image_height(img), 3);
    for (int i = 0; i < 5 * 3 * 3; i++)
        assert_int_equal(frcnn_image_pixels(img)[i], 0);
    frcnn_image_free(img);
    const int bad[][2] = {{0, 3}, {3, 0}, {-1, 3}, {FRCNN_IMAGE_MAX_SIDE + 1, 1}, {1, FRCNN_IMAGE_MAX_SIDE + 1}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        img = (frcnn_image *)&img;
        tu_expect_error(ctx, frcnn_image_create(ctx, bad[i][0], bad[i][1], &img), FRCNN_ERR_INVALID_ARG);
        assert_null(img);
    }
    frcnn_ctx_free(ctx);
}

/* Each allocation of read_size, load and save failing in turn: every failure is NO_MEMORY and frees what it took. */
static void test_allocation_failures(void **state)
{
    (void)state;
    char path[256], out[256];
    path_of(path, sizeof path, "alloc.png");
    path_of(out, sizeof out, "alloc-out.jpg");
    free(write_test_png(path, 9, 7, NULL, &(size_t){0}));
    bool passed = false;
    for (size_t k = 1; k < 20 && !passed; k++) {
        tu_alloc_state ta;
        tu_alloc_init(&ta, 0);
        frcnn_ctx *ctx = tu_alloc_ctx(&ta, NULL);
        tu_alloc_mark base = tu_alloc_mark_now(&ta);
        tu_alloc_fail_next(&ta, k);
        frcnn_image *img = NULL;
        int w, h;
        frcnn_status st = frcnn_image_read_size(ctx, path, &w, &h);
        if (st == FRCNN_OK)
            st = frcnn_image_load(ctx, path, &img);
        if (st == FRCNN_OK) {
            st = frcnn_image_save(ctx, out, img);
            frcnn_image_free(img);
            passed = st == FRCNN_OK;
        }
        if (!passed)
            tu_expect_error(ctx, st, FRCNN_ERR_NO_MEMORY);
        tu_alloc_assert_since(&ta, base);
        frcnn_ctx_free(ctx);
        tu_alloc_assert_clean(&ta);
    }
    assert_true(passed);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Saving
 * ------------------------------------------------------------------------------------------------------------- */

static void test_save_round_trip(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const int w = 33, h = 21;
    frcnn_image *img;
    assert_int_equal(frcnn_image_create(ctx, w, h, &img), FRCNN_OK);
    uint8_t *px = gradient(w, h);
    memcpy(frcnn_image_pixels(img), px, (size_t)w * h * 3);
    const char *names[] = {"out.png", "out.PNG", "out.jpg", "out.JPEG", "out.Jpg", "has.dots.jpeg"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[256], tmp[300];
        path_of(path, sizeof path, names[i]);
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        assert_int_equal(frcnn_image_save(ctx, path, img), FRCNN_OK);
        assert_false(exists(tmp));
        frcnn_image *back = load_ok(ctx, path);
        assert_int_equal(frcnn_image_width(back), w);
        assert_int_equal(frcnn_image_height(back), h);
        const uint8_t *got = frcnn_image_pixels(back);
        bool png = strstr(names[i], "png") || strstr(names[i], "PNG");
        int max_err = 0;
        for (int k = 0; k < w * h * 3; k++) {
            int e = abs((int)got[k] - (int)px[k]);
            max_err = e > max_err ? e : max_err;
        }
        if (max_err > (png ? 0 : 16))
            fail_msg("%s: max error %d", names[i], max_err);
        frcnn_image_free(back);
    }
    /* Saving over an existing file replaces it. */
    char path[256];
    path_of(path, sizeof path, "out.png");
    memset(frcnn_image_pixels(img), 200, (size_t)w * h * 3);
    assert_int_equal(frcnn_image_save(ctx, path, img), FRCNN_OK);
    frcnn_image *back = load_ok(ctx, path);
    assert_memory_equal(frcnn_image_pixels(back), frcnn_image_pixels(img), (size_t)w * h * 3);
    frcnn_image_free(back);
    frcnn_image_free(img);
    free(px);
    frcnn_ctx_free(ctx);
}

static void test_save_errors(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    frcnn_image *img;
    assert_int_equal(frcnn_image_create(ctx, 4, 4, &img), FRCNN_OK);
    const char *bad_ext[] = {"out.bmp", "out", "out.png.txt", "dir.png/out", "out.", ".png/x"};
    for (size_t i = 0; i < sizeof bad_ext / sizeof bad_ext[0]; i++) {
        char path[256];
        path_of(path, sizeof path, bad_ext[i]);
        tu_expect_error_msg(ctx, frcnn_image_save(ctx, path, img), FRCNN_ERR_INVALID_ARG, path);
        assert_false(exists(path));
    }
    /* A folder that does not exist: IO naming the path, and nothing left behind. */
    char dir[200], path[256], tmp[300];
    path_of(dir, sizeof dir, "missing-folder");
    snprintf(path, sizeof path, "%s/out.png", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    tu_expect_error_msg(ctx, frcnn_image_save(ctx, path, img), FRCNN_ERR_IO, path);
    assert_false(exists(path));
    assert_false(exists(tmp));
    assert_false(exists(dir));
    /* The final name is a directory: the rename fails, the temporary file is removed. */
    path_of(path, sizeof path, "taken.png");
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    tu_expect_error_msg(ctx, frcnn_image_save(ctx, path, img), FRCNN_ERR_IO, path);
    assert_false(exists(tmp));
    frcnn_image_free(img);
    frcnn_ctx_free(ctx);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Drawing
 * ------------------------------------------------------------------------------------------------------------- */

static const uint8_t RED[3] = {255, 0, 0}, BLUE[3] = {0, 0, 255}, WHITE[3] = {255, 255, 255};
static const uint8_t GREY[3] = {7, 7, 7};

static frcnn_image *filled(frcnn_ctx *ctx, int w, int h, const uint8_t rgb[3])
{
    frcnn_image *img;
    assert_int_equal(frcnn_image_create(ctx, w, h, &img), FRCNN_OK);
    uint8_t *p = frcnn_image_pixels(img);
    for (int i = 0; i < w * h; i++)
        memcpy(p + 3 * i, rgb, 3);
    return img;
}

static bool is_colour(const frcnn_image *img, int x, int y, const uint8_t rgb[3])
{
    const uint8_t *p = frcnn_image_pixels(img) + ((size_t)y * frcnn_image_width(img) + x) * 3;
    return memcmp(p, rgb, 3) == 0;
}

/* The box's outline as a mask: inside the box and within t of an edge. */
static void expect_box(const frcnn_image *img, int x1, int y1, int x2, int y2, int t, const char *what)
{
    for (int y = 0; y < frcnn_image_height(img); y++)
        for (int x = 0; x < frcnn_image_width(img); x++) {
            bool inside = x >= x1 && x <= x2 && y >= y1 && y <= y2;
            bool edge = x - x1 < t || x2 - x < t || y - y1 < t || y2 - y < t;
            bool want = inside && edge;
            if (is_colour(img, x, y, RED) != want)
                fail_msg("%s: pixel (%d, %d) should %sbe drawn", what, x, y, want ? "" : "not ");
            if (!want && !is_colour(img, x, y, GREY))
                fail_msg("%s: pixel (%d, %d) changed", what, x, y);
        }
}

static void test_draw_box_exact(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    /* By hand first: a 5 x 4 box at (1, 1) in an 8 x 6 image, thickness 1. */
    frcnn_image *img = filled(ctx, 8, 6, GREY);
    frcnn_image_draw_box(img, 1, 1, 5, 4, 1, RED);
    const char *want[] = {
        "........",
        ".#####..",
        ".#...#..",
        ".#...#..",
        ".#####..",
        "........",
    };
    for (int y = 0; y < 6; y++)
        for (int x = 0; x < 8; x++)
            if (is_colour(img, x, y, RED) != (want[y][x] == '#'))
                fail_msg("pixel (%d, %d)", x, y);
    frcnn_image_free(img);

    struct {
        float x1, y1, x2, y2;
        int t;
        int ex1, ey1, ex2, ey2, et; /* what it must look like */
    } cases[] = {
        {2, 3, 9, 8, 1, 2, 3, 9, 8, 1},
        {2, 3, 9, 8, 2, 2, 3, 9, 8, 2},
        {2.4f, 2.6f, 8.5f, 7.49f, 1, 2, 3, 9, 7, 1}, /* rounded to the nearest pixel */
        {2, 3, 9, 8, 0, 2, 3, 9, 8, 1},              /* thickness < 1 is 1 */
        {2, 3, 9, 8, -5, 2, 3, 9, 8, 1},
        {2, 3, 9, 8, 50, 2, 3, 9, 8, 50},            /* thicker than the box: filled */
        {-4, 3, 5, 8, 2, -4, 3, 5, 8, 2},            /* clipped on the left: no left edge */
        {-1, 3, 5, 8, 2, -1, 3, 5, 8, 2},            /* left band half visible */
        {6, 3, 15, 8, 2, 6, 3, 15, 8, 2},            /* right */
        {6, 10, 15, 20, 2, 6, 10, 15, 20, 2},        /* right and bottom */
        {3, -7, 8, 4, 2, 3, -7, 8, 4, 2},            /* top */
        {3, 9, 8, 14, 3, 3, 9, 8, 14, 3},            /* bottom */
        {-3, -3, 14, 12, 2, -3, -3, 14, 12, 2},      /* around the whole image: nothing */
        {-1, -1, 12, 10, 2, -1, -1, 12, 10, 2},      /* around, 1 px outside: the inner band */
        {5, 5, 5, 5, 3, 5, 5, 5, 5, 3},              /* a single pixel */
        {-1e30f, -1e30f, 1e30f, 1e30f, 4, -100, -100, 100, 100, 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char what[32];
        snprintf(what, sizeof what, "box case %zu", i);
        img = filled(ctx, 12, 11, GREY);
        frcnn_image_draw_box(img, cases[i].x1, cases[i].y1, cases[i].x2, cases[i].y2, cases[i].t, RED);
        expect_box(img, cases[i].ex1, cases[i].ey1, cases[i].ex2, cases[i].ey2, cases[i].et, what);
        frcnn_image_free(img);
    }
    frcnn_ctx_free(ctx);
}

/* Boxes entirely outside, inverted, with NaN or with infinite edges far outside draw nothing. */
static void test_draw_box_nothing(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const float inf = INFINITY, nan = NAN;
    const float boxes[][4] = {
        {-10, -10, -1, -1}, {12, 0, 20, 5}, {0, 11, 5, 20}, {-5, 2, -1, 8}, {3, -9, 8, -1},
        {8, 2, 3, 6},       {3, 7, 8, 2},   {nan, 1, 5, 5}, {1, nan, 5, 5}, {1, 1, nan, 5},
        {1, 1, 5, nan},     {-inf, -inf, inf, inf}, {inf, 1, 5, 5},
    };
    for (size_t i = 0; i < sizeof boxes / sizeof boxes[0]; i++) {
        frcnn_image *img = filled(ctx, 12, 11, GREY);
        frcnn_image_draw_box(img, boxes[i][0], boxes[i][1], boxes[i][2], boxes[i][3], 2, RED);
        for (int y = 0; y < 11; y++)
            for (int x = 0; x < 12; x++)
                if (!is_colour(img, x, y, GREY))
                    fail_msg("box %zu drew pixel (%d, %d)", i, x, y);
        frcnn_image_free(img);
    }
    frcnn_ctx_free(ctx);
}

/* Draws text on a grey image and checks: inside the text_size rectangle (clipped) only fg and bg, some of each,
 * the one-font-pixel margin all bg; outside it nothing changed. Returns the fg pixel count. */
static int check_text(frcnn_ctx *ctx, int iw, int ih, int x, int y, const char *text, int scale)
{
    frcnn_image *img = filled(ctx, iw, ih, GREY);
    frcnn_image_draw_text(img, x, y, text, scale, WHITE, BLUE);
    int tw, th;
    frcnn_image_text_size(text, scale, &tw, &th);
    int s = scale < 1 ? 1 : scale, fg = 0, bg = 0;
    for (int py = 0; py < ih; py++)
        for (int px = 0; px < iw; px++) {
            long long dx = (long long)px - x, dy = (long long)py - y;
            bool inside = dx >= 0 && dx < tw && dy >= 0 && dy < th;
            bool margin = dx < s || dx >= tw - s || dy < s || dy >= th - s;
            if (!inside) {
                if (!is_colour(img, px, py, GREY))
                    fail_msg("'%s' at (%d, %d) scale %d: pixel (%d, %d) outside %d x %d changed", text, x, y, scale, px,
                             py, tw, th);
            } else if (is_colour(img, px, py, WHITE)) {
                if (margin)
                    fail_msg("'%s': glyph pixel (%d, %d) in the margin", text, px, py);
                fg++;
            } else if (is_colour(img, px, py, BLUE)) {
                bg++;
            } else {
                fail_msg("'%s': pixel (%d, %d) inside is neither fg nor bg", text, px, py);
            }
        }
    (void)bg;
    frcnn_image_free(img);
    return fg;
}

static void test_draw_text(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    int w1, h1, w2, h2;
    frcnn_image_text_size("dog 0.93", 1, &w1, &h1);
    frcnn_image_text_size("dog 0.93", 2, &w2, &h2);
    assert_true(w1 > 8 && h1 > 8);
    assert_int_equal(w2, 2 * w1);
    assert_int_equal(h2, 2 * h1);
    int fg1 = check_text(ctx, 100, 30, 3, 4, "dog 0.93", 1);
    assert_true(fg1 > 20);
    assert_int_equal(check_text(ctx, 200, 50, 3, 4, "dog 0.93", 2), 4 * fg1);
    assert_int_equal(check_text(ctx, 100, 30, 3, 4, "dog 0.93", 0), fg1); /* scale < 1 is 1 */
    /* Every printable character stays inside its rectangle. */
    char all[96];
    for (int c = 32; c < 127; c++)
        all[c - 32] = (char)c;
    all[95] = '\0';
    int wa, ha;
    frcnn_image_text_size(all, 1, &wa, &ha);
    assert_true(check_text(ctx, wa + 10, ha + 10, 5, 5, all, 1) > 95 * 3);
    /* Widths add up (chunks of the font's calls do not show). */
    int wx, wy;
    frcnn_image_text_size("0123456789abcdefghij", 1, &wx, NULL);
    frcnn_image_text_size("0123456789", 1, &wy, NULL);
    int wz;
    frcnn_image_text_size("abcdefghij", 1, &wz, NULL);
    assert_int_equal(wx, wy + wz - 2);
    /* Non-printable bytes are drawn as '?'. */
    int wq, hq, wn, hn;
    frcnn_image_text_size("a??b", 1, &wq, &hq);
    frcnn_image_text_size("a\x01\xff" "b", 1, &wn, &hn);
    assert_int_equal(wq, wn);
    assert_int_equal(hq, hn);
    assert_int_equal(check_text(ctx, 60, 20, 2, 2, "a\n\xc3\xa9" "b", 1), check_text(ctx, 60, 20, 2, 2, "a???b", 1));
    /* Empty text: no size, nothing drawn. */
    frcnn_image_text_size("", 3, &wq, &hq);
    assert_int_equal(wq, 0);
    assert_int_equal(hq, 0);
    assert_int_equal(check_text(ctx, 20, 20, 2, 2, "", 1), 0);
    frcnn_ctx_free(ctx);
}

static void test_draw_text_clipping(void **state)
{
    (void)state;
    frcnn_ctx *ctx = tu_ctx();
    const char *label = "person 0.99";
    const int at[][2] = {{-5, -7},   {-30, 3},  {3, -20},       {35, 3},       {3, 15},          {45, 25},
                         {-500, -500}, {500, 500}, {INT_MIN, INT_MIN}, {INT_MAX, INT_MAX}, {INT_MIN, 2}, {2, INT_MAX}};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++)
        for (int scale = 1; scale <= 3; scale++)
            check_text(ctx, 50, 30, at[i][0], at[i][1], label, scale);
    /* A huge scale: one font pixel covers the image. */
    frcnn_image *img = filled(ctx, 20, 20, GREY);
    frcnn_image_draw_text(img, -3, -3, "W", INT_MAX, WHITE, BLUE);
    frcnn_image_free(img);
    /* A long string is drawn in pieces, with no allocation and no overflow. */
    char *long_text = malloc(10001);
    assert_non_null(long_text);
    for (int i = 0; i < 10000; i++)
        long_text[i] = (char)(32 + i % 95);
    long_text[10000] = '\0';
    int w, h;
    frcnn_image_text_size(long_text, 1, &w, &h);
    assert_true(w > 10000 * 3);
    check_text(ctx, 300, 20, -1000, 2, long_text, 1);
    img = filled(ctx, 64, 32, GREY);
    frcnn_image_draw_text(img, 0, 0, long_text, 2, WHITE, BLUE);
    frcnn_image_text_size(long_text, INT_MAX, &w, &h);
    assert_true(w > 0 && h > 0);
    frcnn_image_free(img);
    free(long_text);
    frcnn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_rgb_round_trip),
        cmocka_unit_test(test_png_channels),
        cmocka_unit_test(test_jpeg_round_trip),
        cmocka_unit_test(test_read_size_header_only),
        cmocka_unit_test(test_missing_file_and_directory),
        cmocka_unit_test(test_empty_and_text_files),
        cmocka_unit_test(test_truncated_png),
        cmocka_unit_test(test_truncated_jpeg),
        cmocka_unit_test(test_png_bit_flips),
        cmocka_unit_test(test_huge_header),
        cmocka_unit_test(test_null_arguments),
        cmocka_unit_test(test_create),
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_save_round_trip),
        cmocka_unit_test(test_save_errors),
        cmocka_unit_test(test_draw_box_exact),
        cmocka_unit_test(test_draw_box_nothing),
        cmocka_unit_test(test_draw_text),
        cmocka_unit_test(test_draw_text_clipping),
    };
    return cmocka_run_group_tests_name("image", tests, setup, teardown);
}
