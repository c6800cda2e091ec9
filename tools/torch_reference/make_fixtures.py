#!/usr/bin/python3
"""Golden fixtures from PyTorch / torchvision for tests/test_torch_kernels.c and later agreement tests.

Run with Debian's Python (python3-torch, python3-torchvision), from the repository root by convention (the output
goes to the source tree whatever the working directory):

    /usr/bin/python3 tools/torch_reference/make_fixtures.py

Writes tests/fixtures/torch/<case>.ckpt in libfrcnn's checkpoint container (docs/checkpoint-format.md) through
tools/frcnn_format.py. Every case seeds torch.manual_seed with its own fixed seed, so the output is the same on every
run (same torch version, CPU). tests/fixtures/torch/README.md describes every file, tensor and META key.

Inputs are float32. Where torch can compute in float64, the reference is computed in float64 from the float32 inputs
(converted exactly) and rounded to float32 once: that is closer to the exact result than torch's own float32
computation, and the script reports how far torch's float32 result lies from it, for comparison with ours.
Selections (max pooling, RoI pooling, NMS) are exact and are computed in float32, the precision whose rounding of
bin edges the C kernels reproduce.

Multi-case files hold tensors named "c<i>.<field>" and META keys "c<i>.<param>", with META "cases" the count.
"""

import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import box_iou, nms

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from frcnn_format import CheckpointWriter, read_checkpoint  # noqa: E402  (tools/frcnn_format.py)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(REPO, "tests", "fixtures", "torch")

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)


def f32(t):
    """A tensor as a contiguous float32 numpy array (float64 results are rounded once here)."""
    return t.detach().to(torch.float32).contiguous().numpy()


def i32(t):
    return t.detach().to(torch.int32).contiguous().numpy()


def i64(t):
    return t.detach().to(torch.int64).contiguous().numpy()


def max_err(a, b):
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def distinct_values(shape, scale):
    """Float32 values that are all different (a random permutation of integers, scaled by a power of two), so that
    every max-pool window and RoI bin has a unique maximum."""
    n = int(np.prod(shape))
    return ((torch.randperm(n).to(torch.float64) - n / 2) * scale).to(torch.float32).reshape(shape)


def uniform(shape, lo, hi):
    return (torch.rand(shape, dtype=torch.float32) * (hi - lo) + lo).to(torch.float32)


class Fixture:
    """Collects tensors and META for one file, then writes it."""

    def __init__(self, name, description):
        self.name = name
        self.tensors = []
        self.meta = [("description", description),
                     ("torch_version", torch.__version__),
                     ("torchvision_version", torchvision.__version__),
                     ("generator", "tools/torch_reference/make_fixtures.py")]

    def tensor(self, name, array):
        self.tensors.append((name, np.array(array, order="C")))

    def put(self, key, value):
        self.meta.append((key, value))

    def write(self):
        path = os.path.join(OUT_DIR, self.name + ".ckpt")
        with CheckpointWriter(path) as w:
            for name, a in self.tensors:
                w.tensor(name, a)
            for k, v in self.meta:
                w.meta(k, v)
        # Read back: the file must hold exactly what was written.
        tensors, meta = read_checkpoint(path)
        for name, a in self.tensors:
            b = tensors[name]
            assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(b, a, equal_nan=True), name
        for k, v in self.meta:
            assert meta[k] == v, k
        print("%-38s %7d bytes, %d tensors" % (os.path.relpath(path, REPO), os.path.getsize(path), len(self.tensors)))


# ----- 1. conv2d ---------------------------------------------------------------------------------------------------

