"""Prediction throughput on both engines (keras, litert), same model, same machine, one run:

  decode    decoding alone: the predictor's parallel loader, no network (and with 1, 2
            and 4 threads, to choose how many)
  network   the network alone on pre-decoded batches, per engine; for an int8 model's
            LiteRT engine also on one interpreter of N threads instead of its N
            single-thread interpreters side by side (N: the cores), network alone and (b)
  limit     the pipeline's limit computed from them: 1 / (1/decode + 1/network)
  (b)       ``anigenre predict`` in-process: hashing, planning, decode, predict, Parquet
  (c)       the same run through one Celery worker on Redis; with the worker's cold start
            (process start -> first chunk written) and resident memory
  (d)       the paper's loop: Keras MobileNetV2 1.0 at 224x224 (ImageNet weights from
            ../shared/weights), one poster at a time: open, resize, predict, repeat

Each part's CPU time per poster (the process's, every thread) is printed too: others'
load moves it far less than a rate, and on 2 cores 2000 / (b)'s CPU ms bounds (b)'s rate.

Run: ``make bench-predict`` (give --broker a Redis of your own). The machine may be busy:
compare the ratios printed side by side, measured in this one run, not absolute rates.
Targets (issue 10): litert (b) >= 2x keras (b); litert (b) >= 0.8x its limit; (c) >= 0.9x
(b); a LiteRT worker <= 600 MB resident, cold start <= 5 s. Issue 19: ``anigenre predict``
with its defaults (the default model, the default engine: (b) on it) >= 25x (d), and the
LiteRT worker within today's (~275 MiB, 1.4 s cold start).
Inputs: the shared posters plus re-encoded copies (distinct bytes) to reach --n files.
The model: the latest of --backbone in the data dir (trained first when there is none); for
``mobilenet_v2_1.0_int8`` LiteRT runs the int8 extractor and Keras its float original.
``--against BACKBONE`` runs that backbone's model on LiteRT too, network alone and (b), and
prints the ratios: what a recipe's features cost at serving time.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from anigenre.core.images import decode_image  # noqa: E402
from anigenre.core.loader import decode_file, iter_decoded  # noqa: E402
from anigenre.jobs import stages  # noqa: E402
from anigenre.jobs.cli.args import image_size  # noqa: E402
from anigenre.jobs.queue.app import worker_argv  # noqa: E402
from anigenre.jobs.queue.broker import broker_app  # noqa: E402
from anigenre.jobs.queue.publish import send_chunks  # noqa: E402
from anigenre.jobs.runs.index import load_plan  # noqa: E402
from anigenre.models.backbones import spec_for  # noqa: E402
from anigenre.models.config import TrainConfig  # noqa: E402
from anigenre.models.registry import list_models  # noqa: E402
from common import bench_dataset, bench_parser  # noqa: E402
from PIL import Image  # noqa: E402


def corpus(shared: Path, dest: Path, n: int) -> list[Path]:
    source = sorted((shared / "data" / "posters" / "images").iterdir())
    dest.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        src = source[i % len(source)]
        out = dest / f"{i:04d}{src.suffix if i < len(source) else '.jpg'}"
        if i < len(source):
            shutil.copy(src, out)
        else:  # a re-encoded copy: same picture, different bytes, so not deduplicated
            with Image.open(src) as img:
                buf = io.BytesIO()
                img.convert("RGB").save(buf, format="JPEG", quality=85 + i % 10)
            out.write_bytes(buf.getvalue())
        files.append(out)
    return files


def cpu_line() -> str:
    """The processor, and whether it has the int8 dot-product instructions XNNPACK's int8
    kernels use: the int8 network's speed, and so every ratio to the float loop, depends
    on them (the same bench gave 20x on one machine of this kind and 29x on another)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    fields = {}
    for line in info.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())  # the first processor's
    model = fields.get("model name", "unknown")
    flags = set(fields.get("flags", "").split())
    have = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f in flags]
    return f"CPU {model}, {os.cpu_count()} cores, {' '.join(have) or 'none of avx2/avx512/vnni'}"


def kernel_line(weights_dir: Path) -> str:
    """MobileNetV2 1.0 at 224x224, one image per invoke on one LiteRT thread: the shared
    int8 network against a float32 conversion of the same architecture. Whether int8 pays
    on this machine at all, apart from everything else the bench times: on a VNNI machine
    it runs about 3x the float one, on an AVX2-only EPYC (family 23) it ran slower."""
    from anigenre.models.export import convert_to_litert
    from litert_kernels import ms_per_invoke, ready

    nets = {
        "int8": {"model_path": str(weights_dir / "tf2_mobilenet_v2_1.0_224_ptq.tflite")},
        "float32": {"model_content": convert_to_litert(paper_network(weights_dir))},
    }
    image = np.zeros((1, 224, 224, 3), np.uint8)  # cast to each network's input type
    ms = {name: ms_per_invoke([ready(image, **source)], 20) for name, source in nets.items()}
    return (
        f"MobileNetV2 1.0 224x224, one LiteRT thread: int8 {ms['int8']:.1f} ms, float32 "
        f"{ms['float32']:.1f} ms an invoke (int8 {ms['float32'] / ms['int8']:.2f}x float32)"
    )


