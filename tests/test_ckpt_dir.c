/* Checkpoint directories (lib/train/ckpt_dir.c, lib/train/ckpt_info.c): file names, picking the newest checkpoint
 * that verifies (skipping truncated and corrupt ones with a warning, never silently none), stale .tmp removal,
 * names that only look like checkpoints, retention that never deletes when the newest save is bad, and the info
 * of good and bit-flipped files. Files live in a mkdtemp directory under /tmp that is removed afterwards. */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PREFIX "frcnn"

static char g_dir[64];
static frcnn_ctx *g_ctx;
static frcnn_model *g_model;

/* Every line logged at WARN or above and at INFO, concatenated. */
static char g_warn[8192];
static char g_info[8192];

static void capture_log(void *user, frcnn_log_level level, const char *line)
{
    (void)user;
    char *buf = level >= FRCNN_LOG_WARN ? g_warn : g_info;
    size_t len = strlen(buf);
    snprintf(buf + len, sizeof g_warn - len, "%s\n", line);
}

/* A small model: the small backbone with narrow heads, so a checkpoint is about 2 MB. */
static frcnn_config tiny_config(void)
{
    return tu_tiny_config(128, 160, 16, 32);
}

static int group_setup(void **state)
{
    (void)state;
    frcnn_ctx_params p = frcnn_ctx_params_default();
    p.log = capture_log;
    p.log_level = FRCNN_LOG_INFO;
    if (frcnn_ctx_create(&p, &g_ctx) != FRCNN_OK)
        return -1;
    frcnn_config c = tiny_config();
    if (frcnn_model_create(g_ctx, &c, 1, &g_model) != FRCNN_OK) {
        print_error("model_create: %s\n", frcnn_ctx_last_error(g_ctx));
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    frcnn_model_free(g_model);
    frcnn_ctx_free(g_ctx);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    g_warn[0] = g_info[0] = '\0';
    frcnn_ctx_clear_error(g_ctx);
    return tu_make_tmpdir(g_dir, sizeof g_dir, "ckptdir");
}

static int teardown(void **state)
{
    (void)state;
    return tu_remove_tree(g_dir);
}

static const char *path_of(const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

static const char *name_of(uint64_t iteration)
{
    static char n[4][64];
    static int k;
    k = (k + 1) % 4;
    assert_int_equal(frcnn_ckpt_name(g_ctx, PREFIX, iteration, n[k], sizeof n[k]), FRCNN_OK);
    return n[k];
}

static void save(uint64_t iteration)
{
    frcnn_train_state s;
    memset(&s, 0, sizeof s);
    s.model = g_model;
    s.iteration = iteration;
    frcnn_status st = frcnn_ckpt_save(g_ctx, g_dir, name_of(iteration), &s);
    if (st != FRCNN_OK)
        print_error("ckpt_save: %s\n", frcnn_ctx_last_error(g_ctx));
    assert_int_equal(st, FRCNN_OK);
}

static bool exists(const char *name)
{
    struct stat sb;
    return stat(path_of(name), &sb) == 0;
}

static long file_size(const char *name)
{
    struct stat sb;
    assert_int_equal(stat(path_of(name), &sb), 0);
    return (long)sb.st_size;
}

static void cut_in_half(const char *name)
{
    assert_int_equal(truncate(path_of(name), file_size(name) / 2), 0);
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(path_of(from), "rb"), *out = fopen(path_of(to), "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/* Flips one bit of the byte at offset. */
static void flip_bit(const char *name, long offset)
{
    FILE *f = fopen(path_of(name), "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, offset, SEEK_SET), 0);
    int c = fgetc(f);
    assert_true(c != EOF);
    assert_int_equal(fseek(f, offset, SEEK_SET), 0);
    assert_true(fputc(c ^ 0x10, f) != EOF);
    assert_int_equal(fclose(f), 0);
}

static void expect_latest(uint64_t iteration)
{
    char path[512];
    frcnn_status st = frcnn_ckpt_latest(g_ctx, g_dir, PREFIX, path, sizeof path);
    if (st != FRCNN_OK)
        print_error("ckpt_latest: %s\n", frcnn_ctx_last_error(g_ctx));
    assert_int_equal(st, FRCNN_OK);
    assert_string_equal(path, path_of(name_of(iteration)));
}

/* ----- tests -------------------------------------------------------------------------------------------------- */

static void test_name(void **state)
{
    (void)state;
    char buf[64];
    assert_int_equal(frcnn_ckpt_name(g_ctx, "frcnn", 10000, buf, sizeof buf), FRCNN_OK);
    assert_string_equal(buf, "frcnn-000000010000.ckpt");
    assert_int_equal(frcnn_ckpt_name(g_ctx, "run.a", 0, buf, sizeof buf), FRCNN_OK);
    assert_string_equal(buf, "run.a-000000000000.ckpt");
    assert_int_equal(frcnn_ckpt_name(g_ctx, "x", 999999999999ull, buf, sizeof buf), FRCNN_OK);
    assert_string_equal(buf, "x-999999999999.ckpt");
    /* exactly fitting: 1 + 1 + 12 + 5 characters and the NUL */
    assert_int_equal(frcnn_ckpt_name(g_ctx, "x", 7, buf, 20), FRCNN_OK);
    tu_expect_error_msg(g_ctx, frcnn_ckpt_name(g_ctx, "x", 7, buf, 19), FRCNN_ERR_INVALID_ARG, "20 bytes");
    tu_expect_error(g_ctx, frcnn_ckpt_name(g_ctx, "x", 1000000000000ull, buf, sizeof buf), FRCNN_ERR_INVALID_ARG);
    tu_expect_error_msg(g_ctx, frcnn_ckpt_name(g_ctx, "", 1, buf, sizeof buf), FRCNN_ERR_INVALID_ARG, "empty");
    tu_expect_error_msg(g_ctx, frcnn_ckpt_name(g_ctx, NULL, 1, buf, sizeof buf), FRCNN_ERR_INVALID_ARG, "NULL");
    tu_expect_error_msg(g_ctx, frcnn_ckpt_name(g_ctx, "a/b", 1, buf, sizeof buf), FRCNN_ERR_INVALID_ARG, "'/'");
    tu_expect_error(g_ctx, frcnn_ckpt_name(g_ctx, "a", 1, NULL, 10), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(g_ctx, frcnn_ckpt_name(g_ctx, "a", 1, buf, 0), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_ckpt_name(NULL, "a", 1, buf, sizeof buf), FRCNN_ERR_INVALID_ARG);
}

static void test_latest_skips_damaged(void **state)
{
    (void)state;
    save(100);
    save(200);
    save(300);
    expect_latest(300);
    assert_string_equal(g_warn, "");

    /* a save killed half-way under the real name: skipped with a warning naming the file */
    cut_in_half(name_of(300));
    expect_latest(200);
    assert_non_null(strstr(g_warn, name_of(300)));
    assert_null(strstr(g_warn, name_of(200)));

    /* a flipped bit in 200's tensor data (found only by verifying every checksum): 100 */
    flip_bit(name_of(200), file_size(name_of(200)) / 2);
    g_warn[0] = '\0';
    expect_latest(100);
    assert_non_null(strstr(g_warn, name_of(200)));

    /* none verifies: an error, never a silent fresh start */
    cut_in_half(name_of(100));
    char path[512];
    tu_expect_error_msg(g_ctx, frcnn_ckpt_latest(g_ctx, g_dir, PREFIX, path, sizeof path), FRCNN_ERR_FORMAT,
                        "none of the 3 checkpoints");
    /* all three are still there */
    assert_true(exists(name_of(100)) && exists(name_of(200)) && exists(name_of(300)));
}

static void test_latest_errors(void **state)
{
    (void)state;
    char path[512];
    tu_expect_error_msg(g_ctx, frcnn_ckpt_latest(g_ctx, g_dir, PREFIX, path, sizeof path), FRCNN_ERR_NOT_FOUND,
                        "no checkpoint named frcnn-*.ckpt");
    char missing[128];
    snprintf(missing, sizeof missing, "%s/no-such-dir", g_dir);
    tu_expect_error_msg(g_ctx, frcnn_ckpt_latest(g_ctx, missing, PREFIX, path, sizeof path), FRCNN_ERR_IO,
                        "no-such-dir");
    tu_expect_error(g_ctx, frcnn_ckpt_latest(g_ctx, g_dir, "", path, sizeof path), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(g_ctx, frcnn_ckpt_latest(g_ctx, g_dir, "a/b", path, sizeof path), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(g_ctx, frcnn_ckpt_latest(g_ctx, NULL, PREFIX, path, sizeof path), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(g_ctx, frcnn_ckpt_latest(g_ctx, g_dir, PREFIX, NULL, 10), FRCNN_ERR_INVALID_ARG);
    assert_int_equal(frcnn_ckpt_latest(NULL, g_dir, PREFIX, path, sizeof path), FRCNN_ERR_INVALID_ARG);
    /* the path must fit */
    save(100);
    tu_expect_error(g_ctx, frcnn_ckpt_latest(g_ctx, g_dir, PREFIX, path, 10), FRCNN_ERR_INVALID_ARG);
    expect_latest(100);
}

static void test_tmp_and_foreign_names(void **state)
{
    (void)state;
    save(100);
    /* Valid checkpoint contents under names that are not this prefix's checkpoints: none may be chosen. */
    const char *foreign[] = {"frcnn-000000000400.ckpt.tmp", "other-000000000500.ckpt", "frcnnx-000000000500.ckpt",
                             "frcnn-00000000050.ckpt",      "frcnn-0000000005000.ckpt", "frcnn-00000000050a.ckpt",
                             "frcnn-000000000500.ckpt.bak", "frcnn_000000000500.ckpt", "frcnn-000000000500.CKPT"};
    for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; i++)
        copy_file(name_of(100), foreign[i]);
    /* another prefix's stale save is not ours to remove */
    copy_file(name_of(100), "other-000000000600.ckpt.tmp");
    expect_latest(100);
    assert_false(exists("frcnn-000000000400.ckpt.tmp"));
    assert_non_null(strstr(g_info, "frcnn-000000000400.ckpt.tmp"));
    for (size_t i = 1; i < sizeof foreign / sizeof foreign[0]; i++)
        assert_true(exists(foreign[i]));
    assert_true(exists("other-000000000600.ckpt.tmp"));
    assert_string_equal(g_warn, "");

    /* the other prefix sees only its own file */
    char path[512];
    assert_int_equal(frcnn_ckpt_latest(g_ctx, g_dir, "other", path, sizeof path), FRCNN_OK);
    assert_string_equal(path, path_of("other-000000000500.ckpt"));
    assert_false(exists("other-000000000600.ckpt.tmp"));
}

static void test_retain(void **state)
{
    (void)state;
    int deleted = -1;
    /* nothing to do in an empty directory */
    assert_int_equal(frcnn_ckpt_retain(g_ctx, g_dir, PREFIX, 2, 0, &deleted), FRCNN_OK);
    assert_int_equal(deleted, 0);
    for (uint64_t it = 100; it <= 500; it += 100)
        save(it);
    copy_file(name_of(100), "other-000000000100.ckpt");

    tu_expect_error(g_ctx, frcnn_ckpt_retain(g_ctx, g_dir, PREFIX, 0, 0, &deleted), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(g_ctx, frcnn_ckpt_retain(g_ctx, g_dir, "", 1, 0, &deleted), FRCNN_ERR_INVALID_ARG);

    /* keep the two newest (500, 400) and every multiple of 200 (200) */
    assert_int_equal(frcnn_ckpt_retain(g_ctx, g_dir, PREFIX, 2, 200, &deleted), FRCNN_OK);
    assert_int_equal(deleted, 2);
    assert_false(exists(name_of(100)));
    assert_true(exists(name_of(200)));
    assert_false(exists(name_of(300)));
    assert_true(exists(name_of(400)));
    assert_true(exists(name_of(500)));
    assert_true(exists("other-000000000100.ckpt"));
    /* idempotent */
    assert_int_equal(frcnn_ckpt_retain(g_ctx, g_dir, PREFIX, 2, 200, &deleted), FRCNN_OK);
    assert_int_equal(deleted, 0);

    /* a bad newest save: nothing deleted, and the caller hears about it */
    save(600);
    cut_in_half(name_of(600));
    deleted = -1;
    tu_expect_error_msg(g_ctx, frcnn_ckpt_retain(g_ctx, g_dir, PREFIX, 1, 0, &deleted), FRCNN_ERR_FORMAT,
                        name_of(600));
    assert_int_equal(deleted, 0);
    assert_true(exists(name_of(200)) && exists(name_of(400)) && exists(name_of(500)) && exists(name_of(600)));

    /* once a good save replaces it, keep_last 2 without keep_every leaves 600 and 500 */
    assert_int_equal(unlink(path_of(name_of(600))), 0);
    save(600);
    assert_int_equal(frcnn_ckpt_retain(g_ctx, g_dir, PREFIX, 2, 0, NULL), FRCNN_OK);
    assert_false(exists(name_of(200)));
    assert_false(exists(name_of(400)));
    assert_true(exists(name_of(500)) && exists(name_of(600)));

    char missing[128];
    snprintf(missing, sizeof missing, "%s/no-such-dir", g_dir);
    tu_expect_error_msg(g_ctx, frcnn_ckpt_retain(g_ctx, missing, PREFIX, 1, 0, &deleted), FRCNN_ERR_IO,
                        "no-such-dir");
}

static void test_info(void **state)
{
    (void)state;
    save(1234);
    frcnn_ckpt_info info;
    memset(&info, 0xAB, sizeof info);
    frcnn_status st = frcnn_ckpt_info_read(g_ctx, path_of(name_of(1234)), &info);
    if (st != FRCNN_OK)
        print_error("ckpt_info_read: %s\n", frcnn_ctx_last_error(g_ctx));
    assert_int_equal(st, FRCNN_OK);
    assert_int_equal(info.format_major, 1);
    assert_int_equal(info.format_minor, 0);
    assert_string_equal(info.library_version, frcnn_version());
    assert_int_equal(info.iteration, 1234);
    assert_int_equal(info.dataset_fingerprint, 0);
    assert_int_equal(info.config.num_classes, 4);
    assert_int_equal(info.config.fc_channels, 32);
    assert_int_equal(info.n_tensors, frcnn_model_param_count(g_model));
    assert_int_equal(info.file_bytes, (uint64_t)file_size(name_of(1234)));
    assert_false(info.has_optimizer);
    assert_false(info.has_sampler);
    assert_true(info.verified);

    /* flipped bits in tensor data: readable, not verified, the reason kept in the context */
    copy_file(name_of(1234), "flip.ckpt");
    flip_bit("flip.ckpt", file_size("flip.ckpt") / 2);
    frcnn_ctx_clear_error(g_ctx);
    assert_int_equal(frcnn_ckpt_info_read(g_ctx, path_of("flip.ckpt"), &info), FRCNN_OK);
    assert_false(info.verified);
    assert_int_equal(info.iteration, 1234);
    assert_true(frcnn_ctx_last_error(g_ctx)[0] != '\0');

    /* truncated: the tables cannot be read */
    cut_in_half("flip.ckpt");
    assert_true(frcnn_ckpt_info_read(g_ctx, path_of("flip.ckpt"), &info) != FRCNN_OK);
    frcnn_ctx_clear_error(g_ctx);
    assert_true(frcnn_ckpt_info_read(g_ctx, path_of("missing.ckpt"), &info) != FRCNN_OK);
    frcnn_ctx_clear_error(g_ctx);
    tu_expect_error(g_ctx, frcnn_ckpt_info_read(g_ctx, NULL, &info), FRCNN_ERR_INVALID_ARG);
    tu_expect_error(g_ctx, frcnn_ckpt_info_read(g_ctx, path_of(name_of(1234)), NULL), FRCNN_ERR_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_latest_skips_damaged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_latest_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tmp_and_foreign_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_info, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