# (label, n, c, h, w, o, kh, kw, stride_h, stride_w, pad_h, pad_w, bias)
CONV_CASES = [
    ("3x3 pad 1 odd sizes", 1, 3, 13, 11, 5, 3, 3, 1, 1, 1, 1, True),
    ("3x3 stride 2 pad 1", 1, 4, 12, 9, 3, 3, 3, 2, 2, 1, 1, True),
    ("3x3 pad 0", 1, 3, 9, 10, 4, 3, 3, 1, 1, 0, 0, True),
    ("3x3 pad 2", 1, 2, 7, 8, 3, 3, 3, 1, 1, 2, 2, True),
    ("1x1 (direct path)", 2, 6, 5, 7, 4, 1, 1, 1, 1, 0, 0, True),
    ("1x1 stride 2 (im2col path)", 1, 5, 7, 8, 3, 1, 1, 2, 2, 0, 0, True),
    ("5x5 pad 2", 1, 3, 11, 9, 4, 5, 5, 1, 1, 2, 2, True),
    ("5x5 stride 2 pad 0", 1, 2, 13, 12, 3, 5, 5, 2, 2, 0, 0, True),
    ("N=2 3x3 pad 1", 2, 3, 8, 10, 4, 3, 3, 1, 1, 1, 1, True),
    ("no bias 3x3 pad 1", 1, 4, 7, 7, 3, 3, 3, 1, 1, 1, 1, False),
    ("3x5 kernel stride (2,1) pad (1,2)", 1, 3, 9, 11, 2, 3, 5, 2, 1, 1, 2, True),
    ("16 channels 3x3 pad 1", 1, 16, 10, 10, 6, 3, 3, 1, 1, 1, 1, True),
]


def make_conv2d():
    fx = Fixture("conv2d", "conv2d forward and backward vs torch.nn.functional.conv2d, reference in float64")
    fx.put("cases", len(CONV_CASES))
    worst = {}
    for i, (label, n, c, h, w, o, kh, kw, sh, sw, ph, pw, has_bias) in enumerate(CONV_CASES):
        torch.manual_seed(1000 + i)
        x = uniform((n, c, h, w), -1, 1)
        wt = uniform((o, c, kh, kw), -0.5, 0.5)
        b = uniform((o,), -0.5, 0.5) if has_bias else None
        oh = (h + 2 * ph - kh) // sh + 1
        ow = (w + 2 * pw - kw) // sw + 1
        dy = uniform((n, o, oh, ow), -1, 1)

        def run(dtype):
            xx = x.to(dtype).requires_grad_()
            ww = wt.to(dtype).requires_grad_()
            bb = b.to(dtype).requires_grad_() if has_bias else None
            y = F.conv2d(xx, ww, bb, stride=(sh, sw), padding=(ph, pw))
            y.backward(dy.to(dtype))
            return y, xx.grad, ww.grad, (bb.grad if has_bias else None)

        y, dx, dw, db = run(torch.float64)
        y32, dx32, dw32, db32 = run(torch.float32)
        assert y.shape == (n, o, oh, ow)
        p = "c%d." % i
        fx.put(p + "label", label)
        for k, v in (("stride_h", sh), ("stride_w", sw), ("pad_h", ph), ("pad_w", pw), ("bias", int(has_bias))):
            fx.put(p + k, v)
        fx.tensor(p + "x", f32(x))
        fx.tensor(p + "w", f32(wt))
        if has_bias:
            fx.tensor(p + "b", f32(b))
            fx.tensor(p + "db", f32(db))
        fx.tensor(p + "dy", f32(dy))
        fx.tensor(p + "y", f32(y))
        fx.tensor(p + "dx", f32(dx))
        fx.tensor(p + "dw", f32(dw))
        pairs = [("y", y32, y), ("dx", dx32, dx), ("dw", dw32, dw)] + ([("db", db32, db)] if has_bias else [])
        for k, a, r in pairs:
            worst[k] = max(worst.get(k, 0.0), max_err(a, r))
    fx.write()
    print("    torch float32 vs float64 max abs error: " + ", ".join("%s %.2g" % kv for kv in worst.items()))


# ----- 2. max pooling ----------------------------------------------------------------------------------------------

# (label, n, c, h, w, kernel, stride, pad, ceil_mode)
MAXPOOL_CASES = [
    ("k2 s2 ceil even", 1, 2, 8, 10, 2, 2, 0, True),
    ("k2 s2 ceil odd", 2, 3, 7, 9, 2, 2, 0, True),
    ("k2 s2 ceil odd/even mixed", 1, 2, 13, 6, 2, 2, 0, True),
    ("k3 s2 p1 ceil odd", 1, 2, 9, 11, 3, 2, 1, True),
    ("k3 s2 p1 ceil even", 2, 2, 8, 8, 3, 2, 1, True),
    ("k3 s2 p0 ceil partial last window", 1, 2, 10, 7, 3, 2, 0, True),
    ("k2 s2 p1 ceil, last window dropped", 1, 2, 5, 5, 2, 2, 1, True),
    ("k2 s3 ceil, stride > kernel", 1, 2, 6, 8, 2, 3, 0, True),
    ("k2 s2 floor odd", 2, 3, 7, 9, 2, 2, 0, False),
    ("k3 s2 p1 floor", 1, 2, 9, 11, 3, 2, 1, False),
    ("k3 s1 p1 floor (overlapping)", 1, 2, 6, 7, 3, 1, 1, False),
]


