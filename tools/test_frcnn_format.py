"""Self-test of frcnn_format.py: python3 tools/test_frcnn_format.py (needs numpy)."""

import os
import struct
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import frcnn_format as ff  # noqa: E402


def reseal(data):
    """Recomputes every checksum of a checkpoint image (bytes) whose layout is intact, so that a test can change a
    field and see the reader's format check rather than a checksum error."""
    data = bytearray(data)
    header_size = struct.unpack_from("<I", data, 12)[0]
    footer = len(data) - ff.FOOTER_SIZE
    off, headers = header_size, b""
    while off < footer:
        length = struct.unpack_from("<Q", data, off + 8)[0]
        pay = off + ff.SECTION_HEADER_SIZE
        struct.pack_into("<I", data, off + 16, ff.crc32c(bytes(data[pay:pay + length])))
        headers += bytes(data[off:pay])
        off = ff._align64(pay + length)
    struct.pack_into("<I", data, footer + 24, ff.crc32c(headers))
    struct.pack_into("<I", data, footer + 60, ff.crc32c(bytes(data[footer:footer + 60])))
    struct.pack_into("<I", data, header_size - 4, ff.crc32c(bytes(data[:header_size - 4])))
    return bytes(data)


class Base(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "t.frcnn")

    def tearDown(self):
        self.dir.cleanup()

    def write_sample(self):
        with ff.CheckpointWriter(self.path) as w:
            w.meta("run.library_version", "test")
            w.meta_u64("run.iteration", 7)
            w.tensor("a", np.arange(6, dtype=np.float32).reshape(2, 3))
            w.tensor("b", np.arange(100, dtype=np.int64))
        with open(self.path, "rb") as f:
            return f.read()

    def put(self, data):
        with open(self.path, "wb") as f:
            f.write(data)

    def assert_refused(self, data, kind=None):
        self.put(data)
        with self.assertRaises(ff.FormatError) as cm:
            ff.read_checkpoint(self.path)
        self.assertIn(self.path, str(cm.exception))
        if kind:
            self.assertEqual(cm.exception.kind, kind, str(cm.exception))
        return str(cm.exception)


class TestCrc(unittest.TestCase):
    def test_check_values(self):
        self.assertEqual(ff.crc32c(b"123456789"), 0xE3069283)
        self.assertEqual(ff.crc32c(b""), 0)
        self.assertEqual(ff.crc32c(b"56789", ff.crc32c(b"1234")), 0xE3069283)

    def test_fallback_agrees(self):
        slow = ff._table_crc32c()
        data = bytes(range(256)) * 5
        self.assertEqual(slow(b"123456789"), 0xE3069283)
        self.assertEqual(slow(data), ff.crc32c(data))
        self.assertEqual(slow(data[100:], slow(data[:100])), ff.crc32c(data))