def rate(n: int, seconds: float) -> float:
    return n / seconds


# CPU ms per poster (process CPU time, every thread) of the parts timed with ``cpu_of``:
# others' load on the machine moves it far less than a rate, and 2 cores / it bounds (b).
CPU_MS: dict[str, float] = {}


@contextlib.contextmanager
def cpu_of(label: str | None, n: int):
    started = time.process_time()
    yield
    if label:
        CPU_MS[label] = (time.process_time() - started) * 1000 / n


def decode_rate(
    predictor, files: list[Path], workers: int | None = None, label: str | None = None
) -> float:
    """Files per second through the predictor's own parallel decoding, with no network."""
    t = time.perf_counter()
    with cpu_of(label, len(files)):
        for _ in iter_decoded(
            files,
            lambda f: decode_file(f, predictor.size, predictor.policy, predictor.max_pixels),
            workers=workers or predictor.workers,
            prefetch=predictor.batch_size * 2,
        ):
            pass
    return rate(len(files), time.perf_counter() - t)


def latest_model(settings, data_dir: Path, backbone: str, size=None) -> str:
    """The newest model of ``backbone`` (at input ``size``: None, the backbone's default) in
    the data dir, trained first when there is none."""
    config = TrainConfig(backbone=backbone, input_size=size, bootstrap=100)
    wanted = tuple(size or spec_for(backbone).default_size)
    ours = lambda: [  # noqa: E731
        m for m in list_models(data_dir) if m.backbone == backbone and m.input_size == wanted
    ]
    if not ours():
        stages.train_model(settings, config)
    return ours()[-1]["model_id"]


def paper_network(weights_dir: Path):
    """The paper's network: Keras MobileNetV2 1.0 at 224x224, ImageNet weights from the
    local file."""
    import keras

    net = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
    net.load_weights(weights_dir / "mobilenet_v2_1.0_224.weights.h5")
    return net


def paper_loop(weights_dir: Path, files: list[Path]) -> float:
    """(d): the paper's loop, posters/s. Its network, MobileNetV2 1.0 at 224x224 with its
    ImageNet weights (the local file), in Keras; each poster opened, resized, predicted
    alone."""
    net = paper_network(weights_dir)

    def one(f: Path) -> None:
        with Image.open(f) as img:
            x = np.asarray(img.convert("RGB").resize((224, 224)), np.float32)[None]
        net.predict(x / 127.5 - 1.0, verbose=0)

    one(files[0])  # the first call traces the graph: not part of a poster's cost
    t = time.perf_counter()
    with cpu_of("(d)", len(files)):
        for f in files:
            one(f)
    return rate(len(files), time.perf_counter() - t)


def network_rate(predictor, arrays: np.ndarray, label: str | None = None) -> float:
    """Images per second through the engine alone, in the predictor's padded batches."""
    predictor.predict_arrays(arrays[: predictor.batch_size])  # warm-up
    t = time.perf_counter()
    with cpu_of(label, len(arrays)):
        for i in range(0, len(arrays), predictor.batch_size):
            predictor.predict_arrays(arrays[i : i + predictor.batch_size])
    return rate(len(arrays), time.perf_counter() - t)


def one_interpreter(predictor):
    """``predictor`` with its int8 features on one interpreter of N threads, as they ran
    before issue 19 (now: N single-thread interpreters side by side)."""
    from anigenre.models.engines import LiteRTEngine
    from anigenre.models.predictor import Predictor

    engine = LiteRTEngine(predictor.engine.path, one_interpreter=True)
    return Predictor(engine, predictor.manifest, predictor.max_pixels)


def in_process_rate(
    settings, predictor, model_id, folder: Path, out: Path, engine: str, label=None
):
    """(b) with the model already loaded, as a warm worker's is: (rate, its rows)."""
    t = time.perf_counter()
    with cpu_of(label, len(list(folder.iterdir()))):
        plan = stages.plan_prediction(
            settings, [folder], model_id=model_id, out_dir=out, force=True, engine=engine
        )
        stages.predict_in_process(settings, plan, predictor=predictor)
    seconds = time.perf_counter() - t
    rows = pd.concat(pd.read_parquet(plan.part_path(i)) for i in range(len(plan.chunks)))
    return rate(len(plan.inputs), seconds), rows.sort_values("path").reset_index(drop=True)


