"""``anigenre jobs submit|status|wait|resume|list``: the same stages, queued on Redis."""

from __future__ import annotations

import sys
import time

from config import Settings
from jobs.cli import args as types
from jobs.cli.models_cmd import add_train_arguments, train_config
from jobs.cli.predict_cmd import add_predict_arguments, format_top_k, nothing_new, plan_from_args
from jobs.cli.scrape_cmd import add_scrape_arguments, scrape_request


def register(sub) -> None:
    j = sub.add_parser("jobs", help="queue work on the broker and follow it")
    j.add_argument("--broker", help="broker URL (env ANIGENRE_BROKER_URL)")
    jsub = j.add_subparsers(dest="jobs_command", required=True, parser_class=type(j))
    submit = jsub.add_parser("submit", help="queue a job")
    ssub = submit.add_subparsers(dest="job", required=True, parser_class=type(j))

    p = ssub.add_parser("predict", help="bulk prediction, one task per chunk")
    add_predict_arguments(p)
    p.set_defaults(run=run_submit_predict)
    s = ssub.add_parser("scrape", help="a scrape on the scrape queue (the flags of 'scrape')")
    add_scrape_arguments(s)
    s.set_defaults(run=run_submit_scrape)
    t = ssub.add_parser("train", help="training on the train queue (the flags of 'train')")
    add_train_arguments(t)
    t.set_defaults(run=run_submit_train)

    st = jsub.add_parser("status", help="chunks done/total, rows ok/error, rate and ETA")
    st.add_argument("id", help="a run id (or a task id from submit scrape/train)")
    st.set_defaults(run=run_status)
    w = jsub.add_parser("wait", help="block with a progress bar until the run completes")
    w.add_argument("run_id")
    w.add_argument("--timeout", type=types.positive_float, default=3600.0, help="seconds")
    w.set_defaults(run=run_wait)
    r = jsub.add_parser(
        "resume",
        help="finish a run: re-queue its missing chunks, or run them here without a broker",
    )
    r.add_argument("run_id")
    r.set_defaults(run=run_resume)
    ls = jsub.add_parser("list", help="runs, newest last")
    ls.set_defaults(run=run_list)
    for parser in (p, s, t, st, w, r, ls):
        parser.set_defaults(settings_overrides=lambda a: {"broker_url": getattr(a, "broker", None)})


def run_submit_predict(args, settings: Settings) -> int:
    from jobs.queue.broker import broker_app
    from jobs.queue.publish import send_chunks

    app = broker_app(settings)  # fail before hashing thousands of files
    plan = plan_from_args(settings, args)
    if not plan.inputs:
        print(nothing_new(plan), file=sys.stderr)  # no run id on stdout: none was recorded
        return 0
    sent = len(plan.chunks) if send_chunks(app, plan) is not None else 0
    if not sent:
        from jobs.runs.markers import finalize

        finalize(plan)
    print(plan.run_id)
    print(
        f"  {len(plan.inputs)} file(s) in {sent} chunk(s) queued on 'predict'"
        + (f"; {plan.already_predicted} already predicted" if plan.already_predicted else "")
        + (f"; {len(plan.duplicates)} duplicate(s)" if plan.duplicates else ""),
        file=sys.stderr,
    )
    return 0


def run_submit_scrape(args, settings: Settings) -> int:
    from jobs.queue.broker import broker_app
    from jobs.queue.publish import send_task

    request = scrape_request(args, settings).to_json()
    print(send_task(broker_app(settings), "jobs.tasks.scrape", "scrape", request=request))
    return 0


def run_submit_train(args, settings: Settings) -> int:
    from jobs.queue.broker import broker_app
    from jobs.queue.publish import send_task

    config = train_config(args).as_dict()
    print(send_task(broker_app(settings), "jobs.tasks.train", "train", config=config))
    return 0


def _status_line(s) -> str:
    rate = f"{s.rate_per_s:.1f} posters/s" if s.rate_per_s else "rate -"
    eta = "done" if s.complete else (f"ETA {s.eta_s:.0f} s" if s.eta_s is not None else "ETA -")
    return (
        f"run {s.run_id}: {s.chunks_done}/{s.chunks_total} chunks, "
        f"{s.rows_ok + s.rows_error}/{s.rows_total} rows ({s.rows_ok} ok, {s.rows_error} error), "
        f"{rate}, {eta}"
        + (" [complete]" if s.complete else "")
        + (f" [failed: {s.failed}]" if s.failed and not s.complete else "")
    )