class TestRoundTrip(Base):
    def test_every_dtype_and_meta_type(self):
        rng = np.random.default_rng(1)
        arrays = {
            "f32": rng.standard_normal((2, 3, 4)).astype(np.float32),
            "f64": rng.standard_normal(5),
            "i32": rng.integers(-2**31, 2**31, (3, 3), dtype=np.int32),
            "i64": np.array([-2**63, 2**63 - 1, 0], dtype=np.int64),
            "u8": np.arange(256, dtype=np.uint8),
            "u64": np.array([2**64 - 1, 0, 1], dtype=np.uint64),
            "scalar": np.float32(1.5),
            "eight_dims": np.ones((1, 2, 1, 2, 1, 2, 1, 3), dtype=np.float32),
            "big_endian_input": np.arange(4, dtype=">f4"),
            "fortran_order": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
            "model.ünïcode.name": np.zeros(1, dtype=np.float32),
        }
        meta = {"u": 2**64 - 1, "zero": 0, "flag": True, "neg": -2**63, "f": 0.1, "inf": float("inf"),
                "s": "héllo", "empty": "", "raw": b"\x00\xff", "nobytes": b""}
        with ff.CheckpointWriter(self.path) as w:
            for k, v in meta.items():
                w.meta(k, v)
            w.meta_i64("explicit_i64", 5)
            w.meta_f64("explicit_f64", 3)
            w.meta_u64("explicit_u64", 4)
            for k, v in arrays.items():
                w.tensor(k, v)
        types = {}
        tensors, got = ff.read_checkpoint(self.path, meta_types=types)
        self.assertEqual(set(tensors), set(arrays))
        for k, v in arrays.items():
            self.assertEqual(tensors[k].shape, np.shape(v), k)
            self.assertEqual(tensors[k].dtype, np.dtype(v.dtype).newbyteorder("<"), k)
            np.testing.assert_array_equal(tensors[k], v)
        expect = dict(meta, flag=1, explicit_i64=5, explicit_f64=3.0, explicit_u64=4)
        self.assertEqual(got, expect)
        self.assertEqual(types["u"], "u64")
        self.assertEqual(types["flag"], "u64")
        self.assertEqual(types["neg"], "i64")
        self.assertEqual(types["explicit_i64"], "i64")
        self.assertEqual(types["explicit_f64"], "f64")
        self.assertEqual(types["f"], "f64")
        self.assertEqual(types["s"], "string")
        self.assertEqual(types["raw"], "bytes")

    def test_layout(self):
        data = self.write_sample()
        self.assertEqual(len(data) % 64, 0)
        self.assertEqual(data[:8], b"FRCNNCKP")
        self.assertEqual(data[64:68], b"META")  # the META section comes first
        self.assertEqual(data[-64:-56], b"FRCNNEND")
        self.assertEqual(struct.unpack_from("<QQ", data, len(data) - 56), (3, len(data)))

    def test_no_sections(self):
        with ff.CheckpointWriter(self.path):
            pass
        self.assertEqual(os.path.getsize(self.path), 128)
        self.assertEqual(ff.read_checkpoint(self.path), ({}, {}))

    def test_writer_refuses(self):
        with ff.CheckpointWriter(self.path) as w:
            w.tensor("a", np.zeros(1, np.float32))
            w.meta("k", 1)
            self.assertRaises(ValueError, w.tensor, "a", np.zeros(1, np.float32))
            self.assertRaises(ValueError, w.meta, "k", 2)
            self.assertRaises(ValueError, w.tensor, "", np.zeros(1, np.float32))
            self.assertRaises(ValueError, w.tensor, "x\0y", np.zeros(1, np.float32))
            self.assertRaises(ValueError, w.tensor, "x" * 1025, np.zeros(1, np.float32))
            self.assertRaises(ValueError, w.tensor, "f16", np.zeros(1, np.float16))
            self.assertRaises(ValueError, w.tensor, "empty", np.zeros((2, 0), np.float32))
            self.assertRaises(ValueError, w.tensor, "nine", np.zeros((1,) * 9, np.float32))
            self.assertRaises(ValueError, w.meta_u64, "big", 2**64)
            self.assertRaises(ValueError, w.meta_i64, "small", -2**63 - 1)
            self.assertRaises(TypeError, w.meta, "list", [1])

    def test_tensor_is_copied(self):
        a = np.zeros(3, np.float32)
        with ff.CheckpointWriter(self.path) as w:
            w.tensor("a", a)
            a[:] = 1
        np.testing.assert_array_equal(ff.read_checkpoint(self.path)[0]["a"], 0)


class TestAtomicWrite(Base):
    def test_exception_removes_tmp_and_keeps_old_file(self):
        old = self.write_sample()
        with self.assertRaises(RuntimeError):
            with ff.CheckpointWriter(self.path) as w:
                w.tensor("c", np.zeros(1, np.float32))
                raise RuntimeError("interrupted")
        self.assertFalse(os.path.exists(self.path + ".tmp"))
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), old)

    def test_stale_tmp_is_replaced(self):
        with open(self.path + ".tmp", "wb") as f:
            f.write(b"half a checkpoint")
        self.write_sample()
        self.assertFalse(os.path.exists(self.path + ".tmp"))
        ff.read_checkpoint(self.path)


