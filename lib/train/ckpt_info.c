/* A checkpoint's description for tools: format and library version, counters, configuration, which pieces it
 * holds, size, and whether every checksum is correct. Never refuses a file whose header and tables can be read. */
#include "ckpt_io.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Whether a META key exists (of whatever type). */
static bool has_key(frcnn__ckpt_reader *r, const char *key)
{
    uint64_t v;
    frcnn_status st = frcnn__ckpt_get_u64(r, key, &v);
    return st == FRCNN_OK || st == FRCNN_ERR_MISMATCH;
}

frcnn_status frcnn_ckpt_info_read(frcnn_ctx *ctx, const char *path, frcnn_ckpt_info *info)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!path || !info)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "ckpt_info_read: %s is NULL", path ? "info" : "path");
    frcnn__ckpt_reader *r = NULL;
    frcnn_ckpt_info out;
    char version[256];
    struct stat sb;
    memset(&out, 0, sizeof out);
    frcnn_status st = frcnn__ckpt_reader_open(ctx, path, &r);
    if (st != FRCNN_OK)
        goto fail;
    frcnn__ckpt_reader_version(r, &out.format_major, &out.format_minor);
    st = frcnn__ckpt_get_str(r, "run.library_version", version, sizeof version, NULL);
    if (st == FRCNN_OK) { /* truncated to the field */
        size_t k = strlen(version) < sizeof out.library_version ? strlen(version) : sizeof out.library_version - 1;
        memcpy(out.library_version, version, k);
        out.library_version[k] = '\0';
    } else if (st != FRCNN_ERR_NOT_FOUND) {
        st = frcnn__error(ctx, FRCNN_ERR_FORMAT, "%s: 'run.library_version' is unreadable", path);
        goto fail;
    }
    if ((st = frcnn__ckpt_get_u64(r, "run.iteration", &out.iteration)) != FRCNN_OK) {
        st = frcnn__error(ctx, FRCNN_ERR_FORMAT, "%s: 'run.iteration' is %s", path,
                          st == FRCNN_ERR_NOT_FOUND ? "missing" : "unreadable");
        goto fail;
    }
    st = frcnn__ckpt_get_u64(r, "run.dataset_fingerprint", &out.dataset_fingerprint);
    if (st != FRCNN_OK && st != FRCNN_ERR_NOT_FOUND) {
        st = frcnn__error(ctx, FRCNN_ERR_FORMAT, "%s: 'run.dataset_fingerprint' is unreadable", path);
        goto fail;
    }
    if ((st = frcnn_ckpt_read_config(ctx, path, &out.config)) != FRCNN_OK)
        goto fail;
    out.n_tensors = frcnn__ckpt_tensor_count(r);
    out.has_optimizer = has_key(r, "optim.kind");
    out.has_sampler = has_key(r, "sampler.seed");
    if (stat(path, &sb) != 0) {
        st = frcnn__error(ctx, FRCNN_ERR_IO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    out.file_bytes = (uint64_t)sb.st_size;
    /* Last, so that a failed verification leaves its reason in the context. */
    st = frcnn__ckpt_reader_verify_all(r);
    if (st == FRCNN_ERR_NO_MEMORY)
        goto fail;
    out.verified = st == FRCNN_OK;
    st = FRCNN_OK;
    *info = out;
fail:
    frcnn__ckpt_reader_close(r);
    return st;
}

frcnn_status frcnn_ckpt_read_class_names(frcnn_ctx *ctx, const char *path, char *buf, size_t cap,
                                         const char **names, int n)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!path || !buf || !names || n < 1)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "ckpt_read_class_names: %s",
                            n < 1 ? "n must be at least 1" : "path, buf or names is NULL");
    frcnn__ckpt_reader *r = NULL;
    frcnn_status st = frcnn__ckpt_reader_open(ctx, path, &r);
    if (st != FRCNN_OK)
        return st;
    size_t used = 0;
    for (int i = 0; i < n && st == FRCNN_OK; i++) {
        char key[64];
        size_t len = 0;
        snprintf(key, sizeof key, "classes.%d", i);
        if (used >= cap) {
            st = frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "%s: class names need more than %zu bytes", path, cap);
            break;
        }
        st = frcnn__ckpt_get_str(r, key, buf + used, cap - used, &len);
        if (st == FRCNN_ERR_NOT_FOUND)
            st = frcnn__error(ctx, FRCNN_ERR_NOT_FOUND, "%s: no class name '%s' (saved without class names?)", path,
                              key);
        else if (st == FRCNN_ERR_INVALID_ARG)
            st = frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "%s: class names need more than %zu bytes", path, cap);
        else if (st != FRCNN_OK)
            st = frcnn__error(ctx, FRCNN_ERR_FORMAT, "%s: '%s' is unreadable", path, key);
        if (st == FRCNN_OK) {
            names[i] = buf + used;
            used += len + 1;
        }
    }
    frcnn__ckpt_reader_close(r);
    return st;
}
