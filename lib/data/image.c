/* Image files and RGB pixel buffers: decoding any format stb_image reads into 8-bit RGB, header-only size queries,
 * blank images and their accessors, and writing PNG or JPEG (stb_image_write) atomically through NAME.tmp.
 *
 * stb_image's implementation is Debian's libstb (-lstb); only its declarations are included here. It neither
 * checks PNG CRCs nor bounds the size a header claims, so the loader does both before decoding: every critical
 * PNG chunk's CRC-32 is verified (as libpng does by default), and sizes above FRCNN_IMAGE_MAX_SIDE are refused
 * from the header, before stb_image allocates anything for the pixels. */
#include "data_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb_image.h>
#include <stb_image_write.h>

#define JPEG_QUALITY 90
/* What read_size reads for its messages: enough for the frame header of a JPEG after a typical EXIF block. */
#define HEADER_BYTES ((size_t)1 << 16)
/* stb_image takes the encoded length as an int. */
#define MAX_FILE_BYTES ((size_t)INT_MAX)

/* ---------------------------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------------------------- */

static frcnn_status image_alloc(frcnn_ctx *ctx, int width, int height, frcnn_image **out)
{
    frcnn_image *img = frcnn__alloc(ctx, sizeof *img);
    if (!img)
        return frcnn__error(ctx, FRCNN_ERR_NO_MEMORY, "image: cannot allocate the image header");
    img->width = width;
    img->height = height;
    img->ctx = ctx;
    img->rgb = frcnn__alloc(ctx, frcnn__image_bytes(img));
    if (!img->rgb) {
        frcnn__free(ctx, img, sizeof *img);
        return frcnn__error(ctx, FRCNN_ERR_NO_MEMORY, "image: cannot allocate %d x %d pixels (%zu bytes)", width,
                            height, (size_t)width * (size_t)height * 3u);
    }
    *out = img;
    return FRCNN_OK;
}

/* The format a file's first bytes announce, for messages; NULL when unknown (TGA has no signature). */
static const char *format_name(const uint8_t *d, size_t n)
{
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF)
        return "JPEG";
    if (n >= 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0)
        return "PNG";
    if (n >= 2 && d[0] == 'B' && d[1] == 'M')
        return "BMP";
    if (n >= 6 && (memcmp(d, "GIF87a", 6) == 0 || memcmp(d, "GIF89a", 6) == 0))
        return "GIF";
    if (n >= 4 && memcmp(d, "8BPS", 4) == 0)
        return "PSD";
    if (n >= 2 && d[0] == '#' && d[1] == '?')
        return "HDR";
    if (n >= 2 && d[0] == 'P' && (d[1] == '5' || d[1] == '6'))
        return "PNM";
    return NULL;
}

/* The message for a file stb_image refused for the given reason. */
static frcnn_status decode_error(frcnn_ctx *ctx, const char *path, const uint8_t *data, size_t len,
                                 const char *reason)
{
    const char *format = format_name(data, len);
    if (!reason)
        reason = "no reason given";
    if (format)
        return frcnn__error(ctx, FRCNN_ERR_FORMAT, "image '%s': corrupt or truncated %s data (stb_image: %s)", path,
                            format, reason);
    return frcnn__error(ctx, FRCNN_ERR_FORMAT,
                        "image '%s': not a JPEG, PNG, BMP, GIF, TGA, PNM, PSD or HDR image (stb_image: %s)", path,
                        reason);
}

static frcnn_status check_size(frcnn_ctx *ctx, const char *path, int64_t width, int64_t height)
{
    if (width <= 0 || height <= 0)
        return frcnn__error(ctx, FRCNN_ERR_FORMAT, "image '%s': invalid size %lld x %lld in the header", path,
                            (long long)width, (long long)height);
    if (width > FRCNN_IMAGE_MAX_SIDE || height > FRCNN_IMAGE_MAX_SIDE)
        return frcnn__error(ctx, FRCNN_ERR_FORMAT,
                            "image '%s': %lld x %lld pixels, larger than FRCNN_IMAGE_MAX_SIDE (%d) allows", path,
                            (long long)width, (long long)height, FRCNN_IMAGE_MAX_SIDE);
    return FRCNN_OK;
}

static uint32_t be16(const uint8_t *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | (uint32_t)p[0];
}

/* The size the header of a PNG, JPEG, BMP or GIF claims, read here because stb_image refuses sizes it finds too
 * large with a reason as vague as "unknown image type". False when the bytes do not tell. */
