/* The checkpoint container (docs/checkpoint-format.md, format 1.0): a streaming writer that saves atomically
 * (NAME.tmp, fsync, rename, fsync dir) and a validating reader with tensors found by name and key/value records.
 * Internal; the model/optimizer/sampler checkpoint API is built on it. */
#ifndef FRCNN_CKPT_IO_H
#define FRCNN_CKPT_IO_H

#include "internal.h"

#define FRCNN__CKPT_MAJOR 1
#define FRCNN__CKPT_MINOR 0
#define FRCNN__CKPT_MAX_DIMS 8
#define FRCNN__CKPT_MAX_NAME 1024
#define FRCNN__CKPT_MAX_META ((uint64_t)64 << 20)
#define FRCNN__CKPT_FLAG_REQUIRED 1u

/* Section type tags, 4 ASCII bytes. */
#define FRCNN__CKPT_TENS "TENS"
#define FRCNN__CKPT_META "META"

typedef enum frcnn__ckpt_dtype {
    FRCNN__DT_F32 = 0,
    FRCNN__DT_F64 = 1,
    FRCNN__DT_I32 = 2,
    FRCNN__DT_I64 = 3,
    FRCNN__DT_U8 = 4,
    FRCNN__DT_U64 = 5
} frcnn__ckpt_dtype;

typedef enum frcnn__ckpt_kv_type {
    FRCNN__KV_U64 = 1,
    FRCNN__KV_I64 = 2,
    FRCNN__KV_F64 = 3,
    FRCNN__KV_STR = 4,
    FRCNN__KV_BYTES = 5
} frcnn__ckpt_kv_type;

/* Bytes per element of a dtype, 0 for an unknown one. */
size_t frcnn__ckpt_dtype_size(uint32_t dtype);

/* ----- writer ----------------------------------------------------------------------------------------------- */

typedef struct frcnn__ckpt_writer frcnn__ckpt_writer;

/* Starts saving `<dir>/<name>`: removes a stale `<dir>/<name>.tmp`, creates it exclusively, checks that the file
 * system has at least expected_size free bytes (FRCNN_ERR_NO_SPACE otherwise, nothing left behind) and writes the
 * file header. name must be non-empty without '/'. On success *out owns a writer that must be passed to exactly one
 * of frcnn__ckpt_writer_finish or frcnn__ckpt_writer_abort. Nothing exists under the final name until finish. */
frcnn_status frcnn__ckpt_writer_open(frcnn_ctx *ctx, const char *dir, const char *name, uint64_t expected_size,
                                     frcnn__ckpt_writer **out);

/* For compatibility tests only: the version written into the header. Call right after open. */
frcnn_status frcnn__ckpt_writer_set_version(frcnn__ckpt_writer *w, uint16_t major, uint16_t minor);

/* Sections. type is 4 bytes (not NUL-terminated necessarily); flags as in the spec (FRCNN__CKPT_FLAG_REQUIRED).
 * The header is written zeroed and patched by end_section with the payload's length and CRC. Sections do not
 * nest. After any error the writer is dead: the .tmp is already removed and every later call returns the same
 * status; still finish or abort it to free it. */
frcnn_status frcnn__ckpt_begin_section(frcnn__ckpt_writer *w, const char *type, uint32_t flags);
frcnn_status frcnn__ckpt_write(frcnn__ckpt_writer *w, const void *data, size_t len);
frcnn_status frcnn__ckpt_end_section(frcnn__ckpt_writer *w);

/* A whole TENS section: name, dtype, dims (ndim <= 8, each >= 1) and numel * elem_size bytes of data in host byte
 * order (converted to little-endian while streaming). Must be called outside a section. */
frcnn_status frcnn__ckpt_write_tensor(frcnn__ckpt_writer *w, const char *name, uint32_t dtype, int ndim,
                                      const int64_t *dims, const void *data);
frcnn_status frcnn__ckpt_write_tensor_f32(frcnn__ckpt_writer *w, const char *name, int ndim, const int64_t *dims,
                                          const float *data);

/* Key/value records, only inside a section begun with type FRCNN__CKPT_META. */
frcnn_status frcnn__ckpt_kv_u64(frcnn__ckpt_writer *w, const char *key, uint64_t v);
frcnn_status frcnn__ckpt_kv_i64(frcnn__ckpt_writer *w, const char *key, int64_t v);
frcnn_status frcnn__ckpt_kv_f64(frcnn__ckpt_writer *w, const char *key, double v);
frcnn_status frcnn__ckpt_kv_str(frcnn__ckpt_writer *w, const char *key, const char *s);
frcnn_status frcnn__ckpt_kv_bytes(frcnn__ckpt_writer *w, const char *key, const void *data, size_t len);

