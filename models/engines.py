"""Prediction engines: what runs a model on a batch of decoded posters.

Two engines run the same network. ``keras`` is the reference (the saved ``model.keras``
under TensorFlow); ``litert`` runs the float32 LiteRT export beside it with LiteRT's own
small runtime (``ai-edge-litert``, XNNPACK on CPU), so a process that predicts with it
never imports TensorFlow: it starts in a fraction of the time and memory.

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


class LiteRTEngine:
    """A LiteRT interpreter over a ``.tflite`` file, its input resized (and its tensors
    allocated again) only when the batch shape changes."""

    name = "litert"
    pads_batches = False

    def __init__(self, path: Path, threads: int | None = None) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ConfigError(
                "the LiteRT runtime is not installed: 'pip install ai-edge-litert==2.3.0' "
                "(or reinstall the project), or predict with --engine keras"
            ) from None

        self.path = Path(path)
        self.threads = threads or available_cores()
        self._interpreter = Interpreter(model_path=str(self.path), num_threads=self.threads)
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._shape: tuple[int, ...] | None = None

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) the exported model was made for."""
        return tuple(int(v) for v in self._input["shape"][1:3])

    def run(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape != self._shape:
            self._interpreter.resize_tensor_input(self._input["index"], list(batch.shape))
            with filtered_stderr():  # LiteRT's "Created … XNNPACK delegate" notice
                self._interpreter.allocate_tensors()
            self._shape = batch.shape
        self._interpreter.set_tensor(self._input["index"], np.ascontiguousarray(batch, np.float32))
        self._interpreter.invoke()
        # A copy: the interpreter reuses its output buffer on the next invoke.
        return np.array(self._interpreter.get_tensor(self._output["index"]))
