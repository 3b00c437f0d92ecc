"""``anigenre predict``: bulk prediction in-process (the embedded default, no broker)."""

from __future__ import annotations

import sys
from pathlib import Path

from anigenre.config import Settings
from anigenre.jobs.cli import args as types
from anigenre.jobs.service.hints import command

TABLE_LIMIT = 20  # print the paper's Table 4-style listing for inputs up to this size


def add_predict_arguments(p) -> None:
    p.add_argument(
        "paths",
        nargs="+",
        type=types.storage_location,
        help="image files or folders (searched recursively); local or s3://bucket/prefix",
    )
    p.add_argument("--model", default="latest", help="model id, unique prefix, alias, or 'latest'")
    p.add_argument(
        "--out",
        type=types.storage_location,
        help="output dir, local or s3://bucket/prefix (default: the data dir)",
    )
    p.add_argument("--top-k", type=types.positive_int, default=4)
    p.add_argument(
        "--chunk-size",
        type=types.positive_int,
        help="files per chunk (env ANIGENRE_PREDICT_CHUNK_SIZE, default 64)",
    )
    p.add_argument("--force", action="store_true", help="predict files already predicted ok too")
    p.add_argument(
        "--engine",
        choices=("litert", "keras"),
        help="what runs the network (env ANIGENRE_PREDICT_ENGINE, default litert: faster, "
        "and no TensorFlow in workers; keras is the reference)",
    )


def plan_args(args) -> dict:
    """The run-plan arguments of jobs.service.runs.plan, from ``add_predict_arguments``."""
    return {
        "model": args.model,
        "out": args.out,
        "top_k": args.top_k,
        "chunk_size": args.chunk_size,
        "force": args.force,
        "engine": args.engine,
    }


def _files(n: int) -> str:
    return f"{n} file{'' if n == 1 else 's'}"


def skipped_note(plan) -> str:
    """What planning left out, and why: '1 file already has an ok row (use --force)'."""
    notes = []
    if plan.already_predicted:
        has = "has" if plan.already_predicted == 1 else "have"
        notes.append(f"{_files(plan.already_predicted)} already {has} an ok row (use --force)")
    for run_id, n in plan.in_live_runs.items():
        notes.append(
            f"{_files(n)} left to run {run_id}, which is predicting them "
            f"('anigenre jobs status {run_id}')"
        )
    return "; ".join(notes)


def nothing_new(plan) -> str:
    return f"nothing new: {skipped_note(plan)}"


def register(sub) -> None:
    p = sub.add_parser("predict", help="predict genres for posters, in this process")
    add_predict_arguments(p)
    p.set_defaults(run=run, settings_overrides=lambda a: {})
    register_report(sub)


def run(args, settings: Settings) -> int:
    from contextlib import ExitStack

    from anigenre.core.progress import Progress
    from anigenre.jobs.service import runs
    from anigenre.jobs.service.dispatch import InProcess

    resume = None  # once planned: the command that finishes this run
    with ExitStack() as stack:
        bar = None

        def planned(plan) -> None:
            nonlocal bar, resume
            skipped = skipped_note(plan)
            print(
                f"run {plan.run_id}: {_files(len(plan.inputs))} to predict with {plan.model_id}"
                f" on {plan.engine}"
                + (f"; {skipped}" if skipped else "")
                + (
                    f"; {_files(len(plan.duplicates))} identical to another "
                    "(a row each, predicted once)"
                    if plan.duplicates
                    else ""
                )
            )
            resume = command(settings, f"jobs resume {plan.run_id}")
            print(f"  (if interrupted: '{resume}' finishes this run)", flush=True)
            bar = stack.enter_context(
                Progress(
                    "predict",
                    unit="poster",
                    total=len(plan.inputs),
                    every_s=settings.progress_every_s,
                    quiet=args.quiet,
                )
            )

        here = InProcess(settings, lambda r: bar.update(r["ok"] + r["error"]))
        try:
            done = runs.submit(settings, args.paths, here, on_planned=planned, **plan_args(args))
        except KeyboardInterrupt:
            if resume is None:
                raise  # still planning: nothing was recorded, the same command starts over
            # Running the same command again would start a second run beside this one.
            print(f"anigenre: interrupted; '{resume}' finishes this run", file=sys.stderr)
            return 130
    plan = done.plan
    if done.run_id is None:
        print(nothing_new(plan))  # no run is recorded: there is nothing to run
        return 0
    s = runs.status(settings, plan.run_id)
    print(f"  {s.rows_ok} ok, {s.rows_error} error -> {plan.parts.uri}")
    if len(plan.inputs) <= TABLE_LIMIT:
        print(format_top_k(runs.table(settings, plan.run_id)))
    return failed_if_nothing_predicted(s)


