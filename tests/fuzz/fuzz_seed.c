/* Writes the fuzzer's seed corpus: small but complete checkpoints (metadata of every kind, tensors of several
 * dtypes) made with the real writer, so that mutations start from files that get past the magic and the
 * checksums. Usage: fuzz_seed DIR */
#include "frcnn.h"

#include "../../lib/train/ckpt_io.h"

#include <stdio.h>

static frcnn_status write_seed(frcnn_ctx *ctx, const char *dir, const char *name, int tensors)
{
    frcnn__ckpt_writer *w;
    frcnn_status st = frcnn__ckpt_writer_open(ctx, dir, name, 1 << 16, &w);
    if (st != FRCNN_OK)
        return st;
    frcnn_config c = frcnn_config_small();
    st = frcnn__ckpt_begin_section(w, FRCNN__CKPT_META, FRCNN__CKPT_FLAG_REQUIRED);
    if (st == FRCNN_OK)
        st = frcnn__ckpt_kv_str(w, "run.library_version", frcnn_version());
    if (st == FRCNN_OK)
        st = frcnn__ckpt_kv_u64(w, "run.iteration", 7);
    if (st == FRCNN_OK)
        st = frcnn__ckpt_kv_f64(w, "config.num_classes", c.num_classes);
    if (st == FRCNN_OK)
        st = frcnn__ckpt_kv_i64(w, "sched.total_iters", -3);
    const unsigned char bytes[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    if (st == FRCNN_OK)
        st = frcnn__ckpt_kv_bytes(w, "rng.0", bytes, sizeof bytes);
    if (st == FRCNN_OK)
        st = frcnn__ckpt_end_section(w);
    const float f[6] = {1, 2, 3, 4, 5, 6};
    const int64_t dims[2] = {2, 3};
    for (int i = 0; i < tensors && st == FRCNN_OK; i++) {
        char tname[32];
        snprintf(tname, sizeof tname, "model.t%d", i);
        st = frcnn__ckpt_write_tensor_f32(w, tname, 2, dims, f);
    }
    if (st != FRCNN_OK) {
        frcnn__ckpt_writer_abort(w);
        return st;
    }
    return frcnn__ckpt_writer_finish(w);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_seed DIR\n");
        return 2;
    }
    frcnn_ctx *ctx;
    if (frcnn_ctx_create(NULL, &ctx) != FRCNN_OK)
        return 1;
    frcnn_status st = write_seed(ctx, argv[1], "seed0.ckpt", 0);
    if (st == FRCNN_OK)
        st = write_seed(ctx, argv[1], "seed3.ckpt", 3);
    if (st != FRCNN_OK)
        fprintf(stderr, "fuzz_seed: %s\n", frcnn_ctx_last_error(ctx));
    frcnn_ctx_free(ctx);
    return st == FRCNN_OK ? 0 : 1;
}