def agreement(keras_rows: pd.DataFrame, litert_rows: pd.DataFrame) -> dict:
    """Shares of posters with the same top-4 genres (in order; as a set) and the
    probability differences (largest; 99th percentile of each poster's largest; mean)."""
    columns = [c for c in keras_rows.columns if c.startswith("p_")]
    pairs = list(zip(keras_rows.top_genres, litert_rows.top_genres, strict=True))
    diff = np.abs(keras_rows[columns].to_numpy() - litert_rows[columns].to_numpy())
    return {
        "same_order": float(np.mean([list(a) == list(b) for a, b in pairs])),
        "same_set": float(np.mean([set(a) == set(b) for a, b in pairs])),
        "max": float(np.nanmax(diff)),
        "p99": float(np.nanpercentile(np.nanmax(diff, axis=1), 99)),
        "mean": float(np.nanmean(diff)),
    }


def wait_finished(settings, run_id: str, timeout: float = 1800) -> None:
    plan = load_plan(settings.data_dir, run_id)
    deadline = time.monotonic() + timeout
    while not plan.manifest_path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} did not finish")
        time.sleep(0.02)


@contextlib.contextmanager
def started(command: list[str], env: dict) -> Iterator[subprocess.Popen]:
    """``command`` in a process group of its own, its output dropped; the group stopped
    (SIGTERM: a worker's warm shutdown) when the block ends."""
    process = subprocess.Popen(
        command,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have ended on its own
            os.killpg(process.pid, 15)
        process.wait(timeout=60)


def worker_run(settings, args, model_id, files, work: Path, engine: str) -> dict:
    """(c) on one fresh worker: its cold start (process start -> a first one-chunk run
    written), then the whole corpus in 20 chunks, and its resident size after each."""
    env = {
        **os.environ,
        "ANIGENRE_DATA_DIR": str(args.data_dir),
        "ANIGENRE_BROKER_URL": args.broker,
        "ANIGENRE_PREDICT_ENGINE": engine,
    }
    app = broker_app(settings)
    first = stages.plan_prediction(
        settings,
        files[:8],
        model_id=model_id,
        out_dir=work / f"cold-{engine}",
        force=True,
        engine=engine,
    )
    send_chunks(app, first)  # queued before the worker starts: it takes it at once
    t = time.perf_counter()
    with started(worker_argv("predict", f"bench-{engine}", loglevel="WARNING"), env):
        wait_finished(settings, first.run_id, timeout=600)
        cold = time.perf_counter() - t
        chunk = max(len(files) // 20, 1)
        t = time.perf_counter()
        plan = stages.plan_prediction(
            settings,
            [work / "in"],
            model_id=model_id,
            out_dir=work / f"c-{engine}",
            force=True,
            chunk_size=chunk,
            engine=engine,
        )
        results = send_chunks(app, plan).get(timeout=1800)
        wait_finished(settings, plan.run_id)
        c = rate(len(files), time.perf_counter() - t)
    rss = [r["rss_kb"] // 1024 for r in sorted(results, key=lambda r: r["chunk"])]
    return {"rate": c, "cold_s": cold, "rss": rss}


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--no-worker", action="store_true", help="skip (c)")
    parser.add_argument("--no-loop", action="store_true", help="skip (d), the slowest part")
    parser.add_argument("--backbone", default=TrainConfig().backbone)
    parser.add_argument(
        "--input-size",
        type=image_size,
        help="HxW of --backbone's model (default: the backbone's own)",
    )
    parser.add_argument(
        "--against",
        metavar="BACKBONE",
        help="also run a model of this backbone on LiteRT (network, (b)): the cost of a recipe",
    )
    args = parser.parse_args()
    settings, _, _ = bench_dataset(args, broker_url=args.broker)
    model_id = latest_model(settings, args.data_dir, args.backbone, args.input_size)
    work = Path(tempfile.mkdtemp(prefix="anigenre-bench-"))
    files = corpus(args.shared, work / "in", args.n)
    engines = {e: stages.load_predictor(settings, model_id, e) for e in ("keras", "litert")}
    keras_p = engines["keras"]
    size, policy = keras_p.size, keras_p.policy
    print(
        f"{len(files)} posters, model {model_id} ({keras_p.manifest.backbone}, input {size}),"
        f" {keras_p.workers} decode threads, LiteRT on {engines['litert'].engine.threads} cores"
    )
    print(cpu_line())
    print(kernel_line(args.shared / "weights"))

    arrays = np.stack([decode_image(f.read_bytes(), size, policy) for f in files])
    dec = decode_rate(keras_p, files, label="decode")
    by_threads = {n: decode_rate(keras_p, files, n) for n in (1, 2, 4)}
    rows = {}
    for name, predictor in engines.items():
        net = network_rate(predictor, arrays, label=f"network {name}")
        limit = 1 / (1 / dec + 1 / net)
        b, table = in_process_rate(
            settings, predictor, model_id, work / "in", work / f"b-{name}", name, f"(b) {name}"
        )
        rows[name] = {"network": net, "limit": limit, "b": b, "table": table}
    single = None
    if engines["litert"].engine.features is not None:
        single = one_interpreter(engines["litert"])
        net = network_rate(single, arrays, label="network litert, 1 interpreter")
        b, _ = in_process_rate(
            settings, single, model_id, work / "in", work / "b-single", "litert", "(b) litert, 1"
        )
        single = {"network": net, "b": b}
    other = None
    if args.against:
        other_id = latest_model(settings, args.data_dir, args.against)
        lite = stages.load_predictor(settings, other_id, "litert")
        net = network_rate(lite, arrays)
        b, _ = in_process_rate(settings, lite, other_id, work / "in", work / "b-other", "litert")
        other = {"id": other_id, "network": net, "b": b}
    workers = {}
    if not args.no_worker:
        for name in engines:
            workers[name] = worker_run(settings, args, model_id, files, work, name)
    d = None if args.no_loop else paper_loop(args.shared / "weights", files)

    print(f"decode only                  {dec:7.1f} posters/s (both engines)")
    print("  by decode threads: " + ", ".join(f"{n}: {r:.1f}/s" for n, r in by_threads.items()))
    print(f"{'':28} {'keras':>9} {'litert':>9} {'litert/keras':>13}")

    def line(label: str, k: float, lite: float) -> None:
        print(f"{label:28} {k:9.1f} {lite:9.1f} {lite / k:13.2f}")

    line("network only", rows["keras"]["network"], rows["litert"]["network"])
    line("limit 1/(1/dec+1/net)", rows["keras"]["limit"], rows["litert"]["limit"])
    line("(b) in-process", rows["keras"]["b"], rows["litert"]["b"])
    for name in engines:
        r = rows[name]
        print(f"  {name}: (b)/limit = {r['b'] / r['limit']:.2f} (target >= 0.8)")
    a = agreement(rows["keras"]["table"], rows["litert"]["table"])
    print(
        f"  same top-4 on {a['same_order']:.1%} of posters in order, {a['same_set']:.1%} as a "
        f"set; probability difference largest {a['max']:.2g}, 99th percentile of each "
        f"poster's largest {a['p99']:.2g}, mean {a['mean']:.2g}"
    )
    if single:
        lite, n = rows["litert"], engines["litert"].engine.threads
        print(f"  litert int8 features: {n} interpreters x 1 thread / 1 interpreter x {n} threads")
        for key, label in (("network", "network only"), ("b", "(b) in-process")):
            mine, one = lite[key], single[key]
            print(f"  {label:26} {mine:9.1f} {one:9.1f} {mine / one:13.2f}")
    if other:
        print(f"against {other['id']} on LiteRT: {args.backbone} / {args.against}")
        for key, label in (("network", "network only"), ("b", "(b) in-process")):
            mine = rows["litert"][key]
            print(f"  {label:26} {mine:9.1f} {other[key]:9.1f} {mine / other[key]:13.2f}")
    print(
        "CPU ms per poster (this process, all threads; 2 cores / it bounds the rate): "
        + ", ".join(f"{k} {v:.2f}" for k, v in CPU_MS.items())
    )
    if workers:
        line("(c) one Celery worker", workers["keras"]["rate"], workers["litert"]["rate"])
        for name, w in workers.items():
            rss = w["rss"]
            print(
                f"  {name}: (c)/(b) = {w['rate'] / rows[name]['b']:.2f} (target >= 0.9); "
                f"cold start {w['cold_s']:.1f} s; RSS MiB first {rss[0]}, last {rss[-1]}, "
                f"max {max(rss)}; growth over the last 10: {rss[-1] - rss[-10]} MiB"
            )
    if d is not None:
        print(f"(d) paper's one-by-one loop  {d:9.1f} posters/s (Keras MobileNetV2 1.0, 224x224)")
        for name in engines:
            print(f"  {name}: (b)/(d) = {rows[name]['b'] / d:.2f}")
        default = settings.predict_engine
        print(
            f"anigenre predict with its defaults ({model_id}, engine {default}) against the "
            f"paper's loop: {rows[default]['b'] / d:.1f}x (issue 19 target >= 25); network "
            f"alone {rows[default]['network']:.1f}/s, decode alone {dec:.1f}/s"
        )
        if other:
            print(f"  {other['id']} on litert: (b)/(d) = {other['b'] / d:.2f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