static bool header_size(const uint8_t *d, size_t n, int64_t *w, int64_t *h)
{
    const char *format = format_name(d, n);
    if (!format)
        return false;
    if (strcmp(format, "PNG") == 0 && n >= 24 && memcmp(d + 12, "IHDR", 4) == 0) {
        *w = be32(d + 16);
        *h = be32(d + 20);
        return true;
    }
    if (strcmp(format, "BMP") == 0 && n >= 26 && le32(d + 14) >= 40) {
        *w = (int32_t)le32(d + 18);
        *h = (int32_t)le32(d + 22);
        *h = *h < 0 ? -*h : *h; /* negative: rows stored top-down */
        return true;
    }
    if (strcmp(format, "GIF") == 0 && n >= 10) {
        *w = d[6] | d[7] << 8;
        *h = d[8] | d[9] << 8;
        return true;
    }
    if (strcmp(format, "JPEG") == 0) {
        /* markers up to the first frame header (SOF0..SOF15 but DHT C4, JPG C8, DAC CC) or the first scan */
        size_t at = 2;
        while (at + 4 <= n && d[at] == 0xFF) {
            uint8_t m = d[at + 1];
            if (m == 0xFF) {
                at++; /* fill byte */
                continue;
            }
            if (m == 0xDA)
                return false;
            if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
                if (at + 9 > n)
                    return false;
                *h = be16(d + at + 5);
                *w = be16(d + at + 7);
                return true;
            }
            at += 2 + ((m >= 0xD0 && m <= 0xD8) || m == 0x01 ? 0 : be16(d + at + 2));
        }
    }
    return false;
}

/* The message for a file stb_image refused: a size beyond our limit when its header says so, else stb_image's
 * reason, which the caller takes right after the failing call (Debian's build keeps it in a global). */
static frcnn_status refused(frcnn_ctx *ctx, const char *path, const uint8_t *data, size_t len, const char *reason)
{
    int64_t w, h;
    if (header_size(data, len, &w, &h) && check_size(ctx, path, w, h) != FRCNN_OK)
        return FRCNN_ERR_FORMAT;
    return decode_error(ctx, path, data, len, reason);
}

static bool is_letter(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* Walks a PNG's chunks up to IEND and verifies their structure and the CRC-32 (ISO 3309, as in the PNG spec) of
 * every critical chunk (uppercase first letter: IHDR, PLTE, IDAT, IEND); stb_image checks neither, and would
 * decode a damaged or cut file into wrong pixels. Ancillary chunks with a bad CRC are ignored, as in libpng. */
static frcnn_status check_png_chunks(frcnn_ctx *ctx, const char *path, const uint8_t *d, size_t len)
{
    uint32_t table[256];
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    size_t at = 8;
    for (;;) {
        if (len - at < 12)
            return frcnn__error(ctx, FRCNN_ERR_FORMAT, "image '%s': truncated PNG (file ends at byte %zu, before IEND)",
                                path, len);
        uint32_t n = be32(d + at);
        const uint8_t *type = d + at + 4;
        if (!is_letter(type[0]) || !is_letter(type[1]) || !is_letter(type[2]) || !is_letter(type[3]))
            return frcnn__error(ctx, FRCNN_ERR_FORMAT, "image '%s': corrupt PNG data (invalid chunk type at byte %zu)",
                                path, at + 4);
        if (n > 0x7FFFFFFFu)
            return frcnn__error(ctx, FRCNN_ERR_FORMAT, "image '%s': corrupt PNG data (chunk '%.4s' at byte %zu: "
                                "length %u)", path, (const char *)type, at, n);
        if (len - at - 12 < n)
            return frcnn__error(ctx, FRCNN_ERR_FORMAT, "image '%s': truncated PNG (chunk '%.4s' at byte %zu needs %u "
                                "bytes, the file ends at byte %zu)", path, (const char *)type, at, n, len);
        if (!(type[0] & 0x20)) {
            uint32_t crc = 0xFFFFFFFFu;
            for (size_t i = 0; i < (size_t)n + 4; i++)
                crc = table[(crc ^ type[i]) & 0xFF] ^ (crc >> 8);
            if ((crc ^ 0xFFFFFFFFu) != be32(type + 4 + n))
                return frcnn__error(ctx, FRCNN_ERR_FORMAT, "image '%s': corrupt PNG data (CRC mismatch in chunk "
                                    "'%.4s' at byte %zu)", path, (const char *)type, at);
        }
        at += 12 + (size_t)n;
        if (memcmp(type, "IEND", 4) == 0)
            return FRCNN_OK;
    }
}

/* ---------------------------------------------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------------------------------------------- */

frcnn_status frcnn_image_load(frcnn_ctx *ctx, const char *path, frcnn_image **out)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!out)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "image_load: out is NULL");
    *out = NULL;
    if (!path)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "image_load: path is NULL");
    uint8_t *data = NULL;
    size_t cap = 0, len = 0;
    frcnn_status status = frcnn__read_file(ctx, "image", path, MAX_FILE_BYTES, FRCNN_ERR_IO, &data, &cap, &len);
    if (status != FRCNN_OK)
        return status;
    stbi_uc *pixels = NULL;
    frcnn_image *img = NULL;
    int w, h, comp;
    if (len == 0) {
        status = frcnn__error(ctx, FRCNN_ERR_FORMAT, "image '%s': empty file", path);
        goto done;
    }
    const char *format = format_name(data, len);
    if (format && strcmp(format, "PNG") == 0) {
        status = check_png_chunks(ctx, path, data, len);
        if (status != FRCNN_OK)
            goto done;
    }
    /* The size from the header first, so that a huge claimed size costs nothing. */
    if (!stbi_info_from_memory(data, (int)len, &w, &h, &comp)) {
        status = refused(ctx, path, data, len, stbi_failure_reason());
        goto done;
    }
    status = check_size(ctx, path, w, h);
    if (status != FRCNN_OK)
        goto done;
    /* 3 channels asked: stb_image replicates grey and drops alpha. */
    pixels = stbi_load_from_memory(data, (int)len, &w, &h, &comp, 3);
    if (!pixels) {
        status = refused(ctx, path, data, len, stbi_failure_reason());
        goto done;
    }
    status = check_size(ctx, path, w, h); /* the decoder's own idea of the size bounds the copy */
    if (status != FRCNN_OK)
        goto done;
    status = image_alloc(ctx, w, h, &img);
    if (status != FRCNN_OK)
        goto done;
    memcpy(img->rgb, pixels, frcnn__image_bytes(img));
    *out = img;
