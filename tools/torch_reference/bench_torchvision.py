#!/usr/bin/env python3
"""Our training step and detection against torchvision's, same architecture, input, machine and thread count.

For each libfrcnn preset (small at 320x432, vgg16 at 600x800, as tests/bench/bench_model.c), torchvision's
FasterRCNN is built with the same layers: the preset's backbone (3x3 convolutions, ReLU, 2x2 max-pools in Caffe's
ceil mode), RPNHead, the preset's RoI op 7x7 at 1/16 (vgg16: roi_pool; small: roi_align, 2x2 samples, aligned),
TwoMLPHead (fc6, fc7 with our width; vgg16's dropout is a mask multiply
and is left out), FastRCNNPredictor with 21 classes, our anchors, sampling sizes and proposal counts, the first
four convolutions frozen in vgg16 as ours. The image is a random normal tensor with the same three boxes as our
benchmark; torchvision's resize/normalise transform is bypassed (we time prepared tensors too). A training step is
forward + backward, no optimizer update (as bench_model); detection is the eval forward with post-processing.

Runs build/bench/bench_model for our figures (its TSV lines) and each torchvision preset in a child process for
its peak RSS, then prints both side by side and appends `torchvision_*` lines to the TSV file.

    /usr/bin/python3 tools/torch_reference/bench_torchvision.py [build/bench.tsv]

Environment: FRCNN_BENCH_REPS (default 3, as bench_model). Both libraries use one thread per online core.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

PRESETS = {
    # name: input, backbone widths, pool after each conv, frozen convs, rpn channels, anchor sizes, fc width,
    #       RoIs per image, proposals (train pre/post, test pre/post)
    "small": dict(h=320, w=432, widths=[32, 64, 128, 256, 256], pools=[1, 1, 1, 1, 0], frozen=0, rpn=256,
                  sizes=(32, 64, 128, 256), fc=1024, rois=128, train=(12000, 2000), test=(6000, 300), align=True),
    "vgg16": dict(h=600, w=800, widths=[64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512],
                  pools=[0, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0], frozen=4, rpn=512, sizes=(128, 256, 512), fc=4096,
                  rois=128, train=(12000, 2000), test=(6000, 300), align=False),
}


def build(p):
    import torch
    from torch import nn
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.rpn import RPNHead
    from torchvision.ops import MultiScaleRoIAlign, roi_align, roi_pool

    class RoIOp7(MultiScaleRoIAlign):
        """The preset's RoI op behind MultiScaleRoIAlign's interface (FasterRCNN accepts only that type)."""

        def __init__(self, align):
            super().__init__(["0"], 7, 0)
            self.align = align

        def forward(self, features, proposals, image_shapes):
            if self.align:
                return roi_align(features["0"], proposals, 7, 1.0 / 16, 2, True)
            return roi_pool(features["0"], proposals, output_size=7, spatial_scale=1.0 / 16)

    layers, cin = [], 3
    for cout, pool in zip(p["widths"], p["pools"]):
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
        if pool:
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        cin = cout
    backbone = nn.Sequential(*layers)
    backbone.out_channels = cin
    convs = [m for m in backbone if isinstance(m, nn.Conv2d)]
    for conv in convs[:p["frozen"]]:
        for param in conv.parameters():
            param.requires_grad_(False)
    anchors = AnchorGenerator(sizes=(p["sizes"],), aspect_ratios=((0.5, 1.0, 2.0),))
    n_anchors = 3 * len(p["sizes"])
    assert p["rpn"] == cin, "torchvision's RPNHead keeps the feature width"
    return FasterRCNN(
        backbone, num_classes=None, rpn_anchor_generator=anchors, rpn_head=RPNHead(cin, n_anchors),
        box_roi_pool=RoIOp7(p["align"]), box_head=TwoMLPHead(cin * 49, p["fc"]), box_predictor=FastRCNNPredictor(p["fc"], 21),
        rpn_pre_nms_top_n_train=p["train"][0], rpn_post_nms_top_n_train=p["train"][1],
        rpn_pre_nms_top_n_test=p["test"][0], rpn_post_nms_top_n_test=p["test"][1], rpn_batch_size_per_image=256,
        box_batch_size_per_image=p["rois"], box_score_thresh=0.05, box_nms_thresh=0.3, box_detections_per_img=100)


def run_torchvision(name, reps, threads):
    """In a child process: median seconds per training step and per detection."""
    from collections import OrderedDict

    import torch
    from torchvision.models.detection.image_list import ImageList

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    p = PRESETS[name]
    h, w = p["h"], p["w"]
    model = build(p)
    image = torch.randn(1, 3, h, w)
    images = ImageList(image, [(h, w)])
    boxes = torch.tensor([[0.1 * w, 0.1 * h, 0.45 * w, 0.6 * h], [0.5 * w, 0.2 * h, 0.9 * w, 0.9 * h],
                          [0.3 * w, 0.5 * h, 0.6 * w, 0.95 * h]])
    targets = [{"boxes": boxes, "labels": torch.tensor([1, 5, 12])}]

    def step():
        model.train()
        model.zero_grad(set_to_none=False)
        features = OrderedDict([("0", model.backbone(image))])
        proposals, rpn_losses = model.rpn(images, features, targets)
        _, head_losses = model.roi_heads(features, proposals, images.image_sizes, targets)
        sum(list(rpn_losses.values()) + list(head_losses.values())).backward()

    def detect():
        model.eval()
        with torch.no_grad():
            features = OrderedDict([("0", model.backbone(image))])
            proposals, _ = model.rpn(images, features)
            model.roi_heads(features, proposals, images.image_sizes)

    steps, dets = [], []
    for r in range(-1, reps):  # r = -1: warm-up
        t0 = time.perf_counter()
        step()
        t1 = time.perf_counter()
        detect()
        t2 = time.perf_counter()
        if r >= 0:
            steps.append(t1 - t0)
            dets.append(t2 - t1)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"step": statistics.median(steps), "detect": statistics.median(dets), "rss": rss}))


def ours(name, reps, root):
    """bench_model's figures for one preset (one thread per core), from the TSV lines it writes."""
    with tempfile.NamedTemporaryFile(suffix=".tsv") as tsv:
        env = dict(os.environ, FRCNN_BENCH_PRESET=name, FRCNN_BENCH_REPS=str(reps))
        blas = subprocess.run(["sh", os.path.join(root, "tools", "blas-env.sh")], capture_output=True, text=True)
        for assignment in blas.stdout.split():
            key, _, value = assignment.partition("=")
            env.setdefault(key, value)
        subprocess.run([os.path.join(root, "build", "bench", "bench_model"), tsv.name], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        figures = {}
        for line in open(tsv.name):
            key, value, _ = line.rstrip("\n").split("\t")
            figures[key] = float(value)
    return {"step": figures["model_%s_train_step_s" % name], "detect": figures["model_%s_detect_s" % name],
            "rss": figures["model_%s_peak_rss_mib" % name]}


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        run_torchvision(sys.argv[2], int(os.environ.get("FRCNN_BENCH_REPS", "3")),
                        os.cpu_count())
        return
    tsv = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "build", "bench.tsv")
    reps = int(os.environ.get("FRCNN_BENCH_REPS", "3"))
    threads = os.cpu_count()
    import torch
    import torchvision
    print("\nlibfrcnn vs torchvision %s (torch %s), same architecture and input, %d threads, median of %d"
          % (torchvision.__version__, torch.__version__, threads, reps))
    print("%-6s %10s %10s %6s %10s %10s %6s %10s %10s" % ("preset", "step ours", "torchvis.", "ratio", "det ours",
                                                          "torchvis.", "ratio", "RSS ours", "torchvis."))
    rows = []
    for name in PRESETS:
        us = ours(name, reps, root)
        child = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", name], check=True,
                               capture_output=True, text=True)
        tv = json.loads(child.stdout.strip().splitlines()[-1])
        print("%-6s %9.3fs %9.3fs %6.2f %9.3fs %9.3fs %6.2f %7.0fMiB %6.0fMiB" % (
            name, us["step"], tv["step"], tv["step"] / us["step"], us["detect"], tv["detect"],
            tv["detect"] / us["detect"], us["rss"], tv["rss"]), flush=True)
        rows += [("torchvision_%s_train_step_s" % name, tv["step"], "s"),
                 ("torchvision_%s_detect_s" % name, tv["detect"], "s"),
                 ("torchvision_%s_peak_rss_mib" % name, tv["rss"], "MiB"),
                 ("torchvision_%s_step_over_ours" % name, tv["step"] / us["step"], "ratio"),
                 ("torchvision_%s_detect_over_ours" % name, tv["detect"] / us["detect"], "ratio")]
    print("(ratio = torchvision's time / ours: above 1, we are faster)")
    with open(tsv, "a") as f:
        for key, value, unit in rows:
            f.write("%s\t%.4f\t%s\n" % (key, value, unit))


if __name__ == "__main__":
    main()
