/* Checkpoint files in a directory: their names ("<prefix>-<iteration, 12 digits>.ckpt"), finding the newest one
 * that verifies completely (auto-resume must never pick a truncated or corrupt file, REFERENCE.md section 3), removing
 * stale ".tmp" files of killed saves, and retention (which deletes nothing unless the newest file verifies). */
#include "ckpt_io.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DIGITS 12
#define SUFFIX ".ckpt"
#define TMP_SUFFIX ".ckpt.tmp"
#define MAX_ITERATION 999999999999ull /* the largest 12-digit iteration */

/* A file path built from dir and a name; longer ones are refused. */
#define PATH_CAP 4096

static frcnn_status check_prefix(frcnn_ctx *ctx, const char *fn, const char *prefix)
{
    if (!prefix || !prefix[0] || strchr(prefix, '/'))
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "%s: prefix %s", fn,
                            !prefix ? "is NULL" : !prefix[0] ? "is empty" : "contains '/'");
    return FRCNN_OK;
}

frcnn_status frcnn_ckpt_name(frcnn_ctx *ctx, const char *prefix, uint64_t iteration, char *buf, size_t cap)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    frcnn_status st = check_prefix(ctx, "ckpt_name", prefix);
    if (st != FRCNN_OK)
        return st;
    if (!buf || cap == 0)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "ckpt_name: buf is %s", buf ? "of size 0" : "NULL");
    if (iteration > MAX_ITERATION)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "ckpt_name: iteration %llu has more than %d digits",
                            (unsigned long long)iteration, DIGITS);
    int n = snprintf(buf, cap, "%s-%0*llu" SUFFIX, prefix, DIGITS, (unsigned long long)iteration);
    if (n < 0 || (size_t)n >= cap) {
        buf[0] = '\0';
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "ckpt_name: '%s-%0*llu" SUFFIX "' needs %d bytes, buf has %zu",
                            prefix, DIGITS, (unsigned long long)iteration, n + 1, cap);
    }
    return FRCNN_OK;
}

