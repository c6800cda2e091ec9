#!/usr/bin/env python3
"""Converts VGG16 Faster R-CNN weights between torchvision and libfrcnn checkpoints (docs/torchvision.md).

  frcnn_import.py vgg16-imagenet OUT.ckpt [--state-dict VGG16.pth]
      torchvision's ImageNet VGG16 -> a libfrcnn weights file for `train_voc --init-weights`.
  frcnn_import.py from-torchvision STATE_DICT.pth OUT.ckpt --num-classes K [--classes FILE] [--anchor-sizes ..]
      a torchvision FasterRCNN state_dict (the model build_torchvision_vgg16_frcnn() builds) -> a complete
      libfrcnn checkpoint for `detect --ckpt`, `eval_voc --ckpt` or `train_voc --init-weights`.
  frcnn_import.py to-torchvision IN.ckpt OUT.pth
      the reverse: a libfrcnn checkpoint of the vgg16 backbone -> a state_dict for build_torchvision_vgg16_frcnn().

Library use: `from frcnn_import import build_torchvision_vgg16_frcnn`. Needs numpy, torch and torchvision.
"""

import argparse
import collections
import os
import sys

import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.rpn import RPNHead

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from frcnn_format import CheckpointWriter, FormatError, read_checkpoint  # noqa: E402

# torchvision's vgg16().features numbers every module (conv, relu, [pool]); these are the 13 convolutions. The
# libfrcnn model names its convolutions by the same indices (lib/detect/model.c).
VGG16_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
VGG16_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
FEATURES, POOLED, FC = 512, 7, 4096

# torchvision's ImageNet normalisation (RGB, in 0..1) and the same in libfrcnn's terms (B, G, R, in 0..255).
TV_MEAN, TV_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
BGR255_MEAN = tuple(255 * v for v in reversed(TV_MEAN))
BGR255_STD = tuple(255 * v for v in reversed(TV_STD))

TV_ANCHOR_SIZES, TV_ASPECT_RATIOS = (128, 256, 512), (0.5, 1.0, 2.0)
BOXES_INCLUSIVE, BOXES_CONTINUOUS = 0, 1
ROI_POOL = 0  # frcnn_roi_op: the builder pools with torchvision.ops.roi_pool
MAX_ANCHOR_SHAPES = 8

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
BACKGROUND = "__background__"  # the name libfrcnn's trainer stores for class 0


class ConversionError(Exception):
    """Bad input: reported as one line on stderr, exit status 1."""


# ----- the torchvision model -----------------------------------------------------------------------------------------

class RoIPool(nn.Module):
    """torchvision.ops.roi_pool (max pooling, Fast R-CNN's) behind MultiScaleRoIAlign's call signature, so that
    FasterRCNN's RoIHeads can use it: forward(features dict or tensor, proposals list, image_shapes)."""

    def __init__(self, output_size=POOLED, spatial_scale=1.0 / 16):
        super().__init__()
        self.output_size, self.spatial_scale = output_size, spatial_scale

    def forward(self, features, proposals, image_shapes):
        x = features["0"] if isinstance(features, dict) else features
        return torchvision.ops.roi_pool(x, proposals, self.output_size, self.spatial_scale)


