/* The training log (JSON lines). Each line is complete in itself and names its iteration, so that after a resume the
 * lines past the checkpoint can be dropped and the log reads as if the run had never stopped. */
#include "trainlog.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The iteration of a log line, or -1 when the line is not one of ours. */
static int64_t line_iteration(const char *line)
{
    const char *key = "{\"iter\":";
    if (strncmp(line, key, strlen(key)) != 0)
        return -1;
    char *end;
    long long v = strtoll(line + strlen(key), &end, 10);
    return end == line + strlen(key) || *end != ',' ? -1 : v;
}

/* Copies the lines to keep into path.tmp and renames it over the log. */
static bool rewrite(FILE *in, const char *path, uint64_t iteration, bool *dropped)
{
    char tmp[4200], line[2048];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *out = fopen(tmp, "w");
    if (!out) {
        fprintf(stderr, "train_voc: log '%s': %s\n", tmp, strerror(errno));
        return false;
    }
    *dropped = false;
    while (fgets(line, sizeof line, in)) {
        size_t n = strlen(line);
        int64_t it = line_iteration(line);
        bool whole = n > 0 && line[n - 1] == '\n';
        if (whole && it >= 0 && (uint64_t)it <= iteration)
            fputs(line, out);
        else
            *dropped = true;
    }
    bool ok = !ferror(in) && fflush(out) == 0 && fsync(fileno(out)) == 0;
    ok = fclose(out) == 0 && ok;
    if (ok && *dropped)
        ok = rename(tmp, path) == 0;
    if (!ok || !*dropped)
        unlink(tmp);
    if (!ok)
        fprintf(stderr, "train_voc: log '%s': cannot rewrite: %s\n", path, strerror(errno));
    return ok;
}

bool trainlog_open(trainlog *log, const char *path, uint64_t iteration)
{
    memset(log, 0, sizeof *log);
    snprintf(log->path, sizeof log->path, "%s", path);
    FILE *in = fopen(path, "r");
    if (in) {
        bool dropped = false, ok = rewrite(in, path, iteration, &dropped);
        fclose(in);
        if (!ok)
            return false;
    } else if (errno != ENOENT) {
        fprintf(stderr, "train_voc: log '%s': %s\n", path, strerror(errno));
        return false;
    }
    if (!(log->f = fopen(path, "a"))) {
        fprintf(stderr, "train_voc: log '%s': %s\n", path, strerror(errno));
        return false;
    }
    return true;
}

void trainlog_write(trainlog *log, uint64_t iteration, uint64_t epoch, uint64_t cursor, float lr,
                    const frcnn_losses *l, double seconds)
{
    if (!log->f)
        return;
    /* %.9g keeps every bit of a float, so logs of two runs compare exactly. */
    fprintf(log->f,
            "{\"iter\":%" PRIu64 ",\"epoch\":%" PRIu64 ",\"cursor\":%" PRIu64 ",\"lr\":%.9g,\"loss\":%.9g,"
            "\"rpn_cls\":%.9g,\"rpn_box\":%.9g,\"cls\":%.9g,\"box\":%.9g,\"rpn_fg\":%d,\"roi_fg\":%d,"
            "\"seconds\":%.3f,\"time\":%lld}\n",
            iteration, epoch, cursor, lr, l->total, l->rpn_cls, l->rpn_box, l->cls, l->box, l->rpn_fg, l->roi_fg,
            seconds, (long long)time(NULL));
}

void trainlog_sync(trainlog *log)
{
    if (log->f && (fflush(log->f) != 0 || fsync(fileno(log->f)) != 0))
        fprintf(stderr, "train_voc: warning: log '%s': %s\n", log->path, strerror(errno));
}

void trainlog_close(trainlog *log)
{
    if (log->f) {
        trainlog_sync(log);
        fclose(log->f);
        log->f = NULL;
    }
}
