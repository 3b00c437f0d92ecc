"""``anigenre jobs submit|status|wait|resume|list``: the same stages, queued on Redis."""

from __future__ import annotations

import sys
import time

from config import Settings
from jobs.cli import args as types
from jobs.cli.models_cmd import add_train_arguments, train_config
from jobs.cli.predict_cmd import add_predict_arguments, format_top_k, plan_from_args
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
    if s.state == "stalled":  # an ETA would promise what is not happening
        eta = f"stalled: {s.note}"
    elif s.state == "interrupted":
        eta = f"interrupted: {s.note}; 'anigenre jobs resume {s.run_id}' finishes it"
    return (
        f"run {s.run_id}: {s.chunks_done}/{s.chunks_total} chunks, "
        f"{s.rows_ok + s.rows_error}/{s.rows_total} rows ({s.rows_ok} ok, {s.rows_error} error), "
        f"{rate}, {eta}"
        + (" [complete]" if s.complete else "")
        + (f" [failed: {s.failed}]" if s.failed and not s.complete else "")
    )


def run_status(args, settings: Settings) -> int:
    from jobs.runs.index import list_runs, load_plan
    from jobs.runs.status import run_status

    if args.id in list_runs(settings.data_dir):
        plan = load_plan(settings.data_dir, args.id)
        print(_status_line(run_status(plan, stall_after_s=settings.run_stall_after_s)))
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
    told = None
    with tqdm(
        total=len(plan.inputs), unit="poster", desc="wait", file=sys.stderr, disable=None
    ) as bar:
        while True:
            s = run_status(plan, counts=counts, stall_after_s=settings.run_stall_after_s)
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
            if s.state == "interrupted":  # nothing will finish it while we wait
                raise DataError(
                    f"run {plan.run_id} was interrupted: {s.note}; "
                    f"'anigenre jobs resume {plan.run_id}' finishes it"
                )
            if s.note != told:  # say each new stall, and its end, once
                if s.note or told:
                    bar.write(f"stalled: {s.note}" if s.note else "moving again", file=sys.stderr)
                told = s.note
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

    plan = load_plan(settings.data_dir, args.run_id)
    missing = missing_chunks(plan)
    if settings.broker_url:
        from jobs.queue.broker import broker_app
        from jobs.queue.publish import forget_resends, send_chunks

        app = broker_app(settings)
        forget_resends(app, plan.run_id)
        send_chunks(app, plan, missing)
        print(f"re-queued {len(missing)} chunk(s) of run {plan.run_id}")
        return 0
    manifest = stages.predict_in_process(settings, plan)  # skips the chunks already written
    print(
        f"run {plan.run_id}: {len(missing)} chunk(s) redone here; "
        f"{manifest['ok']} ok, {manifest['error']} error [complete]"
    )
    return 0


def run_list(args, settings: Settings) -> int:
    from jobs.runs.index import list_runs, load_plan
    from jobs.runs.status import run_status

    runs = list_runs(settings.data_dir)
    if not runs:
        print(f"no runs recorded in {settings.data_dir / 'runs'}")
    for run_id in runs:
        plan = load_plan(settings.data_dir, run_id)
        print(_status_line(run_status(plan, stall_after_s=settings.run_stall_after_s)))
    return 0
