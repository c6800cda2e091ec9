/* The training log: one JSON object per line and per iteration, appended across resumes. */
#ifndef TRAIN_VOC_TRAINLOG_H
#define TRAIN_VOC_TRAINLOG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "frcnn.h"

typedef struct trainlog {
    FILE *f;
    char path[4096];
} trainlog;

/* Opens the log for appending after dropping every line of an iteration above `iteration` (lines written after the
 * checkpoint a run resumes from, which the resumed run writes again) and any torn last line. Rewrites the file
 * atomically when it drops anything. Returns false after printing an error. */
bool trainlog_open(trainlog *log, const char *path, uint64_t iteration);
/* Appends the line of one iteration. */
void trainlog_write(trainlog *log, uint64_t iteration, uint64_t epoch, uint64_t cursor, float lr,
                    const frcnn_losses *l, double seconds);
/* Flushes and fsyncs, so that the log on disk covers the checkpoint just saved. */
void trainlog_sync(trainlog *log);
void trainlog_close(trainlog *log);

#endif /* TRAIN_VOC_TRAINLOG_H */
