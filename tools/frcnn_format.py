"""Reader and writer of the libfrcnn checkpoint container, format 1.0 (docs/checkpoint-format.md).

    from frcnn_format import CheckpointWriter, read_checkpoint, FormatError

    with CheckpointWriter("out.frcnn") as w:
        w.meta("run.library_version", "my tool 1.0")   # str -> string, bytes -> bytes, float -> f64,
        w.meta_u64("run.iteration", 0)                 # int/bool -> u64 (or i64 when negative)
        w.meta_f64("config.num_classes", 21)           # explicit types: meta_u64, meta_i64, meta_f64
        w.tensor("model.rpn.head.conv.bias", numpy_array)
    tensors, meta = read_checkpoint("out.frcnn")       # raises FormatError on any malformed or corrupt byte

Only the standard library and numpy. CRC-32C comes from the `crc32c` or `google-crc32c` package, else `crcmod`,
else a pure-Python table (slow: a warning says so).
"""

import errno
import os
import struct
import sys

import numpy as np

MAJOR, MINOR = 1, 0
HEADER_SIZE = 64
SECTION_HEADER_SIZE = 64
FOOTER_SIZE = 64
MAX_HEADER_SIZE = 4096
MAX_NAME = 1024
MAX_DIMS = 8
MAX_DIM = 1 << 62
TENSOR_PREFIX_MAX = 1152  # align64(10 + MAX_NAME + 8 * MAX_DIMS): the longest tensor header with its padding
MAX_META = 64 << 20
FLAG_REQUIRED = 1
FILE_MAGIC = b"FRCNNCKP"
FOOTER_MAGIC = b"FRCNNEND"
TENS, META = b"TENS", b"META"

# dtype codes of TENS sections, little-endian element types.
DTYPES = {0: np.dtype("<f4"), 1: np.dtype("<f8"), 2: np.dtype("<i4"), 3: np.dtype("<i8"), 4: np.dtype("u1"),
          5: np.dtype("<u8")}
DTYPE_CODES = {dt.newbyteorder("<"): code for code, dt in DTYPES.items()}

# META record types.
KV_U64, KV_I64, KV_F64, KV_STR, KV_BYTES = 1, 2, 3, 4, 5
KV_NAMES = {KV_U64: "u64", KV_I64: "i64", KV_F64: "f64", KV_STR: "string", KV_BYTES: "bytes"}

CHUNK = 1 << 24


class FormatError(Exception):
    """A file that is not a valid checkpoint. `kind` is "format", "checksum" or "version", as the C library's
    FRCNN_ERR_FORMAT, FRCNN_ERR_CHECKSUM and FRCNN_ERR_VERSION."""

    def __init__(self, message, kind="format"):
        super().__init__(message)
        self.kind = kind


# ----- CRC-32C (Castagnoli, reflected 0x82F63B78, init and final xor 0xFFFFFFFF) -------------------------------------

def _table_crc32c():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)

    def update(data, crc=0):
        crc ^= 0xFFFFFFFF
        for b in memoryview(data).cast("B"):
            crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF

    return update


def _chunked_bytes(extend):
    """google_crc32c.extend(crc, data) takes bytes only: copy CHUNK bytes at a time, not a whole tensor."""
    def update(data, crc=0):
        view = memoryview(data).cast("B")
        for start in range(0, len(view), CHUNK):
            crc = extend(crc, bytes(view[start:start + CHUNK]))
        return crc

    return update


def _pick_crc32c():
    try:
        import crc32c  # pip install crc32c
        return lambda data, crc=0: crc32c.crc32c(data, crc)
    except ImportError:
        pass
    try:
        import google_crc32c  # pip install google-crc32c
        if google_crc32c.implementation == "c":
            return _chunked_bytes(google_crc32c.extend)
    except ImportError:
        pass
    try:
        import crcmod._crcfunext  # noqa: F401  without its C extension crcmod is as slow as the table below
        import crcmod.predefined
        fun = crcmod.predefined.mkCrcFun("crc-32c")
        return lambda data, crc=0: fun(data, crc)
    except ImportError:
        pass
    print("frcnn_format: warning: pure-Python CRC-32C (a few MB/s: minutes for a VGG16 checkpoint); "
          "`pip install crcmod` or `pip install crc32c` for a fast one", file=sys.stderr)
    return _table_crc32c()


_crc_impl = None


def crc32c(data, crc=0):
    """CRC-32C of a bytes-like object; pass a previous result as `crc` to continue it over more data."""
    global _crc_impl
    if _crc_impl is None:
        _crc_impl = _pick_crc32c()
    return _crc_impl(data, crc)


