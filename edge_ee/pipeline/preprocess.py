"""Turn a source frame into the model's input tensor, as declared in the manifest's ``input.preprocess``.

The exporter declares the preprocessing; the runtime applies it, so one bundle behaves the same on
every source. Image spec keys::

    {"kind": "image", "color": "gray" | "rgb" | "bgr", "size": [H, W], "crop": "center" | "none",
     "scale": 1/255, "mean": [...], "std": [...], "invert": false}

Audio spec (``kind: audio_mfcc``) is handled by :mod:`edge_ee.pipeline.features` (MLPerf Tiny KWS front end).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..core.manifest import InputSpec
from ..errors import InferenceError

Preprocessor = Callable[[np.ndarray], np.ndarray]
_GRAY_W = np.array([0.114, 0.587, 0.299], dtype=np.float32)  # BGR order (ITU-R BT.601)


def _to_color(img: np.ndarray, color: str) -> np.ndarray:
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3):
        raise InferenceError(f"image frame has shape {img.shape}; expected HxW, HxWx1 or HxWx3")
    if color == "gray":
        if img.shape[2] == 3:
            return (img.astype(np.float32) @ _GRAY_W)[:, :, None]
        return img.astype(np.float32)
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    img = img.astype(np.float32)
    return img[:, :, ::-1] if color == "rgb" else img


def _center_crop(img: np.ndarray, h: int, w: int) -> np.ndarray:
    ih, iw = img.shape[:2]
    target = w / h
    if iw / ih > target:  # too wide
        nw = max(1, round(ih * target))
        x0 = (iw - nw) // 2
        return img[:, x0:x0 + nw]
    nh = max(1, round(iw / target))
    y0 = (ih - nh) // 2
    return img[y0:y0 + nh]


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    if img.shape[:2] == (h, w):
        return img
    try:
        import cv2

        out = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        return out if out.ndim == 3 else out[:, :, None]
    except ImportError:  # nearest neighbour without OpenCV
        ys = (np.arange(h) * img.shape[0] / h).astype(int)
        xs = (np.arange(w) * img.shape[1] / w).astype(int)
        return img[ys][:, xs]


def image_preprocessor(spec: InputSpec) -> Preprocessor:
    pre = spec.preprocess
    color = pre.get("color", "rgb")
    shape = spec.sample_shape
    if spec.layout == "NCHW":
        h, w = pre.get("size", shape[2:4])
    else:
        h, w = pre.get("size", shape[1:3])
    h, w = int(h), int(w)
    crop = pre.get("crop", "center")
    scale = float(pre.get("scale", 1 / 255.0))
    mean = np.asarray(pre.get("mean", [0.0]), dtype=np.float32)
    std = np.asarray(pre.get("std", [1.0]), dtype=np.float32)
    invert = bool(pre.get("invert", False))
    dtype = np.dtype(spec.dtype)

    def run(img: np.ndarray) -> np.ndarray:
        x = _to_color(img, color)
        if crop == "center":
            x = _center_crop(x, h, w)
        x = _resize(x, h, w)
        if invert:
            x = 255.0 - x
        x = (x * scale - mean) / std
        x = x.transpose(2, 0, 1)[None] if spec.layout == "NCHW" else x[None]
        if x.shape != shape:
            raise InferenceError(f"preprocessed image has shape {x.shape}, the model expects {shape}")
        return x.astype(dtype, copy=False)

    return run


def audio_preprocessor(spec: InputSpec) -> Preprocessor:
    from .features import mfcc_features

    shape = spec.sample_shape
    pre = spec.preprocess

    def run(pcm: np.ndarray) -> np.ndarray:
        feats = mfcc_features(np.asarray(pcm, dtype=np.float32), pre)
        if feats.size != int(np.prod(shape)):
            raise InferenceError(f"audio features have {feats.size} values, the model expects shape {shape}")
        return feats.reshape(shape).astype(spec.dtype, copy=False)

    return run


def tensor_preprocessor(spec: InputSpec) -> Preprocessor:
    shape = spec.sample_shape

    def run(x: np.ndarray) -> np.ndarray:
        if x.size != int(np.prod(shape)):
            raise InferenceError(f"frame has {x.size} values ({x.shape}), the model expects shape {shape}")
        return x.reshape(shape).astype(spec.dtype, copy=False)

    return run


def make_preprocessor(spec: InputSpec) -> Preprocessor:
    kind = spec.preprocess.get("kind", "none")
    if kind == "image":
        return image_preprocessor(spec)
    if kind == "audio_mfcc":
        return audio_preprocessor(spec)
    return tensor_preprocessor(spec)
