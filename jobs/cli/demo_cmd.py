"""``anigenre demo``: the whole job on the embedded default, or through real workers.

Local AniList replay server -> scrape 2013-2021 -> import ../shared/data/posters (all but
the 2022 titles) -> preprocess -> train MobileNetV2 -> predict the held-out 2022 posters
-> report. With ``--broker`` every stage is a Celery task run by a worker the demo starts.
"""

from __future__ import annotations

import csv
import os
import subprocess
import time
from pathlib import Path

from config import Settings
from core.dataset import Filters
from core.errors import RetryableError
from jobs.cli.scrape_cmd import format_summary, scrape_with_progress
from scraper.replay.build import build_server
from scraper.run import ScrapeRequest
from scraper.store import RawStore

DEMO_YEARS = (2013, 2021)  # the paper's period
HELD_OUT_YEAR = "2022"


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline against the local replay server")
    p.add_argument("--rate-limit", type=int, default=600, help="replay server's limit per minute")
    p.add_argument("--broker", help="run every stage as a Celery task on this broker")
    p.set_defaults(run=run, settings_overrides=lambda a: {"broker_url": a.broker})


def split_posters(shared_posters: Path, dest: Path) -> tuple[Path, Path]:
    """Two labelled folders (links, not copies): everything before 2022, and 2022 alone."""
    with open(shared_posters / "labels.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        rows, fields = list(reader), reader.fieldnames
    folders = {}
    for name, keep in (
        ("labelled", lambda r: r["year"] != HELD_OUT_YEAR),
        ("inbox-2022", lambda r: r["year"] == HELD_OUT_YEAR),
    ):
        folder = dest / name
        (folder / "images").mkdir(parents=True, exist_ok=True)
        chosen = [r for r in rows if keep(r)]
        for r in chosen:
            link = folder / "images" / r["file"]
            if not link.exists():
                link.symlink_to((shared_posters / "images" / r["file"]).resolve())
        with open(folder / "labels.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(chosen)
        folders[name] = folder
    return folders["labelled"], folders["inbox-2022"]


def run(args, settings: Settings) -> int:
    shared = settings.shared_dir / "data"
    server = build_server(
        shared / "anilist" / "pages", shared / "posters", rate_limit=args.rate_limit
    ).start()
    demo = settings.model_copy(
        update={"anilist_url": server.url, "rate_limit_per_min": float(args.rate_limit)}
    )
    labelled, inbox = split_posters(shared / "posters", settings.data_dir / "demo-inputs")
    try:
        if args.broker:
            _through_workers(demo, labelled, inbox)
        else:
            _in_process(demo, labelled, inbox)
        stats = server.stats()
        print(
            f"replay server: {stats['rate_limited']} rate-limit violations, "
            f"requests {stats['requests']}"
        )
    finally:
        server.stop()
    return 0


def _in_process(settings: Settings, labelled: Path, inbox: Path) -> None:
    from jobs import stages
    from jobs.cli.models_cmd import format_summary as model_summary
    from jobs.cli.predict_cmd import format_top_k
    from models.config import TrainConfig

    print(
        f"[1/6] scrape {DEMO_YEARS[0]}-{DEMO_YEARS[1]} "
        f"from the replay server at {settings.anilist_url}"
    )
    request = ScrapeRequest(years=DEMO_YEARS, overlap_s=settings.incremental_overlap_s)
    print(
        format_summary(
            scrape_with_progress(settings, request), RawStore(settings.data_dir), request
        )
    )
    print(f"[2/6] import {labelled} (every shared poster but the {HELD_OUT_YEAR} titles)")
    change = stages.import_dataset(settings, labelled)
    print(f"  {change.total} posters, {change.added} added")
    print("[3/6] preprocess the scraped titles")
    change = stages.preprocess(settings, Filters(years=DEMO_YEARS))
    print(f"  {change.total} posters in the dataset: {change.splits}")
    print("[4/6] train MobileNetV2 1.0 (frozen ImageNet backbone + head)")
    model_id, manifest = stages.train_model(settings, TrainConfig(bootstrap=300))
    print(f"  model {model_id}\n{model_summary(manifest['metrics_summary'])}")
    print(f"[5/6] predict the {HELD_OUT_YEAR} posters in {inbox / 'images'}")
    plan = stages.plan_prediction(
        settings, [inbox / "images"], model_id=model_id, out_dir=settings.data_dir, force=True
    )
    result = stages.predict_in_process(settings, plan)
    print(f"  run {plan.run_id}: {result['ok']} ok, {result['error']} error\n{format_top_k(plan)}")
    print("[6/6] report")
    _print_report(stages.report_run(settings, plan.run_id))


def _print_report(report) -> None:
    if report.per_genre_ap is not None:
        ap = report.per_genre_ap.dropna(subset=["ap"])
        print(f"  held-out labels: macro AP {ap['ap'].mean():.3f} over {len(ap)} genres present")
    print(f"  open {report.folder / 'report.html'}")


def _through_workers(settings: Settings, labelled: Path, inbox: Path) -> None:
    from jobs import stages
    from jobs.queue.app import worker_argv
    from jobs.queue.broker import broker_app
    from jobs.queue.publish import send_chunks, send_task
    from jobs.runs.index import load_plan
    from jobs.runs.status import run_status

    app = broker_app(settings)
    env = {
        **os.environ,
        "ANIGENRE_DATA_DIR": str(settings.data_dir),
        "ANIGENRE_BROKER_URL": settings.broker_url,
        "ANIGENRE_ANILIST_URL": settings.anilist_url,
        "ANIGENRE_RATE_LIMIT_PER_MIN": str(settings.rate_limit_per_min),
        "ANIGENRE_SHARED_DIR": str(settings.shared_dir),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    log = open(settings.data_dir / "demo-worker.log", "w")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(
        worker_argv("scrape,train,predict", "demo", quiet=False),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def wait(task_id: str, what: str):
            result = app.AsyncResult(task_id).get(timeout=3600)
            print(f"  {what}: {result}")
            return result

        years = f"{DEMO_YEARS[0]}-{DEMO_YEARS[1]}"
        print(f"[1/6] scrape {years} on the 'scrape' queue")
        request = ScrapeRequest(years=DEMO_YEARS, overlap_s=settings.incremental_overlap_s)
        wait(send_task(app, "jobs.tasks.scrape", "scrape", request=request.to_json()), "scrape")
        print("[2/6] import on the 'train' queue")
        wait(send_task(app, "jobs.tasks.import_dataset", "train", folder=str(labelled)), "import")
        print("[3/6] preprocess on the 'train' queue")
        wait(send_task(app, "jobs.tasks.preprocess", "train", years=list(DEMO_YEARS)), "preprocess")
        print("[4/6] train on the 'train' queue")
        model_id = wait(
            send_task(app, "jobs.tasks.train", "train", config={"bootstrap": 300}), "train"
        )["model_id"]
        print(f"[5/6] predict the {HELD_OUT_YEAR} posters on the 'predict' queue")
        plan = stages.plan_prediction(
            settings, [inbox / "images"], model_id=model_id, out_dir=settings.data_dir, force=True
        )
        send_chunks(app, plan)
        plan = load_plan(settings.data_dir, plan.run_id)
        deadline = time.monotonic() + 1800
        while not plan.manifest_path.exists():
            s = run_status(plan)
            if s.failed or worker.poll() is not None or time.monotonic() > deadline:
                raise RetryableError(
                    f"run {plan.run_id} did not finish ({s.failed or 'worker gone or timed out'}); "
                    f"see {log.name}, then 'anigenre jobs resume {plan.run_id}'"
                )
            time.sleep(0.5)
        s = run_status(plan)
        print(f"  run {plan.run_id}: {s.rows_ok} ok, {s.rows_error} error")
        print("[6/6] report")
        _print_report(stages.report_run(settings, plan.run_id))
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(timeout=30)
        log.close()
