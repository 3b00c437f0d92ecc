"""``anigenre jobs submit|status|wait|resume|list``: the same stages, queued on Redis.
Parsing and formatting only: what each does lives in jobs.service."""

from __future__ import annotations

import json
import sys

from anigenre.config import Settings
from anigenre.core.storage import is_remote
from anigenre.jobs.cli import args as types
from anigenre.jobs.cli.models_cmd import add_train_arguments, train_config
from anigenre.jobs.cli.predict_cmd import (
    add_predict_arguments,
    failed_if_nothing_predicted,
    format_top_k,
    nothing_new,
    plan_args,
)
from anigenre.jobs.cli.scrape_cmd import add_scrape_arguments, scrape_request
from anigenre.jobs.cli.status_view import run_line, run_view, task_line
from anigenre.jobs.runs.status import QUEUED, STALLED
from anigenre.jobs.service import runs, tasks
from anigenre.jobs.service.dispatch import FAILED_STATES
from anigenre.jobs.service.hints import command
from anigenre.jobs.service.wiring import dispatcher_for

# Runs a plain 'jobs list' reads and shows: each listed run costs a few reads (on S3,
# requests), so the list stays quick however many runs the index has.
LIST_LIMIT = 20


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
    ls = jsub.add_parser("list", help="runs, newest first, and submitted tasks")
    ls.add_argument("--json", action="store_true", help="print JSON instead of lines")
    shown = ls.add_mutually_exclusive_group()
    shown.add_argument(
        "--limit", type=types.positive_int, default=LIST_LIMIT, help="the newest N runs"
    )
    shown.add_argument("--all", action="store_true", help="every run (reads each one)")
    ls.set_defaults(run=run_list)
    for parser in (p, s, t, st, w, r, ls):
        parser.set_defaults(settings_overrides=lambda a: {"broker_url": getattr(a, "broker", None)})


def _broker(settings: Settings):
    """The broker's dispatcher: ``jobs submit`` queues, it never runs work here."""
    if not settings.broker_url:
        from anigenre.core.errors import ConfigError

        raise ConfigError(
            "no broker configured; pass --broker redis://HOST:6379/0 or set ANIGENRE_BROKER_URL"
        )
    return dispatcher_for(settings)


def run_submit_predict(args, settings: Settings) -> int:
    dispatcher = _broker(settings)  # fail before hashing thousands of files
    done = runs.submit(settings, args.paths, dispatcher, **plan_args(args))
    if done.run_id is None:
        print(nothing_new(done.plan), file=sys.stderr)  # no run id on stdout: none was recorded
        return 0
    print(done.run_id)
    print("  " + done.describe().split(": ", 1)[1], file=sys.stderr)
    if done.chunks:
        _say(dispatcher.idle_hint("predict"))
        _warn_if_local_inputs_leave_this_machine(args.paths, done.plan.out_dir, settings)
    return 0


def _say(line: str | None) -> None:
    if line:
        print(f"  {line}", file=sys.stderr)


def _warn_if_local_inputs_leave_this_machine(inputs, out_dir, settings: Settings) -> None:
    """Workers on other machines cannot read this machine's files: when the run lives in a
    bucket (its output or the data dir), local inputs are most likely a mistake."""
    shared = is_remote(str(out_dir)) or settings.data_uri is not None
    local = [str(p) for p in inputs if not is_remote(str(p))]
    if shared and local:
        print(
            f"  note: {local[0]} is a local path; a worker on another machine cannot read it "
            "(its rows will be errors): put the posters in the bucket, or run workers here",
            file=sys.stderr,
        )


def run_submit_scrape(args, settings: Settings) -> int:
    return _submit_task(settings, "scrape", request=scrape_request(args, settings).to_json())


def run_submit_train(args, settings: Settings) -> int:
    return _submit_task(settings, "train", config=train_config(args).as_dict())


def _submit_task(settings: Settings, name: str, **kwargs) -> int:
    dispatcher = _broker(settings)
    record = tasks.submit_task(settings, dispatcher, name, **kwargs)
    print(record.task_id)
    follow = command(settings, f"jobs wait {record.task_id}")
    print(f"  {name} queued on '{record.queue}'; '{follow}' follows it", file=sys.stderr)
    _say(dispatcher.idle_hint(record.queue))
    return 0


def _dispatcher_or_none(settings: Settings):
    return dispatcher_for(settings) if settings.broker_url else None