def scatter_reference(dy, idx, n, c, plane):
    """dx (n, c, plane) = dy scattered through flat per-plane indices idx (n, c, m), in float64; -1 skipped.
    Also the number of contributions each dx element receives."""
    dx = torch.zeros((n, c, plane + 1), dtype=torch.float64)
    cnt = torch.zeros((n, c, plane + 1), dtype=torch.int64)
    where = torch.where(idx < 0, torch.full_like(idx, plane), idx)
    dx.scatter_add_(2, where, dy.to(torch.float64))
    cnt.scatter_add_(2, where, torch.ones_like(where))
    return dx[:, :, :plane], cnt[:, :, :plane]


def make_maxpool():
    fx = Fixture("maxpool", "max_pool2d forward and backward vs torch.nn.functional.max_pool2d")
    fx.put("cases", len(MAXPOOL_CASES))
    for i, (label, n, c, h, w, k, s, pad, ceil) in enumerate(MAXPOOL_CASES):
        torch.manual_seed(2000 + i)
        x = distinct_values((n, c, h, w), 1.0 / 64)
        xx = x.clone().requires_grad_()
        y, idx = F.max_pool2d(xx, k, s, pad, ceil_mode=ceil, return_indices=True)
        dy = uniform(tuple(y.shape), -1, 1)
        y.backward(dy)
        oh, ow = y.shape[2], y.shape[3]
        # The gradient again in float64 from the indices, and the contribution counts: where an input element gets
        # one or two contributions the float32 result is the correctly rounded sum whatever the order.
        dx64, cnt = scatter_reference(dy.reshape(n, c, -1), idx.reshape(n, c, -1), n, c, h * w)
        assert max_err(xx.grad.reshape(n, c, -1), dx64) < 1e-5
        p = "c%d." % i
        fx.put(p + "label", label)
        for key, v in (("kernel", k), ("stride", s), ("pad", pad), ("ceil_mode", int(ceil))):
            fx.put(p + key, v)
        fx.tensor(p + "x", f32(x))
        fx.tensor(p + "y", f32(y))
        fx.tensor(p + "argmax", i64(idx))
        fx.tensor(p + "dy", f32(dy))
        fx.tensor(p + "dx", f32(dx64.reshape(n, c, h, w)))
        print("    maxpool c%d %-36s in %dx%d -> out %dx%d, max contributions %d" %
              (i, label, h, w, oh, ow, int(cnt.max())))
    fx.write()


# ----- 3. RoI pooling ----------------------------------------------------------------------------------------------