def failed_if_nothing_predicted(s) -> int:
    """1, with a line on stderr, for a complete run that predicted nothing (every file an
    error row): exit 0 would tell cron that all went well."""
    from anigenre.jobs.service.runs import predicted_nothing

    if not predicted_nothing(s):
        return 0
    print(f"anigenre: run {s.run_id}: {s.note}; each row's error says why", file=sys.stderr)
    return 1


NAME_WIDTH = 40


def format_top_k(rows) -> str:
    """A run's rows (jobs.service.runs.table) under a header: each poster's name, the
    genres that passed their thresholds (the ``predicted`` column, the answer) and, as in
    the paper's Table 4, its top k genres by probability."""
    ok = rows[rows["status"] == "ok"]
    answers = [", ".join(g) or "none" for g in ok["predicted"]] if len(ok) else []
    width = max([len("predicted"), *map(len, answers)]) + 2
    k = max([0, *(len(g) for g in ok["top_genres"])]) if len(ok) else 0
    lines = [f"  {'poster':<{NAME_WIDTH}} {'predicted':<{width}}top {k} by probability"]
    for r in rows.itertuples():
        name = fit_name(Path(r.path).name, NAME_WIDTH)
        if r.status == "ok":
            answer = ", ".join(r.predicted) or "none"
            lines.append(f"  {name:<{NAME_WIDTH}} {answer:<{width}}{', '.join(r.top_genres)}")
        else:
            lines.append(f"  {name:<{NAME_WIDTH}} error: {r.error}")
    return "\n".join(lines)


def fit_name(name: str, width: int) -> str:
    """``name`` cut to ``width`` with "..." in the middle (ASCII: any terminal or log prints
    it), keeping the extension and the end, where names that share a prefix differ."""
    if len(name) <= width:
        return name
    tail = (width - 3) // 2
    return f"{name[: width - 3 - tail]}...{name[-tail:]}"


def register_report(sub) -> None:
    p = sub.add_parser("report", help="summary.parquet, charts and report.html for a run")
    p.add_argument("run_id")
    p.add_argument(
        "--labels",
        type=types.local_path,
        help="a labels.csv to score against (default: found beside images/)",
    )
    types.add_include_seen(p)
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (counts, labelled, macro_map, micro_ap, p_at_3, ...)",
    )
    p.set_defaults(run=run_report, settings_overrides=lambda a: {})


def run_report(args, settings: Settings) -> int:
    import json

    from anigenre.jobs import stages
    from anigenre.jobs.runs.reports import labelled_note

    report = stages.report_run(settings, args.run_id, args.labels, args.include_seen)
    if args.json:
        print(json.dumps({"run_id": args.run_id, **report.as_json()}, indent=2))
        return 0
    totals = report.summary[report.summary.section == "totals"].set_index("name")["count"]
    print(f"report for run {args.run_id}: {totals.get('ok', 0)} ok, {totals.get('error', 0)} error")
    if report.label_files:
        print(f"  {labelled_note(report.posters, report.labelled, report.label_files)}")
    if report.seen_note is not None:
        print(f"  labels found: {report.seen_note}")
    if report.scores is not None:
        s = report.scores
        seen = " (including seen posters)" if args.include_seen else ""
        fig = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        print(
            f"  on {s['n']} posters{seen}: macro mAP {fig(s['macro_map'])} over "
            f"{int(report.per_genre_ap['ap'].notna().sum())} genres present, micro AP "
            f"{fig(s['micro_ap'])}, P@3 {fig(s['p_at_3'])}"
        )
    if report.decisions is not None:
        print(_rates_line(report.decisions))
    folder = str(report.folder).rstrip("/")
    print(f"  wrote {folder}/summary.parquet and {folder}/report.html")
    return 0


def _rates_line(decisions) -> str:
    """Genres per poster expected vs observed, and the genres whose rate looks shifted."""
    mean = decisions.attrs.get("per_poster") or {}
    fmt = lambda v: "not recorded" if v is None or v != v else f"{v:.2f}"  # noqa: E731 - NaN
    line = (
        f"  genres per poster: expected {fmt(mean.get('expected'))}, "
        f"observed {fmt(mean.get('observed'))}"
    )
    flagged = decisions.loc[decisions["flagged"].fillna(False).astype(bool), "genre"]
    if len(flagged):
        line += "; rate differs from expected by an exact test (see report.html): "
        line += ", ".join(flagged)
    return line
