/* Checks on the checkpoint folder, done before the first step so that a run never trains for hours into a folder
 * that cannot hold its checkpoints or that disappears with the machine. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "storage.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

bool storage_check_dir(const char *dir)
{
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        fprintf(stderr,
                "train_voc: checkpoint folder '%s': %s. Create it yourself (mkdir -p); train_voc never creates it, "
                "so that a typo or an unmounted Drive cannot send checkpoints to a disk that vanishes\n",
                dir, strerror(errno));
        return false;
    }
    if (!S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "train_voc: checkpoint folder '%s' is not a folder\n", dir);
        return false;
    }
    /* access(W_OK) is not trusted on network and FUSE file systems: create and remove a file. */
    char probe[PATH_MAX];
    snprintf(probe, sizeof probe, "%s/.train_voc-write-test-%ld", dir, (long)getpid());
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) {
        fprintf(stderr, "train_voc: checkpoint folder '%s' is not writable: %s\n", dir, strerror(errno));
        return false;
    }
    close(fd);
    unlink(probe);
    return true;
}

uint64_t storage_free_bytes(const char *dir)
{
    struct statvfs vfs;
    if (statvfs(dir, &vfs) != 0)
        return UINT64_MAX;
    return (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
}

/* The mount point holding path (the longest matching entry of /proc/self/mounts) and its type. */
static bool find_mount(const char *path, char *mount, size_t mcap, char *type, size_t tcap)
{
    FILE *f = fopen("/proc/self/mounts", "r");
    if (!f)
        return false;
    char line[4096], dev[1024], mnt[2048], fs[256];
    size_t best = 0;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "%1023s %2047s %255s", dev, mnt, fs) != 3)
            continue;
        size_t n = strlen(mnt);
        bool under = strcmp(mnt, "/") == 0 || (strncmp(path, mnt, n) == 0 && (path[n] == '/' || path[n] == '\0'));
        if (under && n >= best) {
            best = n;
            snprintf(mount, mcap, "%s", mnt);
            snprintf(type, tcap, "%s", fs);
        }
    }
    fclose(f);
    return best > 0;
}

static bool under_colab(void)
{
    return getenv("COLAB_RELEASE_TAG") || getenv("COLAB_BACKEND_VERSION") || getenv("COLAB_GPU");
}

bool storage_warn_if_ephemeral(const char *dir)
{
    char real[PATH_MAX], mount[2048] = "", type[256] = "", drive_mount[2048] = "", drive_type[256] = "";
    if (!realpath(dir, real))
        return false;
    struct stat sb;
    bool drive_mounted = stat("/content/drive", &sb) == 0 &&
                         find_mount("/content/drive", drive_mount, sizeof drive_mount, drive_type, sizeof drive_type) &&
                         strncmp(drive_mount, "/content/drive", 14) == 0;
    if (!drive_mounted && !under_colab())
        return false;
    find_mount(real, mount, sizeof mount, type, sizeof type);
    if (drive_mounted && strncmp(mount, "/content/drive", 14) == 0)
        return false;
    fprintf(stderr,
            "train_voc: WARNING: checkpoints go to '%s' on %s (%s), the machine's local disk, which is wiped when the "
            "%s runtime is recycled.\n"
            "train_voc: WARNING: use a folder on Google Drive instead, e.g. --ckpt-dir /content/drive/MyDrive/frcnn\n",
            real, mount[0] ? mount : "?", type[0] ? type : "?", under_colab() ? "Colab" : "");
    return true;
}