def roi_boxes(img_h, img_w, n_random):
    """Hand-picked boxes (x1, y1, x2, y2) in image pixels, then random ones; batch index in a separate list."""
    fixed = [
        (0, 0, 0, img_w - 1, img_h - 1),                        # the whole image
        (1, 0, 0, img_w - 1, img_h - 1),                        # the whole of image 1
        (0, img_w - 60, img_h - 45, img_w - 1, img_h - 1),     # bottom-right corner
        (1, 0, img_h - 30, 50, img_h - 1),                     # bottom-left corner
        (0, 33, 40, 45, 50),                                    # smaller than a bin (about one feature pixel)
        (1, 100, 70, 100, 70),                                  # a single point
        (0, 90, 60, 70, 50),                                    # malformed: x2 < x1, y2 < y1 (forced to 1x1)
        (1, 8, 24, 40, 56),                                     # corners on .5 after scaling by 1/16: round away
        (0, 24, 8, 72, 120),                                    # more .5 corners
        (0, -8, -24, 40, 56),                                   # negative .5 corners at 1/16: -0.5, -1.5
        (1, -4, -12, 20, 28),                                   # .5 corners at 1/8: -0.5, -1.5, 2.5, 3.5
        (1, -50, -30, 100, 80),                                 # partly outside, top-left
        (0, img_w - 70, img_h - 60, img_w + 150, img_h + 120),  # partly outside, bottom-right
        (1, -40, 20, img_w + 40, 60),                           # wider than the image
        (0, img_w + 40, img_h + 30, img_w + 140, img_h + 90),   # wholly outside, beyond the bottom-right
        (1, -200, -100, -50, -20),                              # wholly outside, before the top-left
        (0, 20, -90, 80, -30),                                  # wholly above the image
    ]
    rois = [list(map(float, r)) for r in fixed]
    for _ in range(n_random):
        b = int(torch.randint(0, 2, ()))
        x1 = float(torch.rand(()) * (img_w - 8))
        y1 = float(torch.rand(()) * (img_h - 8))
        bw = float(torch.rand(()) * (img_w / 2) + 2)
        bh = float(torch.rand(()) * (img_h / 2) + 2)
        rois.append([float(b), x1, y1, x1 + bw, y1 + bh])
    return torch.tensor(rois, dtype=torch.float32)


# (label, feature h, w, stride (1 / spatial_scale), pooled_h, pooled_w)
ROI_CASES = [
    ("7x7 at 1/16", 12, 16, 16, 7, 7),
    ("3x5 at 1/16", 12, 16, 16, 3, 5),
    ("7x7 at 1/8", 16, 20, 8, 7, 7),
    ("3x5 at 1/8", 16, 20, 8, 3, 5),
]
ROI_BATCH, ROI_CHANNELS, ROI_RANDOM = 2, 2, 6


def make_roi_pool():
    fx = Fixture("roi_pool", "RoI max pooling forward and backward vs torchvision.ops.roi_pool")
    fx.put("cases", len(ROI_CASES))
    for i, (label, fh, fw, stride, ph, pw) in enumerate(ROI_CASES):
        torch.manual_seed(3000 + i)
        scale = 1.0 / stride
        x = distinct_values((ROI_BATCH, ROI_CHANNELS, fh, fw), 1.0 / 64)
        rois = roi_boxes(fh * stride, fw * stride, ROI_RANDOM)
        y, argmax = torch.ops.torchvision.roi_pool(x, rois, scale, ph, pw)
        # The public op must agree with the raw one used for argmax.
        xx = x.clone().requires_grad_()
        y_pub = torchvision.ops.roi_pool(xx, rois, output_size=(ph, pw), spatial_scale=scale)
        assert torch.equal(y_pub, y)
        dy = uniform(tuple(y.shape), -1, 1)
        y_pub.backward(dy)
        r = rois.shape[0]
        # The float64 gradient from torchvision's own backward kernel, fed the float32 argmax.
        dx = torch.ops.torchvision._roi_pool_backward(dy.double(), rois.double(), argmax, scale, ph, pw, ROI_BATCH, ROI_CHANNELS,
                                                      fh, fw)
        assert max_err(xx.grad, dx) < 1e-5
        # Contribution counts (for the report; the C test recomputes them from argmax).
        cnt = torch.zeros(ROI_BATCH, ROI_CHANNELS, fh * fw + 1, dtype=torch.int64)
        for k in range(r):
            a = argmax[k].reshape(ROI_CHANNELS, -1).to(torch.int64)
            a = torch.where(a < 0, torch.full_like(a, fh * fw), a)
            cnt[int(rois[k, 0])].scatter_add_(1, a, torch.ones_like(a))
        empty = int((argmax < 0).sum())
        p = "c%d." % i
        fx.put(p + "label", label)
        fx.put(p + "pooled_h", ph)
        fx.put(p + "pooled_w", pw)
        fx.put(p + "spatial_scale", scale)
        fx.tensor(p + "x", f32(x))
        fx.tensor(p + "rois", f32(rois))
        fx.tensor(p + "y", f32(y))
        fx.tensor(p + "argmax", i32(argmax))
        fx.tensor(p + "dy", f32(dy))
        fx.tensor(p + "dx", f32(dx))
        print("    roi_pool c%d %-12s %d rois, %d empty bins of %d, max contributions %d" %
              (i, label, r, empty, argmax.numel(), int(cnt[:, :, :-1].max())))
    fx.write()


