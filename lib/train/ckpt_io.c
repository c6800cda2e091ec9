/* The checkpoint container of docs/checkpoint-format.md (format 1.0): an atomic streaming writer and a validating
 * reader. Every size read from a file is checked against the file size, with overflow checks, before it is used
 * to allocate or to read. */
#include "ckpt_io.h"

#include "crc32c.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <unistd.h>

#define HEADER_SIZE 64u
#define SECTION_HEADER_SIZE 64u
#define FOOTER_SIZE 64u
#define MAX_HEADER_SIZE 4096u
#define PATH_CAP 4096
#define TENSOR_PREFIX_MAX 1152u /* align64(10 + 1024 + 8 * 8) */
#define CHUNK ((size_t)1 << 16)
#define MAX_DIM ((uint64_t)1 << 62)

static const char file_magic[8] = {'F', 'R', 'C', 'N', 'N', 'C', 'K', 'P'};
static const char footer_magic[8] = {'F', 'R', 'C', 'N', 'N', 'E', 'N', 'D'};
static const unsigned char zeros[64];

/* ----- little-endian fields ----------------------------------------------------------------------------------- */

static void put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static uint16_t get16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}
static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const unsigned char *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}
static uint64_t align64(uint64_t x)
{
    return (x + 63u) & ~(uint64_t)63u; /* callers pass values bounded by a file size */
}
static bool host_is_le(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}
/* Reverses the bytes of each esize-byte element (esize 1, 2, 4 or 8). */
static void swap_elems(unsigned char *p, size_t n, size_t esize)
{
    for (size_t i = 0; i < n; i++, p += esize)
        for (size_t a = 0, b = esize - 1; a < b; a++, b--) {
            unsigned char t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}
static bool all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

size_t frcnn__ckpt_dtype_size(uint32_t dtype)
{
    switch (dtype) {
    case FRCNN__DT_F32: return 4;
    case FRCNN__DT_F64: return 8;
    case FRCNN__DT_I32: return 4;
    case FRCNN__DT_I64: return 8;
    case FRCNN__DT_U8: return 1;
    case FRCNN__DT_U64: return 8;
    default: return 0;
    }
}

/* ----- writer ------------------------------------------------------------------------------------------------- */

struct frcnn__ckpt_writer {
    frcnn_ctx *ctx;
    int fd;
    int dirfd;
    frcnn_status failed; /* FRCNN_OK while alive */
    uint16_t major, minor;
    uint64_t off;
    uint64_t nsections;
    uint32_t headers_crc;
    bool in_section;
    bool is_meta;
    unsigned char sec_type[4];
    uint32_t sec_flags;
    uint64_t sec_hdr_off;
    uint64_t sec_len;
    uint32_t sec_crc;
    char tmp_name[512];
    char final_name[512];
    char tmp_path[PATH_CAP];
};

/* Kills the writer: closes and removes the .tmp, records the status. Returns it. */
static frcnn_status writer_kill(frcnn__ckpt_writer *w, frcnn_status st)
{
    if (w->fd >= 0) {
        close(w->fd);
        w->fd = -1;
        unlinkat(w->dirfd, w->tmp_name, 0);
    }
    w->failed = st;
    return st;
}

static frcnn_status writer_errno(frcnn__ckpt_writer *w, int err, const char *what)
{
    frcnn_status st = FRCNN_ERR_IO;
    if (err == ENOSPC)
        st = FRCNN_ERR_NO_SPACE;
#ifdef EDQUOT
    if (err == EDQUOT)
        st = FRCNN_ERR_NO_SPACE;
#endif
    frcnn__error(w->ctx, st, "checkpoint '%s': %s failed: %s", w->tmp_path, what, strerror(err));
    return writer_kill(w, st);
}

static frcnn_status pwrite_all(frcnn__ckpt_writer *w, const void *data, size_t len, uint64_t off);

/* Appends data at the writer's offset (explicit offsets throughout, so the header patches cannot move it). */
static frcnn_status write_all(frcnn__ckpt_writer *w, const void *data, size_t len)
{
    frcnn_status st = pwrite_all(w, data, len, w->off);
    if (st == FRCNN_OK)
        w->off += len;
    return st;
}

/* Writes all of data at off, retrying on EINTR and short writes. */
static frcnn_status pwrite_all(frcnn__ckpt_writer *w, const void *data, size_t len, uint64_t off)
{
    const unsigned char *p = data;
    if (w->failed)
        return w->failed;
    while (len > 0) {
        ssize_t n = pwrite(w->fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return writer_errno(w, errno, "pwrite");
        if (n == 0)
            return writer_errno(w, EIO, "pwrite (no progress)");
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return FRCNN_OK;
}

static frcnn_status pad_to_64(frcnn__ckpt_writer *w)
{
    return write_all(w, zeros, (size_t)(align64(w->off) - w->off));
}

static frcnn_status write_file_header(frcnn__ckpt_writer *w)
{
    unsigned char h[HEADER_SIZE] = {0};
    memcpy(h, file_magic, 8);
    put16(h + 8, w->major);
    put16(h + 10, w->minor);
    put32(h + 12, HEADER_SIZE);
    put32(h + 16, 0);
    put32(h + 60, frcnn__crc32c_update(0, h, 60));
    return pwrite_all(w, h, sizeof h, 0);
}

frcnn_status frcnn__ckpt_writer_open(frcnn_ctx *ctx, const char *dir, const char *name, uint64_t expected_size,
                                     frcnn__ckpt_writer **out)
{
    frcnn__ckpt_writer *w = NULL;
    frcnn_status st;
    struct statvfs vfs;
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!out || !dir || !name)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "checkpoint writer: NULL argument");
    *out = NULL;
    if (!name[0] || strchr(name, '/') || strlen(name) + 5 > sizeof w->tmp_name)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "checkpoint name '%s' is empty, too long or contains '/'",
                            name);
    w = frcnn__alloc(ctx, sizeof *w);
    if (!w)
        return FRCNN_ERR_NO_MEMORY;
    memset(w, 0, sizeof *w);
    w->ctx = ctx;
    w->fd = -1;
    w->dirfd = -1;
    w->major = FRCNN__CKPT_MAJOR;
    w->minor = FRCNN__CKPT_MINOR;
    snprintf(w->tmp_name, sizeof w->tmp_name, "%s.tmp", name);
    snprintf(w->final_name, sizeof w->final_name, "%s", name);
    if ((size_t)snprintf(w->tmp_path, sizeof w->tmp_path, "%s/%s", dir, w->tmp_name) >= sizeof w->tmp_path) {
        st = frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "checkpoint directory path too long");
        goto fail;
    }
    w->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dirfd < 0) {
        st = frcnn__error(ctx, errno == ENOENT ? FRCNN_ERR_NOT_FOUND : FRCNN_ERR_IO,
                          "checkpoint directory '%s': %s", dir, strerror(errno));
        goto fail;
    }
    if (unlinkat(w->dirfd, w->tmp_name, 0) != 0 && errno != ENOENT) {
        st = frcnn__error(ctx, FRCNN_ERR_IO, "checkpoint '%s': cannot remove stale file: %s", w->tmp_path,
                          strerror(errno));
        goto fail;
    }
    w->fd = openat(w->dirfd, w->tmp_name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        st = writer_errno(w, errno, "create");
        goto fail;
    }
    if (fstatvfs(w->fd, &vfs) != 0) {
        st = writer_errno(w, errno, "fstatvfs");
        goto fail;
    }
    {
        uint64_t bsize = vfs.f_frsize ? (uint64_t)vfs.f_frsize : (uint64_t)vfs.f_bsize;
        uint64_t blocks = (uint64_t)vfs.f_bavail;
        uint64_t avail = (bsize && blocks > UINT64_MAX / bsize) ? UINT64_MAX : blocks * bsize;
        if (avail < expected_size) {
            st = frcnn__error(ctx, FRCNN_ERR_NO_SPACE,
                              "checkpoint '%s': needs about %llu bytes but only %llu bytes are free", w->tmp_path,
                              (unsigned long long)expected_size, (unsigned long long)avail);
            writer_kill(w, st);
            goto fail;
        }
    }
    st = write_file_header(w);
    if (st)
        goto fail;
    w->off = HEADER_SIZE;
    *out = w;
    return FRCNN_OK;