def _align64(x):
    return (x + 63) & ~63


def _byte_view(array):
    """The bytes of a C-contiguous array, without a copy."""
    return memoryview(array).cast("B")


# ----- writer --------------------------------------------------------------------------------------------------------

def _check_name(what, name):
    raw = name.encode("utf-8")
    if not 1 <= len(raw) <= MAX_NAME or b"\0" in raw:
        raise ValueError("%s %r: must be 1..%d UTF-8 bytes without NUL" % (what, name, MAX_NAME))
    return raw


class CheckpointWriter:
    """Writes a checkpoint atomically: everything goes to `path + ".tmp"`, which close() fsyncs and renames to `path`
    (then fsyncs the directory). One META section (all records, written first) and one TENS section per tensor, all
    with the REQUIRED flag, as the C writer does. Tensors are copied when given, so the caller may reuse its arrays."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.tmp_path = self.path + ".tmp"
        self._meta = []            # encoded records
        self._keys = set()
        self._tensors = []         # (encoded TENS payload prefix, little-endian C-order copy)
        self._names = set()
        self._closed = False
        if os.path.exists(self.tmp_path):  # left by a killed save: it has no footer, never a valid file
            os.unlink(self.tmp_path)
        self._fd = os.open(self.tmp_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), 0o644)

    # -- tensors --

    def tensor(self, name, array):
        """Adds a numpy array (float32, float64, int32, int64, uint8 or uint64; 0 to 8 dimensions)."""
        self._check_open()
        raw = _check_name("tensor name", name)
        if name in self._names:
            raise ValueError("tensor %r added twice" % name)
        array = np.asarray(array)
        code = DTYPE_CODES.get(array.dtype.newbyteorder("<"))
        if code is None:
            raise ValueError("tensor %r: dtype %s is not one of float32, float64, int32, int64, uint8, uint64"
                             % (name, array.dtype))
        if array.ndim > MAX_DIMS or any(not 1 <= d <= MAX_DIM for d in array.shape):
            raise ValueError("tensor %r: shape %s, expected at most %d dimensions, each >= 1"
                             % (name, array.shape, MAX_DIMS))
        data = np.array(array, dtype=DTYPES[code], order="C", copy=True)
        prefix = struct.pack("<H", len(raw)) + raw + struct.pack("<II", code, array.ndim)
        prefix += struct.pack("<%dQ" % array.ndim, *array.shape)
        prefix += bytes(_align64(len(prefix)) - len(prefix))
        self._names.add(name)
        self._tensors.append((prefix, data))

    # -- metadata --

    def meta(self, key, value):
        """bool/int -> u64 (i64 when negative), float -> f64, str -> string, bytes -> bytes."""
        if isinstance(value, (bool, int, np.integer, np.bool_)):
            value = int(value)
            if value >= 0:
                self.meta_u64(key, value)
            else:
                self.meta_i64(key, value)
        elif isinstance(value, (float, np.floating)):
            self.meta_f64(key, value)
        elif isinstance(value, str):
            self._record(key, KV_STR, value.encode("utf-8"))
        elif isinstance(value, (bytes, bytearray, memoryview)):
            self._record(key, KV_BYTES, bytes(value))
        else:
            raise TypeError("META %r: cannot store a %s" % (key, type(value).__name__))

    def meta_u64(self, key, v):
        if not 0 <= int(v) < 1 << 64:
            raise ValueError("META %r: %d is not a u64" % (key, v))
        self._record(key, KV_U64, struct.pack("<Q", int(v)))

    def meta_i64(self, key, v):
        if not -(1 << 63) <= int(v) < 1 << 63:
            raise ValueError("META %r: %d is not an i64" % (key, v))
        self._record(key, KV_I64, struct.pack("<q", int(v)))

    def meta_f64(self, key, v):
        self._record(key, KV_F64, struct.pack("<d", float(v)))

    def _record(self, key, kind, value):
        self._check_open()
        raw = _check_name("META key", key)
        if key in self._keys:
            raise ValueError("META key %r added twice" % key)
        if kind in (KV_STR, KV_BYTES):
            value = struct.pack("<Q", len(value)) + value
        self._keys.add(key)
        self._meta.append(struct.pack("<H", len(raw)) + raw + struct.pack("<B", kind) + value)

    # -- file --

    def _check_open(self):
        if self._closed:
            raise ValueError("%s: writer is closed" % self.path)

    def _write(self, data):
        view = memoryview(data).cast("B")
        while view:
            view = view[os.write(self._fd, view[:CHUNK]):]

    def _section(self, kind, chunks):
        """Writes a section header (with the payload's length and CRC) and the payload; returns the header."""
        length, crc = 0, 0
        for c in chunks:
            length += len(c)
            crc = crc32c(c, crc)
        header = kind + struct.pack("<IQI", FLAG_REQUIRED, length, crc) + bytes(44)
        self._write(header)
        for c in chunks:
            self._write(c)
        self._write(bytes(_align64(length) - length))
        return header

    def _expected_size(self):
        size = HEADER_SIZE + FOOTER_SIZE
        if self._meta:
            size += SECTION_HEADER_SIZE + _align64(sum(len(r) for r in self._meta))
        for prefix, data in self._tensors:
            size += SECTION_HEADER_SIZE + _align64(len(prefix) + data.nbytes)
        return size

    def close(self):
        """Writes everything and the footer, fsyncs, renames the .tmp to the final name, fsyncs the directory.
        On failure the .tmp is removed and the exception propagates."""
        if self._closed:
            return
        try:
            size = self._expected_size()
            st = os.fstatvfs(self._fd)
            if st.f_bavail * st.f_frsize < size:
                raise OSError(errno.ENOSPC, "no space: %d bytes needed, %d free" % (size, st.f_bavail * st.f_frsize),
                              self.tmp_path)
            header = FILE_MAGIC + struct.pack("<HHII", MAJOR, MINOR, HEADER_SIZE, 0) + bytes(HEADER_SIZE - 24)
            self._write(header + struct.pack("<I", crc32c(header)))
            headers = [self._section(META, [b"".join(self._meta)])] if self._meta else []
            for prefix, data in self._tensors:
                headers.append(self._section(TENS, [prefix, _byte_view(data)]))
            headers_crc = crc32c(b"".join(headers))
            footer = FOOTER_MAGIC + struct.pack("<QQI", len(headers), size, headers_crc) + bytes(32)
            self._write(footer + struct.pack("<I", crc32c(footer)))
            os.fsync(self._fd)
            fd, self._fd = self._fd, -1
            os.close(fd)
            os.replace(self.tmp_path, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._tensors = []
        self._fsync_dir()

    def _fsync_dir(self):
        try:
            fd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
        except OSError:
            return  # no directory handles on this platform
        try:
            os.fsync(fd)
        except OSError as e:
            if e.errno != errno.EINVAL:  # the file system does not support it: not an error
                raise
        finally:
            os.close(fd)

    def abort(self):
        """Discards the file being written (removes the .tmp); the final name is never touched."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if not self._closed and os.path.exists(self.tmp_path):
            os.unlink(self.tmp_path)
        self._closed = True
        self._tensors = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


# ----- reader --------------------------------------------------------------------------------------------------------

class _Reader:
    def __init__(self, path, f, size):
        self.path, self.f, self.size = path, f, size

    def fail(self, message, kind="format"):
        raise FormatError("checkpoint '%s': %s" % (self.path, message), kind)

    def read(self, n, off):
        self.f.seek(off)
        data = self.f.read(n)
        if len(data) != n:
            self.fail("file shrank while reading (offset %d)" % off)
        return data

    def header(self):
        if self.size < HEADER_SIZE + FOOTER_SIZE:
            self.fail("file is %d bytes, a checkpoint has at least %d (empty or truncated)"
                      % (self.size, HEADER_SIZE + FOOTER_SIZE))
        h = self.read(HEADER_SIZE, 0)
        if h[:8] != FILE_MAGIC:
            self.fail("not a libfrcnn checkpoint (bad magic at offset 0)")
        major, minor, header_size = struct.unpack_from("<HHI", h, 8)
        if not (HEADER_SIZE <= header_size <= MAX_HEADER_SIZE and header_size % 64 == 0
                and header_size <= self.size - FOOTER_SIZE):
            self.fail("bad header size %d at offset 12" % header_size)
        h = self.read(header_size, 0)
        if crc32c(h[:-4]) != struct.unpack_from("<I", h, header_size - 4)[0]:
            self.fail("file header checksum mismatch (offset 0..%d)" % header_size, "checksum")
        if major != MAJOR:
            self.fail("file format %d.%d, this reader reads %d.x (up to %d.%d)" % (major, minor, MAJOR, MAJOR, MINOR),
                      "format" if major == 0 else "version")
        return header_size

    def footer(self, header_size):
        off = self.size - FOOTER_SIZE
        f = self.read(FOOTER_SIZE, off)
        if f[:8] != FOOTER_MAGIC:
            self.fail("no valid footer at offset %d: the file is incomplete (truncated or an interrupted save)" % off)
        if crc32c(f[:60]) != struct.unpack_from("<I", f, 60)[0]:
            self.fail("footer checksum mismatch (offset %d)" % off, "checksum")
        nsec, file_length, headers_crc = struct.unpack_from("<QQI", f, 8)
        if file_length != self.size:
            self.fail("footer records a file length of %d bytes, the file has %d" % (file_length, self.size))
        if any(f[28:60]):
            self.fail("nonzero reserved bytes in the footer")
        if nsec > (self.size - header_size - FOOTER_SIZE) // SECTION_HEADER_SIZE:
            self.fail("footer records %d sections, impossible in %d bytes" % (nsec, self.size))
        return nsec, headers_crc

    def sections(self, header_size, nsec, headers_crc):
        """Walks the section table: bounds, zero padding, then the headers' CRC. Returns (offset, type, flags,
        length, crc) per section."""
        footer_off = self.size - FOOTER_SIZE
        off, crc, out = header_size, 0, []
        for i in range(nsec):
            if footer_off - off < SECTION_HEADER_SIZE:
                self.fail("section %d header at offset %d runs into the footer at %d" % (i, off, footer_off))
            h = self.read(SECTION_HEADER_SIZE, off)
            crc = crc32c(h, crc)
            flags, length, pcrc = struct.unpack_from("<IQI", h, 4)
            pay = off + SECTION_HEADER_SIZE
            if length > footer_off - pay:
                self.fail("section %d at offset %d: payload length %d runs past the footer at %d"
                          % (i, off, length, footer_off))
            end = pay + length
            nxt = _align64(end)
            if nxt > footer_off:
                self.fail("section %d at offset %d: padding runs past the footer" % (i, off))
            if any(self.read(nxt - end, end)):
                self.fail("section %d: nonzero padding at offset %d" % (i, end))
            out.append((off, h[:4], flags, length, pcrc))
            off = nxt
        if off != footer_off:
            self.fail("%d unaccounted bytes between the last section (ends at %d) and the footer"
                      % (footer_off - off, off))
        if crc != headers_crc:
            self.fail("section headers checksum mismatch (stored 0x%08x, computed 0x%08x)" % (headers_crc, crc),
                      "checksum")
        return out

    def check_crc(self, label, off, stored, got):
        if stored != got:
            self.fail("%s at offset %d: checksum mismatch (stored 0x%08x, computed 0x%08x)" % (label, off, stored, got),
                      "checksum")

    def tensor(self, i, off, length, stored_crc, verify):
        """Parses a TENS payload; returns (name, array)."""
        pay = off + SECTION_HEADER_SIZE
        head = self.read(min(length, TENSOR_PREFIX_MAX), pay)
        if len(head) < 2:
            self.fail("tensor section %d at offset %d: payload of %d bytes too short" % (i, pay, len(head)))
        (name_len,) = struct.unpack_from("<H", head)
        if not 1 <= name_len <= MAX_NAME or 10 + name_len > len(head):
            self.fail("tensor section %d at offset %d: bad name length %d" % (i, pay, name_len))
        raw = head[2:2 + name_len]
        if b"\0" in raw:
            self.fail("tensor section %d at offset %d: NUL byte in name" % (i, pay))
        name = raw.decode("utf-8", "surrogateescape")
        label = "tensor '%s'" % name
        code, ndim = struct.unpack_from("<II", head, 2 + name_len)
        if code not in DTYPES:
            self.fail("%s at offset %d: unknown dtype %d" % (label, pay, code))
        if ndim > MAX_DIMS:
            self.fail("%s at offset %d: ndim %d (at most %d)" % (label, pay, ndim, MAX_DIMS))
        hdr_end = 10 + name_len + 8 * ndim
        if hdr_end > len(head):
            self.fail("%s at offset %d: dims run past the section" % (label, pay))
        dims = struct.unpack_from("<%dQ" % ndim, head, 10 + name_len)
        for k, d in enumerate(dims):
            if not 1 <= d <= MAX_DIM:
                self.fail("%s at offset %d: dimension %d = %d is invalid" % (label, pay, k, d))
        numel = 1
        for d in dims:
            numel *= d  # Python integers: no overflow; the length check below bounds it
        data_off = _align64(hdr_end)
        total = data_off + numel * DTYPES[code].itemsize
        if total != length:
            self.fail("%s at offset %d: payload is %d bytes, its header and dims need %d" % (label, pay, length, total))
        if any(head[hdr_end:data_off]):  # data_off <= TENSOR_PREFIX_MAX and <= length: inside head
            self.fail("%s at offset %d: nonzero padding before the data" % (label, pay))
        array = np.empty(dims, dtype=DTYPES[code])
        self.f.seek(pay + data_off)
        if self.f.readinto(_byte_view(array)) != array.nbytes:
            self.fail("%s: file shrank while reading (offset %d)" % (label, pay + data_off))
        if verify:
            crc = crc32c(_byte_view(array), crc32c(head[:data_off]))
            self.check_crc(label, off, stored_crc, crc)
        return name, array

    def meta(self, off, length, stored_crc, meta, types):
        """Loads, checks and decodes a META payload into `meta` (and `types`)."""
        if length > MAX_META:
            self.fail("META section at offset %d: %d bytes (at most %d)" % (off, length, MAX_META))
        p = self.read(length, off + SECTION_HEADER_SIZE)
        self.check_crc("section 'META'", off, stored_crc, crc32c(p))
        pos = 0
        while pos < length:
            at = off + SECTION_HEADER_SIZE + pos
            if length - pos < 2:
                self.fail("META record at offset %d: truncated" % at)
            (key_len,) = struct.unpack_from("<H", p, pos)
            if not 1 <= key_len <= MAX_NAME or length - pos - 2 < key_len + 9:
                self.fail("META record at offset %d: bad key length %d" % (at, key_len))
            raw = p[pos + 2:pos + 2 + key_len]
            if b"\0" in raw:
                self.fail("META record at offset %d: NUL byte in key" % at)
            kind = p[pos + 2 + key_len]
            pos += 3 + key_len
            if kind in (KV_U64, KV_I64, KV_F64):
                value = struct.unpack_from({KV_U64: "<Q", KV_I64: "<q", KV_F64: "<d"}[kind], p, pos)[0]
                pos += 8
            elif kind in (KV_STR, KV_BYTES):
                (n,) = struct.unpack_from("<Q", p, pos)
                pos += 8
                if n > length - pos:
                    self.fail("META record at offset %d: value length %d runs past the section" % (at, n))
                value = p[pos:pos + n]
                if kind == KV_STR:
                    value = value.decode("utf-8", "surrogateescape")
                pos += n
            else:
                self.fail("META record at offset %d: unknown type %d" % (at, kind))
            key = raw.decode("utf-8", "surrogateescape")
            if key in meta:
                self.fail("key '%s' appears twice (record at offset %d)" % (key, at))
            meta[key] = value
            types[key] = KV_NAMES[kind]


def read_checkpoint(path, verify=True, meta_types=None):
    """Reads a whole checkpoint, validating it as docs/checkpoint-format.md "What a reader validates" lists.

    Returns (tensors, meta): tensor name -> numpy array (little-endian dtype), META key -> int (u64, i64),
    float (f64), str (string) or bytes (bytes). With verify=False the tensors' data checksums are not computed
    (headers, footer and META are always checked). If `meta_types` is a dict, it receives key -> "u64", "i64",
    "f64", "string" or "bytes" (to write a file back with the same types). Raises FormatError."""
    path = os.fspath(path)
    tensors, meta, types = {}, {}, {}
    with open(path, "rb") as f:
        r = _Reader(path, f, os.fstat(f.fileno()).st_size)
        header_size = r.header()
        nsec, headers_crc = r.footer(header_size)
        table = r.sections(header_size, nsec, headers_crc)
        for i, (off, kind, flags, length, crc) in enumerate(table):
            if kind == TENS:
                name, array = r.tensor(i, off, length, crc, verify)
                if name in tensors:
                    r.fail("tensor '%s' appears twice (section %d at offset %d)" % (name, i, off))
                tensors[name] = array
            elif kind == META:
                r.meta(off, length, crc, meta, types)
            elif flags & FLAG_REQUIRED:
                r.fail("section '%s' at offset %d is required but unknown to this reader (format %d.%d)"
                       % (kind.decode("ascii", "replace"), off, MAJOR, MINOR), "version")
            elif verify:
                got = 0
                for start in range(0, length, CHUNK):
                    got = crc32c(r.read(min(CHUNK, length - start), off + SECTION_HEADER_SIZE + start), got)
                r.check_crc("section '%s'" % kind.decode("ascii", "replace"), off, crc, got)
    if meta_types is not None:
        meta_types.update(types)
    return tensors, meta