/* True when name is exactly prefix + "-" + 12 digits + suffix; *iteration receives the number. */
static bool parse_name(const char *name, const char *prefix, size_t plen, const char *suffix, uint64_t *iteration)
{
    if (strncmp(name, prefix, plen) != 0 || name[plen] != '-')
        return false;
    const char *d = name + plen + 1;
    uint64_t v = 0;
    for (int i = 0; i < DIGITS; i++) {
        if (d[i] < '0' || d[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(d[i] - '0');
    }
    if (strcmp(d + DIGITS, suffix) != 0)
        return false;
    *iteration = v;
    return true;
}

/* dir + "/" + name into buf (PATH_CAP bytes). */
static frcnn_status join(frcnn_ctx *ctx, const char *dir, const char *name, char *buf)
{
    int n = snprintf(buf, PATH_CAP, "%s/%s", dir, name);
    if (n < 0 || n >= PATH_CAP)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "checkpoint path '%s/%s' is longer than %d bytes", dir, name,
                            PATH_CAP - 1);
    return FRCNN_OK;
}

static int by_iteration_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Removes a stale save; a failure only costs a warning (the next save removes it too). */
static void remove_tmp(frcnn_ctx *ctx, const char *dir, const char *name)
{
    char path[PATH_CAP];
    if (join(ctx, dir, name, path) != FRCNN_OK)
        return;
    if (unlink(path) == 0)
        frcnn_ctx_log(ctx, FRCNN_LOG_INFO, "removed %s, left by an interrupted save", path);
    else if (errno != ENOENT)
        frcnn_ctx_log(ctx, FRCNN_LOG_WARN, "could not remove stale %s: %s", path, strerror(errno));
}

/* The checkpoints of a prefix in a directory: iterations, newest first. */
typedef struct ckpt_list {
    uint64_t *its; /* frcnn__alloc'd, `bytes` long; NULL when n is 0 */
    size_t n;
    size_t bytes;
} ckpt_list;

/* Lists dir's checkpoints of prefix into *out (free with free_list; empty when none). Removes stale
 * "<prefix>-<12 digits>.ckpt.tmp" files on the way. Reads the directory twice: the first pass counts, the second
 * fills at most that many (files that appear in between are ignored). */
static frcnn_status list_ckpts(frcnn_ctx *ctx, const char *dir, const char *prefix, ckpt_list *out)
{
    const size_t plen = strlen(prefix);
    uint64_t *its = NULL, iteration;
    size_t count = 0, filled = 0, bytes = 0;
    frcnn_status st = FRCNN_OK;
    struct dirent *e;
    memset(out, 0, sizeof *out);
    DIR *d = opendir(dir);
    if (!d)
        return frcnn__error(ctx, FRCNN_ERR_IO, "checkpoint directory %s: %s", dir, strerror(errno));
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (parse_name(e->d_name, prefix, plen, SUFFIX, &iteration))
            count++;
        else if (parse_name(e->d_name, prefix, plen, TMP_SUFFIX, &iteration))
            remove_tmp(ctx, dir, e->d_name);
        errno = 0;
    }
    if (errno) {
        st = frcnn__error(ctx, FRCNN_ERR_IO, "reading checkpoint directory %s: %s", dir, strerror(errno));
        goto fail;
    }
    if (count == 0)
        goto fail; /* st is FRCNN_OK: an empty list */
    if (!frcnn__mul_size(count, sizeof *its, &bytes)) {
        st = frcnn__error(ctx, FRCNN_ERR_OVERFLOW, "checkpoint directory %s: %zu files overflow", dir, count);
        goto fail;
    }
    if (!(its = frcnn__alloc(ctx, bytes))) {
        st = FRCNN_ERR_NO_MEMORY;
        goto fail;
    }
    rewinddir(d);
    errno = 0;
    while (filled < count && (e = readdir(d)) != NULL) {
        if (parse_name(e->d_name, prefix, plen, SUFFIX, &iteration))
            its[filled++] = iteration;
        errno = 0;
    }
    if (errno) {
        st = frcnn__error(ctx, FRCNN_ERR_IO, "reading checkpoint directory %s: %s", dir, strerror(errno));
        goto fail;
    }
    qsort(its, filled, sizeof *its, by_iteration_desc);
    if (filled > 0) { /* else every file vanished between the passes */
        out->its = its;
        out->n = filled;
        out->bytes = bytes;
        its = NULL;
    }
fail:
    frcnn__free(ctx, its, bytes);
    closedir(d);
    return st;
}

/* Frees a list_ckpts result. */
static void free_list(frcnn_ctx *ctx, ckpt_list *l)
{
    frcnn__free(ctx, l->its, l->bytes);
    memset(l, 0, sizeof *l);
}

/* Opens dir's checkpoint for this iteration and verifies every checksum; its path goes into path (PATH_CAP).
 * On failure the reason is in the context. */
static frcnn_status verify_one(frcnn_ctx *ctx, const char *dir, const char *prefix, uint64_t iteration, char *name,
                               size_t name_cap, char *path)
{
    frcnn__ckpt_reader *r = NULL;
    frcnn_status st = frcnn_ckpt_name(ctx, prefix, iteration, name, name_cap);
    if (st == FRCNN_OK)
        st = join(ctx, dir, name, path);
    if (st == FRCNN_OK)
        st = frcnn__ckpt_reader_open(ctx, path, &r);
    if (st == FRCNN_OK)
        st = frcnn__ckpt_reader_verify_all(r);
    frcnn__ckpt_reader_close(r);
    return st;
}

