"""A predict worker's cold start (process start -> the first chunk's part written and the run
finalised), by how the worker is started, side by side in one run:

  anigenre     ``anigenre worker`` (``jobs.queue.app.worker_argv``): what the compose file,
               the demo, the tests and bench/predict.py start
  celery       ``celery -A anigenre.jobs.queue.worker worker``, Celery's own command line
               with its defaults (mingle and gossip on): what ``anigenre worker`` ran before
  celery-lone  the same with ``--without-gossip --without-mingle --without-heartbeat``
  floor        no Celery: one process imports the worker module, loads the predictor and
               runs the chunk and its finalising as the task does; what any worker pays

Each start is one 8-poster chunk queued before the process starts, on the default model's
LiteRT engine; the kinds take turns, ``--reps`` times each, so a moving load falls on all
of them. Printed: each kind's median and range, and its median over the floor's.

Run: ``.venv/bin/python bench/cold_start.py --broker redis://127.0.0.1:6391/0`` (a Redis of
your own; the model is the latest of the default backbone in --data-dir, trained first
when there is none, as bench/predict.py does).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from anigenre.jobs import stages
from anigenre.jobs.queue.app import WORKER_MODULE, worker_argv
from anigenre.jobs.queue.broker import broker_app
from anigenre.jobs.queue.publish import send_chunks
from anigenre.models.config import TrainConfig
from common import bench_dataset, bench_parser
from predict import corpus, latest_model, started, wait_finished

# The predict task's body, without Celery (jobs.queue.tasks.predict_chunk).
FLOOR = """
import sys
import anigenre.jobs.queue.worker as w
from anigenre.jobs.runs.chunks import execute_chunk
from anigenre.jobs.runs.index import index_home, load_plan, mark_finished
from anigenre.jobs.runs.markers import finalize
from anigenre.jobs.stages import load_predictor
plan = load_plan(index_home(w.settings), sys.argv[1], w.settings.s3)
execute_chunk(plan, 0, load_predictor(w.settings, plan.model_id, plan.engine))
finalize(plan)
mark_finished(index_home(w.settings), plan.run_id, w.settings.s3)
"""


def argv(kind: str, name: str) -> list[str]:
    if kind == "anigenre":
        return worker_argv("predict", name, loglevel="WARNING")
    celery = [sys.executable, "-m", "celery", "-A", WORKER_MODULE, "worker", "-Q", "predict"]
    celery += ["-c", "1", "-n", f"{name}@%h", "--loglevel", "WARNING"]
    if kind == "celery":
        return celery
    return celery + ["--without-gossip", "--without-mingle", "--without-heartbeat"]


def cold_start(kind: str, settings, app, plan, env: dict) -> float:
    """Seconds from starting a process of ``kind`` to ``plan`` (one chunk) finished: to its
    manifest written, not to the process's exit (a worker does not exit)."""
    if kind == "floor":
        command = [sys.executable, "-c", FLOOR, plan.run_id]
    else:
        send_chunks(app, plan)  # queued first: the worker takes it as soon as it can
        command = argv(kind, f"cold-{kind}")
    t = time.perf_counter()
    with started(command, env):
        wait_finished(settings, plan.run_id, timeout=300)
        return time.perf_counter() - t


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    settings, _, _ = bench_dataset(args, broker_url=args.broker)
    model_id = latest_model(settings, args.data_dir, TrainConfig().backbone)
    work = Path(tempfile.mkdtemp(prefix="anigenre-cold-"))
    files = corpus(args.shared, work / "in", 8)
    env = {
        **os.environ,
        "ANIGENRE_DATA_DIR": str(args.data_dir),
        "ANIGENRE_BROKER_URL": args.broker,
        "ANIGENRE_PREDICT_ENGINE": "litert",
    }
    env.pop("ANIGENRE_CONFIG", None)
    app = broker_app(settings)
    kinds = ("anigenre", "celery", "celery-lone", "floor")
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for rep in range(args.reps):
        for kind in kinds:
            plan = stages.plan_prediction(
                settings,
                files,
                model_id=model_id,
                out_dir=work / f"{kind}-{rep}",
                force=True,
                engine="litert",
            )
            times[kind].append(cold_start(kind, settings, app, plan, env))
    floor = statistics.median(times["floor"])
    print(f"{model_id}, LiteRT, one 8-poster chunk, {args.reps} starts of each kind in turns")
    print(f"{'':12} {'median s':>9} {'range s':>13} {'/ floor':>8}")
    for kind, seconds in times.items():
        median = statistics.median(seconds)
        spread = f"{min(seconds):.2f}-{max(seconds):.2f}"
        print(f"{kind:12} {median:9.2f} {spread:>13} {median / floor:8.2f}")


if __name__ == "__main__":
    main()