done:
    stbi_image_free(pixels);
    frcnn__free(ctx, data, cap);
    return status;
}

frcnn_status frcnn_image_read_size(frcnn_ctx *ctx, const char *path, int *width, int *height)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!path || !width || !height)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "image_read_size: path, width or height is NULL");
    *width = *height = 0;
    FILE *f;
    struct stat st;
    frcnn_status status = frcnn__open_file(ctx, "image", path, FRCNN_ERR_IO, &f, &st);
    if (status != FRCNN_OK)
        return status;
    /* The first bytes, for messages only: the format, and a size stb_image found too large to report. */
    size_t head_bytes = HEADER_BYTES, n = 0;
    uint8_t *head = frcnn__alloc(ctx, head_bytes);
    int w, h, comp;
    if (!head) {
        status = frcnn__error(ctx, FRCNN_ERR_NO_MEMORY, "image '%s': cannot allocate %zu bytes to read its header",
                              path, head_bytes);
    } else if ((n = fread(head, 1, head_bytes, f)) == 0 && ferror(f)) {
        status = frcnn__error(ctx, FRCNN_ERR_IO, "image '%s': read error: %s", path, strerror(errno));
    } else if (n == 0) {
        status = frcnn__error(ctx, FRCNN_ERR_FORMAT, "image '%s': empty file", path);
    } else if (fseek(f, 0, SEEK_SET) != 0) {
        status = frcnn__error(ctx, FRCNN_ERR_IO, "image '%s': cannot seek: %s", path, strerror(errno));
    } else if (!stbi_info_from_file(f, &w, &h, &comp)) {
        status = refused(ctx, path, head, n, stbi_failure_reason());
    } else {
        status = check_size(ctx, path, w, h);
        if (status == FRCNN_OK) {
            *width = w;
            *height = h;
        }
    }
    if (head)
        frcnn__free(ctx, head, head_bytes);
    fclose(f);
    return status;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Creation and access
 * ------------------------------------------------------------------------------------------------------------- */