fail:
    writer_kill(w, st);
    if (w->dirfd >= 0)
        close(w->dirfd);
    frcnn__free(ctx, w, sizeof *w);
    return st;
}

frcnn_status frcnn__ckpt_writer_set_version(frcnn__ckpt_writer *w, uint16_t major, uint16_t minor)
{
    if (!w)
        return FRCNN_ERR_INVALID_ARG;
    w->major = major;
    w->minor = minor;
    return write_file_header(w);
}

frcnn_status frcnn__ckpt_begin_section(frcnn__ckpt_writer *w, const char *type, uint32_t flags)
{
    frcnn_status st;
    if (!w || !type)
        return FRCNN_ERR_INVALID_ARG;
    if (w->failed)
        return w->failed;
    if (w->in_section)
        return writer_kill(w, frcnn__error(w->ctx, FRCNN_ERR_STATE, "checkpoint '%s': sections do not nest",
                                           w->tmp_path));
    if ((st = pad_to_64(w)) != FRCNN_OK)
        return st;
    w->sec_hdr_off = w->off;
    if ((st = write_all(w, zeros, SECTION_HEADER_SIZE)) != FRCNN_OK)
        return st;
    memcpy(w->sec_type, type, 4);
    w->sec_flags = flags;
    w->sec_len = 0;
    w->sec_crc = 0;
    w->in_section = true;
    w->is_meta = memcmp(type, FRCNN__CKPT_META, 4) == 0;
    return FRCNN_OK;
}

/* The checksum of a large write is computed on a second thread while the first writes the same bytes: the save
 * then costs about the write alone. */
#define CRC_ON_THREAD_BYTES ((size_t)4 << 20)

typedef struct crc_job {
    uint32_t crc;
    const void *data;
    size_t len;
} crc_job;

static void *crc_thread(void *arg)
{
    crc_job *job = arg;
    job->crc = frcnn__crc32c_update(job->crc, job->data, job->len);
    return NULL;
}

frcnn_status frcnn__ckpt_write(frcnn__ckpt_writer *w, const void *data, size_t len)
{
    frcnn_status st;
    if (!w || (!data && len))
        return FRCNN_ERR_INVALID_ARG;
    if (w->failed)
        return w->failed;
    if (!w->in_section)
        return writer_kill(w, frcnn__error(w->ctx, FRCNN_ERR_STATE, "checkpoint '%s': write outside a section",
                                           w->tmp_path));
    crc_job job = {w->sec_crc, data, len};
    pthread_t tid;
    bool threaded = len >= CRC_ON_THREAD_BYTES && pthread_create(&tid, NULL, crc_thread, &job) == 0;
    st = write_all(w, data, len);
    if (threaded)
        pthread_join(tid, NULL);
    else
        crc_thread(&job);
    if (st != FRCNN_OK)
        return st;
    w->sec_crc = job.crc;
    w->sec_len += len;
    return FRCNN_OK;
}

frcnn_status frcnn__ckpt_end_section(frcnn__ckpt_writer *w)
{
    unsigned char h[SECTION_HEADER_SIZE] = {0};
    frcnn_status st;
    if (!w)
        return FRCNN_ERR_INVALID_ARG;
    if (w->failed)
        return w->failed;
    if (!w->in_section)
        return writer_kill(w, frcnn__error(w->ctx, FRCNN_ERR_STATE, "checkpoint '%s': no section to end",
                                           w->tmp_path));
    memcpy(h, w->sec_type, 4);
    put32(h + 4, w->sec_flags);
    put64(h + 8, w->sec_len);
    put32(h + 16, w->sec_crc);
    if ((st = pwrite_all(w, h, sizeof h, w->sec_hdr_off)) != FRCNN_OK)
        return st;
    w->headers_crc = frcnn__crc32c_update(w->headers_crc, h, sizeof h);
    w->nsections++;
    w->in_section = false;
    return FRCNN_OK;
}

