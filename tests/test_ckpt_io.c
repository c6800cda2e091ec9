/* The checkpoint container (lib/train/ckpt_io.c, docs/checkpoint-format.md): CRC-32C, round trips of tensors and
 * key/value records, and every way a file can be damaged or a save interrupted: truncation at many offsets, a bit
 * flipped in every byte, empty files, newer majors and minors, unknown sections, absurd sizes (without large
 * allocations), stale .tmp files, aborted writers, a full disk (RLIMIT_FSIZE in a child) and too little free
 * space. Files live in a mkdtemp directory under /tmp that is removed afterwards. */
#include "testutil.h"

#include "../lib/train/ckpt_io.h"
#include "../lib/train/crc32c.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[64];

/* ----- helpers ------------------------------------------------------------------------------------------------ */

static int setup(void **state)
{
    (void)state;
    return tu_make_tmpdir(g_dir, sizeof g_dir, "ckptio");
}

static int teardown(void **state)
{
    (void)state;
    return tu_remove_tree(g_dir);
}

static const char *path_of(const char *name)
{
    static char p[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

static bool exists(const char *name)
{
    struct stat sb;
    return stat(path_of(name), &sb) == 0;
}

static unsigned char *slurp(const char *name, size_t *len)
{
    FILE *f = fopen(path_of(name), "rb");
    unsigned char *buf;
    long n;
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void spit(const char *name, const void *data, size_t len)
{
    FILE *f = fopen(path_of(name), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void put32le(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static void put64le(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Recomputes the footer's headers_crc (sections at the given offsets) and footer_crc after a test patched a file. */
static void reseal(unsigned char *buf, size_t len, const size_t *hdr_offs, int n)
{
    uint32_t h = 0;
    unsigned char *f = buf + len - 64;
    for (int i = 0; i < n; i++)
        h = frcnn__crc32c_update(h, buf + hdr_offs[i], 64);
    put32le(f + 24, h);
    put32le(f + 60, frcnn__crc32c_update(0, f, 60));
}

#define W32 (2 * 3 * 3 * 3)
static float g_conv[W32];
static float g_bias[10];
static const uint64_t g_u64s[3] = {1, UINT64_MAX, 0x0123456789abcdefull};
static const unsigned char g_blob[5] = {0, 1, 2, 0xfe, 0xff};

/* The standard test file: three f32 tensors (4-d, 1-d, scalar), a u64 tensor, two META sections. `scale`
 * changes the values so that an older and a newer file differ. */
static void write_sample(frcnn_ctx *ctx, const char *name, float scale)
{
    frcnn__ckpt_writer *w = NULL;
    const int64_t dconv[4] = {2, 3, 3, 3}, dbias[1] = {10}, du[1] = {3};
    float scalar = 0.5f * scale;
    for (int i = 0; i < W32; i++)
        g_conv[i] = scale * ((float)i - 20.0f) / 7.0f;
    for (int i = 0; i < 10; i++)
        g_bias[i] = scale * (float)i * 0.25f;
    assert_int_equal(frcnn__ckpt_writer_open(ctx, g_dir, name, 4096, &w), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_begin_section(w, FRCNN__CKPT_META, FRCNN__CKPT_FLAG_REQUIRED), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_kv_u64(w, "iter", 12345), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_kv_i64(w, "offset", -42), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_kv_f64(w, "lr", 0.001 * scale), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_kv_str(w, "arch", "vgg16"), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_kv_str(w, "empty", ""), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_kv_bytes(w, "rng", g_blob, sizeof g_blob), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_end_section(w), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_write_tensor_f32(w, "conv1.weight", 4, dconv, g_conv), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_write_tensor_f32(w, "fc.bias", 1, dbias, g_bias), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_write_tensor_f32(w, "scalar", 0, NULL, &scalar), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_write_tensor(w, "sampler.perm", FRCNN__DT_U64, 1, du, g_u64s), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_begin_section(w, FRCNN__CKPT_META, FRCNN__CKPT_FLAG_REQUIRED), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_kv_bytes(w, "nothing", NULL, 0), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_end_section(w), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_writer_finish(w), FRCNN_OK);
}

/* Opens, verifies everything and reads every tensor; returns the first error. */
static frcnn_status load_all(frcnn_ctx *ctx, const char *name)
{
    frcnn__ckpt_reader *r = NULL;
    frcnn_status st = frcnn__ckpt_reader_open(ctx, path_of(name), &r);
    if (st)
        return st;
    st = frcnn__ckpt_reader_verify_all(r);
    for (size_t i = 0; !st && i < frcnn__ckpt_tensor_count(r); i++) {
        frcnn__ckpt_tensor_info info;
        void *buf;
        st = frcnn__ckpt_tensor_at(r, i, &info);
        if (st)
            break;
        buf = malloc(info.nbytes);
        st = frcnn__ckpt_read_tensor(r, info.name, buf, info.nbytes);
        free(buf);
    }
    frcnn__ckpt_reader_close(r);
    return st;
}

/* Fails unless the file has the values write_sample(scale) wrote. */
static void check_sample(frcnn_ctx *ctx, const char *name, float scale)
{
    frcnn__ckpt_reader *r = NULL;
    frcnn__ckpt_tensor_info info;
    float conv[W32], bias[10], scalar;
    uint64_t u64s[3], iter;
    int64_t off;
    double lr;
    char s[16];
    unsigned char blob[8];
    size_t len;
    int major, minor;
    assert_int_equal(frcnn__ckpt_reader_open(ctx, path_of(name), &r), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_reader_verify_all(r), FRCNN_OK);
    frcnn__ckpt_reader_version(r, &major, &minor);
    assert_int_equal(major, 1);
    assert_int_equal(frcnn__ckpt_tensor_count(r), 4);
    assert_int_equal(frcnn__ckpt_tensor_find(r, "conv1.weight", &info), FRCNN_OK);
    assert_int_equal(info.dtype, FRCNN__DT_F32);
    assert_int_equal(info.ndim, 4);
    assert_int_equal(info.dims[0], 2);
    assert_int_equal(info.dims[3], 3);
    assert_int_equal(info.numel, W32);
    assert_int_equal(info.nbytes, sizeof conv);
    assert_int_equal(frcnn__ckpt_read_tensor(r, "conv1.weight", conv, sizeof conv), FRCNN_OK);
    for (int i = 0; i < W32; i++)
        g_conv[i] = scale * ((float)i - 20.0f) / 7.0f;
    for (int i = 0; i < 10; i++)
        g_bias[i] = scale * (float)i * 0.25f;
    tu_assert_identical("conv1.weight", conv, g_conv, W32);
    assert_int_equal(frcnn__ckpt_read_tensor(r, "fc.bias", bias, sizeof bias), FRCNN_OK);
    tu_assert_identical("fc.bias", bias, g_bias, 10);
    assert_int_equal(frcnn__ckpt_tensor_find(r, "scalar", &info), FRCNN_OK);
    assert_int_equal(info.ndim, 0);
    assert_int_equal(info.numel, 1);
    assert_int_equal(frcnn__ckpt_read_tensor(r, "scalar", &scalar, sizeof scalar), FRCNN_OK);
    assert_true(scalar == 0.5f * scale);
    assert_int_equal(frcnn__ckpt_read_tensor(r, "sampler.perm", u64s, sizeof u64s), FRCNN_OK);
    assert_memory_equal(u64s, g_u64s, sizeof u64s);
    assert_int_equal(frcnn__ckpt_get_u64(r, "iter", &iter), FRCNN_OK);
    assert_int_equal(iter, 12345);
    assert_int_equal(frcnn__ckpt_get_i64(r, "offset", &off), FRCNN_OK);
    assert_int_equal(off, -42);
    assert_int_equal(frcnn__ckpt_get_f64(r, "lr", &lr), FRCNN_OK);
    assert_true(lr == 0.001 * scale);
    assert_int_equal(frcnn__ckpt_get_str(r, "arch", s, sizeof s, &len), FRCNN_OK);
    assert_string_equal(s, "vgg16");
    assert_int_equal(len, 5);
    assert_int_equal(frcnn__ckpt_get_str(r, "empty", s, sizeof s, &len), FRCNN_OK);
    assert_int_equal(len, 0);
    assert_int_equal(frcnn__ckpt_get_bytes(r, "rng", NULL, 0, &len), FRCNN_OK);
    assert_int_equal(len, sizeof g_blob);
    assert_int_equal(frcnn__ckpt_get_bytes(r, "rng", blob, sizeof blob, &len), FRCNN_OK);
    assert_memory_equal(blob, g_blob, sizeof g_blob);
    assert_int_equal(frcnn__ckpt_get_bytes(r, "nothing", blob, sizeof blob, &len), FRCNN_OK);
    assert_int_equal(len, 0);
    /* misses and misuse */
    tu_expect_error_msg(ctx, frcnn__ckpt_tensor_find(r, "missing", &info), FRCNN_ERR_NOT_FOUND, "missing");
    tu_expect_error(ctx, frcnn__ckpt_read_tensor(r, "missing", bias, sizeof bias), FRCNN_ERR_NOT_FOUND);
    tu_expect_error_msg(ctx, frcnn__ckpt_get_u64(r, "nokey", &iter), FRCNN_ERR_NOT_FOUND, "nokey");
    tu_expect_error_msg(ctx, frcnn__ckpt_get_u64(r, "lr", &iter), FRCNN_ERR_MISMATCH, "f64");
    tu_expect_error(ctx, frcnn__ckpt_read_tensor(r, "fc.bias", bias, sizeof bias - 4), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn__ckpt_get_str(r, "arch", s, 5, &len), FRCNN_ERR_INVALID_ARG);
    frcnn__ckpt_reader_close(r);
}

/* ----- a context whose allocator records the largest request ------------------------------------------------- */

static size_t g_max_alloc;
static void *rec_alloc(void *user, size_t size, size_t align)
{
    void *p = NULL;
    (void)user;
    if (size > g_max_alloc)
        g_max_alloc = size;
    if (size > ((size_t)16 << 20)) /* a test file never justifies this */
        return NULL;
    return posix_memalign(&p, align < sizeof(void *) ? sizeof(void *) : align, size ? size : 1) ? NULL : p;
}
static void rec_free(void *user, void *p, size_t size)
{
    (void)user;
    (void)size;
    free(p);
}
static frcnn_ctx *rec_ctx(void)
{
    static const frcnn_allocator a = {rec_alloc, rec_free, NULL};
    frcnn_ctx_params p = frcnn_ctx_params_default();
    frcnn_ctx *ctx = NULL;
    p.allocator = &a;
    assert_int_equal(frcnn_ctx_create(&p, &ctx), FRCNN_OK);
    return ctx;
}

/* ----- tests -------------------------------------------------------------------------------------------------- */

static void test_crc32c(void **state)
{
    static const char check[] = "123456789";
    unsigned char buf[1024 + 8];
    (void)state;
    assert_int_equal(frcnn__crc32c_update(0, check, 9), 0xE3069283u);
    assert_int_equal(frcnn__crc32c_update_sw(0, check, 9), 0xE3069283u);
    assert_int_equal(frcnn__crc32c_update(0, NULL, 0), 0);
    /* incremental == whole */
    assert_int_equal(frcnn__crc32c_update(frcnn__crc32c_update(0, check, 4), check + 4, 5), 0xE3069283u);
    /* 32 zero bytes: the iSCSI test vector of RFC 3720 B.4 */
    memset(buf, 0, 32);
    assert_int_equal(frcnn__crc32c_update(0, buf, 32), 0x8A9136AAu);
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 131u + 7u);
    for (size_t start = 0; start < 8; start++)
        for (size_t len = 0; len <= 1024; len += (len < 64 ? 1 : 37)) {
            uint32_t hw = frcnn__crc32c_update(0, buf + start, len);
            uint32_t sw = frcnn__crc32c_update_sw(0, buf + start, len);
            uint32_t split = frcnn__crc32c_update_sw(frcnn__crc32c_update(0, buf + start, len / 3),
                                                     buf + start + len / 3, len - len / 3);
            assert_int_equal(hw, sw);
            assert_int_equal(split, sw);
        }
}

static void test_round_trip(void **state)
{
    frcnn_ctx *ctx = tu_ctx();
    (void)state;
    write_sample(ctx, "rt.ckpt", 1.0f);
    assert_false(exists("rt.ckpt.tmp"));
    check_sample(ctx, "rt.ckpt", 1.0f);
    /* overwriting an existing checkpoint replaces it */
    write_sample(ctx, "rt.ckpt", 3.0f);
    check_sample(ctx, "rt.ckpt", 3.0f);
    tu_expect_error(ctx, load_all(ctx, "does-not-exist"), FRCNN_ERR_NOT_FOUND);
    frcnn_ctx_free(ctx);
}

static void expect_damaged(frcnn_ctx *ctx, frcnn_status st, const char *what, size_t where)
{
    if (st != FRCNN_ERR_FORMAT && st != FRCNN_ERR_CHECKSUM) {
        print_error("%s at %zu: status %s, expected FORMAT or CHECKSUM (\"%s\")\n", what, where, frcnn_status_str(st),
                    frcnn_ctx_last_error(ctx));
        fail();
    }
    assert_true(frcnn_ctx_last_error(ctx)[0] != '\0');
    frcnn_ctx_clear_error(ctx);
}

static void test_truncation(void **state)
{
    frcnn_ctx *ctx = rec_ctx();
    unsigned char *buf;
    size_t len;
    (void)state;
    write_sample(ctx, "full.ckpt", 1.0f);
    buf = slurp("full.ckpt", &len);
    assert_true(len % 64 == 0);
    g_max_alloc = 0;
    for (size_t cut = 0; cut < len; cut += 64) {
        const size_t odd[] = {cut, cut + 1, cut + 7, cut + 33, cut + 63};
        for (int k = 0; k < 5; k++) {
            if (odd[k] >= len || (k > 0 && cut % 256 != 0 && cut + 64 < len))
                continue;
            spit("cut.ckpt", buf, odd[k]);
            expect_damaged(ctx, load_all(ctx, "cut.ckpt"), "truncation", odd[k]);
        }
    }
    assert_true(g_max_alloc < ((size_t)1 << 20));
    spit("cut.ckpt", buf, 0);
    tu_expect_error_msg(ctx, load_all(ctx, "cut.ckpt"), FRCNN_ERR_FORMAT, "0 bytes");
    /* garbage appended after a good file */
    spit("cut.ckpt", buf, len);
    {
        FILE *f = fopen(path_of("cut.ckpt"), "ab");
        fputs("junk", f);
        fclose(f);
    }
    expect_damaged(ctx, load_all(ctx, "cut.ckpt"), "appended", len);
    free(buf);
    frcnn_ctx_free(ctx);
}

static void test_bit_flips(void **state)
{
    frcnn_ctx *ctx = rec_ctx();
    unsigned char *buf;
    size_t len;
    frcnn__ckpt_reader *r = NULL;
    frcnn__ckpt_tensor_info info;
    float bias[10];
    (void)state;
    write_sample(ctx, "flip-src.ckpt", 1.0f);
    buf = slurp("flip-src.ckpt", &len);
    g_max_alloc = 0;
    /* every byte, one bit each: header, section headers, padding, tensor headers and data, META, footer */
    for (size_t i = 0; i < len; i++) {
        buf[i] ^= (unsigned char)(1u << (i % 8));
        spit("flip.ckpt", buf, len);
        expect_damaged(ctx, load_all(ctx, "flip.ckpt"), "bit flip", i);
        buf[i] ^= (unsigned char)(1u << (i % 8));
    }
    assert_true(g_max_alloc < ((size_t)1 << 20));
    /* a flip in fc.bias data: open succeeds (payload CRCs are lazy), the read names the tensor */
    spit("flip.ckpt", buf, len);
    assert_int_equal(frcnn__ckpt_reader_open(ctx, path_of("flip.ckpt"), &r), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_tensor_find(r, "fc.bias", &info), FRCNN_OK);
    frcnn__ckpt_reader_close(r);
    {
        /* find the bias data: the float 2.25f (element 9) is unique in the file */
        float v = 2.25f;
        size_t at = 0;
        for (size_t i = 0; i + 4 <= len; i++)
            if (!memcmp(buf + i, &v, 4))
                at = i;
        assert_true(at > 0);
        buf[at] ^= 0x10;
    }
    spit("flip.ckpt", buf, len);
    assert_int_equal(frcnn__ckpt_reader_open(ctx, path_of("flip.ckpt"), &r), FRCNN_OK);
    tu_expect_error_msg(ctx, frcnn__ckpt_read_tensor(r, "fc.bias", bias, sizeof bias), FRCNN_ERR_CHECKSUM,
                        "fc.bias");
    tu_expect_error_msg(ctx, frcnn__ckpt_reader_verify_all(r), FRCNN_ERR_CHECKSUM, "fc.bias");
    frcnn__ckpt_reader_close(r);
    free(buf);
    frcnn_ctx_free(ctx);
}

static void test_versions(void **state)
{
    frcnn_ctx *ctx = tu_ctx();
    frcnn__ckpt_writer *w = NULL;
    frcnn__ckpt_reader *r = NULL;
    const int64_t d[1] = {2};
    const float x[2] = {1.0f, -2.0f};
    float y[2];
    uint64_t v;
    int major, minor;
    (void)state;
    /* a newer major is refused, naming both versions */
    assert_int_equal(frcnn__ckpt_writer_open(ctx, g_dir, "major.ckpt", 0, &w), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_writer_set_version(w, 2, 0), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_write_tensor_f32(w, "x", 1, d, x), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_writer_finish(w), FRCNN_OK);
    tu_expect_error_msg(ctx, load_all(ctx, "major.ckpt"), FRCNN_ERR_VERSION, "2.0");
    /* a higher minor with an unknown optional section: loads, the section is skipped */
    assert_int_equal(frcnn__ckpt_writer_open(ctx, g_dir, "minor.ckpt", 0, &w), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_writer_set_version(w, 1, 7), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_begin_section(w, "XTRA", 0), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_write(w, "future data", 11), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_end_section(w), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_write_tensor_f32(w, "x", 1, d, x), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_begin_section(w, FRCNN__CKPT_META, FRCNN__CKPT_FLAG_REQUIRED), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_kv_u64(w, "k", 7), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_end_section(w), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_writer_finish(w), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_reader_open(ctx, path_of("minor.ckpt"), &r), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_reader_verify_all(r), FRCNN_OK);
    frcnn__ckpt_reader_version(r, &major, &minor);
    assert_int_equal(major, 1);
    assert_int_equal(minor, 7);
    assert_int_equal(frcnn__ckpt_tensor_count(r), 1);
    assert_int_equal(frcnn__ckpt_read_tensor(r, "x", y, sizeof y), FRCNN_OK);
    tu_assert_identical("x", y, x, 2);
    assert_int_equal(frcnn__ckpt_get_u64(r, "k", &v), FRCNN_OK);
    assert_int_equal(v, 7);
    frcnn__ckpt_reader_close(r);
    /* an unknown required section is refused */
    assert_int_equal(frcnn__ckpt_writer_open(ctx, g_dir, "req.ckpt", 0, &w), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_writer_set_version(w, 1, 1), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_begin_section(w, "NEWS", FRCNN__CKPT_FLAG_REQUIRED), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_write(w, "x", 1), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_end_section(w), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_writer_finish(w), FRCNN_OK);
    tu_expect_error_msg(ctx, load_all(ctx, "req.ckpt"), FRCNN_ERR_VERSION, "NEWS");
    /* an empty checkpoint (no sections) is valid */
    assert_int_equal(frcnn__ckpt_writer_open(ctx, g_dir, "empty.ckpt", 0, &w), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_writer_finish(w), FRCNN_OK);
    assert_int_equal(load_all(ctx, "empty.ckpt"), FRCNN_OK);
    frcnn_ctx_free(ctx);
}

/* Writes one TENS section with a hand-made payload. */
static void write_raw_tensor(frcnn_ctx *ctx, const char *name, const unsigned char *payload, size_t len)
{
    frcnn__ckpt_writer *w = NULL;
    assert_int_equal(frcnn__ckpt_writer_open(ctx, g_dir, name, 0, &w), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_begin_section(w, FRCNN__CKPT_TENS, FRCNN__CKPT_FLAG_REQUIRED), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_write(w, payload, len), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_end_section(w), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_writer_finish(w), FRCNN_OK);
}

static void test_absurd_sizes(void **state)
{
    frcnn_ctx *ctx = rec_ctx();
    unsigned char p[256] = {0}, *buf;
    size_t len;
    const size_t hdr0[1] = {64};
    (void)state;
    g_max_alloc = 0;
    /* name "x", f32, 2 dims of 2^40: the element count overflows */
    p[0] = 1;
    p[2] = 'x';
    put32le(p + 3, 0);
    put32le(p + 7, 2);
    put64le(p + 11, (uint64_t)1 << 40);
    put64le(p + 19, (uint64_t)1 << 40);
    write_raw_tensor(ctx, "ovf.ckpt", p, 64);
    tu_expect_error_msg(ctx, load_all(ctx, "ovf.ckpt"), FRCNN_ERR_FORMAT, "'x'");
    /* dims that fit but claim far more data than the section holds */
    put64le(p + 11, (uint64_t)1 << 30);
    put64le(p + 19, 1);
    write_raw_tensor(ctx, "big.ckpt", p, 64);
    tu_expect_error_msg(ctx, load_all(ctx, "big.ckpt"), FRCNN_ERR_FORMAT, "'x'");
    /* a zero dimension, ndim 9, an unknown dtype, a zero-length name */
    put64le(p + 11, 0);
    write_raw_tensor(ctx, "zero.ckpt", p, 64);
    tu_expect_error(ctx, load_all(ctx, "zero.ckpt"), FRCNN_ERR_FORMAT);
    put64le(p + 11, 1);
    put32le(p + 7, 9);
    write_raw_tensor(ctx, "ndim.ckpt", p, 160);
    tu_expect_error_msg(ctx, load_all(ctx, "ndim.ckpt"), FRCNN_ERR_FORMAT, "ndim");
    put32le(p + 7, 2);
    put32le(p + 3, 99);
    write_raw_tensor(ctx, "dtype.ckpt", p, 64);
    tu_expect_error_msg(ctx, load_all(ctx, "dtype.ckpt"), FRCNN_ERR_FORMAT, "dtype");
    p[0] = 0;
    write_raw_tensor(ctx, "noname.ckpt", p, 64);
    tu_expect_error(ctx, load_all(ctx, "noname.ckpt"), FRCNN_ERR_FORMAT);
    /* a section length beyond the file (footer resealed so only the length is wrong) */
    write_sample(ctx, "len.ckpt", 1.0f);
    buf = slurp("len.ckpt", &len);
    put64le(buf + 64 + 8, UINT64_MAX - 5);
    reseal(buf, len, hdr0, 0);
    spit("len2.ckpt", buf, len);
    tu_expect_error_msg(ctx, load_all(ctx, "len2.ckpt"), FRCNN_ERR_FORMAT, "runs past");
    put64le(buf + 64 + 8, len);
    spit("len2.ckpt", buf, len);
    tu_expect_error_msg(ctx, load_all(ctx, "len2.ckpt"), FRCNN_ERR_FORMAT, "runs past");
    free(buf);
    /* an absurd section count with a valid footer checksum */
    buf = slurp("ovf.ckpt", &len);
    put64le(buf + len - 64 + 8, (uint64_t)1 << 60);
    reseal(buf, len, hdr0, 1);
    spit("count.ckpt", buf, len);
    tu_expect_error_msg(ctx, load_all(ctx, "count.ckpt"), FRCNN_ERR_FORMAT, "sections");
    /* a wrong file length in the footer */
    put64le(buf + len - 64 + 8, 1);
    put64le(buf + len - 64 + 16, len + 64);
    reseal(buf, len, hdr0, 1);
    spit("count.ckpt", buf, len);
    tu_expect_error_msg(ctx, load_all(ctx, "count.ckpt"), FRCNN_ERR_FORMAT, "length");
    free(buf);
    assert_true(g_max_alloc < ((size_t)1 << 20));
    frcnn_ctx_free(ctx);
}

static void test_stale_tmp_and_abort(void **state)
{
    frcnn_ctx *ctx = tu_ctx();
    frcnn__ckpt_writer *w = NULL;
    const int64_t d[1] = {2};
    const float x[2] = {5.0f, 6.0f};
    unsigned char *before, *after;
    size_t lb, la;
    (void)state;
    /* a stale .tmp (from a killed save) is replaced */
    spit("st.ckpt.tmp", "garbage from a killed process", 29);
    write_sample(ctx, "st.ckpt", 2.0f);
    assert_false(exists("st.ckpt.tmp"));
    check_sample(ctx, "st.ckpt", 2.0f);
    before = slurp("st.ckpt", &lb);
    /* an aborted save: no .tmp, the older file untouched */
    assert_int_equal(frcnn__ckpt_writer_open(ctx, g_dir, "st.ckpt", 0, &w), FRCNN_OK);
    assert_true(exists("st.ckpt.tmp"));
    assert_int_equal(frcnn__ckpt_write_tensor_f32(w, "x", 1, d, x), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_begin_section(w, FRCNN__CKPT_META, 0), FRCNN_OK);
    frcnn__ckpt_writer_abort(w);
    assert_false(exists("st.ckpt.tmp"));
    after = slurp("st.ckpt", &la);
    assert_int_equal(la, lb);
    assert_memory_equal(before, after, lb);
    free(after);
    /* a new name aborted: nothing at all */
    assert_int_equal(frcnn__ckpt_writer_open(ctx, g_dir, "new.ckpt", 0, &w), FRCNN_OK);
    frcnn__ckpt_writer_abort(w);
    assert_false(exists("new.ckpt"));
    assert_false(exists("new.ckpt.tmp"));
    frcnn__ckpt_writer_abort(NULL);
    /* misuse kills the writer the same way */
    assert_int_equal(frcnn__ckpt_writer_open(ctx, g_dir, "st.ckpt", 0, &w), FRCNN_OK);
    tu_expect_error(ctx, frcnn__ckpt_kv_u64(w, "k", 1), FRCNN_ERR_STATE);
    assert_false(exists("st.ckpt.tmp"));
    assert_int_equal(frcnn__ckpt_writer_finish(w), FRCNN_ERR_STATE); /* the dead writer's status, freed */
    assert_int_equal(frcnn__ckpt_writer_open(ctx, g_dir, "st.ckpt", 0, &w), FRCNN_OK);
    assert_int_equal(frcnn__ckpt_begin_section(w, FRCNN__CKPT_META, 0), FRCNN_OK);
    tu_expect_error(ctx, frcnn__ckpt_writer_finish(w), FRCNN_ERR_STATE);
    assert_false(exists("st.ckpt.tmp"));
    after = slurp("st.ckpt", &la);
    assert_memory_equal(before, after, lb);
    free(after);
    free(before);
    tu_expect_error(ctx, frcnn__ckpt_writer_open(ctx, g_dir, "a/b", 0, &w), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(ctx, frcnn__ckpt_writer_open(ctx, g_dir, "", 0, &w), FRCNN_ERR_INVALID_ARG);
    assert_null(w);
    tu_expect_error(ctx, frcnn__ckpt_writer_open(ctx, "/nonexistent/dir", "x", 0, &w), FRCNN_ERR_NOT_FOUND);
    frcnn_ctx_free(ctx);
}

/* Child of test_full_disk: saves with a 4 KiB file-size limit. Exit code 0 when everything behaved. */
static int full_disk_child(void)
{
    frcnn_ctx *ctx = NULL;
    frcnn__ckpt_writer *w = NULL;
    static float big[16384];
    const int64_t d[1] = {16384};
    struct rlimit rl = {4096, 4096};
    frcnn_status st;
    signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
        return 10;
    if (frcnn_ctx_create(NULL, &ctx) != FRCNN_OK)
        return 11;
    if (frcnn__ckpt_writer_open(ctx, g_dir, "fd.ckpt", 0, &w) != FRCNN_OK)
        return 12;
    st = frcnn__ckpt_write_tensor_f32(w, "big", 1, d, big);
    if (st != FRCNN_ERR_IO && st != FRCNN_ERR_NO_SPACE)
        return 13;
    if (!strstr(frcnn_ctx_last_error(ctx), "fd.ckpt.tmp"))
        return 14;
    if (frcnn__ckpt_write_tensor_f32(w, "big2", 1, d, big) != st) /* a dead writer stays dead */
        return 15;
    if (frcnn__ckpt_writer_finish(w) != st)
        return 16;
    if (exists("fd.ckpt.tmp"))
        return 17;
    frcnn_ctx_free(ctx);
    return 0;
}

static void test_full_disk(void **state)
{
    frcnn_ctx *ctx = tu_ctx();
    unsigned char *before, *after;
    size_t lb, la;
    int status = 0;
    pid_t pid;
    (void)state;
    write_sample(ctx, "fd.ckpt", 4.0f);
    before = slurp("fd.ckpt", &lb);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(full_disk_child());
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_false(exists("fd.ckpt.tmp"));
    after = slurp("fd.ckpt", &la);
    assert_int_equal(la, lb);
    assert_memory_equal(before, after, lb);
    check_sample(ctx, "fd.ckpt", 4.0f);
    free(before);
    free(after);
    frcnn_ctx_free(ctx);
}

static void test_no_space(void **state)
{
    frcnn_ctx *ctx = tu_ctx();
    frcnn__ckpt_writer *w = NULL;
    (void)state;
    write_sample(ctx, "ns.ckpt", 5.0f);
    tu_expect_error_msg(ctx, frcnn__ckpt_writer_open(ctx, g_dir, "ns.ckpt", UINT64_MAX / 2, &w), FRCNN_ERR_NO_SPACE,
                        "9223372036854775807");
    assert_null(w);
    assert_false(exists("ns.ckpt.tmp"));
    check_sample(ctx, "ns.ckpt", 5.0f);
    frcnn_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_absurd_sizes),
        cmocka_unit_test(test_stale_tmp_and_abort),
        cmocka_unit_test(test_full_disk),
        cmocka_unit_test(test_no_space),
    };
    return cmocka_run_group_tests_name("ckpt_io", tests, setup, teardown);
}