class TestRefusals(Base):
    def test_truncation(self):
        data = self.write_sample()
        for n in (0, 1, 63, 64, 127, 128, 200, len(data) // 2, len(data) - 65, len(data) - 64, len(data) - 1):
            self.assert_refused(data[:n])
        self.assertIn("incomplete", self.assert_refused(data[:len(data) - 64]))
        self.assertIn("truncated", self.assert_refused(data[:100]))

    def test_every_bit_flip_in_headers_and_sampled_elsewhere(self):
        data = self.write_sample()
        positions = list(range(0, 64)) + list(range(64, 128)) + list(range(len(data) - 64, len(data)))
        positions += list(range(128, len(data) - 64, 7))
        for pos in positions:
            for bit in (0, 7):
                bad = bytearray(data)
                bad[pos] ^= 1 << bit
                self.put(bytes(bad))
                with self.assertRaises(ff.FormatError, msg="flip of bit %d at %d accepted" % (bit, pos)):
                    ff.read_checkpoint(self.path)

    def test_flip_in_tensor_data_is_checksum_error_unless_not_verified(self):
        data = bytearray(self.write_sample())
        data[len(data) - 64 - 64] ^= 0x10  # inside tensor b's data
        msg = self.assert_refused(bytes(data), "checksum")
        self.assertIn("tensor 'b'", msg)
        self.assertIn("offset", msg)
        np.testing.assert_array_equal(ff.read_checkpoint(self.path, verify=False)[0]["a"],
                                      np.arange(6).reshape(2, 3))

    def test_version(self):
        data = bytearray(self.write_sample())
        struct.pack_into("<H", data, 8, 2)
        self.assertIn("format 2.0", self.assert_refused(reseal(data), "version"))
        struct.pack_into("<H", data, 8, 0)
        self.assert_refused(reseal(data), "format")
        struct.pack_into("<HH", data, 8, 1, 7)  # a later minor is accepted
        self.put(reseal(data))
        ff.read_checkpoint(self.path)

    def test_unknown_sections(self):
        data = bytearray(self.write_sample())
        data[64:68] = b"XTRA"  # the META section, now of a type this reader does not know, REQUIRED
        self.assert_refused(reseal(data), "version")
        struct.pack_into("<I", data, 68, 0)  # not required: skipped
        self.put(reseal(data))
        tensors, meta = ff.read_checkpoint(self.path)
        self.assertEqual((sorted(tensors), meta), (["a", "b"], {}))

    def test_format_checks_behind_valid_checksums(self):
        data = self.write_sample()
        meta_len = struct.unpack_from("<Q", data, 72)[0]
        tens_a = 128 + ff._align64(meta_len)  # header of tensor a's section
        cases = {
            "dtype": (tens_a + 64 + 3, b"\x09\x00\x00\x00"),  # name_len 2 + name "a" ... dtype at 3
            "ndim": (tens_a + 64 + 7, b"\x09\x00\x00\x00"),
            "name": (tens_a + 64 + 2, b"b"),  # duplicate tensor name
            "padding": (tens_a + 64 + 30, b"\x01"),
            "meta type": (128 + 2 + len("run.library_version"), b"\x09"),
            "meta key": (128 + 2 + 4, b"\x00"),  # NUL in key
            "reserved": (len(data) - 64 + 40, b"\x01"),
        }
        for what, (pos, patch) in cases.items():
            bad = bytearray(data)
            bad[pos:pos + len(patch)] = patch
            with self.subTest(what):
                self.assert_refused(reseal(bad), "format")

    def test_duplicate_meta_key(self):
        with ff.CheckpointWriter(self.path) as w:
            w.meta("key1", 1)
            w.meta("key2", 2)
        with open(self.path, "rb") as f:
            data = bytearray(f.read())
        i = data.index(b"key2")
        data[i:i + 4] = b"key1"
        self.assertIn("appears twice", self.assert_refused(reseal(data), "format"))

    def test_length_past_footer(self):
        data = bytearray(self.write_sample())
        struct.pack_into("<Q", data, 72, 1 << 40)
        self.assert_refused(reseal(data), "format")


if __name__ == "__main__":
    unittest.main()