frcnn_status frcnn__ckpt_write_tensor(frcnn__ckpt_writer *w, const char *name, uint32_t dtype, int ndim,
                                      const int64_t *dims, const void *data)
{
    unsigned char h[TENSOR_PREFIX_MAX] = {0};
    size_t esize = frcnn__ckpt_dtype_size(dtype), name_len, hdr_end, numel = 1, nbytes;
    frcnn_status st;
    if (!w || !name)
        return FRCNN_ERR_INVALID_ARG;
    if (w->failed)
        return w->failed;
    name_len = strlen(name);
    if (!esize || ndim < 0 || ndim > FRCNN__CKPT_MAX_DIMS || (ndim && !dims) || name_len == 0 ||
        name_len > FRCNN__CKPT_MAX_NAME)
        return frcnn__error(w->ctx, FRCNN_ERR_INVALID_ARG, "checkpoint tensor '%s': bad name, dtype or ndim",
                            name);
    for (int i = 0; i < ndim; i++)
        if (dims[i] < 1 || (uint64_t)dims[i] > MAX_DIM || !frcnn__mul_size(numel, (size_t)dims[i], &numel))
            return frcnn__error(w->ctx, FRCNN_ERR_INVALID_ARG, "checkpoint tensor '%s': bad dimension %d", name, i);
    if (!frcnn__mul_size(numel, esize, &nbytes))
        return frcnn__error(w->ctx, FRCNN_ERR_OVERFLOW, "checkpoint tensor '%s': size overflows", name);
    if (nbytes && !data)
        return frcnn__error(w->ctx, FRCNN_ERR_INVALID_ARG, "checkpoint tensor '%s': NULL data", name);
    put16(h, (uint16_t)name_len);
    memcpy(h + 2, name, name_len);
    put32(h + 2 + name_len, dtype);
    put32(h + 6 + name_len, (uint32_t)ndim);
    for (int i = 0; i < ndim; i++)
        put64(h + 10 + name_len + 8 * (size_t)i, (uint64_t)dims[i]);
    hdr_end = 10 + name_len + 8 * (size_t)ndim;
    if ((st = frcnn__ckpt_begin_section(w, FRCNN__CKPT_TENS, FRCNN__CKPT_FLAG_REQUIRED)) != FRCNN_OK)
        return st;
    if ((st = frcnn__ckpt_write(w, h, (size_t)align64(hdr_end))) != FRCNN_OK)
        return st;
    if (host_is_le() || esize == 1) {
        st = frcnn__ckpt_write(w, data, nbytes);
    } else {
        unsigned char chunk[4096];
        const unsigned char *p = data;
        for (size_t done = 0; done < nbytes && !st; done += sizeof chunk) {
            size_t n = nbytes - done < sizeof chunk ? nbytes - done : sizeof chunk;
            memcpy(chunk, p + done, n);
            swap_elems(chunk, n / esize, esize);
            st = frcnn__ckpt_write(w, chunk, n);
        }
    }
    if (st)
        return st;
    return frcnn__ckpt_end_section(w);
}

frcnn_status frcnn__ckpt_write_tensor_f32(frcnn__ckpt_writer *w, const char *name, int ndim, const int64_t *dims,
                                          const float *data)
{
    return frcnn__ckpt_write_tensor(w, name, FRCNN__DT_F32, ndim, dims, data);
}

/* One META record: key, type, then either an 8-byte value or a u64 length and the bytes. */
static frcnn_status kv_record(frcnn__ckpt_writer *w, const char *key, uint8_t type, const unsigned char *val8,
                              const void *data, size_t len)
{
    unsigned char h[2 + FRCNN__CKPT_MAX_NAME + 1 + 8];
    size_t key_len;
    frcnn_status st;
    if (!w || !key || (!data && len))
        return FRCNN_ERR_INVALID_ARG;
    if (w->failed)
        return w->failed;
    key_len = strlen(key);
    if (!w->in_section || !w->is_meta)
        return writer_kill(w, frcnn__error(w->ctx, FRCNN_ERR_STATE,
                                           "checkpoint '%s': key '%s' written outside a META section", w->tmp_path,
                                           key));
    if (key_len == 0 || key_len > FRCNN__CKPT_MAX_NAME)
        return frcnn__error(w->ctx, FRCNN_ERR_INVALID_ARG, "checkpoint key of length %zu (1..%d allowed)", key_len,
                            FRCNN__CKPT_MAX_NAME);
    put16(h, (uint16_t)key_len);
    memcpy(h + 2, key, key_len);
    h[2 + key_len] = type;
    if (val8)
        memcpy(h + 3 + key_len, val8, 8);
    else
        put64(h + 3 + key_len, (uint64_t)len);
    if ((st = frcnn__ckpt_write(w, h, 3 + key_len + 8)) != FRCNN_OK)
        return st;
    return val8 ? FRCNN_OK : frcnn__ckpt_write(w, data, len);
}

frcnn_status frcnn__ckpt_kv_u64(frcnn__ckpt_writer *w, const char *key, uint64_t v)
{
    unsigned char b[8];
    put64(b, v);
    return kv_record(w, key, FRCNN__KV_U64, b, NULL, 0);
}

frcnn_status frcnn__ckpt_kv_i64(frcnn__ckpt_writer *w, const char *key, int64_t v)
{
    unsigned char b[8];
    put64(b, (uint64_t)v);
    return kv_record(w, key, FRCNN__KV_I64, b, NULL, 0);
}

frcnn_status frcnn__ckpt_kv_f64(frcnn__ckpt_writer *w, const char *key, double v)
{
    unsigned char b[8];
    uint64_t bits;
    memcpy(&bits, &v, 8);
    put64(b, bits);
    return kv_record(w, key, FRCNN__KV_F64, b, NULL, 0);
}

frcnn_status frcnn__ckpt_kv_str(frcnn__ckpt_writer *w, const char *key, const char *s)
{
    if (!s)
        return w ? frcnn__error(w->ctx, FRCNN_ERR_INVALID_ARG, "checkpoint key '%s': NULL string",
                                key ? key : "") : FRCNN_ERR_INVALID_ARG;
    return kv_record(w, key, FRCNN__KV_STR, NULL, s, strlen(s));
}

frcnn_status frcnn__ckpt_kv_bytes(frcnn__ckpt_writer *w, const char *key, const void *data, size_t len)
{
    return kv_record(w, key, FRCNN__KV_BYTES, NULL, data, len);
}

static void writer_release(frcnn__ckpt_writer *w)
{
    if (w->dirfd >= 0)
        close(w->dirfd);
    frcnn__free(w->ctx, w, sizeof *w);
}

frcnn_status frcnn__ckpt_writer_finish(frcnn__ckpt_writer *w)
{
    unsigned char f[FOOTER_SIZE] = {0};
    frcnn_status st;
    int rc;
    if (!w)
        return FRCNN_ERR_INVALID_ARG;
    if ((st = w->failed) != FRCNN_OK)
        goto fail;
    if (w->in_section) {
        st = writer_kill(w, frcnn__error(w->ctx, FRCNN_ERR_STATE, "checkpoint '%s': finished inside a section",
                                         w->tmp_path));
        goto fail;
    }
    if ((st = pad_to_64(w)) != FRCNN_OK)
        goto fail;
    memcpy(f, footer_magic, 8);
    put64(f + 8, w->nsections);
    put64(f + 16, w->off + FOOTER_SIZE);
    put32(f + 24, w->headers_crc);
    put32(f + 60, frcnn__crc32c_update(0, f, 60));
    if ((st = write_all(w, f, sizeof f)) != FRCNN_OK)
        goto fail;
    while ((rc = fsync(w->fd)) != 0 && errno == EINTR) {
    }
    if (rc != 0) {
        st = writer_errno(w, errno, "fsync");
        goto fail;
    }
    rc = close(w->fd);
    w->fd = -1;
    if (rc != 0) {
        int err = errno;
        unlinkat(w->dirfd, w->tmp_name, 0);
        st = writer_errno(w, err, "close");
        goto fail;
    }
    if (renameat(w->dirfd, w->tmp_name, w->dirfd, w->final_name) != 0) {
        int err = errno;
        unlinkat(w->dirfd, w->tmp_name, 0);
        st = writer_errno(w, err, "rename to final name");
        goto fail;
    }
    while ((rc = fsync(w->dirfd)) != 0 && errno == EINTR) {
    }
    if (rc != 0 && errno != EINVAL) {
        /* The file is complete under its final name; only its durability is in doubt. */
        st = frcnn__error(w->ctx, FRCNN_ERR_IO, "checkpoint '%s': fsync of the directory failed: %s",
                          w->tmp_path, strerror(errno));
        goto fail;
    }
    writer_release(w);
    return FRCNN_OK;
fail:
    writer_release(w);
    return st;
}