frcnn_status frcnn_ckpt_latest(frcnn_ctx *ctx, const char *dir, const char *prefix, char *path, size_t cap)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!dir || !path || cap == 0)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "ckpt_latest: %s", !dir ? "dir is NULL"
                                                                          : !path ? "path is NULL"
                                                                                  : "cap is 0");
    frcnn_status st = check_prefix(ctx, "ckpt_latest", prefix);
    if (st != FRCNN_OK)
        return st;
    path[0] = '\0';
    ckpt_list l = {0};
    size_t i;
    char name[PATH_CAP], full[PATH_CAP], first_reason[FRCNN__ERROR_LEN] = "";
    if ((st = list_ckpts(ctx, dir, prefix, &l)) != FRCNN_OK)
        goto fail;
    if (l.n == 0) {
        st = frcnn__error(ctx, FRCNN_ERR_NOT_FOUND, "no checkpoint named %s-*" SUFFIX " in %s", prefix, dir);
        goto fail;
    }
    for (i = 0; i < l.n; i++) {
        st = verify_one(ctx, dir, prefix, l.its[i], name, sizeof name, full);
        if (st == FRCNN_OK)
            break;
        if (st == FRCNN_ERR_NO_MEMORY)
            goto fail; /* says nothing about the file */
        if (i == 0)
            snprintf(first_reason, sizeof first_reason, "%s", frcnn_ctx_last_error(ctx));
        frcnn_ctx_log(ctx, FRCNN_LOG_WARN, "skipping checkpoint %s: %s", name, frcnn_ctx_last_error(ctx));
    }
    if (i == l.n) {
        st = frcnn__error(ctx, FRCNN_ERR_FORMAT,
                          "none of the %zu checkpoints %s-*" SUFFIX " in %s verifies; newest: %s", l.n, prefix, dir,
                          first_reason);
        goto fail;
    }
    if (strlen(full) >= cap) {
        st = frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "ckpt_latest: '%s' needs %zu bytes, path has %zu", full,
                          strlen(full) + 1, cap);
        goto fail;
    }
    memcpy(path, full, strlen(full) + 1);
fail:
    free_list(ctx, &l);
    return st;
}

frcnn_status frcnn_ckpt_retain(frcnn_ctx *ctx, const char *dir, const char *prefix, int keep_last,
                               uint64_t keep_every, int *deleted)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (deleted)
        *deleted = 0;
    if (!dir)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "ckpt_retain: dir is NULL");
    if (keep_last < 1)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "ckpt_retain: keep_last is %d, must be at least 1", keep_last);
    frcnn_status st = check_prefix(ctx, "ckpt_retain", prefix);
    if (st != FRCNN_OK)
        return st;
    ckpt_list l = {0};
    int count = 0;
    char name[PATH_CAP], full[PATH_CAP];
    if ((st = list_ckpts(ctx, dir, prefix, &l)) != FRCNN_OK || l.n == 0)
        goto fail;
    if ((st = verify_one(ctx, dir, prefix, l.its[0], name, sizeof name, full)) != FRCNN_OK) {
        if (st != FRCNN_ERR_NO_MEMORY) {
            char reason[FRCNN__ERROR_LEN];
            snprintf(reason, sizeof reason, "%s", frcnn_ctx_last_error(ctx));
            st = frcnn__error(ctx, FRCNN_ERR_FORMAT, "newest checkpoint %s does not verify, nothing deleted: %s",
                              name, reason);
        }
        goto fail;
    }
    for (size_t i = (size_t)keep_last; i < l.n; i++) {
        if (keep_every > 0 && l.its[i] % keep_every == 0)
            continue;
        if ((st = frcnn_ckpt_name(ctx, prefix, l.its[i], name, sizeof name)) != FRCNN_OK ||
            (st = join(ctx, dir, name, full)) != FRCNN_OK)
            goto fail;
        if (unlink(full) != 0) {
            if (errno == ENOENT)
                continue; /* already gone */
            st = frcnn__error(ctx, FRCNN_ERR_IO, "ckpt_retain: cannot delete %s: %s", full, strerror(errno));
            goto fail;
        }
        frcnn_ctx_log(ctx, FRCNN_LOG_INFO, "deleted old checkpoint %s", full);
        count++;
    }
fail:
    if (deleted)
        *deleted = count;
    free_list(ctx, &l);
    return st;
}
