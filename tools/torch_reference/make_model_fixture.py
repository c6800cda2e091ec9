#!/usr/bin/env python3
"""Golden data for tests/test_torch_model.c: a tiny VGG-style Faster R-CNN run by torchvision.

The model is libfrcnn's `small` backbone (five 3x3 convolutions 32-64-128-256-256, ReLU, four 2x2 max-pools) with
torchvision's RPNHead (256 channels, 9 anchors), a RoI op 7x7 at 1/16, TwoMLPHead (fc 64) and FastRCNNPredictor
(4 classes), built from torchvision.models.detection.FasterRCNN's own pieces and configured as libfrcnn's
`box_convention = continuous`, `pool_floor = 1` (docs/torchvision.md). Its weights and input image are not stored:
both sides generate them from a counter-based generator (generated() below, tu_generated() in the C test), so the
fixture stays small. Stored: the backbone's feature map, the RPN's per-anchor outputs, the proposals, the head's
outputs on those proposals, the detections (eval mode), and one training step with sampling switched off (every
labelled anchor and every RoI): the four losses and, per parameter, its gradient's sum of squares and eight dot
products with generated vectors (a gradient that differs anywhere changes them).

Two files, one per RoI op: model.ckpt with torchvision.ops.roi_pool (libfrcnn's `roi_op` pool), model_align.ckpt
with torchvision's own MultiScaleRoIAlign (roi_align with 2x2 samples, aligned=False: libfrcnn's align-legacy).

Run from the repository root with Debian's python3-torch and python3-torchvision:
    /usr/bin/python3 tools/torch_reference/make_model_fixture.py
"""

import os
import sys
from collections import OrderedDict

import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign, roi_pool

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from frcnn_format import CheckpointWriter  # noqa: E402

OUTS = {"pool": os.path.join("tests", "fixtures", "torch", "model.ckpt"),
        "align-legacy": os.path.join("tests", "fixtures", "torch", "model_align.ckpt")}
H, W = 128, 160
NUM_CLASSES = 4
FC = 64
WIDTHS = [32, 64, 128, 256, 256]
SIZES = (32.0, 64.0, 128.0)  # base_size 16 x scales 2, 4, 8
RATIOS = (0.5, 1.0, 2.0)
GT_BOXES = [[10.5, 20.25, 60.0, 90.0], [70.0, 30.0, 150.0, 110.0], [30.0, 60.0, 100.0, 124.0]]
GT_LABELS = [1, 2, 3]
PROJECTIONS = 8
ALL = 1 << 20  # a sampler batch larger than any candidate count: nothing is left out


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def generated(name, shape, amplitude):
    """Element i of the tensor `name`: amplitude * (2u - 1), u = the top 24 bits of splitmix64(fnv1a64(name) +
    (i + 1) * golden) / 2^24, computed in double and rounded to float once (tu_generated in C does the same)."""
    n = int(np.prod(shape))
    with np.errstate(over="ignore"):
        z = np.uint64(fnv1a64(name)) + (np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(40)).astype(np.float64) * (1.0 / (1 << 24))
    return ((2.0 * u - 1.0) * amplitude).astype(np.float32).reshape(shape)


def amplitude(name, shape):
    """He-uniform for the layers followed by ReLU, small for the output layers (as the usual initialisations),
    0.1 for biases: every activation stays in a useful range."""
    if name.endswith(".bias"):
        return 0.1
    fan_in = int(np.prod(shape[1:]))
    if "cls_logits" in name or "bbox_pred" in name or "cls_score" in name:
        return 1.0 / np.sqrt(fan_in)
    return np.sqrt(6.0 / fan_in)


class RoIPool7(MultiScaleRoIAlign):
    """torchvision.ops.roi_pool behind MultiScaleRoIAlign's interface (FasterRCNN accepts only that type)."""

    def __init__(self):
        super().__init__(["0"], 7, 0)

    def forward(self, features, proposals, image_shapes):
        return roi_pool(features["0"], proposals, output_size=7, spatial_scale=1.0 / 16)


def build_model(roi_op):
    layers, cin = [], 3
    for i, cout in enumerate(WIDTHS):
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=False)]
        if i < 4:
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=False))
        cin = cout
    backbone = nn.Sequential(*layers)
    backbone.out_channels = 256
    anchors = AnchorGenerator(sizes=(SIZES,), aspect_ratios=(RATIOS,))
    model = FasterRCNN(
        backbone, num_classes=None, min_size=H, max_size=W, rpn_anchor_generator=anchors,
        rpn_head=RPNHead(256, 9),
        box_roi_pool=RoIPool7() if roi_op == "pool" else MultiScaleRoIAlign(["0"], 7, 2),
        box_head=TwoMLPHead(256 * 7 * 7, FC),
        box_predictor=FastRCNNPredictor(FC, NUM_CLASSES),
        rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=400, rpn_pre_nms_top_n_test=1000,
        rpn_post_nms_top_n_test=400, rpn_nms_thresh=0.7, rpn_fg_iou_thresh=0.7, rpn_bg_iou_thresh=0.3,
        rpn_batch_size_per_image=ALL, rpn_positive_fraction=0.5, box_score_thresh=0.05, box_nms_thresh=0.5,
        box_detections_per_img=100, box_fg_iou_thresh=0.5, box_bg_iou_thresh=0.5, box_batch_size_per_image=ALL,
        box_positive_fraction=0.25)
    # libfrcnn's rpn.head.conv, whatever torchvision's version calls it (conv.0.0 in 0.14, conv before).
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.from_numpy(generated(our_name(name), tuple(p.shape), amplitude(name, p.shape))))
    return model


