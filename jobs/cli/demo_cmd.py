"""``anigenre demo``: the whole job on the embedded default, or through real workers.

Local AniList replay server -> scrape 2013-2021 -> import ../shared/data/posters (all but
the 2022 titles), posters-mal-thumbs and posters-anilist-small -> preprocess -> train
MobileNetV2 -> predict the held-out 2022 posters -> report. With ``--broker`` every stage
is a Celery task run by a worker the demo starts.

Run again on the same data dir, it reuses what is there: the scrape is incremental, and
a model trained on the same dataset with the same settings is not trained again.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
from pathlib import Path

from anigenre.config import Settings
from anigenre.core.errors import AnigenreError
from anigenre.jobs.service.hints import command
from anigenre.jobs.service.wiring import dispatcher_for
from anigenre.jobs.stages.demo import (
    DEMO_YEARS,
    HELD_OUT_YEAR,
    demo_request,
    demo_worker,
    labelled_folders,
    reusable_model,
    split_posters,
)
from anigenre.scraper.replay.build import build_server


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline against the local replay server")
    p.add_argument("--rate-limit", type=int, default=600, help="replay server's limit per minute")
    p.add_argument("--broker", help="run every stage as a Celery task on this broker")
    p.set_defaults(run=run, settings_overrides=lambda a: {"broker_url": a.broker})


def run(args, settings: Settings) -> int:
    shared = settings.shared_dir / "data"
    server = build_server(
        shared / "anilist" / "pages", shared / "posters", rate_limit=args.rate_limit
    ).start()
    demo = settings.model_copy(
        update={"anilist_url": server.url, "rate_limit_per_min": float(args.rate_limit)}
    )
    labelled, inbox = split_posters(shared / "posters", settings.data_dir / "demo-inputs")
    labelled = labelled_folders(shared, labelled)  # every shared labelled folder
    # `make demo` keeps the demo out of ./data; every command after it needs this flag.
    flag = f"--data-dir {_quoted(settings.data_dir)}"
    print(f"demo data dir: {settings.data_dir} (other commands need {flag})")
    try:
        dispatcher = dispatcher_for(demo)  # a broker that does not answer stops us here
        with demo_worker(demo) if dispatcher.queued else contextlib.nullcontext():
            run_id = _pipeline(demo, dispatcher, labelled, inbox)
        stats = server.stats()
        requests = ", ".join(f"{n} {kind}" for kind, n in stats["requests"].items())
        print(
            f"replay server: {stats['rate_limited']} rate-limit violations, "
            f"requests: {requests or 'none'}"
        )
    finally:
        server.stop()
    print("\nnext, try:")
    for line in next_steps(_prog(), settings.data_dir, inbox / "images", run_id):
        print(f"  {line}")
    return 0


def next_steps(prog: str, data_dir: Path, inbox: Path, run_id: str) -> list[str]:
    """Commands that work on the demo's data dir, as they are to be typed."""
    base = f"{prog} --data-dir {_quoted(data_dir)}"
    return [
        f"{base} models list",
        f"{base} evaluate latest",
        f"{base} predict {_quoted(inbox)} --force",
        f"{base} report {run_id}",
        f"{base} jobs list",
    ]


def _quoted(path: Path) -> str:
    return shlex.quote(str(path))


def _prog() -> str:
    """How this command was typed (``.venv/bin/anigenre`` under make), else ``anigenre``."""
    argv0 = Path(sys.argv[0])
    if argv0.name != "anigenre":
        return "anigenre"
    try:
        return shlex.quote(str(argv0.resolve().relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(argv0))


def _pipeline(settings: Settings, dispatcher, labelled: list[Path], inbox: Path) -> str:
    """The six steps, each a stage call on ``dispatcher``: in this process, or on the
    queues of the worker the demo started."""
    from anigenre.jobs import stages
    from anigenre.jobs.cli.models_cmd import format_summary as model_summary
    from anigenre.jobs.cli.predict_cmd import format_top_k
    from anigenre.jobs.cli.status_view import format_result
    from anigenre.jobs.service import runs
    from anigenre.models.config import TrainConfig
    from anigenre.models.synced import Registry

    where = " on the workers' queues" if dispatcher.queued else ""

    def call(step: str, name: str, **kwargs) -> dict:
        result = dispatcher.result(dispatcher.send(name, **kwargs), timeout=3600)
        print(f"  {step}: {format_result(name, result)}")
        return result

    request = demo_request(settings)
    print(
        f"[1/6] scrape {DEMO_YEARS[0]}-{DEMO_YEARS[1]} from the replay server{where}"
        + (" (incremental: what is stored is kept)" if request.incremental else "")
    )
    call("scrape", "scrape", request=request.to_json())
    print(
        f"[2/6] import {labelled[0]} (every shared poster but the {HELD_OUT_YEAR} titles)"
        + "".join(f" and {extra}" for extra in labelled[1:])
    )
    for folder in labelled:
        call("import", "import_dataset", folder=str(folder))
    print("[3/6] preprocess the scraped titles")
    call("preprocess", "preprocess", years=list(DEMO_YEARS))
    print("[4/6] train MobileNetV2 1.0 + 0.35 (frozen ImageNet backbones + head)")
    config = TrainConfig(bootstrap=300)
    model_id = reusable_model(settings, config)
    if model_id:
        print(f"  model {model_id} (reused: trained on this dataset with these settings)")
    else:
        model_id = call("train", "train", config=config.as_dict())["model_id"]
    print(model_summary(Registry(settings).manifest(model_id).metrics_summary))
    print(f"[5/6] predict the {HELD_OUT_YEAR} posters in {inbox / 'images'}{where}")
    done = runs.submit(
        settings, [inbox / "images"], dispatcher, model=model_id, out=settings.data_dir, force=True
    )
    run_id = done.plan.run_id
    try:
        s = runs.wait(settings, run_id, timeout=1800)
    except AnigenreError as exc:
        # The demo's worker stops with the demo: finishing the run needs a new one.
        raise AnigenreError(
            f"{exc}. To finish it, start a worker "
            f"('{command(settings, 'worker -Q predict --broker URL')}') and run "
            f"'{command(settings, f'jobs --broker URL resume {run_id}')}'"
        ) from None
    table = format_top_k(runs.table(settings, run_id))
    print(f"  run {run_id}: {s.rows_ok} ok, {s.rows_error} error\n{table}")
    print("[6/6] report")
    _print_report(stages.report_run(settings, run_id))
    return run_id


def _print_report(report) -> None:
    if report.per_genre_ap is not None:
        ap = report.per_genre_ap.dropna(subset=["ap"])
        print(f"  held-out labels: macro AP {ap['ap'].mean():.3f} over {len(ap)} genres present")
    print(f"  open {report.folder / 'report.html'}")