# (label, feature h, w, stride (1 / spatial_scale), pooled_h, pooled_w, sampling_ratio, aligned)
ALIGN_CASES = [
    ("7x7 at 1/16, 2x2 samples, aligned", 12, 16, 16, 7, 7, 2, True),
    ("3x5 at 1/16, adaptive samples, aligned", 12, 16, 16, 3, 5, -1, True),
    ("7x7 at 1/8, 2x2 samples, legacy", 16, 20, 8, 7, 7, 2, False),
    ("3x5 at 1/8, adaptive samples, legacy", 16, 20, 8, 3, 5, -1, False),
    ("4x4 at 1/16, 1 sample, aligned", 12, 16, 16, 4, 4, 1, True),
]


def make_roi_align():
    """RoI align: y from torchvision's float32 kernel; dx from its float64 backward (ours sums in float)."""
    fx = Fixture("roi_align", "RoI align forward and backward vs torchvision.ops.roi_align")
    fx.put("cases", len(ALIGN_CASES))
    for i, (label, fh, fw, stride, ph, pw, ratio, aligned) in enumerate(ALIGN_CASES):
        torch.manual_seed(3500 + i)
        scale = 1.0 / stride
        x = uniform((ROI_BATCH, ROI_CHANNELS, fh, fw), -1, 1)
        rois = roi_boxes(fh * stride, fw * stride, ROI_RANDOM)
        y = torchvision.ops.roi_align(x, rois, (ph, pw), scale, ratio, aligned)
        dy = uniform(tuple(y.shape), -1, 1)
        x64 = x.double().requires_grad_()
        y64 = torchvision.ops.roi_align(x64, rois.double(), (ph, pw), scale, ratio, aligned)
        y64.backward(dy.double())
        assert max_err(y, y64) < 1e-5
        p = "c%d." % i
        fx.put(p + "label", label)
        fx.put(p + "pooled_h", ph)
        fx.put(p + "pooled_w", pw)
        fx.put(p + "spatial_scale", scale)
        fx.put(p + "sampling_ratio", ratio)
        fx.put(p + "aligned", int(aligned))
        fx.tensor(p + "x", f32(x))
        fx.tensor(p + "rois", f32(rois))
        fx.tensor(p + "y", f32(y))
        fx.tensor(p + "dy", f32(dy))
        fx.tensor(p + "dx", f32(x64.grad))
        print("    roi_align c%d %-40s %d rois, %d zero outputs of %d" %
              (i, label, rois.shape[0], int((y == 0).sum()), y.numel()))
    fx.write()


# ----- 4. fully connected, softmax cross-entropy, smooth L1 -------------------------------------------------------

# (label, x shape, out features)
LINEAR_CASES = [
    ("(6, 20) -> 7", (6, 20), 7),
    ("(3, 4, 3, 2) flattened -> 5", (3, 4, 3, 2), 5),
    ("(16, 64) -> 21", (16, 64), 21),
]


def make_linear():
    fx = Fixture("linear", "fully connected forward and backward vs torch.nn.functional.linear, float64 reference")
    fx.put("cases", len(LINEAR_CASES))
    worst = {}
    for i, (label, xs, out) in enumerate(LINEAR_CASES):
        torch.manual_seed(4000 + i)
        n, inf = xs[0], int(np.prod(xs[1:]))
        x = uniform(xs, -1, 1)
        wt = uniform((out, inf), -0.3, 0.3)
        b = uniform((out,), -0.5, 0.5)
        dy = uniform((n, out), -1, 1)

        def run(dtype):
            xx = x.to(dtype).requires_grad_()
            ww = wt.to(dtype).requires_grad_()
            bb = b.to(dtype).requires_grad_()
            y = F.linear(xx.reshape(n, -1), ww, bb)
            y.backward(dy.to(dtype))
            return y, xx.grad, ww.grad, bb.grad

        ref = run(torch.float64)
        r32 = run(torch.float32)
        p = "c%d." % i
        fx.put(p + "label", label)
        for k, a in zip(("x", "w", "b", "dy"), (x, wt, b, dy)):
            fx.tensor(p + k, f32(a))
        for k, a, a32 in zip(("y", "dx", "dw", "db"), ref, r32):
            fx.tensor(p + k, f32(a))
            worst[k] = max(worst.get(k, 0.0), max_err(a32, a))
    fx.write()
    print("    torch float32 vs float64 max abs error: " + ", ".join("%s %.2g" % kv for kv in worst.items()))


