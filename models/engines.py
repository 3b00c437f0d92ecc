"""Prediction engines: what runs a model on a batch of decoded posters.

Two engines run the same network. ``keras`` is the reference (the saved ``model.keras``
under TensorFlow); ``litert`` runs the float32 LiteRT export beside it with LiteRT's own
small runtime (``ai-edge-litert``, XNNPACK on CPU), so a process that predicts with it
never imports TensorFlow: it starts in a fraction of the time and memory.

A model whose head was trained on int8 features (backbones ``mobilenet_v2_1.0_int8`` and
``mobilenet_v2_1.0_with_0.35_int8``) runs on LiteRT as two files: ``features.tflite``, the
int8 network that made its training features, and ``model.tflite``, the float head. Its
``model.keras`` is the float network the int8 one was quantized from plus the same head:
the Keras reference, whose numbers differ a little from the int8 network's that serve.

An engine takes a float32 batch and returns the model's output as a numpy array.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
from anigenre.core.errors import ConfigError
from anigenre.core.pools import PerProcessPool
from anigenre.models.artifacts import FEATURES_FILE
from anigenre.models.quiet import filtered_stderr

T = TypeVar("T")
_END = object()  # a stream's items are over

ENGINES = ("litert", "keras")


class Engine(Protocol):
    name: str
    pads_batches: bool  # whether short batches are best padded to the full batch size
    takes_uint8: bool  # whether ``run`` takes the uint8 pixels as they are (else float32)
    streams: bool  # whether images can be streamed one by one (``features.stream``, ``head``)

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
    streams = False
    takes_uint8 = False

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


class _Runner:
    """One LiteRT interpreter: its input resized (and its tensors allocated again) only
    when the shape of what it is given changes."""

    def __init__(self, threads: int, **source) -> None:
        self._interpreter = _interpreter(threads, **source)
        self.input = self._interpreter.get_input_details()[0]
        self.output = self._interpreter.get_output_details()[0]
        self._shape: tuple[int, ...] | None = None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape != self._shape:
            self._interpreter.resize_tensor_input(self.input["index"], list(batch.shape))
            with filtered_stderr():  # LiteRT's "Created … XNNPACK delegate" notice
                self._interpreter.allocate_tensors()
            self._shape = batch.shape
        # set_tensor copies it in: no copy of our own when it already is what the file reads.
        batch = np.ascontiguousarray(batch, self.input["dtype"])
        self._interpreter.set_tensor(self.input["index"], batch)
        self._interpreter.invoke()
        # A copy: the interpreter reuses its output buffer on the next invoke.
        return np.array(self._interpreter.get_tensor(self.output["index"]))


def _in_steps(run, batch: np.ndarray, step: int) -> np.ndarray:
    """``run`` over ``batch`` ``step`` images at a time.

    One image per invoke by default: measured here for the float32 MobileNetV2 at 320x224
    on 2 threads, 207 images/s at batch 1, 200/s at 4, 174/s at 8 and 135/s at 32 (Keras
    67/s at 32), and for the int8 one 212/s at 1, 184/s at 8, 149/s at 32: a batch's
    activations outgrow the cache, while XNNPACK already keeps every thread busy on one
    image."""
    return np.concatenate([run(batch[i : i + step]) for i in range(0, len(batch), step)])


class _Runners:
    """``count`` interpreters of one file (of ``threads`` threads each), run side by side on
    a batch, one image per invoke each, every image's output in its row.

    Measured on 2 cores for the int8 MobileNetV2 1.0 + 0.35 pair at 320x224: one
    interpreter on 2 threads 234 images/s, two of 1 thread each 273/s. LiteRT releases the
    GIL in ``invoke``, so plain threads run them in parallel; a 2-thread interpreter spends
    part of each image waiting for its threads to meet at every layer, which one image per
    thread never does. Only the first interpreter exists until a batch needs more (a
    process that predicts one image at a time, or a worker's cold start, pays for one)."""

    def __init__(self, count: int, threads: int = 1, **source) -> None:
        self.count = max(1, count)
        self._threads, self._source = threads, source
        self._runners = [_Runner(threads, **source)]
        # One thread per interpreter: a batch uses count - 1 of them beside the caller's,
        # a stream all of them while the caller takes the results.
        self._pool = PerProcessPool(self.count, "litert")

    @property
    def first(self) -> _Runner:
        return self._runners[0]

    @property
    def input(self) -> dict:  # the file's, as a single runner gives it
        return self.first.input

    @property
    def output(self) -> dict:
        return self.first.output

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        n = min(self.count, len(batch))
        if n <= 1:
            return _in_steps(self.first, batch, 1)
        self._grow(n)
        rows: list[np.ndarray | None] = [None] * len(batch)
        # Each interpreter takes the next image not yet taken, so one slowed by the decode
        # threads sharing its core does fewer instead of holding the batch back.
        taken = iter(range(len(batch)))
        lock = threading.Lock()

        def work(runner: _Runner) -> None:
            while True:
                with lock:
                    i = next(taken, None)
                if i is None:
                    return
                rows[i] = runner(batch[i : i + 1])

        helpers = [self._pool.get().submit(work, r) for r in self._runners[1:n]]
        try:
            work(self._runners[0])
        finally:
            for helper in helpers:
                helper.result()
        return np.concatenate(rows)

    def stream(
        self,
        items: Iterable[T],
        prepare: Callable[[T], tuple[Any, np.ndarray | None]],
        window: int,
    ) -> Iterator[tuple[Any, np.ndarray | None]]:
        """``(info, output)`` for each item, in the items' order: each interpreter's thread
        takes the next item, ``prepare`` turns it into ``(info, image)`` (None: nothing to
        run) and runs the image at once, at most ``window`` items ahead of the caller.

        Decoding a poster in the thread that then runs it keeps its pixels in that core's
        cache and leaves no separate decoding threads to share the cores with: +4-10%
        posters/s over decoding in a pool of its own (docs/benchmarks.md). An exception in
        ``prepare`` or an interpreter ends the stream with it; a caller that stops early
        stops the threads after the items they hold."""
        self._grow(self.count)
        source = iter(items)
        ready: dict[int, tuple[Any, np.ndarray | None]] = {}
        cond = threading.Condition()
        state = {"taken": 0, "given": 0, "more": True, "stop": False, "error": None}

        def work(runner: _Runner) -> None:
            try:
                while True:
                    with cond:
                        while not state["stop"] and state["taken"] - state["given"] >= window:
                            cond.wait()
                        if state["stop"] or not state["more"]:
                            return
                        item = next(source, _END)
                        if item is _END:
                            state["more"] = False
                            cond.notify_all()
                            return
                        i = state["taken"]
                        state["taken"] += 1
                    info, image = prepare(item)
                    out = None if image is None else runner(image[None])[0]
                    with cond:
                        ready[i] = (info, out)
                        cond.notify_all()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                with cond:
                    state["error"], state["stop"] = exc, True
                    cond.notify_all()

        pool = self._pool.get()
        threads = [pool.submit(work, r) for r in self._runners]
        try:
            i = 0
            while True:
                with cond:
                    while (
                        i not in ready
                        and state["error"] is None
                        and (state["more"] or i < state["taken"])
                    ):
                        cond.wait()
                    if state["error"] is not None:
                        raise state["error"]
                    if i not in ready:
                        return
                    result = ready.pop(i)
                    state["given"] += 1
                    cond.notify_all()
                yield result
                i += 1
        finally:
            with cond:
                state["stop"] = True
                cond.notify_all()
            for thread in threads:
                thread.result()

    def _grow(self, n: int) -> None:
        while len(self._runners) < n:
            self._runners.append(_Runner(self._threads, **self._source))


class Int8Features:
    """An int8 LiteRT feature extractor (``models.int8``): uint8 RGB in, its pooled features
    as float32 out (dequantized here when the file gives them as integers), one image per
    invoke, on ``threads`` single-thread interpreters side by side (:class:`_Runners`), or
    with ``one_interpreter`` on one interpreter of ``threads`` threads."""

    def __init__(
        self, threads: int | None = None, *, one_interpreter: bool = False, **source
    ) -> None:
        self.threads = threads or available_cores()
        # One interpreter of N threads runs one image at a time: streaming would leave
        # decoding to that one thread too, so it takes decoded batches instead.
        self.streams = not one_interpreter
        if one_interpreter:
            self._run = _Runners(1, threads=self.threads, **source)
        else:
            self._run = _Runners(self.threads, **source)
        # Pixels go in as they are: the ImageNet files read uint8 RGB as their quantized
        # [-1, 1] input, ours read it as 0..255 itself (models.int8.quantize).
        self._scale, self._zero = self._run.output["quantization"]

    @property
    def width(self) -> int:
        return int(self._run.output["shape"][-1])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        # Pixel values are whole numbers 0..255 whatever dtype they arrive in.
        return self._dequantized(self._run(images))

    def stream(
        self,
        items: Iterable[T],
        prepare: Callable[[T], tuple[Any, np.ndarray | None]],
        window: int,
    ) -> Iterator[tuple[Any, np.ndarray | None]]:
        """``(info, features)`` of each item's image in order (see :meth:`_Runners.stream`)."""
        for info, raw in self._run.stream(items, prepare, window):
            yield info, None if raw is None else self._dequantized(raw[None])[0]

    def _dequantized(self, raw: np.ndarray) -> np.ndarray:
        raw = raw.reshape(len(raw), -1)
        if not self._scale:  # float features already
            return raw.astype(np.float32)
        return (raw.astype(np.float32) - self._zero) * self._scale


class FloatNetwork:
    """A float32 LiteRT network (a whole model, or a backbone for training features) over
    float32 0..255 images, ``invoke_batch`` images per invoke."""

    def __init__(self, threads: int | None = None, invoke_batch: int = 1, **source) -> None:
        self.threads = threads or available_cores()
        self.invoke_batch = max(1, invoke_batch)
        self._run = _Runner(self.threads, **source)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return _in_steps(self._run, np.asarray(batch, np.float32), self.invoke_batch)


class LiteRTEngine:
    """A LiteRT ``.tflite`` model. With ``features.tflite`` beside it, that file turns the
    images into int8 features and ``path`` is the head (cheap at any batch size)."""

    name = "litert"
    pads_batches = False

    def __init__(
        self,
        path: Path,
        threads: int | None = None,
        invoke_batch: int = 1,
        *,
        one_interpreter: bool = False,
    ) -> None:
        self.path = Path(path)
        self.threads = threads or available_cores()
        features = self.path.with_name(FEATURES_FILE)
        self.features = (
            Int8Features(self.threads, one_interpreter=one_interpreter, model_path=str(features))
            if features.exists()
            else None
        )
        # The int8 network reads uint8 pixels: a float32 copy of a batch would cost a
        # conversion each way for nothing.
        self.takes_uint8 = self.features is not None
        step = 1 << 30 if self.features is not None else invoke_batch
        self._network = FloatNetwork(self.threads, step, model_path=str(self.path))

    @property
    def streams(self) -> bool:
        """Whether images can go to the network one by one as they decode (int8 features),
        the head then taking a batch of features (:meth:`head`)."""
        return self.features is not None and self.features.streams

    def head(self, features: np.ndarray) -> np.ndarray:
        return self._network(features)

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self.features is not None:
            batch = self.features(batch)
        return self._network(batch)