def run_status(args, settings: Settings) -> int:
    if runs.is_run(settings, args.id):
        s = runs.status(settings, args.id)  # a DataError when its files are gone
        view, line = run_view(s), run_line(s, settings)
        # Queued or stalled on the broker: the usual reason is that no worker takes the queue.
        hint = _idle_hint(settings) if s.state in (QUEUED, STALLED) else None
        if hint:
            view, line = {**view, "worker_hint": hint}, f"{line}; {hint}"
        _show(args, view, line)
        return 1 if s.failed and not s.complete else 0
    view = tasks.task_status(settings, args.id, _dispatcher_or_none(settings))
    _show(args, view, task_line(view))
    return 1 if view["state"] in FAILED_STATES else 0


def _show(args, view: dict, line: str) -> None:
    print(json.dumps(view, indent=2, default=str) if args.json else line)


def run_wait(args, settings: Settings) -> int:
    if not runs.is_run(settings, args.id):
        dispatcher = _dispatcher_or_none(settings)
        if dispatcher is None:
            tasks.task_status(settings, args.id, None)  # says what is missing, and raises
        view = tasks.wait_task(settings, args.id, dispatcher, args.timeout)
        print(task_line(view))
        return 1 if view["state"] in FAILED_STATES else 0
    from anigenre.core.progress import Progress

    with Progress(
        "wait", unit="poster", every_s=settings.progress_every_s, quiet=args.quiet
    ) as bar:

        def progress(s) -> None:
            if bar.total != s.rows_total:
                bar.total = s.rows_total
            # Every poll, moved or not: off a terminal, a line every few seconds says it waits.
            bar.update(s.rows_ok + s.rows_error - bar.n)

        def note(text: str | None) -> None:
            bar.note(f"stalled: {text}" if text else "moving again")

        s = runs.wait(
            settings,
            args.id,
            timeout=args.timeout,
            on_progress=progress,
            on_note=note,
            idle_hint=lambda: _idle_hint(settings),
        )
    print(run_line(s, settings))
    if s.rows_total <= 20:
        print(format_top_k(runs.table(settings, args.id)))
    return failed_if_nothing_predicted(s)


def _idle_hint(settings: Settings) -> str | None:
    from anigenre.core.errors import AnigenreError

    try:
        dispatcher = _dispatcher_or_none(settings)
    except AnigenreError:  # a hint is never worth failing the command
        return None
    return dispatcher.idle_hint("predict") if dispatcher else None


def run_resume(args, settings: Settings) -> int:
    done = runs.resume(settings, args.run_id, dispatcher_for(settings))
    note = (
        f"; {done.dropped} file(s) left to the other runs that predict them" if done.dropped else ""
    )
    if done.queued:
        print(f"re-queued {done.chunks} chunk(s) of run {done.run_id}{note}")
        return 0
    s = done.status
    what = f"{done.chunks} chunk(s) redone here" if done.chunks else "nothing left to redo"
    print(f"run {done.run_id}: {what}{note}; {s.rows_ok} ok, {s.rows_error} error [complete]")
    return failed_if_nothing_predicted(s)


def run_list(args, settings: Settings) -> int:
    page = runs.runs_page(settings, None if args.all else args.limit)
    entries = page.entries
    task_list = tasks.task_views(settings, _states_dispatcher(settings))
    if args.json:
        listed = [
            {"run_id": e.run_id, "unreadable": e.error}
            if e.status is None
            else {**run_view(e.status), "out_dir": e.out_dir, "model_id": e.model_id}
            for e in entries
        ]
        body = {"runs": listed, "runs_total": page.total, "runs_more": page.more}
        print(json.dumps({**body, "tasks": task_list}, indent=2))
        return 0
    if not entries and not task_list:
        print(f"no runs or tasks recorded in {settings.data_dir}")
    for e in entries:
        if e.status is None:
            print(e.error)
        else:
            # One line a run, so it greps: where it writes and with which model at the end.
            print(f"{run_line(e.status, settings)} (model {e.model_id}, out {e.out_dir})")
    if page.more:
        more = command(settings, f"jobs list --limit {len(entries) + min(page.more, LIST_LIMIT)}")
        print(f"... {page.more} older run(s) not shown; '{more}' or --all lists them")
    for view in task_list:
        print(task_line(view))
    return 0


def _states_dispatcher(settings: Settings):
    """The broker, to ask for the tasks' states; the runs still list when it is down."""
    from anigenre.core.errors import AnigenreError

    try:
        return _dispatcher_or_none(settings)
    except AnigenreError as exc:
        print(f"anigenre: task states unknown: {exc}", file=sys.stderr)
        return None
