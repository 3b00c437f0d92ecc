"""``anigenre jobs submit|status|wait|resume|list``: the same stages, queued on Redis."""

from __future__ import annotations

import sys
import time

from anigenre.config import Settings
from anigenre.core import mirror
from anigenre.jobs.cli import args as types
from anigenre.jobs.cli.hints import command, masked_url
from anigenre.jobs.cli.models_cmd import add_train_arguments, train_config
from anigenre.jobs.cli.predict_cmd import (
    add_predict_arguments,
    format_top_k,
    nothing_new,
    plan_from_args,
)
from anigenre.jobs.cli.scrape_cmd import add_scrape_arguments, scrape_request


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
    st.add_argument("--json", action="store_true", help="print JSON instead of a line")
    st.set_defaults(run=run_status)
    w = jsub.add_parser("wait", help="block until the run (progress bar) or the task completes")
    w.add_argument("id", help="a run id (or a task id from submit scrape/train)")
    w.add_argument("--timeout", type=types.positive_float, default=3600.0, help="seconds")
    w.set_defaults(run=run_wait)
    r = jsub.add_parser(
        "resume",
        help="finish a run: re-queue its missing chunks, or run them here without a broker",
    )
    r.add_argument("run_id")
    r.set_defaults(run=run_resume)
    ls = jsub.add_parser("list", help="runs and submitted tasks, newest last")
    ls.add_argument("--json", action="store_true", help="print JSON instead of lines")
    ls.set_defaults(run=run_list)
    for parser in (p, s, t, st, w, r, ls):
        parser.set_defaults(settings_overrides=lambda a: {"broker_url": getattr(a, "broker", None)})


def run_submit_predict(args, settings: Settings) -> int:
    from anigenre.jobs.queue.broker import broker_app
    from anigenre.jobs.queue.publish import send_chunks

    app = broker_app(settings)  # fail before hashing thousands of files
    plan = plan_from_args(settings, args)
    if not plan.inputs:
        print(nothing_new(plan), file=sys.stderr)  # no run id on stdout: none was recorded
        return 0
    sent = len(plan.chunks) if send_chunks(app, plan) is not None else 0
    if not sent:
        from anigenre.jobs.runs.markers import finalize

        finalize(plan)
    print(plan.run_id)
    print(
        f"  {len(plan.inputs)} file(s) in {sent} chunk(s) queued on 'predict'"
        + (f"; {plan.already_predicted} already predicted" if plan.already_predicted else "")
        + (f"; {len(plan.duplicates)} duplicate(s)" if plan.duplicates else ""),
        file=sys.stderr,
    )
    if sent:
        _warn_if_no_worker(app, "predict", settings)
        _warn_if_local_inputs_leave_this_machine(args.paths, plan.out_dir, settings)
    return 0


def _warn_if_local_inputs_leave_this_machine(inputs, out_dir, settings: Settings) -> None:
    """Workers on other machines cannot read this machine's files: when the run lives in a
    bucket (its output or the data dir), local inputs are most likely a mistake."""
    from anigenre.core.storage import is_remote

    shared = is_remote(str(out_dir)) or settings.data_uri is not None
    local = [str(p) for p in inputs if not is_remote(str(p))]
    if shared and local:
        print(
            f"  note: {local[0]} is a local path; a worker on another machine cannot read it "
            "(its rows will be errors): put the posters in the bucket, or run workers here",
            file=sys.stderr,
        )


def run_submit_scrape(args, settings: Settings) -> int:
    request = scrape_request(args, settings).to_json()
    return _submit_task(settings, "scrape", "scrape", request=request)


def run_submit_train(args, settings: Settings) -> int:
    config = train_config(args).as_dict()
    return _submit_task(settings, "train", "train", config=config)


def _submit_task(settings: Settings, name: str, queue: str, **kwargs) -> int:
    from anigenre.jobs.cli.task_records import record_task
    from anigenre.jobs.queue.broker import broker_app
    from anigenre.jobs.queue.publish import send_task

    app = broker_app(settings)
    task_id = send_task(app, f"jobs.tasks.{name}", queue, **kwargs)
    record_task(settings.data_dir, task_id, name, queue)
    mirror.push(settings, "tasks")  # with an s3:// data dir, any machine's `jobs status` sees it
    print(task_id)
    print(
        f"  {name} queued on '{queue}'; '{command(settings, f'jobs wait {task_id}')}' follows it",
        file=sys.stderr,
    )
    _warn_if_no_worker(app, queue, settings)
    return 0


