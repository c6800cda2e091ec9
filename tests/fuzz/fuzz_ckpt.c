/* libFuzzer target for the checkpoint reader: any byte string, written to a file, must be refused with a status
 * or read completely, never crash, hang, leak or read out of bounds (run under ASan + UBSan by `make fuzz`). */
#include "frcnn.h"

#include "../../lib/train/ckpt_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

static void remove_file(void)
{
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static frcnn_ctx *ctx;
    if (!ctx) {
        if (frcnn_ctx_create(NULL, &ctx) != FRCNN_OK)
            abort();
        snprintf(path, sizeof path, "/dev/shm/frcnn-fuzz-%d.ckpt", (int)getpid());
        atexit(remove_file);
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);

    frcnn__ckpt_reader *r;
    if (frcnn__ckpt_reader_open(ctx, path, &r) == FRCNN_OK) {
        frcnn__ckpt_reader_verify_all(r);
        for (size_t i = 0; i < frcnn__ckpt_tensor_count(r); i++) {
            frcnn__ckpt_tensor_info info;
            if (frcnn__ckpt_tensor_at(r, i, &info) != FRCNN_OK || info.nbytes > ((size_t)1 << 20))
                continue;
            void *buf = malloc(info.nbytes ? info.nbytes : 1);
            frcnn__ckpt_read_tensor(r, info.name, buf, info.nbytes);
            free(buf);
        }
        uint64_t u;
        char s[64];
        frcnn__ckpt_get_u64(r, "run.iteration", &u);
        frcnn__ckpt_get_str(r, "run.library_version", s, sizeof s, NULL);
        frcnn__ckpt_reader_close(r);
    }
    frcnn_ckpt_info info;
    frcnn_ckpt_info_read(ctx, path, &info);
    frcnn_config config;
    frcnn_ckpt_read_config(ctx, path, &config);
    return 0;
}