frcnn_status frcnn_image_create(frcnn_ctx *ctx, int width, int height, frcnn_image **out)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!out)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "image_create: out is NULL");
    *out = NULL;
    if (width < 1 || height < 1 || width > FRCNN_IMAGE_MAX_SIDE || height > FRCNN_IMAGE_MAX_SIDE)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "image_create: size %d x %d, each side must be in [1, %d]",
                            width, height, FRCNN_IMAGE_MAX_SIDE);
    frcnn_image *img;
    frcnn_status status = image_alloc(ctx, width, height, &img);
    if (status != FRCNN_OK)
        return status;
    memset(img->rgb, 0, frcnn__image_bytes(img));
    *out = img;
    return FRCNN_OK;
}

void frcnn_image_free(frcnn_image *image)
{
    if (!image)
        return;
    frcnn_ctx *ctx = image->ctx;
    frcnn__free(ctx, image->rgb, frcnn__image_bytes(image));
    frcnn__free(ctx, image, sizeof *image);
}

int frcnn_image_width(const frcnn_image *image)
{
    return image ? image->width : 0;
}

int frcnn_image_height(const frcnn_image *image)
{
    return image ? image->height : 0;
}

uint8_t *frcnn_image_pixels(const frcnn_image *image)
{
    return image ? image->rgb : NULL;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Saving
 * ------------------------------------------------------------------------------------------------------------- */

typedef struct file_writer {
    FILE *f;
    int error; /* errno of the first failed write, 0 if none */
} file_writer;

/* stb_image_write's output callback: its own file writer ignores write errors, so the bytes come through here. */
static void write_bytes(void *user, void *data, int size)
{
    file_writer *w = user;
    if (w->error || size <= 0)
        return;
    errno = 0;
    if (fwrite(data, 1, (size_t)size, w->f) != (size_t)size)
        w->error = errno ? errno : EIO;
}

frcnn_status frcnn_image_save(frcnn_ctx *ctx, const char *path, const frcnn_image *image)
{
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!path || !image)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "image_save: path or image is NULL");
    const char *base = strrchr(path, '/');
    const char *dot = strrchr(base ? base + 1 : path, '.');
    bool jpeg;
    if (dot && strcasecmp(dot, ".png") == 0)
        jpeg = false;
    else if (dot && (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0))
        jpeg = true;
    else
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "image '%s': unknown extension (use .png, .jpg or .jpeg)",
                            path);

    size_t n = strlen(path), tmp_bytes = n + sizeof ".tmp";
    char *tmp = frcnn__alloc(ctx, tmp_bytes);
    if (!tmp)
        return frcnn__error(ctx, FRCNN_ERR_NO_MEMORY, "image '%s': cannot allocate the temporary name", path);
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", sizeof ".tmp");

    frcnn_status status = FRCNN_OK;
    file_writer w = {fopen(tmp, "wb"), 0};
    if (!w.f) {
        status = frcnn__error(ctx, FRCNN_ERR_IO, "image '%s': cannot create '%s': %s", path, tmp, strerror(errno));
        goto done;
    }
    int ok = jpeg ? stbi_write_jpg_to_func(write_bytes, &w, image->width, image->height, 3, image->rgb,
                                           JPEG_QUALITY)
                  : stbi_write_png_to_func(write_bytes, &w, image->width, image->height, 3, image->rgb,
                                           image->width * 3);
    if (w.error) {
        status = frcnn__error(ctx, FRCNN_ERR_IO, "image '%s': write error: %s", path, strerror(w.error));
        goto done;
    }
    if (!ok) {
        /* with valid arguments stb_image_write fails only when its malloc does */
        status = frcnn__error(ctx, FRCNN_ERR_NO_MEMORY, "image '%s': the %s encoder could not allocate its buffers",
                              path, jpeg ? "JPEG" : "PNG");
        goto done;
    }
    if (fflush(w.f) != 0 || fsync(fileno(w.f)) != 0) {
        status = frcnn__error(ctx, FRCNN_ERR_IO, "image '%s': write error: %s", path, strerror(errno));
        goto done;
    }
    FILE *f = w.f;
    w.f = NULL;
    if (fclose(f) != 0) {
        status = frcnn__error(ctx, FRCNN_ERR_IO, "image '%s': write error: %s", path, strerror(errno));
        goto done;
    }
    if (rename(tmp, path) != 0)
        status = frcnn__error(ctx, FRCNN_ERR_IO, "image '%s': cannot rename '%s' to it: %s", path, tmp,
                              strerror(errno));
done:
    if (w.f)
        fclose(w.f);
    if (status != FRCNN_OK)
        remove(tmp);
    frcnn__free(ctx, tmp, tmp_bytes);
    return status;
}
