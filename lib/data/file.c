/* Reading whole files into memory for the data layer: image files before decoding, annotations and image lists
 * before parsing. */
#include "data_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define READ_CHUNK ((size_t)1 << 16) /* the first step for a file of unknown size */

frcnn_status frcnn__open_file(frcnn_ctx *ctx, const char *what, const char *path, frcnn_status missing, FILE **out,
                              struct stat *st)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return frcnn__error(ctx, errno == ENOENT ? missing : FRCNN_ERR_IO, "%s '%s': cannot open: %s", what, path,
                            strerror(errno));
    if (fstat(fileno(f), st) != 0) {
        int e = errno;
        fclose(f);
        return frcnn__error(ctx, FRCNN_ERR_IO, "%s '%s': cannot stat: %s", what, path, strerror(e));
    }
    if (S_ISDIR(st->st_mode)) {
        fclose(f);
        return frcnn__error(ctx, FRCNN_ERR_IO, "%s '%s': is a directory", what, path);
    }
    *out = f;
    return FRCNN_OK;
}

frcnn_status frcnn__read_file(frcnn_ctx *ctx, const char *what, const char *path, size_t max_bytes,
                              frcnn_status missing, uint8_t **data, size_t *cap, size_t *len)
{
    FILE *f;
    struct stat st;
    frcnn_status status = frcnn__open_file(ctx, what, path, missing, &f, &st);
    if (status != FRCNN_OK)
        return status;
    /* The buffer always keeps one byte for the NUL; a regular file gets one more, so its end shows at once. */
    uint8_t *buf = NULL;
    size_t size = READ_CHUNK, used = 0;
    if (S_ISREG(st.st_mode) && st.st_size > 0) {
        if ((uint64_t)st.st_size > max_bytes) {
            status = frcnn__error(ctx, FRCNN_ERR_FORMAT, "%s '%s': %lld bytes, more than the %zu read", what, path,
                                  (long long)st.st_size, max_bytes);
            goto fail;
        }
        size = (size_t)st.st_size + 2;
    }
    if (!(buf = frcnn__alloc(ctx, size))) {
        status = frcnn__error(ctx, FRCNN_ERR_NO_MEMORY, "%s '%s': cannot allocate %zu bytes to read it", what, path,
                              size);
        goto fail;
    }
    for (;;) {
        if (used == size - 1) { /* full: more than max_bytes, or grow */
            if (used > max_bytes) {
                status = frcnn__error(ctx, FRCNN_ERR_FORMAT, "%s '%s': more than the %zu bytes read", what, path,
                                      max_bytes);
                goto fail;
            }
            size_t bigger = size > (max_bytes + 2) / 2 ? max_bytes + 2 : 2 * size;
            uint8_t *grown = frcnn__alloc(ctx, bigger);
            if (!grown) {
                status = frcnn__error(ctx, FRCNN_ERR_NO_MEMORY, "%s '%s': cannot allocate %zu bytes to read it", what,
                                      path, bigger);
                goto fail;
            }
            memcpy(grown, buf, used);
            frcnn__free(ctx, buf, size);
            buf = grown;
            size = bigger;
        }
        size_t want = size - 1 - used, got = fread(buf + used, 1, want, f);
        used += got;
        if (got < want) {
            if (ferror(f)) {
                status = frcnn__error(ctx, FRCNN_ERR_IO, "%s '%s': read error: %s", what, path, strerror(errno));
                goto fail;
            }
            break;
        }
    }
    fclose(f);
    buf[used] = '\0';
    *data = buf;
    *cap = size;
    *len = used;
    return FRCNN_OK;
fail:
    if (buf)
        frcnn__free(ctx, buf, size);
    fclose(f);
    return status;
}