def build_torchvision_vgg16_frcnn(num_classes, min_size=800, max_size=1333, anchor_sizes=TV_ANCHOR_SIZES):
    """The torchvision FasterRCNN that matches libfrcnn's vgg16 model: VGG16 features[:-1] (stride 16), RPN with
    one 3x3 conv, RoI max pooling 7x7, TwoMLPHead (no dropout), FastRCNNPredictor; parameters as the config that
    `from-torchvision` writes. Randomly initialised (torchvision's defaults); load a state_dict into it."""
    backbone = torchvision.models.vgg16().features[:-1]
    backbone.out_channels = FEATURES
    anchors = AnchorGenerator(sizes=(tuple(anchor_sizes),), aspect_ratios=(TV_ASPECT_RATIOS,))
    model = FasterRCNN(
        backbone, min_size=min_size, max_size=max_size, image_mean=list(TV_MEAN), image_std=list(TV_STD),
        rpn_anchor_generator=anchors, rpn_head=RPNHead(FEATURES, anchors.num_anchors_per_location()[0]),
        rpn_pre_nms_top_n_train=2000, rpn_post_nms_top_n_train=2000, rpn_pre_nms_top_n_test=1000,
        rpn_post_nms_top_n_test=1000, rpn_nms_thresh=0.7, rpn_fg_iou_thresh=0.7, rpn_bg_iou_thresh=0.3,
        rpn_batch_size_per_image=256, rpn_positive_fraction=0.5, rpn_score_thresh=0.0,
        box_head=TwoMLPHead(FEATURES * POOLED * POOLED, FC),
        box_predictor=FastRCNNPredictor(FC, num_classes), box_score_thresh=0.05, box_nms_thresh=0.5,
        box_detections_per_img=100, box_fg_iou_thresh=0.5, box_bg_iou_thresh=0.5, box_batch_size_per_image=512,
        box_positive_fraction=0.25, bbox_reg_weights=(10.0, 10.0, 5.0, 5.0))
    model.roi_heads.box_roi_pool = RoIPool()  # FasterRCNN's constructor accepts only MultiScaleRoIAlign
    return model


def rpn_conv_key():
    """`rpn.head.conv.0.0` since torchvision 0.13 (Conv2dNormActivation inside a Sequential), `rpn.head.conv`
    before: whichever this torchvision's RPNHead uses."""
    return "rpn.head." + next(iter(RPNHead(1, 1).state_dict())).rsplit(".", 1)[0]


# ----- configuration: the checkpoint's config.* keys ----------------------------------------------------------------

def vgg16_config():
    """frcnn_config_vgg16() (lib/detect/config.c) as config.* values, in lib/train/ckpt.c config_fields[] order,
    plus box_convention and pool_floor. Every key is written as f64, the only type frcnn_ckpt_read_config accepts for them."""
    c = {"backbone": 0, "num_classes": 21, "short_side": 600, "max_side": 1000}
    c.update({"pixel_means.%d" % i: v for i, v in enumerate((102.9801, 115.9465, 122.7717))})
    c.update({"pixel_stds.%d" % i: 1.0 for i in range(3)})
    c["frozen_convs"] = 4
    c.update(anchor_config(16.0, (8.0, 16.0, 32.0)))
    c.update({"feat_stride": 16, "rpn_channels": 512, "rpn_targets.positive_iou": 0.7, "rpn_targets.negative_iou": 0.3,
              "rpn_targets.batch_size": 256, "rpn_targets.fg_fraction": 0.5, "rpn_targets.allowed_border": 0,
              "rpn_sigma": 3.0})
    c.update(proposal_config("train", 12000, 2000, 0.7, 16.0))
    c.update(proposal_config("test", 6000, 300, 0.7, 16.0))
    c.update({"roi_targets.batch_size": 128, "roi_targets.fg_fraction": 0.25, "roi_targets.fg_iou": 0.5,
              "roi_targets.bg_iou_hi": 0.5, "roi_targets.bg_iou_lo": 0.0})
    c.update({"roi_targets.means.%d" % i: 0.0 for i in range(4)})
    c.update({"roi_targets.stds.%d" % i: v for i, v in enumerate((0.1, 0.1, 0.2, 0.2))})
    c.update({"max_gt_boxes": 256, "pooled_size": POOLED, "fc_channels": FC, "dropout": 0.5, "head_sigma": 1.0,
              "score_threshold": 0.05, "test_nms_iou": 0.3, "max_detections": 100, "norm_groups": 0,
              "box_convention": BOXES_INCLUSIVE, "pool_floor": 0, "roi_op": ROI_POOL})
    return c


