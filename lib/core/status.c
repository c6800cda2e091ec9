/* Version and status strings. */
#include "internal.h"

const char *frcnn_version(void)
{
    return FRCNN_VERSION_STRING;
}

const char *frcnn_status_str(frcnn_status status)
{
    switch (status) {
    case FRCNN_OK: return "ok";
    case FRCNN_ERR_INVALID_ARG: return "invalid argument";
    case FRCNN_ERR_NO_MEMORY: return "out of memory";
    case FRCNN_ERR_OVERFLOW: return "size overflow";
    case FRCNN_ERR_SHAPE: return "shape mismatch";
    case FRCNN_ERR_IO: return "input/output error";
    case FRCNN_ERR_FORMAT: return "malformed file";
    case FRCNN_ERR_VERSION: return "unsupported version";
    case FRCNN_ERR_CHECKSUM: return "checksum mismatch";
    case FRCNN_ERR_NOT_FINITE: return "non-finite value";
    case FRCNN_ERR_NO_SPACE: return "not enough disk space";
    case FRCNN_ERR_NOT_FOUND: return "not found";
    case FRCNN_ERR_MISMATCH: return "does not match";
    case FRCNN_ERR_STATE: return "invalid state";
    }
    return "unknown status";
}