/* Writes the footer, fsyncs and closes the file, renames it to the final name and fsyncs the directory. Frees w
 * whatever happens. On failure before the rename the .tmp is removed and an older file of the final name is
 * untouched. Fails with FRCNN_ERR_STATE when a section is still open (and removes the .tmp). */
frcnn_status frcnn__ckpt_writer_finish(frcnn__ckpt_writer *w);

/* Gives up: closes and removes the .tmp, frees w. NULL is a no-op. */
void frcnn__ckpt_writer_abort(frcnn__ckpt_writer *w);

/* ----- reader ----------------------------------------------------------------------------------------------- */

typedef struct frcnn__ckpt_reader frcnn__ckpt_reader;

typedef struct frcnn__ckpt_tensor_info {
    const char *name; /* lives as long as the reader */
    uint32_t dtype;
    int ndim;
    int64_t dims[FRCNN__CKPT_MAX_DIMS];
    size_t numel;
    size_t nbytes;    /* numel * elem_size */
} frcnn__ckpt_tensor_info;

/* Opens and validates a checkpoint: header, footer, the whole section table, every tensor header and every META
 * section (CRC included). Tensor data CRCs are checked when a tensor is read, or all at once by verify_all.
 * On success *out owns a reader to close with frcnn__ckpt_reader_close. */
frcnn_status frcnn__ckpt_reader_open(frcnn_ctx *ctx, const char *path, frcnn__ckpt_reader **out);
void frcnn__ckpt_reader_close(frcnn__ckpt_reader *r);

/* Verifies the payload CRC of every section (skipped unknown ones included). */
frcnn_status frcnn__ckpt_reader_verify_all(frcnn__ckpt_reader *r);

void frcnn__ckpt_reader_version(const frcnn__ckpt_reader *r, int *major, int *minor);
size_t frcnn__ckpt_tensor_count(const frcnn__ckpt_reader *r);
/* The i-th tensor in file order (i < count). */
frcnn_status frcnn__ckpt_tensor_at(frcnn__ckpt_reader *r, size_t i, frcnn__ckpt_tensor_info *info);
/* FRCNN_ERR_NOT_FOUND when no tensor has this name. */
frcnn_status frcnn__ckpt_tensor_find(frcnn__ckpt_reader *r, const char *name, frcnn__ckpt_tensor_info *info);
/* Reads the tensor's data (host byte order) into buf, which must hold exactly info.nbytes (else
 * FRCNN_ERR_INVALID_ARG), verifying the section CRC (FRCNN_ERR_CHECKSUM; buf contents are then unspecified). */
frcnn_status frcnn__ckpt_read_tensor(frcnn__ckpt_reader *r, const char *name, void *buf, size_t buf_bytes);

/* The META keys, in ascending byte order: kv_key copies key i (< kv_count) with a NUL into buf (cap bytes, more
 * than FRCNN__CKPT_MAX_NAME suffice); FRCNN_ERR_INVALID_ARG when i or cap is too small. */
size_t frcnn__ckpt_kv_count(const frcnn__ckpt_reader *r);
frcnn_status frcnn__ckpt_kv_key(const frcnn__ckpt_reader *r, size_t i, char *buf, size_t cap);

/* Key/value lookups. FRCNN_ERR_NOT_FOUND for a missing key, FRCNN_ERR_MISMATCH when the stored type differs. */
frcnn_status frcnn__ckpt_get_u64(frcnn__ckpt_reader *r, const char *key, uint64_t *v);
frcnn_status frcnn__ckpt_get_i64(frcnn__ckpt_reader *r, const char *key, int64_t *v);
frcnn_status frcnn__ckpt_get_f64(frcnn__ckpt_reader *r, const char *key, double *v);
/* Copies the string with a terminating NUL; cap must exceed its length (else FRCNN_ERR_INVALID_ARG). *len (may be
 * NULL) receives the length without the NUL. */
frcnn_status frcnn__ckpt_get_str(frcnn__ckpt_reader *r, const char *key, char *buf, size_t cap, size_t *len);
/* *len receives the value's length; with buf NULL only the length is returned, else cap must be >= it. */
frcnn_status frcnn__ckpt_get_bytes(frcnn__ckpt_reader *r, const char *key, void *buf, size_t cap, size_t *len);

#endif /* FRCNN_CKPT_IO_H */
