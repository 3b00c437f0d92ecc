"""The default model's int8 network under LiteRT's runtime settings, side by side in one run.

Whether the interpreter's own settings leave speed behind, apart from everything else
bench/predict.py times. One image an invoke, as the predictor runs it, at the model's
input size:

  xnnpack           what the predictor uses: LiteRT's default resolver (XNNPACK)
  xnnpack-latest    ``experimental_default_delegate_latest_features=True``
  builtin           ``BUILTIN_WITHOUT_DEFAULT_DELEGATES``: TFLite's own int8 kernels
  xnnpack, 2 side   two one-thread interpreters invoked at once from two threads, as the
                    predictor runs them on 2 cores: the time of each invoke

The settings take turns, ``--rounds`` times, so a moving load falls on all of them.
Printed: each one's median ms an invoke and its ratio to ``xnnpack``, and the largest
difference of its features from ``xnnpack``'s on the same image.

Run: ``.venv/bin/python bench/litert_kernels.py --data-dir data/bench-predict19`` (the
latest default model there, trained first when there is none, as bench/predict.py does),
or ``--model FILE.tflite``.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from anigenre.models.config import TrainConfig
from common import bench_dataset, bench_parser

SETTINGS = {
    "xnnpack": {},
    "xnnpack-latest": {"experimental_default_delegate_latest_features": True},
    "builtin": {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES},
}


def ready(image: np.ndarray, **interpreter) -> Interpreter:
    """A one-thread interpreter (``interpreter``: its source and settings) holding
    ``image``, its first invoke done."""
    it = Interpreter(num_threads=1, **interpreter)
    inp = it.get_input_details()[0]
    it.resize_tensor_input(inp["index"], list(image.shape))
    it.allocate_tensors()
    it.set_tensor(inp["index"], image.astype(inp["dtype"]))
    it.invoke()  # the first invoke plans; not timed
    return it


def output(it: Interpreter) -> np.ndarray:
    return np.array(it.get_tensor(it.get_output_details()[0]["index"]))


def ms_per_invoke(its: list[Interpreter], invokes: int) -> float:
    """Wall ms an invoke of each interpreter, all of them invoked at once."""

    def run(it: Interpreter) -> None:
        for _ in range(invokes):
            it.invoke()

    with ThreadPoolExecutor(len(its)) as pool:
        start = time.perf_counter()
        list(pool.map(run, its))
    return (time.perf_counter() - start) / invokes * 1000


def default_features(args) -> Path:
    from predict import latest_model

    settings, _, _ = bench_dataset(args)
    model_id = latest_model(settings, args.data_dir, TrainConfig().backbone)
    return args.data_dir / "models" / model_id / "features.tflite"


def main() -> None:
    parser = bench_parser(__doc__)
    parser.set_defaults(data_dir=Path("data/bench-predict19"))
    parser.add_argument("--model", type=Path, help="an int8 .tflite (default: the latest model's)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--invokes", type=int, default=20, help="timed invokes a round")
    args = parser.parse_args()
    path = args.model or default_features(args)
    shape = Interpreter(model_path=str(path)).get_input_details()[0]["shape"]
    image = np.random.default_rng(0).integers(0, 256, (1, *shape[1:]), dtype=np.uint8)
    source = {"model_path": str(path)}
    kinds = {name: [ready(image, **source, **s)] for name, s in SETTINGS.items()}
    kinds["xnnpack, 2 side by side"] = [ready(image, **source) for _ in range(2)]
    ms: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(args.rounds):
        for name, its in kinds.items():
            ms[name].append(ms_per_invoke(its, args.invokes))
    base = statistics.median(ms["xnnpack"])
    reference = output(kinds["xnnpack"][0])
    print(f"{path} ({shape[1]}x{shape[2]}), {args.rounds} rounds of {args.invokes} invokes")
    print(f"{'':26s}{'median ms':>10s}{'range':>14s}{'/ xnnpack':>10s}{'max |diff|':>12s}")
    for name, its in kinds.items():
        median = statistics.median(ms[name])
        diff = float(np.abs(output(its[0]) - reference).max())
        span = f"{min(ms[name]):.2f}-{max(ms[name]):.2f}"
        print(f"{name:26s}{median:10.2f}{span:>14s}{median / base:10.2f}{diff:12.4f}")


if __name__ == "__main__":
    main()