# (label, n, k, logit scale, fraction ignored, dloss)
XENT_CASES = [
    ("RPN-like: 2 classes, half ignored", 32, 2, 2.0, 0.5, 1.0),
    ("head-like: 21 classes", 16, 21, 3.0, 0.0, 1.0),
    ("5 classes, some ignored, dloss 0.75", 10, 5, 3.0, 0.3, 0.75),
    ("large logits (+-60)", 8, 4, 60.0, 0.0, 1.0),
    ("every row ignored", 4, 3, 2.0, 1.0, 1.0),
]
IGNORE = -1


def make_softmax_xent():
    fx = Fixture("softmax_xent", "softmax cross-entropy vs torch.nn.functional.cross_entropy(ignore_index=-1, "
                 "reduction='mean'), float64 reference")
    fx.put("cases", len(XENT_CASES))
    fx.put("ignore_label", IGNORE)
    for i, (label, n, k, scale, frac_ignored, dloss) in enumerate(XENT_CASES):
        torch.manual_seed(5000 + i)
        logits = (torch.randn((n, k), dtype=torch.float32) * scale).to(torch.float32)
        labels = torch.randint(0, k, (n,), dtype=torch.int64)
        ignored = torch.rand(n) < frac_ignored
        if frac_ignored >= 1.0:
            ignored[:] = True
        elif frac_ignored > 0:
            ignored[0], ignored[1] = True, False  # at least one of each
        labels[ignored] = IGNORE
        ll = logits.double().requires_grad_()
        loss = F.cross_entropy(ll, labels, ignore_index=IGNORE, reduction="mean")
        (loss * dloss).backward()
        prob = torch.softmax(logits.double(), dim=1)
        p = "c%d." % i
        fx.put(p + "label", label)
        fx.put(p + "dloss", dloss)
        fx.tensor(p + "logits", f32(logits))
        fx.tensor(p + "labels", i32(labels))
        fx.tensor(p + "prob", f32(prob))
        fx.tensor(p + "loss", f32(loss))
        fx.tensor(p + "dlogits", f32(ll.grad))
        print("    softmax_xent c%d %-36s loss %.6g, %d of %d rows ignored" %
              (i, label, float(loss), int(ignored.sum()), n))
    fx.write()


# (label, shape, sigma, normalizer, weights, dloss); weights: "rpn" (0/1 inside, positive outside), "head" (inside =
# outside = the 4 columns of each row's class), "none" (no weights: reduction='sum' directly).
SMOOTH_L1_CASES = [
    ("RPN-like: sigma 3, 0/1 inside, outside weights", (2, 12, 3, 4), 3.0, 1.0, "rpn", 1.0),
    ("head-like: sigma 1, normalizer 8, class columns", (8, 84), 1.0, 8.0, "head", 1.0),
    ("no weights: sigma 1, dloss 0.5", (8, 4), 1.0, 1.0, "none", 0.5),
    ("no weights: sigma 2, normalizer 3", (5, 8), 2.0, 3.0, "none", 1.0),
]


