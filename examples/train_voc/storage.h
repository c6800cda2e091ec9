/* Where checkpoints go: the checkpoint folder must exist, be writable, have room, and survive the machine. */
#ifndef TRAIN_VOC_STORAGE_H
#define TRAIN_VOC_STORAGE_H

#include <stdbool.h>
#include <stdint.h>

/* Refuses (message on stderr, false) a folder that does not exist or cannot be written; never creates it. */
bool storage_check_dir(const char *dir);
/* Free bytes for an unprivileged writer in the folder's file system; UINT64_MAX when unknown. */
uint64_t storage_free_bytes(const char *dir);
/* Warns on stderr when the folder is on the machine's local disk while Google Drive is mounted or the program runs
 * under Colab (where the local disk is wiped when the runtime is recycled). Returns true when it warned. */
bool storage_warn_if_ephemeral(const char *dir);

#endif /* TRAIN_VOC_STORAGE_H */