void frcnn__ckpt_writer_abort(frcnn__ckpt_writer *w)
{
    if (!w)
        return;
    writer_kill(w, FRCNN_ERR_STATE);
    writer_release(w);
}

/* ----- reader ------------------------------------------------------------------------------------------------- */

enum { SEC_UNKNOWN = 0, SEC_TENS = 1, SEC_META = 2 };

typedef struct ckpt_section {
    unsigned char type[4];
    uint32_t flags;
    uint64_t hdr_off, pay_off, len;
    uint32_t crc;
    int kind;
    bool verified;
    /* TENS */
    char *name; /* name_len + 1 bytes */
    size_t name_len;
    uint32_t dtype;
    int ndim;
    int64_t dims[FRCNN__CKPT_MAX_DIMS];
    size_t numel, nbytes, data_off;
    /* META: the payload, loaded and verified at open */
    unsigned char *meta;
} ckpt_section;

typedef struct kv_ref {
    const unsigned char *key;
    size_t key_len;
    uint8_t type;
    const unsigned char *val;
    uint64_t val_len;
} kv_ref;

struct frcnn__ckpt_reader {
    frcnn_ctx *ctx;
    int fd;
    char *path;
    size_t path_size;
    uint64_t size;
    int major, minor;
    uint64_t nsec;
    ckpt_section *secs;
    size_t ntensors;
    ckpt_section **by_name; /* tensors sorted by name */
    size_t nkv;
    kv_ref *kv; /* sorted by key */
};