def _warn_if_no_worker(app, queue: str, settings: Settings) -> None:
    hint = no_worker_hint(app, queue, settings)
    if hint:
        print(f"  {hint}", file=sys.stderr)


def no_worker_hint(app, queue: str, settings: Settings) -> str | None:
    """A line saying how to start a worker when none consumes ``queue``, else None."""
    try:
        replies = app.control.inspect(timeout=1.0).active_queues() or {}
    except Exception:  # a hint is never worth failing the command
        return None
    if any(q.get("name") == queue for queues in replies.values() for q in queues or ()):
        return None
    broker = masked_url(settings.broker_url)
    return f"no worker is consuming '{queue}'; start one with: " + command(
        settings, f"worker -Q {queue} --broker {broker}"
    )


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
    from anigenre.jobs.cli.status_view import FAILED_STATES, run_view, task_line
    from anigenre.jobs.runs.index import index_home, list_runs

    if args.id in list_runs(index_home(settings), settings.s3):
        s = _read_status(settings, args.id)  # a DataError when its files are gone
        _show(args, run_view(s), _status_line(s))
        return 1 if s.failed and not s.complete else 0
    view, _ = _task(settings, args.id)
    _show(args, view, task_line(view))
    return 1 if view["state"] in FAILED_STATES else 0


def _show(args, view: dict, line: str) -> None:
    import json

    print(json.dumps(view, indent=2, default=str) if args.json else line)


def _task(settings: Settings, task_id: str):
    """A submitted task's view and the app that answered it; an id that is neither one of
    our recorded tasks nor known to the result backend is an error, not PENDING."""
    from anigenre.core.errors import AnigenreError, ConfigError
    from anigenre.jobs.cli.status_view import task_view
    from anigenre.jobs.cli.task_records import load_task

    mirror.pull(settings, "tasks")
    record = load_task(settings.data_dir, task_id)
    if not settings.broker_url:
        if record:
            raise ConfigError(
                f"task {task_id} ({record.name}) keeps its state on the broker; pass --broker "
                "redis://HOST:6379/0 or set ANIGENRE_BROKER_URL"
            )
        raise ConfigError(
            f"no run '{task_id}' in {settings.data_dir} ('anigenre jobs list' shows them); "
            "a task id from 'jobs submit scrape|train' needs --broker"
        )
    from anigenre.jobs.queue.broker import broker_app

    app = broker_app(settings)
    state, outcome = _task_state(app, task_id)
    if record is None and state == "PENDING":
        raise AnigenreError(
            f"no run or task '{task_id}' in {settings.data_dir} or on the broker "
            "('anigenre jobs list' shows them)"
        )
    return task_view(task_id, record, state, outcome), app


def _task_state(app, task_id: str):
    result = app.AsyncResult(task_id)
    state = result.state
    if state in ("SUCCESS", "FAILURE", "RETRY", "REVOKED"):
        return state, result.result
    return state, None


def run_wait(args, settings: Settings) -> int:
    from anigenre.jobs.runs.index import index_home, list_runs

    if args.id in list_runs(index_home(settings), settings.s3):
        return _wait_run(args, settings)
    return _wait_task(args, settings)


def _wait_task(args, settings: Settings) -> int:
    from anigenre.core.errors import AnigenreError
    from anigenre.jobs.cli.status_view import FAILED_STATES, task_line, task_view

    view, app = _task(settings, args.id)  # pulls the task records once
    record = _record(settings, args.id)  # fixed at submission: read once, not every poll
    deadline = time.monotonic() + args.timeout
    while view["state"] not in ("SUCCESS", *FAILED_STATES):
        if time.monotonic() > deadline:
            hint = no_worker_hint(app, view["queue"], settings) if view["queue"] else None
            raise AnigenreError(
                f"task {args.id} not finished after {args.timeout:.0f} s ({view['state']}); "
                f"it stays queued: '{command(settings, f'jobs wait {args.id}')}' waits again"
                + (f"; {hint}" if hint else "")
            )
        time.sleep(0.5)
        view = task_view(args.id, record, *_task_state(app, args.id))
    print(task_line(view))
    return 1 if view["state"] in FAILED_STATES else 0


def _record(settings: Settings, task_id: str):
    from anigenre.jobs.cli.task_records import load_task

    return load_task(settings.data_dir, task_id)