def anchor_config(base_size, scales, ratios=TV_ASPECT_RATIOS):
    c = {"anchors.base_size": base_size, "anchors.n_ratios": len(ratios)}
    c.update({"anchors.ratios.%d" % i: ratios[i] if i < len(ratios) else 0.0 for i in range(MAX_ANCHOR_SHAPES)})
    c["anchors.n_scales"] = len(scales)
    c.update({"anchors.scales.%d" % i: scales[i] if i < len(scales) else 0.0 for i in range(MAX_ANCHOR_SHAPES)})
    return c


def proposal_config(phase, pre_nms, post_nms, nms_iou, min_size):
    p = phase + "_proposals."
    return {p + "pre_nms_top_n": pre_nms, p + "post_nms_top_n": post_nms, p + "nms_iou": nms_iou,
            p + "min_size": min_size}


def torchvision_normalisation():
    c = {"pixel_means.%d" % i: v for i, v in enumerate(BGR255_MEAN)}
    c.update({"pixel_stds.%d" % i: v for i, v in enumerate(BGR255_STD)})
    return c


def torchvision_config(num_classes, anchor_sizes):
    """The configuration under which libfrcnn computes what build_torchvision_vgg16_frcnn() computes."""
    c = vgg16_config()
    c.update(torchvision_normalisation())
    c.update(anchor_config(16.0, [s / 16.0 for s in anchor_sizes]))
    c.update({"num_classes": num_classes, "short_side": 800, "max_side": 1333, "box_convention": BOXES_CONTINUOUS,
              "pool_floor": 1,  # torchvision's VGG16 max-pools round down
              "rpn_targets.allowed_border": -1,  # torchvision keeps anchors that cross the border
              "roi_targets.batch_size": 512, "head_sigma": 3.0,  # smooth-L1 beta 1/9 = 1 / sigma^2, both heads
              "dropout": 0.0, "test_nms_iou": 0.5})
    c.update(proposal_config("train", 2000, 2000, 0.7, 0.001))
    c.update(proposal_config("test", 1000, 1000, 0.7, 0.001))
    return c


def write_checkpoint(path, config, tensors, classes=None):
    """A libfrcnn checkpoint: run.* and config.* (and classes.*) META, then float32 tensors `model.<name>`."""
    with CheckpointWriter(path) as w:
        w.meta("run.library_version", "frcnn_import.py " + torchvision.__version__)
        w.meta_u64("run.iteration", 0)
        for key, value in config.items():
            w.meta_f64("config." + key, float(np.float32(value)))  # the C side holds them as float or int
        for i, name in enumerate(classes or []):
            w.meta("classes.%d" % i, name)
        for name, value in tensors.items():
            w.tensor("model." + name, np.ascontiguousarray(value, dtype=np.float32))


# ----- state dicts ---------------------------------------------------------------------------------------------------