def our_name(torch_name):
    """The libfrcnn parameter a torchvision parameter is generated under (docs/torchvision.md's mapping)."""
    name = torch_name.replace("rpn.head.conv.0.0.", "rpn.head.conv.")
    if name.startswith("backbone."):
        name = "backbone.features." + name[len("backbone."):]
    return name


def gradient_summary(w, name, grad):
    g = grad.detach().double().numpy().ravel()
    w.tensor("grad_sq." + name, np.array([np.dot(g, g)], dtype=np.float64))
    proj = np.stack([generated("projection.%d.%s" % (k, name), g.shape, 1.0).astype(np.float64)
                     for k in range(PROJECTIONS)])
    w.tensor("grad_proj." + name, proj @ g)


def write_fixture(roi_op, out):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = build_model(roi_op)
    image = torch.from_numpy(generated("input.image", (1, 3, H, W), 1.0))
    images = ImageList(image, [(H, W)])
    gt = [{"boxes": torch.tensor(GT_BOXES, dtype=torch.float32),
           "labels": torch.tensor(GT_LABELS, dtype=torch.int64)}]

    with CheckpointWriter(out) as w:
        w.meta("roi_op", roi_op)
        w.meta("torch_version", torch.__version__)
        w.meta("torchvision_version", torchvision.__version__)
        w.meta("script", "tools/torch_reference/make_model_fixture.py")
        w.tensor("gt_boxes", np.array(GT_BOXES, dtype=np.float32))
        w.tensor("gt_labels", np.array(GT_LABELS, dtype=np.int32))

        model.eval()
        with torch.no_grad():
            feature = model.backbone(image)
            features = OrderedDict([("0", feature)])
            objectness, deltas = model.rpn.head([feature])
            proposals, _ = model.rpn(images, features)
            pooled = model.roi_heads.box_roi_pool(features, proposals, images.image_sizes)
            cls, box = model.roi_heads.box_predictor(model.roi_heads.box_head(pooled))
            detections, _ = model.roi_heads(features, proposals, images.image_sizes)
        # (1, A, h, w) -> (h, w, A): libfrcnn's (y, x, anchor) order.
        w.tensor("feature", feature[0].numpy())
        w.tensor("rpn_objectness", objectness[0][0].permute(1, 2, 0).reshape(-1).numpy())
        w.tensor("rpn_deltas", deltas[0][0].reshape(9, 4, *deltas[0].shape[2:]).permute(2, 3, 0, 1)
                 .reshape(-1, 4).numpy())
        w.tensor("proposals", proposals[0].numpy())
        w.tensor("head_cls", cls.numpy())
        w.tensor("head_box", box.numpy())
        w.tensor("det_boxes", detections[0]["boxes"].numpy())
        w.tensor("det_scores", detections[0]["scores"].numpy())
        w.tensor("det_labels", detections[0]["labels"].numpy().astype(np.int32))

        model.train()
        feature = model.backbone(image)
        features = OrderedDict([("0", feature)])
        proposals, rpn_losses = model.rpn(images, features, gt)
        _, head_losses = model.roi_heads(features, proposals, images.image_sizes, gt)
        losses = {**rpn_losses, **head_losses}
        sum(losses.values()).backward()
        w.tensor("loss_rpn_cls", np.array([losses["loss_objectness"].item()], dtype=np.float64))
        w.tensor("loss_rpn_box", np.array([losses["loss_rpn_box_reg"].item()], dtype=np.float64))
        w.tensor("loss_cls", np.array([losses["loss_classifier"].item()], dtype=np.float64))
        w.tensor("loss_box", np.array([losses["loss_box_reg"].item()], dtype=np.float64))
        w.tensor("train_proposals", proposals[0].detach().numpy())
        for name, p in model.named_parameters():
            gradient_summary(w, our_name(name), p.grad)
    print("wrote %s: %d proposals, %d detections, losses %s" % (
        out, proposals[0].shape[0], detections[0]["boxes"].shape[0],
        {k: round(v.item(), 5) for k, v in losses.items()}))


def main():
    for roi_op, out in OUTS.items():
        write_fixture(roi_op, out)


if __name__ == "__main__":
    main()