def run_status(args, settings: Settings) -> int:
    from jobs.runs.index import list_runs

    if args.id in list_runs(settings.data_dir):
        print(_status_line(_read_status(settings, args.id)))
        return 0
    if not settings.broker_url:
        from core.errors import ConfigError

        raise ConfigError(
            f"no run '{args.id}' in {settings.data_dir} ('anigenre jobs list' shows them); "
            "a task id from 'jobs submit scrape|train' needs --broker"
        )
    from jobs.queue.broker import broker_app

    result = broker_app(settings).AsyncResult(args.id)
    print(f"task {args.id}: {result.state}" + (f" {result.result}" if result.ready() else ""))
    return 0


def run_wait(args, settings: Settings) -> int:
    from tqdm import tqdm

    from core.errors import DataError, RetryableError
    from jobs.runs.index import load_plan
    from jobs.runs.markers import finalize
    from jobs.runs.parts import PartCounts
    from jobs.runs.status import run_status

    plan = load_plan(settings.data_dir, args.run_id)
    counts = PartCounts()
    deadline = time.monotonic() + args.timeout
    with tqdm(
        total=len(plan.inputs), unit="poster", desc="wait", file=sys.stderr, disable=None
    ) as bar:
        while True:
            s = run_status(plan, counts=counts)
            bar.update(s.rows_ok + s.rows_error - bar.n)
            if s.chunks_done == s.chunks_total:
                if not s.complete:  # the finalising worker died; every part is there
                    finalize(plan)
                break
            if s.failed:
                raise DataError(
                    f"run {plan.run_id} failed: {s.failed}; "
                    f"'anigenre jobs resume {plan.run_id}' retries it"
                )
            if time.monotonic() > deadline:
                raise RetryableError(
                    f"run {plan.run_id} not complete after {args.timeout:.0f} s "
                    f"({s.chunks_done}/{s.chunks_total} chunks); "
                    f"'anigenre jobs resume {plan.run_id}' re-queues the rest"
                )
            time.sleep(0.5)
    print(_status_line(run_status(plan)))
    if len(plan.inputs) <= 20:
        print(format_top_k(plan))
    return 0


def run_resume(args, settings: Settings) -> int:
    from jobs import stages
    from jobs.runs.index import load_plan
    from jobs.runs.parts import missing_chunks
    from jobs.stages.predict import claim_run

    plan = load_plan(settings.data_dir, args.run_id)
    app = None
    if settings.broker_url:
        from jobs.queue.broker import broker_app

        app = broker_app(settings)  # fail before touching the plan
    # Files that other runs predicted (or own) since this one was planned leave its
    # missing chunks: a resume never writes a second row for a file.
    plan, dropped = claim_run(plan, resume=True)
    missing = missing_chunks(plan)
    note = f"; {dropped} file(s) left to the other runs that predict them" if dropped else ""
    if app is not None:
        from jobs.queue.publish import forget_resends, send_chunks

        forget_resends(app, plan.run_id)
        send_chunks(app, plan, missing)
        print(f"re-queued {len(missing)} chunk(s) of run {plan.run_id}{note}")
        return 0
    manifest = stages.predict_in_process(settings, plan)  # skips the chunks already written
    print(
        f"run {plan.run_id}: {len(missing)} chunk(s) redone here{note}; "
        f"{manifest['ok']} ok, {manifest['error']} error [complete]"
    )
    return 0


def run_list(args, settings: Settings) -> int:
    from core.errors import DataError
    from jobs.runs.index import list_runs

    runs = list_runs(settings.data_dir)
    if not runs:
        print(f"no runs recorded in {settings.data_dir / 'runs'}")
    for run_id in runs:
        try:
            print(_status_line(_read_status(settings, run_id)))
        except DataError as exc:  # one run whose folder is gone must not hide the others
            print(exc)
    return 0


def _read_status(settings: Settings, run_id: str):
    """The status of ``run_id``; a run whose files are gone or damaged is a DataError."""
    from core.errors import AnigenreError, DataError, StorageError
    from jobs.runs.index import load_plan
    from jobs.runs.status import run_status

    plan = load_plan(settings.data_dir, run_id)  # a DataError when its plan is gone
    try:
        return run_status(plan)
    except FileNotFoundError as exc:
        why = f"{exc.filename} is gone; was its output folder moved or deleted?"
    except OSError as exc:
        why = str(StorageError.from_os(exc, action="read"))
    except (ValueError, TypeError, KeyError) as exc:
        why = f"its files are damaged ({type(exc).__name__}: {exc})"
    except AnigenreError as exc:
        why = str(exc)
    raise DataError(f"run {run_id}: unreadable: {why}")