def load_state_dict(path):
    """A state_dict from a .pth file: a plain state_dict, or a training checkpoint holding one under "model"."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds: unpickling, zip, pickle refused by weights_only
        raise ConversionError("%s: cannot load a state_dict: %s" % (path, (str(e).splitlines() or [repr(e)])[0]))
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ConversionError("%s: not a state_dict (a dict of tensors)" % path)
    if obj and all(k.startswith("module.") for k in obj):  # saved from DataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return {k: v.detach().cpu().to(torch.float32).numpy() for k, v in obj.items()}


def take(sd, key, shape, source):
    """sd[key], removed from sd, which must exist with this shape; float32, not copied when it is already."""
    if key not in sd:
        raise ConversionError("%s: no '%s' (not the VGG16 architecture of docs/torchvision.md?)" % (source, key))
    value = sd.pop(key)
    if tuple(value.shape) != tuple(shape):
        raise ConversionError("%s: '%s' has shape %s, expected %s" % (source, key, tuple(value.shape), tuple(shape)))
    return value.astype(np.float32, copy=False)


def no_leftovers(sd, source):
    if sd:
        names = sorted(sd)
        raise ConversionError("%s: %d unexpected entries, e.g. '%s' (a different architecture?)"
                              % (source, len(names), names[0]))


def conv_shapes():
    """(index, weight shape) of the 13 VGG16 convolutions."""
    cin = 3
    for index, cout in zip(VGG16_CONVS, VGG16_WIDTHS):
        yield index, (cout, cin, 3, 3)
        cin = cout


def flip_input_channels(weight):
    """RGB <-> BGR of a first convolution (out, 3, kh, kw): the same filter on channel-reversed input."""
    return np.ascontiguousarray(weight[:, ::-1])


def take_backbone(sd, prefix, source):
    """The 13 convolutions from `<prefix><i>.weight/bias`, named as libfrcnn names them, conv1 made BGR."""
    out = {}
    for index, shape in conv_shapes():
        out["backbone.features.%d.weight" % index] = take(sd, "%s%d.weight" % (prefix, index), shape, source)
        out["backbone.features.%d.bias" % index] = take(sd, "%s%d.bias" % (prefix, index), shape[:1], source)
    out["backbone.features.0.weight"] = flip_input_channels(out["backbone.features.0.weight"])
    return out


def take_linear(sd, src, dst, out_features, in_features, source, out):
    out[dst + ".weight"] = take(sd, src + ".weight", (out_features, in_features), source)
    out[dst + ".bias"] = take(sd, src + ".bias", (out_features,), source)


def vgg16_imagenet_tensors(sd, source):
    """ImageNet VGG16 -> backbone, fc6 and fc7 (the paper initialises fc6/fc7 from VGG16's classifier; our RoI
    pool output is 512 x 7 x 7 flattened C, H, W, as VGG's classifier input)."""
    out = take_backbone(sd, "features.", source)
    take_linear(sd, "classifier.0", "roi_heads.box_head.fc6", FC, FEATURES * POOLED * POOLED, source, out)
    take_linear(sd, "classifier.3", "roi_heads.box_head.fc7", FC, FC, source, out)
    sd.pop("classifier.6.weight", None)  # the 1000 ImageNet classes: no use for detection
    sd.pop("classifier.6.bias", None)
    no_leftovers(sd, source)
    return out


def from_torchvision_tensors(sd, num_classes, num_anchors, source):
    """torchvision FasterRCNN (VGG16 backbone) -> libfrcnn parameters. Objectness: torchvision has one logit z per
    anchor (sigmoid); libfrcnn has a background and a foreground logit (softmax, channels [0, A) and [A, 2A)):
    background 0, foreground z is exact, since softmax([0, z])[1] == sigmoid(z)."""
    out = take_backbone(sd, "backbone.", source)
    conv = "rpn.head.conv.0.0" if "rpn.head.conv.0.0.weight" in sd else "rpn.head.conv"  # torchvision >= / < 0.13
    out["rpn.head.conv.weight"] = take(sd, conv + ".weight", (FEATURES, FEATURES, 3, 3), source)
    out["rpn.head.conv.bias"] = take(sd, conv + ".bias", (FEATURES,), source)
    z_w = take(sd, "rpn.head.cls_logits.weight", (num_anchors, FEATURES, 1, 1), source)
    z_b = take(sd, "rpn.head.cls_logits.bias", (num_anchors,), source)
    out["rpn.head.cls_logits.weight"] = np.concatenate([np.zeros_like(z_w), z_w])
    out["rpn.head.cls_logits.bias"] = np.concatenate([np.zeros_like(z_b), z_b])
    out["rpn.head.bbox_pred.weight"] = take(sd, "rpn.head.bbox_pred.weight", (4 * num_anchors, FEATURES, 1, 1), source)
    out["rpn.head.bbox_pred.bias"] = take(sd, "rpn.head.bbox_pred.bias", (4 * num_anchors,), source)
    take_linear(sd, "roi_heads.box_head.fc6", "roi_heads.box_head.fc6", FC, FEATURES * POOLED * POOLED, source, out)
    take_linear(sd, "roi_heads.box_head.fc7", "roi_heads.box_head.fc7", FC, FC, source, out)
    take_linear(sd, "roi_heads.box_predictor.cls_score", "roi_heads.box_predictor.cls_score", num_classes, FC,
                source, out)
    take_linear(sd, "roi_heads.box_predictor.bbox_pred", "roi_heads.box_predictor.bbox_pred", 4 * num_classes, FC,
                source, out)
    no_leftovers(sd, source)
    return out


def to_torchvision_tensors(model, num_classes, num_anchors, source):
    """libfrcnn parameters -> torchvision FasterRCNN state_dict. Objectness z = foreground - background (weights and
    biases), exact: sigmoid(fg - bg) == softmax([bg, fg])[1]."""
    model = dict(model)
    sd = collections.OrderedDict()
    for index, shape in conv_shapes():
        sd["backbone.%d.weight" % index] = take(model, "backbone.features.%d.weight" % index, shape, source)
        sd["backbone.%d.bias" % index] = take(model, "backbone.features.%d.bias" % index, shape[:1], source)
    sd["backbone.0.weight"] = flip_input_channels(sd["backbone.0.weight"])
    conv = rpn_conv_key()
    sd[conv + ".weight"] = take(model, "rpn.head.conv.weight", (FEATURES, FEATURES, 3, 3), source)
    sd[conv + ".bias"] = take(model, "rpn.head.conv.bias", (FEATURES,), source)
    w = take(model, "rpn.head.cls_logits.weight", (2 * num_anchors, FEATURES, 1, 1), source)
    b = take(model, "rpn.head.cls_logits.bias", (2 * num_anchors,), source)
    sd["rpn.head.cls_logits.weight"] = w[num_anchors:] - w[:num_anchors]
    sd["rpn.head.cls_logits.bias"] = b[num_anchors:] - b[:num_anchors]
    sd["rpn.head.bbox_pred.weight"] = take(model, "rpn.head.bbox_pred.weight", (4 * num_anchors, FEATURES, 1, 1),
                                           source)
    sd["rpn.head.bbox_pred.bias"] = take(model, "rpn.head.bbox_pred.bias", (4 * num_anchors,), source)
    for name, out_features, in_features in (("roi_heads.box_head.fc6", FC, FEATURES * POOLED * POOLED),
                                            ("roi_heads.box_head.fc7", FC, FC),
                                            ("roi_heads.box_predictor.cls_score", num_classes, FC),
                                            ("roi_heads.box_predictor.bbox_pred", 4 * num_classes, FC)):
        take_linear(model, name, name, out_features, in_features, source, sd)
    no_leftovers(model, source)
    return collections.OrderedDict((k, torch.from_numpy(np.ascontiguousarray(v))) for k, v in sd.items())


# ----- commands ------------------------------------------------------------------------------------------------------

def cmd_vgg16_imagenet(args):
    if args.state_dict:
        sd, source = load_state_dict(args.state_dict), args.state_dict
    else:
        model = torchvision.models.vgg16(weights="IMAGENET1K_V1")  # downloads once into the torch hub cache
        sd, source = {k: v.numpy() for k, v in model.state_dict().items()}, "torchvision vgg16 IMAGENET1K_V1"
    config = vgg16_config()
    config.update(torchvision_normalisation())
    write_checkpoint(args.out, config, vgg16_imagenet_tensors(sd, source))
    print("%s: VGG16 conv1_1..conv5_3, fc6, fc7 from %s; for train_voc --preset vgg16 --init-weights"
          % (args.out, source))


def parse_anchor_sizes(text):
    try:
        sizes = [float(s) for s in text.split(",")]
    except ValueError:
        sizes = []
    if not 1 <= len(sizes) <= MAX_ANCHOR_SHAPES or not all(s > 0 for s in sizes):
        raise ConversionError("--anchor-sizes %r: expected 1 to %d positive numbers separated by commas"
                              % (text, MAX_ANCHOR_SHAPES))
    return sizes


def read_classes(path, num_classes):
    """Class names for classes.0 .. K-1: the file's lines (blank ones ignored), with the background first if the
    file lists only the K - 1 object classes; the 20 VOC classes for K = 21; else class<i>."""
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                names = [line.strip() for line in f if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise ConversionError("--classes %s: %s" % (path, e))
        if len(names) == num_classes - 1:
            names.insert(0, BACKGROUND)
        if len(names) != num_classes:
            raise ConversionError("--classes %s: %d names for %d classes (expected %d object classes, or %d lines "
                                  "with the background first)" % (path, len(names), num_classes, num_classes - 1,
                                                                  num_classes))
        return names
    if num_classes == len(VOC_CLASSES) + 1:
        return [BACKGROUND] + list(VOC_CLASSES)
    return [BACKGROUND] + ["class%d" % i for i in range(1, num_classes)]


def cmd_from_torchvision(args):
    if args.num_classes < 2:
        raise ConversionError("--num-classes %d: expected 2 or more (the background and the object classes)"
                              % args.num_classes)
    sizes = parse_anchor_sizes(args.anchor_sizes)
    classes = read_classes(args.classes, args.num_classes)
    sd = load_state_dict(args.state_dict)
    tensors = from_torchvision_tensors(sd, args.num_classes, len(sizes) * len(TV_ASPECT_RATIOS), args.state_dict)
    write_checkpoint(args.out, torchvision_config(args.num_classes, sizes), tensors, classes)
    print("%s: %d classes, anchors %s x ratios %s, torchvision conventions (box_convention 1)"
          % (args.out, args.num_classes, ",".join("%g" % s for s in sizes), ",".join("%g" % r for r in
                                                                                       TV_ASPECT_RATIOS)))


def config_of(meta, source):
    """The config.* values of a checkpoint (box_convention, pool_floor, norm_groups and roi_op 0 when absent: files
    from before they existed)."""
    config = {k[len("config."):]: v for k, v in meta.items() if k.startswith("config.")}
    for key in ("backbone", "num_classes", "anchors.n_ratios", "anchors.n_scales"):
        if not isinstance(config.get(key), float):
            raise ConversionError("%s: 'config.%s' is missing (not a libfrcnn training checkpoint?)" % (source, key))
    config.setdefault("box_convention", float(BOXES_INCLUSIVE))
    config.setdefault("pool_floor", 0.0)
    config.setdefault("norm_groups", 0.0)
    config.setdefault("roi_op", float(ROI_POOL))
    return config


# What changes the outputs of inference; the input scale and the anchor sizes are the builder's arguments.
INFERENCE_KEYS = (["pixel_means.%d" % i for i in range(3)] + ["pixel_stds.%d" % i for i in range(3)] +
                  ["box_convention", "pool_floor", "roi_op", "anchors.n_ratios"] + ["anchors.ratios.%d" % i for i in range(3)] +
                  ["test_proposals." + k for k in ("pre_nms_top_n", "post_nms_top_n", "nms_iou", "min_size")] +
                  ["score_threshold", "test_nms_iou", "max_detections"])


def differences_from_torchvision(config):
    """The settings that keep build_torchvision_vgg16_frcnn() from computing what libfrcnn computes with config."""
    want = torchvision_config(2, TV_ANCHOR_SIZES)
    return ["%s %.6g (torchvision: %.6g)" % (k, config.get(k, 0.0), want[k]) for k in INFERENCE_KEYS
            if not np.isclose(config.get(k, 0.0), np.float32(want[k]), rtol=1e-6, atol=0)]


def fmt(values):
    return "(" + ", ".join("%.6g" % v for v in values) + ")"


def cmd_to_torchvision(args):
    try:
        tensors, meta = read_checkpoint(args.ckpt)
    except FormatError as e:
        raise ConversionError(str(e))
    config = config_of(meta, args.ckpt)
    if config["backbone"] != 0:
        raise ConversionError("%s: backbone %d is not vgg16 (0): only the VGG16 model has a torchvision twin"
                              % (args.ckpt, config["backbone"]))
    if config["norm_groups"] != 0:
        raise ConversionError("%s: the backbone has GroupNorm (norm_groups %d), torchvision's VGG16 has none"
                              % (args.ckpt, config["norm_groups"]))
    model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    num_classes = int(config["num_classes"])
    num_anchors = int(config["anchors.n_ratios"] * config["anchors.n_scales"])
    state_dict = to_torchvision_tensors(model, num_classes, num_anchors, args.ckpt)
    with open(args.out, "wb") as f:  # open() first: torch.save reports a bad path as RuntimeError
        torch.save(state_dict, f)
    sizes = [config["anchors.base_size"] * config["anchors.scales.%d" % i]
             for i in range(int(config["anchors.n_scales"]))]
    print("%s: load into build_torchvision_vgg16_frcnn(%d, min_size=%d, max_size=%d, anchor_sizes=%s)"
          % (args.out, num_classes, config["short_side"], config["max_side"], fmt(sizes)))
    problems = differences_from_torchvision(config)
    if problems:
        print("frcnn_import.py: warning: %s does not use torchvision's conventions, so the exported model will not "
              "reproduce its detections: %s" % (args.ckpt, "; ".join(problems)), file=sys.stderr)


class Parser(argparse.ArgumentParser):
    """Bad usage is one line on stderr and exit status 1, like every other bad input."""

    def error(self, message):
        self.exit(1, "%s: error: %s (see --help)\n" % (self.prog, message))


def parse_args(argv):
    p = Parser(prog="frcnn_import.py", description=__doc__,
               epilog="Mapping, pixel conventions and the configuration written: docs/torchvision.md.",
               formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    s = sub.add_parser("vgg16-imagenet", help="ImageNet VGG16 -> libfrcnn weights file for --init-weights",
                       description="torchvision's ImageNet VGG16 (conv1_1..conv5_3, fc6, fc7) -> a libfrcnn weights "
                                   "file for train_voc --preset vgg16 --init-weights. conv1's input channels are "
                                   "reversed (RGB -> BGR) and the file's pixel normalisation is torchvision's, so "
                                   "the network computes what torchvision's does.")
    s.add_argument("out", metavar="OUT.ckpt")
    s.add_argument("--state-dict", metavar="FILE.pth",
                   help="a torchvision vgg16 state_dict (offline); default: download IMAGENET1K_V1 via torchvision")
    s.set_defaults(run=cmd_vgg16_imagenet)
    s = sub.add_parser("from-torchvision", help="torchvision FasterRCNN state_dict -> libfrcnn checkpoint",
                       description="A state_dict of the torchvision FasterRCNN that build_torchvision_vgg16_frcnn() "
                                   "builds -> a complete libfrcnn checkpoint (detect, eval_voc, --init-weights), "
                                   "with a configuration that reproduces torchvision's computation.")
    s.add_argument("state_dict", metavar="STATE_DICT.pth")
    s.add_argument("out", metavar="OUT.ckpt")
    s.add_argument("--num-classes", type=int, required=True, metavar="K", help="including the background")
    s.add_argument("--classes", metavar="FILE",
                   help="class names, one per line: K - 1 object classes (the background is added first) or K "
                        "names with the background first; default: the 20 VOC classes when K = 21, else class<i>")
    s.add_argument("--anchor-sizes", default="128,256,512", metavar="S1,S2,..",
                   help="the AnchorGenerator sizes of the model (default 128,256,512); ratios are 0.5,1,2")
    s.set_defaults(run=cmd_from_torchvision)
    s = sub.add_parser("to-torchvision", help="libfrcnn checkpoint -> torchvision FasterRCNN state_dict",
                       description="A libfrcnn checkpoint of the vgg16 backbone -> a state_dict for "
                                   "build_torchvision_vgg16_frcnn(). Warns when the checkpoint's conventions are "
                                   "not torchvision's (the exported model then does not reproduce its outputs).")
    s.add_argument("ckpt", metavar="IN.ckpt")
    s.add_argument("out", metavar="OUT.pth")
    s.set_defaults(run=cmd_to_torchvision)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        args.run(args)
    except (ConversionError, OSError) as e:
        print("frcnn_import.py: error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