def make_smooth_l1():
    fx = Fixture("smooth_l1", "py-faster-rcnn smooth L1 with inside/outside weights vs "
                 "torch.nn.functional.smooth_l1_loss(beta=1/sigma^2), float64 reference")
    fx.put("cases", len(SMOOTH_L1_CASES))
    for i, (label, shape, sigma, normalizer, weights, dloss) in enumerate(SMOOTH_L1_CASES):
        torch.manual_seed(6000 + i)
        target = torch.randn(shape, dtype=torch.float32)
        # Differences of about 0.4: both sides of the transitions 1/9 (sigma 3), 1/4 (sigma 2) and 1 (sigma 1).
        pred = (target + torch.randn(shape) * (0.15 if sigma > 1 else 0.8)).to(torch.float32)
        inside = outside = None
        if weights == "rpn":
            inside = (torch.rand(shape) < 0.6).to(torch.float32)
            outside = (torch.rand(shape) * (2.0 / 256)).to(torch.float32)
        elif weights == "head":
            cls = torch.randint(0, shape[1] // 4, (shape[0],))
            inside = torch.zeros(shape, dtype=torch.float32)
            for r in range(shape[0]):
                if r % 3 != 2:  # every third row a background RoI: no regression target
                    inside[r, 4 * int(cls[r]):4 * int(cls[r]) + 4] = 1.0
            outside = inside.clone()
        beta = 1.0 / (sigma * sigma)
        pp = pred.double().requires_grad_()
        t = target.double()
        if weights == "none":
            # No weights: exactly torch's smooth_l1_loss with reduction='sum'.
            loss = F.smooth_l1_loss(pp, t, beta=beta, reduction="sum") / normalizer
        else:
            # py-faster-rcnn: d = inside * (pred - target), f(d) per element, multiplied by outside, summed, divided
            # by the normalizer. inside scales both arguments (f depends only on their difference); outside
            # multiplies f element-wise, so the sum is taken after reduction='none'.
            inside64, outside64 = inside.double(), outside.double()
            f = F.smooth_l1_loss(inside64 * pp, inside64 * t, beta=beta, reduction="none")
            loss = (outside64 * f).sum() / normalizer
        (loss * dloss).backward()
        d = (pred.double() - t) * (inside.double() if inside is not None else 1.0)
        p = "c%d." % i
        fx.put(p + "label", label)
        fx.put(p + "sigma", sigma)
        fx.put(p + "normalizer", normalizer)
        fx.put(p + "dloss", dloss)
        fx.put(p + "weights", int(weights != "none"))
        fx.tensor(p + "pred", f32(pred))
        fx.tensor(p + "target", f32(target))
        if inside is not None:
            fx.tensor(p + "inside", f32(inside))
            fx.tensor(p + "outside", f32(outside))
        fx.tensor(p + "loss", f32(loss))
        fx.tensor(p + "dpred", f32(pp.grad))
        quad = int(((d.abs() < beta) & (d != 0)).sum())
        lin = int((d.abs() >= beta).sum())
        print("    smooth_l1 c%d %-48s loss %.6g, %d quadratic, %d linear, %d zero" %
              (i, label, float(loss), quad, lin, d.numel() - quad - lin))
    fx.write()


# ----- 5. reference data for the box utilities ---------------------------------------------------------------------

def random_boxes(n, lo, hi, wlo, whi):
    """(n, 4) float32 boxes (x1, y1, x2, y2): x1, y1 uniform in [lo, hi], width and height in [wlo, whi]."""
    xy = torch.rand((n, 2)) * (hi - lo) + lo
    wh = torch.rand((n, 2)) * (whi - wlo) + wlo
    return torch.cat([xy, xy + wh], dim=1).to(torch.float32)


NMS_THRESHOLDS = [(0.3, "keep_0.3"), (0.5, "keep_0.5"), (0.7, "keep_0.7")]


def make_nms():
    torch.manual_seed(7000)
    fx = Fixture("nms", "torchvision.ops.nms on 500 random boxes (float32)")
    boxes = random_boxes(500, 0, 200, 1, 80)
    scores = torch.rand(500, dtype=torch.float32)
    fx.tensor("boxes", f32(boxes))
    fx.tensor("scores", f32(scores))
    for thr, name in NMS_THRESHOLDS:
        keep = nms(boxes, scores, thr)
        fx.tensor(name, i64(keep))
        print("    nms iou %.1f: %d of 500 kept" % (thr, keep.numel()))
    fx.put("n_boxes", 500)
    fx.write()


def make_box_coder():
    torch.manual_seed(7100)
    fx = Fixture("box_coder", "torchvision BoxCoder(weights=(10, 10, 5, 5)) encode_single / decode_single, "
                 "float64 reference")
    weights = (10.0, 10.0, 5.0, 5.0)
    coder = BoxCoder(weights=weights)
    m = 64
    proposals = random_boxes(m, 0, 400, 4, 200)
    gt = random_boxes(m, 0, 400, 4, 200)
    encoded = coder.encode_single(gt.double(), proposals.double())
    # Deltas for decoding: moderate ones, and a few log-size deltas beyond bbox_xform_clip (exercising the clamp).
    deltas = (torch.randn((m, 4)) * torch.tensor([1.0, 1.0, 2.0, 2.0])).to(torch.float32)
    deltas[:4, 2:] = torch.tensor([[30.0, 25.0], [-30.0, 40.0], [22.0, -25.0], [50.0, 50.0]])
    boxes = random_boxes(m, 0, 400, 4, 200)
    decoded = coder.decode_single(deltas.double(), boxes.double())
    fx.tensor("proposals", f32(proposals))
    fx.tensor("gt", f32(gt))
    fx.tensor("encoded", f32(encoded))
    fx.tensor("deltas", f32(deltas))
    fx.tensor("boxes", f32(boxes))
    fx.tensor("decoded", f32(decoded))
    for k, v in zip(("weight_x", "weight_y", "weight_w", "weight_h"), weights):
        fx.put(k, v)
    fx.put("bbox_xform_clip", coder.bbox_xform_clip)
    fx.write()


# (prefix, sizes, aspect ratios, feature h, w, stride)
ANCHOR_CASES = [
    ("c0", (128, 256, 512), (0.5, 1.0, 2.0), 38, 50, 16),
    ("c1", (32, 64, 128), (0.5, 1.0, 2.0), 20, 26, 16),
]


def make_anchors():
    fx = Fixture("anchors", "torchvision AnchorGenerator cell and grid anchors (float32)")
    fx.put("cases", len(ANCHOR_CASES))
    for prefix, sizes, ratios, fh, fw, stride in ANCHOR_CASES:
        gen = AnchorGenerator(sizes=(sizes,), aspect_ratios=(ratios,))
        cell = gen.generate_anchors(list(sizes), list(ratios), dtype=torch.float32)
        gen.set_cell_anchors(torch.float32, torch.device("cpu"))
        assert torch.equal(gen.cell_anchors[0], cell)
        grid = gen.grid_anchors([[fh, fw]], [[torch.tensor(stride), torch.tensor(stride)]])[0]
        assert grid.shape == (fh * fw * len(sizes) * len(ratios), 4)
        p = prefix + "."
        fx.put(p + "feature_h", fh)
        fx.put(p + "feature_w", fw)
        fx.put(p + "stride", stride)
        fx.put(p + "image_h", fh * stride)
        fx.put(p + "image_w", fw * stride)
        fx.tensor(p + "sizes", np.array(sizes, dtype=np.float32))
        fx.tensor(p + "aspect_ratios", np.array(ratios, dtype=np.float32))
        fx.tensor(p + "cell_anchors", f32(cell))
        fx.tensor(p + "grid_anchors", f32(grid))
    fx.write()


def make_box_iou():
    torch.manual_seed(7300)
    fx = Fixture("box_iou", "torchvision.ops.box_iou, float64 reference")
    a = random_boxes(20, 0, 100, 1, 60)
    b = random_boxes(30, 0, 100, 1, 60)
    b[0] = a[0]                                                # identical
    b[1] = torch.tensor([a[1, 0] + 1, a[1, 1] + 1, a[1, 2] - 1, a[1, 3] - 1])  # nested (a[1] is 3.8 x 29 px)
    b[2] = torch.tensor([500.0, 500.0, 510.0, 510.0])          # disjoint from everything
    b[3] = torch.tensor([a[2, 2], a[2, 1], a[2, 2] + 10, a[2, 3]])  # shares an edge only: IoU 0
    iou = box_iou(a.double(), b.double())
    fx.tensor("boxes1", f32(a))
    fx.tensor("boxes2", f32(b))
    fx.tensor("iou", f32(iou))
    fx.write()


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    print("torch %s, torchvision %s, numpy %s" % (torch.__version__, torchvision.__version__, np.__version__))
    make_conv2d()
    make_maxpool()
    make_roi_pool()
    make_roi_align()
    make_linear()
    make_softmax_xent()
    make_smooth_l1()
    make_nms()
    make_box_coder()
    make_anchors()
    make_box_iou()
    total = sum(os.path.getsize(os.path.join(OUT_DIR, f)) for f in os.listdir(OUT_DIR) if f.endswith(".ckpt"))
    print("total %d bytes" % total)


if __name__ == "__main__":
    main()
