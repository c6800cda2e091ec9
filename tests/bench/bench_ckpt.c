/* Benchmark of saving and loading a full vgg16 training checkpoint (parameters + SGD momentum) against a plain
 * write + fsync and a plain read of the same bytes in the same run, and the memory saving adds. Appends
 * `name<TAB>value<TAB>unit` lines to argv[1] (default build/bench.tsv). The files go to $FRCNN_BENCH_DIR or /tmp. */
#include "frcnn.h"

#include "bench_util.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static void check(frcnn_ctx *ctx, frcnn_status st, const char *what)
{
    if (st != FRCNN_OK) {
        fprintf(stderr, "bench_ckpt: %s: %s (%s)\n", what, frcnn_status_str(st), frcnn_ctx_last_error(ctx));
        exit(1);
    }
}

static double rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

/* Writes every parameter and momentum buffer with write(2) in turn, then fsync: the bare cost of the bytes. */
static double plain_write(const char *path, frcnn_model *m, frcnn_optim *o, size_t *bytes)
{
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    if (fd < 0) {
        perror(path);
        exit(1);
    }
    double t0 = bench_now();
    *bytes = 0;
    size_t n = frcnn_model_param_count(m) + frcnn_optim_state_count(o);
    for (size_t i = 0; i < n; i++) {
        frcnn_tensor *t;
        if (i < frcnn_model_param_count(m)) {
            frcnn_param p;
            frcnn_model_param(m, i, &p);
            t = p.value;
        } else {
            frcnn_optim_state(o, i - frcnn_model_param_count(m), NULL, &t);
        }
        const char *data = (const char *)frcnn_tensor_data(t);
        size_t len = frcnn_tensor_numel(t) * sizeof(float);
        while (len > 0) {
            ssize_t k = write(fd, data, len);
            if (k <= 0) {
                perror("write");
                exit(1);
            }
            data += k;
            len -= (size_t)k;
            *bytes += (size_t)k;
        }
    }
    fsync(fd);
    close(fd);
    return bench_now() - t0;
}

static double plain_read(const char *path, void *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        perror(path);
        exit(1);
    }
    double t0 = bench_now();
    size_t chunk = (size_t)64 << 20, off = 0;
    for (;;) {
        ssize_t k = read(fd, (char *)buf + (off % cap), chunk < cap ? chunk : cap);
        if (k <= 0)
            break;
        off += (size_t)k;
    }
    close(fd);
    return bench_now() - t0;
}

int main(int argc, char **argv)
{
    const char *tsv = argc > 1 ? argv[1] : "build/bench.tsv";
    const char *dir = getenv("FRCNN_BENCH_DIR") ? getenv("FRCNN_BENCH_DIR") : "/tmp";
    frcnn_ctx *ctx;
    check(NULL, frcnn_ctx_create(NULL, &ctx), "context");
    frcnn_config cfg = frcnn_config_vgg16();
    frcnn_model *m;
    check(ctx, frcnn_model_create(ctx, &cfg, 1, &m), "model");
    frcnn_optim_params op = frcnn_optim_params_sgd();
    frcnn_optim *o;
    check(ctx, frcnn_optim_create(ctx, &op, m, &o), "optimizer");
    frcnn_rng rng;
    frcnn_rng_seed(&rng, 1);
    frcnn_train_state state = {m, o, NULL, NULL, 1234, &rng, 1, 0, NULL};
    char plain[512], name[64] = "bench-vgg16.ckpt", full[512];
    snprintf(plain, sizeof plain, "%s/bench-plain.bin", dir);
    snprintf(full, sizeof full, "%s/%s", dir, name);

    size_t bytes = 0;
    double t_write[3], t_save[3], t_read[3], t_load[3], rss_before = rss_mib(), rss_after_save = 0;
    size_t buf_cap = (size_t)64 << 20;
    void *buf = malloc(buf_cap);
    for (int r = 0; r < 3; r++) {
        /* fresh files each time: neither case pays for freeing an old file's blocks inside its timing */
        unlink(plain);
        unlink(full);
        t_write[r] = plain_write(plain, m, o, &bytes);
        double t0 = bench_now();
        check(ctx, frcnn_ckpt_save(ctx, dir, name, &state), "save");
        t_save[r] = bench_now() - t0;
        if (r == 0)
            rss_after_save = rss_mib();
        t_read[r] = plain_read(plain, buf, buf_cap);
        t0 = bench_now();
        check(ctx, frcnn_ckpt_load(ctx, full, &state, false), "load");
        t_load[r] = bench_now() - t0;
    }
    double w = bench_median(t_write, 3), s = bench_median(t_save, 3), rd = bench_median(t_read, 3),
           l = bench_median(t_load, 3), gb = (double)bytes / 1e9;
    printf("\ncheckpoint of vgg16 + SGD momentum (%.2f GB) in %s, median of 3\n", gb, dir);
    printf("%-34s %8s %8s\n", "case", "s", "GB/s");
    printf("%-34s %8.3f %8.2f\n", "plain write + fsync", w, gb / w);
    printf("%-34s %8.3f %8.2f   ratio %.2f (target <= 1.3)\n", "frcnn_ckpt_save", s, gb / s, s / w);
    printf("%-34s %8.3f %8.2f\n", "plain read (page cache warm)", rd, gb / rd);
    printf("%-34s %8.3f %8.2f   ratio %.2f (target <= 2)\n", "frcnn_ckpt_load (checksums all)", l, gb / l, l / rd);
    printf("peak RSS growth during the first save: %.1f MiB (target < 16)\n", rss_after_save - rss_before);
    FILE *f = fopen(tsv, "a");
    if (f) {
        fprintf(f, "ckpt_vgg16_bytes\t%.0f\tB\n", (double)bytes);
        fprintf(f, "ckpt_plain_write_s\t%.4f\ts\n", w);
        fprintf(f, "ckpt_save_s\t%.4f\ts\n", s);
        fprintf(f, "ckpt_save_over_write\t%.3f\tratio\n", s / w);
        fprintf(f, "ckpt_plain_read_s\t%.4f\ts\n", rd);
        fprintf(f, "ckpt_load_s\t%.4f\ts\n", l);
        fprintf(f, "ckpt_load_over_read\t%.3f\tratio\n", l / rd);
        fprintf(f, "ckpt_save_rss_growth_mib\t%.1f\tMiB\n", rss_after_save - rss_before);
        fclose(f);
    }
    unlink(plain);
    unlink(full);
    free(buf);
    frcnn_optim_free(o);
    frcnn_model_free(m);
    frcnn_ctx_free(ctx);
    return 0;
}