def _wait_run(args, settings: Settings) -> int:
    from anigenre.core.errors import AnigenreError, DataError
    from anigenre.jobs.runs.index import index_home, load_plan
    from anigenre.jobs.runs.markers import finalize
    from anigenre.jobs.runs.parts import PartCounts
    from anigenre.jobs.runs.status import run_status
    from tqdm import tqdm

    plan = load_plan(index_home(settings), args.id, settings.s3)
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
                # Its chunks are still queued: resuming now would queue them a second time.
                raise AnigenreError(
                    f"run {plan.run_id} not complete after {args.timeout:.0f} s "
                    f"({s.chunks_done}/{s.chunks_total} chunks); its chunks stay queued: "
                    f"'{command(settings, f'jobs wait {plan.run_id}')}' waits again"
                    + _no_worker_suffix(settings, "predict")
                )
            time.sleep(0.5)
    print(_status_line(run_status(plan)))
    if len(plan.inputs) <= 20:
        print(format_top_k(plan))
    return 0


def _no_worker_suffix(settings: Settings, queue: str) -> str:
    if not settings.broker_url:
        return ""
    from anigenre.core.errors import AnigenreError
    from anigenre.jobs.queue.broker import broker_app

    try:
        hint = no_worker_hint(broker_app(settings), queue, settings)
    except AnigenreError:
        return ""
    return f"; {hint}" if hint else ""


def run_resume(args, settings: Settings) -> int:
    from anigenre.jobs import stages
    from anigenre.jobs.runs.index import index_home, load_plan
    from anigenre.jobs.runs.parts import missing_chunks
    from anigenre.jobs.stages.predict import claim_run, planning_lock

    plan = load_plan(index_home(settings), args.run_id, settings.s3)
    app = None
    if settings.broker_url:
        from anigenre.jobs.queue.broker import broker_app

        app = broker_app(settings)  # fail before touching the plan
    # Files that other runs predicted (or own) since this one was planned leave its
    # missing chunks: a resume never writes a second row for a file.
    plan, dropped = claim_run(plan, resume=True, lock=planning_lock(settings, plan.out))
    missing = missing_chunks(plan)
    note = f"; {dropped} file(s) left to the other runs that predict them" if dropped else ""
    if app is not None:
        from anigenre.jobs.queue.publish import forget_resends, send_chunks

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
    import json

    from anigenre.core.errors import DataError
    from anigenre.jobs.cli.status_view import run_view, task_line
    from anigenre.jobs.cli.task_records import list_tasks
    from anigenre.jobs.runs.index import index_home, list_runs

    runs = []  # (view, line) in run order, newest last
    for run_id in list_runs(index_home(settings), settings.s3):
        try:
            s = _read_status(settings, run_id)
            runs.append((run_view(s), _status_line(s)))
        except DataError as exc:  # one run whose folder is gone must not hide the others
            runs.append(({"run_id": run_id, "unreadable": str(exc)}, str(exc)))
    mirror.pull(settings, "tasks")
    tasks = _task_views(settings, list_tasks(settings.data_dir))
    if args.json:
        print(json.dumps({"runs": [v for v, _ in runs], "tasks": tasks}, indent=2))
        return 0
    if not runs and not tasks:
        print(f"no runs or tasks recorded in {settings.data_dir}")
    for _, line in runs:
        print(line)
    for view in tasks:
        print(task_line(view))
    return 0


def _task_views(settings: Settings, records) -> list[dict]:
    """Views of the recorded tasks; their states when a broker is set and answers."""
    from anigenre.core.errors import AnigenreError
    from anigenre.jobs.cli.status_view import task_view

    app = None
    if records and settings.broker_url:
        from anigenre.jobs.queue.broker import broker_app

        try:
            app = broker_app(settings)
        except AnigenreError as exc:  # the runs still list; say why the states are missing
            print(f"anigenre: task states unknown: {exc}", file=sys.stderr)
    return [
        task_view(r.task_id, r, *(_task_state(app, r.task_id) if app else (None, None)))
        for r in records
    ]


def _read_status(settings: Settings, run_id: str):
    """The status of ``run_id``; a run whose files are gone or damaged is a DataError."""
    from anigenre.core.errors import AnigenreError, DataError, StorageError
    from anigenre.jobs.runs.index import index_home, load_plan
    from anigenre.jobs.runs.status import run_status

    # A DataError when its plan is gone.
    plan = load_plan(index_home(settings), run_id, settings.s3)
    try:
        return run_status(plan, stall_after_s=settings.run_stall_after_s)
    except FileNotFoundError as exc:
        why = f"{exc.filename} is gone; was its output folder moved or deleted?"
    except OSError as exc:
        why = str(StorageError.from_os(exc, action="read"))
    except (ValueError, TypeError, KeyError) as exc:
        why = f"its files are damaged ({type(exc).__name__}: {exc})"
    except AnigenreError as exc:
        why = str(exc)
    raise DataError(f"run {run_id}: unreadable: {why}")
