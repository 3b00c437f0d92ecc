"""Prediction engines: what runs a model on a batch of decoded posters.

Two engines run the same network. ``keras`` is the reference (the saved ``model.keras``
under TensorFlow); ``litert`` runs the float32 LiteRT export beside it with LiteRT's own
small runtime (``ai-edge-litert``, XNNPACK on CPU), so a process that predicts with it
never imports TensorFlow: it starts in a fraction of the time and memory.

A model whose head was trained on int8 features (backbone ``mobilenet_v2_1.0_int8``) runs on
LiteRT as two files: ``features.tflite``, the int8 MobileNetV2 that made its training
features, and ``model.tflite``, the float head. Its ``model.keras`` is the float network
the int8 one was quantized from plus the same head: the Keras reference.

An engine takes a float32 batch and returns the model's output as a numpy array.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from core.errors import ConfigError
from models.quiet import filtered_stderr

ENGINES = ("litert", "keras")
FEATURES_FILE = "features.tflite"  # beside model.tflite when the head reads int8 features


class Engine(Protocol):
    name: str
    pads_batches: bool  # whether short batches are best padded to the full batch size

    def run(self, batch: np.ndarray) -> np.ndarray: ...


def available_cores() -> int:
    """Cores this process may run on (a container or ``taskset`` gives fewer than the host)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class KerasEngine:
    name = "keras"
    pads_batches = True

    def __init__(self, model) -> None:
        self.model = model

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_on_batch(batch))


def _interpreter(threads: int, **source):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ConfigError(
            "the LiteRT runtime is not installed: 'pip install ai-edge-litert==2.3.0' "
            "(or reinstall the project), or predict with --engine keras"
        ) from None
    return Interpreter(num_threads=threads, **source)


class Int8Features:
    """An int8 LiteRT feature extractor (``models.int8.extractor_bytes``): uint8 RGB in,
    its pooled features dequantized to float32 out.

    One image per invoke: measured here at 320x224 on 2 threads, batch 1 runs 212
    images/s, batch 8 184/s and batch 32 149/s (the activations of a batch outgrow the
    cache), and per-image calls cost nothing to resize."""

    def __init__(self, threads: int | None = None, **source) -> None:
        self.threads = threads or available_cores()
        self._interpreter = _interpreter(self.threads, **source)
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._scale, self._zero = self._output["quantization"]
        self._shape: tuple[int, ...] | None = None

    @property
    def width(self) -> int:
        return int(self._output["shape"][-1])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        out = np.empty((len(images), self.width), np.float32)
        for i, image in enumerate(images):
            shape = (1, *image.shape)
            if shape != self._shape:
                self._interpreter.resize_tensor_input(self._input["index"], list(shape))
                with filtered_stderr():
                    self._interpreter.allocate_tensors()
                self._shape = shape
            # Pixel values are whole numbers 0..255 whatever dtype they arrive in.
            self._interpreter.set_tensor(self._input["index"], image[None].astype(np.uint8))
            self._interpreter.invoke()
            raw = self._interpreter.get_tensor(self._output["index"]).reshape(-1)
            out[i] = (raw.astype(np.float32) - self._zero) * self._scale
        return out


class LiteRTEngine:
    """A LiteRT interpreter over a ``.tflite`` file, its input resized (and its tensors
    allocated again) only when the batch shape changes. With ``features.tflite`` beside
    it, that file turns the images into int8 features and ``path`` is the head."""

    name = "litert"
    pads_batches = False

    def __init__(self, path: Path, threads: int | None = None) -> None:
        self.path = Path(path)
        self.threads = threads or available_cores()
        features = self.path.with_name(FEATURES_FILE)
        self.features = (
            Int8Features(self.threads, model_path=str(features)) if features.exists() else None
        )
        self._interpreter = _interpreter(self.threads, model_path=str(self.path))
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._shape: tuple[int, ...] | None = None

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self.features is not None:
            batch = self.features(batch)
        if batch.shape != self._shape:
            self._interpreter.resize_tensor_input(self._input["index"], list(batch.shape))
            with filtered_stderr():  # LiteRT's "Created … XNNPACK delegate" notice
                self._interpreter.allocate_tensors()
            self._shape = batch.shape
        self._interpreter.set_tensor(self._input["index"], np.ascontiguousarray(batch, np.float32))
        self._interpreter.invoke()
        # A copy: the interpreter reuses its output buffer on the next invoke.
        return np.array(self._interpreter.get_tensor(self._output["index"]))