static frcnn_status rerr(frcnn__ckpt_reader *r, frcnn_status st, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static frcnn_status rerr(frcnn__ckpt_reader *r, frcnn_status st, const char *fmt, ...)
{
    char msg[FRCNN__ERROR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return frcnn__error(r->ctx, st, "checkpoint '%s': %s", r->path, msg);
}

static frcnn_status pread_all(frcnn__ckpt_reader *r, void *buf, size_t len, uint64_t off)
{
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = pread(r->fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return rerr(r, FRCNN_ERR_IO, "read at offset %llu failed: %s", (unsigned long long)off,
                        strerror(errno));
        if (n == 0)
            return rerr(r, FRCNN_ERR_IO, "file shrank while reading (offset %llu)", (unsigned long long)off);
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return FRCNN_OK;
}

static const char *sec_label(const ckpt_section *s, char *buf, size_t cap)
{
    if (s->kind == SEC_TENS && s->name)
        snprintf(buf, cap, "tensor '%s'", s->name);
    else
        snprintf(buf, cap, "section '%c%c%c%c'", s->type[0] >= 32 && s->type[0] < 127 ? s->type[0] : '?',
                 s->type[1] >= 32 && s->type[1] < 127 ? s->type[1] : '?',
                 s->type[2] >= 32 && s->type[2] < 127 ? s->type[2] : '?',
                 s->type[3] >= 32 && s->type[3] < 127 ? s->type[3] : '?');
    return buf;
}

static frcnn_status check_crc(frcnn__ckpt_reader *r, const ckpt_section *s, uint32_t got)
{
    char label[64];
    if (got == s->crc)
        return FRCNN_OK;
    return rerr(r, FRCNN_ERR_CHECKSUM, "%s at offset %llu: checksum mismatch (stored 0x%08x, computed 0x%08x)",
                sec_label(s, label, sizeof label), (unsigned long long)s->hdr_off, (unsigned)s->crc, (unsigned)got);
}

/* Streams a section's payload through the CRC and compares. */
static frcnn_status verify_section(frcnn__ckpt_reader *r, ckpt_section *s)
{
    unsigned char *buf = NULL;
    uint32_t crc = 0;
    frcnn_status st = FRCNN_OK;
    size_t cap = s->len < CHUNK ? (size_t)s->len : CHUNK;
    if (s->verified)
        return FRCNN_OK;
    if (cap) {
        buf = frcnn__alloc(r->ctx, cap);
        if (!buf)
            return FRCNN_ERR_NO_MEMORY;
    }
    for (uint64_t done = 0; done < s->len;) {
        size_t n = s->len - done < cap ? (size_t)(s->len - done) : cap;
        if ((st = pread_all(r, buf, n, s->pay_off + done)) != FRCNN_OK)
            goto fail;
        crc = frcnn__crc32c_update(crc, buf, n);
        done += n;
    }
    if ((st = check_crc(r, s, crc)) != FRCNN_OK)
        goto fail;
    s->verified = true;
fail:
    frcnn__free(r->ctx, buf, cap);
    return st;
}

static frcnn_status parse_tensor(frcnn__ckpt_reader *r, size_t idx, ckpt_section *s)
{
    unsigned char h[TENSOR_PREFIX_MAX];
    size_t have = s->len < TENSOR_PREFIX_MAX ? (size_t)s->len : TENSOR_PREFIX_MAX;
    size_t name_len, hdr_end, esize, data_off, total;
    uint32_t ndim;
    unsigned long long at = (unsigned long long)s->pay_off;
    frcnn_status st;
    if ((st = pread_all(r, h, have, s->pay_off)) != FRCNN_OK)
        return st;
    if (have < 2)
        return rerr(r, FRCNN_ERR_FORMAT, "tensor section %zu at offset %llu: payload of %zu bytes too short", idx,
                    at, have);
    name_len = get16(h);
    if (name_len == 0 || name_len > FRCNN__CKPT_MAX_NAME || 10 + name_len > have)
        return rerr(r, FRCNN_ERR_FORMAT, "tensor section %zu at offset %llu: bad name length %zu", idx, at,
                    name_len);
    if (memchr(h + 2, 0, name_len))
        return rerr(r, FRCNN_ERR_FORMAT, "tensor section %zu at offset %llu: NUL byte in name", idx, at);
    s->name = frcnn__alloc(r->ctx, name_len + 1);
    if (!s->name)
        return FRCNN_ERR_NO_MEMORY;
    memcpy(s->name, h + 2, name_len);
    s->name[name_len] = '\0';
    s->name_len = name_len;
    s->dtype = get32(h + 2 + name_len);
    ndim = get32(h + 6 + name_len);
    esize = frcnn__ckpt_dtype_size(s->dtype);
    if (!esize)
        return rerr(r, FRCNN_ERR_FORMAT, "tensor '%s' at offset %llu: unknown dtype %u", s->name, at,
                    (unsigned)s->dtype);
    if (ndim > FRCNN__CKPT_MAX_DIMS)
        return rerr(r, FRCNN_ERR_FORMAT, "tensor '%s' at offset %llu: ndim %u (at most %d)", s->name, at,
                    (unsigned)ndim, FRCNN__CKPT_MAX_DIMS);
    hdr_end = 10 + name_len + 8 * (size_t)ndim;
    if (hdr_end > have)
        return rerr(r, FRCNN_ERR_FORMAT, "tensor '%s' at offset %llu: dims run past the section", s->name, at);
    s->ndim = (int)ndim;
    s->numel = 1;
    for (uint32_t i = 0; i < ndim; i++) {
        uint64_t d = get64(h + 10 + name_len + 8 * (size_t)i);
        if (d < 1 || d > MAX_DIM || d > SIZE_MAX || !frcnn__mul_size(s->numel, (size_t)d, &s->numel))
            return rerr(r, FRCNN_ERR_FORMAT, "tensor '%s' at offset %llu: dimension %u = %llu is invalid or the "
                        "element count overflows", s->name, at, (unsigned)i, (unsigned long long)d);
        s->dims[i] = (int64_t)d;
    }
    data_off = (size_t)align64(hdr_end);
    if (!frcnn__mul_size(s->numel, esize, &s->nbytes) || !frcnn__add_size(data_off, s->nbytes, &total))
        return rerr(r, FRCNN_ERR_FORMAT, "tensor '%s' at offset %llu: byte size overflows", s->name, at);
    if ((uint64_t)total != s->len)
        return rerr(r, FRCNN_ERR_FORMAT, "tensor '%s' at offset %llu: payload is %llu bytes, its header and "
                    "dims need %zu", s->name, at, (unsigned long long)s->len, total);
    if (!all_zero(h + hdr_end, data_off - hdr_end))
        return rerr(r, FRCNN_ERR_FORMAT, "tensor '%s' at offset %llu: nonzero padding before the data", s->name,
                    at);
    s->data_off = data_off;
    return FRCNN_OK;
}

/* Validates a META payload; counts its records into *count and, when refs is not NULL, fills refs. */
static frcnn_status walk_meta(frcnn__ckpt_reader *r, const ckpt_section *s, kv_ref *refs, size_t *count)
{
    const unsigned char *p = s->meta;
    uint64_t pos = 0, len = s->len;
    size_t n = 0;
    while (pos < len) {
        kv_ref k;
        unsigned long long at = (unsigned long long)(s->pay_off + pos);
        if (len - pos < 2)
            return rerr(r, FRCNN_ERR_FORMAT, "META record at offset %llu: truncated", at);
        k.key_len = get16(p + pos);
        if (k.key_len == 0 || k.key_len > FRCNN__CKPT_MAX_NAME || len - pos - 2 < k.key_len + 9)
            return rerr(r, FRCNN_ERR_FORMAT, "META record at offset %llu: bad key length %zu", at, k.key_len);
        k.key = p + pos + 2;
        if (memchr(k.key, 0, k.key_len))
            return rerr(r, FRCNN_ERR_FORMAT, "META record at offset %llu: NUL byte in key", at);
        k.type = p[pos + 2 + k.key_len];
        pos += 3 + k.key_len;
        switch (k.type) {
        case FRCNN__KV_U64:
        case FRCNN__KV_I64:
        case FRCNN__KV_F64:
            k.val = p + pos;
            k.val_len = 8;
            pos += 8;
            break;
        case FRCNN__KV_STR:
        case FRCNN__KV_BYTES:
            k.val_len = get64(p + pos);
            pos += 8;
            if (k.val_len > len - pos)
                return rerr(r, FRCNN_ERR_FORMAT, "META record at offset %llu: value length %llu runs past the "
                            "section", at, (unsigned long long)k.val_len);
            k.val = p + pos;
            pos += k.val_len;
            break;
        default:
            return rerr(r, FRCNN_ERR_FORMAT, "META record at offset %llu: unknown type %u", at, (unsigned)k.type);
        }
        if (refs)
            refs[n] = k;
        n++;
    }
    *count = n;
    return FRCNN_OK;
}

static int cmp_names(const unsigned char *a, size_t an, const unsigned char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an < bn ? -1 : an > bn);
}

static int cmp_tensor(const void *a, const void *b)
{
    const ckpt_section *x = *(const ckpt_section *const *)a, *y = *(const ckpt_section *const *)b;
    return cmp_names((const unsigned char *)x->name, x->name_len, (const unsigned char *)y->name, y->name_len);
}

static int cmp_kv(const void *a, const void *b)
{
    const kv_ref *x = a, *y = b;
    return cmp_names(x->key, x->key_len, y->key, y->key_len);
}

static frcnn_status load_meta(frcnn__ckpt_reader *r, ckpt_section *s, size_t *count)
{
    frcnn_status st;
    uint32_t crc;
    if (s->len > FRCNN__CKPT_MAX_META)
        return rerr(r, FRCNN_ERR_FORMAT, "META section at offset %llu: %llu bytes (at most %llu)",
                    (unsigned long long)s->hdr_off, (unsigned long long)s->len,
                    (unsigned long long)FRCNN__CKPT_MAX_META);
    if (s->len) {
        s->meta = frcnn__alloc(r->ctx, (size_t)s->len);
        if (!s->meta)
            return FRCNN_ERR_NO_MEMORY;
        if ((st = pread_all(r, s->meta, (size_t)s->len, s->pay_off)) != FRCNN_OK)
            return st;
    }
    crc = frcnn__crc32c_update(0, s->meta, (size_t)s->len);
    if ((st = check_crc(r, s, crc)) != FRCNN_OK)
        return st;
    s->verified = true;
    return walk_meta(r, s, NULL, count);
}

void frcnn__ckpt_reader_close(frcnn__ckpt_reader *r)
{
    frcnn_ctx *ctx;
    if (!r)
        return;
    ctx = r->ctx;
    for (uint64_t i = 0; r->secs && i < r->nsec; i++) {
        frcnn__free(ctx, r->secs[i].name, r->secs[i].name_len + 1);
        frcnn__free(ctx, r->secs[i].meta, (size_t)r->secs[i].len);
    }
    frcnn__free(ctx, r->secs, (size_t)r->nsec * sizeof *r->secs);
    frcnn__free(ctx, r->by_name, r->ntensors * sizeof *r->by_name);
    frcnn__free(ctx, r->kv, r->nkv * sizeof *r->kv);
    if (r->fd >= 0)
        close(r->fd);
    frcnn__free(ctx, r->path, r->path_size);
    frcnn__free(ctx, r, sizeof *r);
}

/* Steps 4-7 of the spec's validation, once header and footer are good. */
static frcnn_status read_sections(frcnn__ckpt_reader *r, uint64_t header_size, uint32_t headers_crc)
{
    const uint64_t footer_off = r->size - FOOTER_SIZE;
    uint64_t off = header_size;
    uint32_t hcrc = 0;
    size_t nkv = 0, t = 0, k = 0;
    frcnn_status st;
    for (uint64_t i = 0; i < r->nsec; i++) {
        unsigned char h[SECTION_HEADER_SIZE], pad[64];
        ckpt_section *s = &r->secs[i];
        uint64_t end, next;
        if (footer_off - off < SECTION_HEADER_SIZE)
            return rerr(r, FRCNN_ERR_FORMAT, "section %llu header at offset %llu runs into the footer at %llu",
                        (unsigned long long)i, (unsigned long long)off, (unsigned long long)footer_off);
        if ((st = pread_all(r, h, sizeof h, off)) != FRCNN_OK)
            return st;
        hcrc = frcnn__crc32c_update(hcrc, h, sizeof h);
        memcpy(s->type, h, 4);
        s->flags = get32(h + 4);
        s->len = get64(h + 8);
        s->crc = get32(h + 16);
        s->hdr_off = off;
        s->pay_off = off + SECTION_HEADER_SIZE;
        if (s->len > footer_off - s->pay_off)
            return rerr(r, FRCNN_ERR_FORMAT, "section %llu at offset %llu: payload length %llu runs past the "
                        "footer at %llu", (unsigned long long)i, (unsigned long long)off,
                        (unsigned long long)s->len, (unsigned long long)footer_off);
        end = s->pay_off + s->len;
        next = align64(end);
        if (next > footer_off)
            return rerr(r, FRCNN_ERR_FORMAT, "section %llu at offset %llu: padding runs past the footer",
                        (unsigned long long)i, (unsigned long long)off);
        if ((st = pread_all(r, pad, (size_t)(next - end), end)) != FRCNN_OK)
            return st;
        if (!all_zero(pad, (size_t)(next - end)))
            return rerr(r, FRCNN_ERR_FORMAT, "section %llu: nonzero padding at offset %llu", (unsigned long long)i,
                        (unsigned long long)end);
        off = next;
    }
    if (off != footer_off)
        return rerr(r, FRCNN_ERR_FORMAT, "%llu unaccounted bytes between the last section (ends at %llu) and "
                    "the footer", (unsigned long long)(footer_off - off), (unsigned long long)off);
    if (hcrc != headers_crc)
        return rerr(r, FRCNN_ERR_CHECKSUM, "section headers checksum mismatch (stored 0x%08x, computed 0x%08x)",
                    (unsigned)headers_crc, (unsigned)hcrc);
    for (uint64_t i = 0; i < r->nsec; i++) {
        ckpt_section *s = &r->secs[i];
        char label[64];
        if (memcmp(s->type, FRCNN__CKPT_TENS, 4) == 0) {
            s->kind = SEC_TENS;
            if ((st = parse_tensor(r, (size_t)i, s)) != FRCNN_OK)
                return st;
            r->ntensors++;
        } else if (memcmp(s->type, FRCNN__CKPT_META, 4) == 0) {
            size_t n;
            s->kind = SEC_META;
            if ((st = load_meta(r, s, &n)) != FRCNN_OK)
                return st;
            nkv += n; /* records are at least 12 bytes, so this cannot overflow */
        } else if (s->flags & FRCNN__CKPT_FLAG_REQUIRED) {
            return rerr(r, FRCNN_ERR_VERSION, "%s at offset %llu is required but unknown to this library (format "
                        "%d.%d, file %d.%d)", sec_label(s, label, sizeof label), (unsigned long long)s->hdr_off,
                        FRCNN__CKPT_MAJOR, FRCNN__CKPT_MINOR, r->major, r->minor);
        }
    }
    if (r->ntensors) {
        r->by_name = frcnn__alloc(r->ctx, r->ntensors * sizeof *r->by_name);
        if (!r->by_name)
            return FRCNN_ERR_NO_MEMORY;
        for (uint64_t i = 0; i < r->nsec; i++)
            if (r->secs[i].kind == SEC_TENS)
                r->by_name[t++] = &r->secs[i];
        qsort(r->by_name, r->ntensors, sizeof *r->by_name, cmp_tensor);
        for (size_t i = 1; i < r->ntensors; i++)
            if (cmp_tensor(&r->by_name[i - 1], &r->by_name[i]) == 0)
                return rerr(r, FRCNN_ERR_FORMAT, "tensor '%s' appears twice", r->by_name[i]->name);
    }
    if (nkv) {
        r->kv = frcnn__alloc(r->ctx, nkv * sizeof *r->kv);
        if (!r->kv)
            return FRCNN_ERR_NO_MEMORY;
        r->nkv = nkv;
        for (uint64_t i = 0; i < r->nsec; i++) {
            size_t n;
            if (r->secs[i].kind != SEC_META)
                continue;
            if ((st = walk_meta(r, &r->secs[i], r->kv + k, &n)) != FRCNN_OK)
                return st;
            k += n;
        }
        qsort(r->kv, r->nkv, sizeof *r->kv, cmp_kv);
        for (size_t i = 1; i < r->nkv; i++)
            if (cmp_kv(&r->kv[i - 1], &r->kv[i]) == 0)
                return rerr(r, FRCNN_ERR_FORMAT, "key '%.*s' appears twice", (int)r->kv[i].key_len,
                            (const char *)r->kv[i].key);
    }
    return FRCNN_OK;
}

frcnn_status frcnn__ckpt_reader_open(frcnn_ctx *ctx, const char *path, frcnn__ckpt_reader **out)
{
    frcnn__ckpt_reader *r = NULL;
    unsigned char h[MAX_HEADER_SIZE], f[FOOTER_SIZE];
    uint32_t header_size, headers_crc;
    uint64_t nsec, file_len;
    struct stat sb;
    frcnn_status st;
    if (!ctx)
        return FRCNN_ERR_INVALID_ARG;
    if (!out || !path)
        return frcnn__error(ctx, FRCNN_ERR_INVALID_ARG, "checkpoint reader: NULL argument");
    *out = NULL;
    r = frcnn__alloc(ctx, sizeof *r);
    if (!r)
        return FRCNN_ERR_NO_MEMORY;
    memset(r, 0, sizeof *r);
    r->ctx = ctx;
    r->fd = -1;
    r->path_size = strlen(path) + 1;
    r->path = frcnn__alloc(ctx, r->path_size);
    if (!r->path) {
        st = FRCNN_ERR_NO_MEMORY;
        goto fail;
    }
    memcpy(r->path, path, r->path_size);
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        st = rerr(r, errno == ENOENT ? FRCNN_ERR_NOT_FOUND : FRCNN_ERR_IO, "cannot open: %s", strerror(errno));
        goto fail;
    }
    if (fstat(r->fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = rerr(r, FRCNN_ERR_IO, "not a readable regular file");
        goto fail;
    }
    r->size = (uint64_t)sb.st_size;
    if (r->size < HEADER_SIZE + FOOTER_SIZE) {
        st = rerr(r, FRCNN_ERR_FORMAT, "file is %llu bytes, a checkpoint has at least %u (empty or truncated)",
                  (unsigned long long)r->size, HEADER_SIZE + FOOTER_SIZE);
        goto fail;
    }
    /* header */
    if ((st = pread_all(r, h, HEADER_SIZE, 0)) != FRCNN_OK)
        goto fail;
    if (memcmp(h, file_magic, 8) != 0) {
        st = rerr(r, FRCNN_ERR_FORMAT, "not a libfrcnn checkpoint (bad magic at offset 0)");
        goto fail;
    }
    header_size = get32(h + 12);
    if (header_size < HEADER_SIZE || header_size > MAX_HEADER_SIZE || header_size % 64 != 0 ||
        header_size > r->size - FOOTER_SIZE) {
        st = rerr(r, FRCNN_ERR_FORMAT, "bad header size %u at offset 12", (unsigned)header_size);
        goto fail;
    }
    if ((st = pread_all(r, h, header_size, 0)) != FRCNN_OK)
        goto fail;
    if (frcnn__crc32c_update(0, h, header_size - 4) != get32(h + header_size - 4)) {
        st = rerr(r, FRCNN_ERR_CHECKSUM, "file header checksum mismatch (offset 0..%u)", (unsigned)header_size);
        goto fail;
    }
    r->major = get16(h + 8);
    r->minor = get16(h + 10);
    if (r->major != FRCNN__CKPT_MAJOR) {
        st = rerr(r, r->major == 0 ? FRCNN_ERR_FORMAT : FRCNN_ERR_VERSION,
                  "file format %d.%d, this library reads %d.x (up to %d.%d)", r->major, r->minor, FRCNN__CKPT_MAJOR,
                  FRCNN__CKPT_MAJOR, FRCNN__CKPT_MINOR);
        goto fail;
    }
    /* footer */
    if ((st = pread_all(r, f, FOOTER_SIZE, r->size - FOOTER_SIZE)) != FRCNN_OK)
        goto fail;
    if (memcmp(f, footer_magic, 8) != 0) {
        st = rerr(r, FRCNN_ERR_FORMAT, "no valid footer at offset %llu: the file is incomplete (truncated or an "
                  "interrupted save)", (unsigned long long)(r->size - FOOTER_SIZE));
        goto fail;
    }
    if (frcnn__crc32c_update(0, f, 60) != get32(f + 60)) {
        st = rerr(r, FRCNN_ERR_CHECKSUM, "footer checksum mismatch (offset %llu)",
                  (unsigned long long)(r->size - FOOTER_SIZE));
        goto fail;
    }
    nsec = get64(f + 8);
    file_len = get64(f + 16);
    headers_crc = get32(f + 24);
    if (file_len != r->size) {
        st = rerr(r, FRCNN_ERR_FORMAT, "footer records a file length of %llu bytes, the file has %llu",
                  (unsigned long long)file_len, (unsigned long long)r->size);
        goto fail;
    }
    if (!all_zero(f + 28, 32)) {
        st = rerr(r, FRCNN_ERR_FORMAT, "nonzero reserved bytes in the footer");
        goto fail;
    }
    if (nsec > (r->size - header_size - FOOTER_SIZE) / SECTION_HEADER_SIZE) {
        st = rerr(r, FRCNN_ERR_FORMAT, "footer records %llu sections, impossible in %llu bytes",
                  (unsigned long long)nsec, (unsigned long long)r->size);
        goto fail;
    }
    r->nsec = nsec;
    if (nsec) {
        r->secs = frcnn__alloc(ctx, (size_t)nsec * sizeof *r->secs); /* nsec <= size / 64: no overflow */
        if (!r->secs) {
            r->nsec = 0;
            st = FRCNN_ERR_NO_MEMORY;
            goto fail;
        }
        memset(r->secs, 0, (size_t)nsec * sizeof *r->secs);
    }
    if ((st = read_sections(r, header_size, headers_crc)) != FRCNN_OK)
        goto fail;
    *out = r;
    return FRCNN_OK;
fail:
    frcnn__ckpt_reader_close(r);
    return st;
}

frcnn_status frcnn__ckpt_reader_verify_all(frcnn__ckpt_reader *r)
{
    if (!r)
        return FRCNN_ERR_INVALID_ARG;
    for (uint64_t i = 0; i < r->nsec; i++) {
        frcnn_status st = verify_section(r, &r->secs[i]);
        if (st)
            return st;
    }
    return FRCNN_OK;
}

void frcnn__ckpt_reader_version(const frcnn__ckpt_reader *r, int *major, int *minor)
{
    if (major)
        *major = r ? r->major : 0;
    if (minor)
        *minor = r ? r->minor : 0;
}

size_t frcnn__ckpt_tensor_count(const frcnn__ckpt_reader *r)
{
    return r ? r->ntensors : 0;
}

static void fill_info(const ckpt_section *s, frcnn__ckpt_tensor_info *info)
{
    memset(info, 0, sizeof *info);
    info->name = s->name;
    info->dtype = s->dtype;
    info->ndim = s->ndim;
    memcpy(info->dims, s->dims, sizeof info->dims);
    info->numel = s->numel;
    info->nbytes = s->nbytes;
}

frcnn_status frcnn__ckpt_tensor_at(frcnn__ckpt_reader *r, size_t i, frcnn__ckpt_tensor_info *info)
{
    if (!r || !info)
        return FRCNN_ERR_INVALID_ARG;
    for (uint64_t k = 0; k < r->nsec; k++)
        if (r->secs[k].kind == SEC_TENS && i-- == 0) {
            fill_info(&r->secs[k], info);
            return FRCNN_OK;
        }
    return rerr(r, FRCNN_ERR_INVALID_ARG, "tensor index out of range (%zu tensors)", r->ntensors);
}

static ckpt_section *find_tensor(frcnn__ckpt_reader *r, const char *name)
{
    ckpt_section key, *pkey = &key, **hit;
    if (!r->ntensors)
        return NULL;
    key.name = (char *)(uintptr_t)name;
    key.name_len = strlen(name);
    hit = bsearch(&pkey, r->by_name, r->ntensors, sizeof *r->by_name, cmp_tensor);
    return hit ? *hit : NULL;
}

frcnn_status frcnn__ckpt_tensor_find(frcnn__ckpt_reader *r, const char *name, frcnn__ckpt_tensor_info *info)
{
    ckpt_section *s;
    if (!r || !name || !info)
        return r ? frcnn__error(r->ctx, FRCNN_ERR_INVALID_ARG, "checkpoint tensor lookup: NULL argument")
                 : FRCNN_ERR_INVALID_ARG;
    if (!(s = find_tensor(r, name)))
        return rerr(r, FRCNN_ERR_NOT_FOUND, "no tensor named '%s'", name);
    fill_info(s, info);
    return FRCNN_OK;
}

frcnn_status frcnn__ckpt_read_tensor(frcnn__ckpt_reader *r, const char *name, void *buf, size_t buf_bytes)
{
    unsigned char h[TENSOR_PREFIX_MAX];
    ckpt_section *s;
    uint32_t crc;
    frcnn_status st;
    if (!r || !name || (!buf && buf_bytes))
        return r ? frcnn__error(r->ctx, FRCNN_ERR_INVALID_ARG, "checkpoint tensor read: NULL argument")
                 : FRCNN_ERR_INVALID_ARG;
    if (!(s = find_tensor(r, name)))
        return rerr(r, FRCNN_ERR_NOT_FOUND, "no tensor named '%s'", name);
    if (buf_bytes != s->nbytes)
        return rerr(r, FRCNN_ERR_INVALID_ARG, "tensor '%s' has %zu bytes, buffer has %zu", name, s->nbytes,
                    buf_bytes);
    if ((st = pread_all(r, h, s->data_off, s->pay_off)) != FRCNN_OK)
        return st;
    crc = frcnn__crc32c_update(0, h, s->data_off);
    if ((st = pread_all(r, buf, s->nbytes, s->pay_off + s->data_off)) != FRCNN_OK)
        return st;
    crc = frcnn__crc32c_update(crc, buf, s->nbytes);
    if ((st = check_crc(r, s, crc)) != FRCNN_OK)
        return st;
    s->verified = true;
    if (!host_is_le())
        swap_elems(buf, s->numel, frcnn__ckpt_dtype_size(s->dtype));
    return FRCNN_OK;
}

static const char *kv_type_name(uint8_t t)
{
    switch (t) {
    case FRCNN__KV_U64: return "u64";
    case FRCNN__KV_I64: return "i64";
    case FRCNN__KV_F64: return "f64";
    case FRCNN__KV_STR: return "string";
    case FRCNN__KV_BYTES: return "bytes";
    default: return "?";
    }
}

size_t frcnn__ckpt_kv_count(const frcnn__ckpt_reader *r)
{
    return r ? r->nkv : 0;
}

frcnn_status frcnn__ckpt_kv_key(const frcnn__ckpt_reader *r, size_t i, char *buf, size_t cap)
{
    if (!r || !buf || i >= r->nkv || cap <= r->kv[i].key_len)
        return FRCNN_ERR_INVALID_ARG;
    memcpy(buf, r->kv[i].key, r->kv[i].key_len);
    buf[r->kv[i].key_len] = '\0';
    return FRCNN_OK;
}

static frcnn_status find_kv(frcnn__ckpt_reader *r, const char *key, uint8_t type, const kv_ref **out)
{
    kv_ref probe;
    const kv_ref *hit = NULL;
    if (!r || !key)
        return r ? frcnn__error(r->ctx, FRCNN_ERR_INVALID_ARG, "checkpoint key lookup: NULL argument")
                 : FRCNN_ERR_INVALID_ARG;
    probe.key = (const unsigned char *)key;
    probe.key_len = strlen(key);
    if (r->nkv)
        hit = bsearch(&probe, r->kv, r->nkv, sizeof *r->kv, cmp_kv);
    if (!hit)
        return rerr(r, FRCNN_ERR_NOT_FOUND, "no key named '%s'", key);
    if (hit->type != type)
        return rerr(r, FRCNN_ERR_MISMATCH, "key '%s' holds a %s, asked for a %s", key, kv_type_name(hit->type),
                    kv_type_name(type));
    *out = hit;
    return FRCNN_OK;
}

frcnn_status frcnn__ckpt_get_u64(frcnn__ckpt_reader *r, const char *key, uint64_t *v)
{
    const kv_ref *k;
    frcnn_status st = find_kv(r, key, FRCNN__KV_U64, &k);
    if (!st && v)
        *v = get64(k->val);
    return st;
}

frcnn_status frcnn__ckpt_get_i64(frcnn__ckpt_reader *r, const char *key, int64_t *v)
{
    const kv_ref *k;
    frcnn_status st = find_kv(r, key, FRCNN__KV_I64, &k);
    if (!st && v)
        *v = (int64_t)get64(k->val);
    return st;
}

frcnn_status frcnn__ckpt_get_f64(frcnn__ckpt_reader *r, const char *key, double *v)
{
    const kv_ref *k;
    frcnn_status st = find_kv(r, key, FRCNN__KV_F64, &k);
    if (!st && v) {
        uint64_t bits = get64(k->val);
        memcpy(v, &bits, 8);
    }
    return st;
}

frcnn_status frcnn__ckpt_get_str(frcnn__ckpt_reader *r, const char *key, char *buf, size_t cap, size_t *len)
{
    const kv_ref *k;
    frcnn_status st = find_kv(r, key, FRCNN__KV_STR, &k);
    if (st)
        return st;
    if (!buf || k->val_len >= cap)
        return rerr(r, FRCNN_ERR_INVALID_ARG, "key '%s': string of %llu bytes does not fit a buffer of %zu", key,
                    (unsigned long long)k->val_len, cap);
    memcpy(buf, k->val, (size_t)k->val_len);
    buf[k->val_len] = '\0';
    if (len)
        *len = (size_t)k->val_len;
    return FRCNN_OK;
}

frcnn_status frcnn__ckpt_get_bytes(frcnn__ckpt_reader *r, const char *key, void *buf, size_t cap, size_t *len)
{
    const kv_ref *k;
    frcnn_status st = find_kv(r, key, FRCNN__KV_BYTES, &k);
    if (st)
        return st;
    if (len)
        *len = (size_t)k->val_len;
    if (!buf)
        return FRCNN_OK;
    if (k->val_len > cap)
        return rerr(r, FRCNN_ERR_INVALID_ARG, "key '%s': %llu bytes do not fit a buffer of %zu", key,
                    (unsigned long long)k->val_len, cap);
    if (k->val_len)
        memcpy(buf, k->val, (size_t)k->val_len);
    return FRCNN_OK;
}
