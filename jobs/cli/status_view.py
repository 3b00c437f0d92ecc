"""What ``jobs status|wait|list`` print: one readable line, or JSON.

A task's view is a plain dict (jobs.service.tasks.task_view), so the human line and
``--json`` say the same thing.
"""

from __future__ import annotations

import dataclasses

# Celery's states, in words.
_STATE_WORDS = {
    "PENDING": "queued, not started",
    "RECEIVED": "received by a worker",
    "STARTED": "running",
    "RETRY": "failed once, will retry",
    "SUCCESS": "done",
    "FAILURE": "failed",
    "REVOKED": "cancelled",
}


def task_line(view: dict) -> str:
    what = view["name"] or "task"
    where = f" on '{view['queue']}'" if view["queue"] else ""
    submitted = view["submitted"]
    when = f", submitted {submitted[:19].replace('T', ' ')} UTC" if submitted else ""
    head = f"task {view['id']} ({what}{where}{when})"
    state = view["state"]
    if state is None:
        return f"{head}: state unknown without a broker (pass --broker)"
    words = _STATE_WORDS.get(state, state.lower())
    if "error" in view:
        return f"{head}: {words}: {view['error']}"
    if "result" in view:
        return f"{head}: {words}: {format_result(view['name'], view['result'])}"
    return f"{head}: {words}"


def format_result(name: str | None, result) -> str:
    """A task's JSON result in words: ``4500 titles, 90 pages, posters ok 108 missing 4392``."""
    if not isinstance(result, dict):
        return str(result)
    result = dict(result)
    parts = []
    if "model_id" in result:
        parts.append(f"model {result.pop('model_id')}")
    test = result.pop("test", None)
    if isinstance(test, dict):
        scores = [
            f"{label} {test[key]:.3f}"
            for key, label in (
                ("macro_map", "macro mAP"),
                ("micro_map", "micro mAP"),
                ("p@3", "P@3"),
                ("micro_f1", "micro F1"),
            )
            if isinstance(test.get(key), int | float)
        ]
        if scores:
            parts.append("test " + ", ".join(scores))
    for key, value in result.items():
        parts.append(_pair(key, value))
    return ", ".join(parts) if parts else "no result"


def _pair(key: str, value) -> str:
    label = key.replace("_", " ")
    if isinstance(value, dict):
        inner = " ".join(f"{k.replace('_', ' ')} {_scalar(v)}" for k, v in value.items())
        return f"{label} {inner}" if inner else f"{label} none"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{_scalar(value)} {label}"
    return f"{label} {_scalar(value)}"


def _scalar(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def run_line(s, settings) -> str:
    """A RunStatus in one line: counts, rate, and the ETA or why there is none."""
    from anigenre.jobs.service.hints import command

    rate = f"{s.rate_per_s:.1f} posters/s" if s.rate_per_s else "rate -"
    eta = "done" if s.complete else (f"ETA {s.eta_s:.0f} s" if s.eta_s is not None else "ETA -")
    if s.state == "stalled":  # an ETA would promise what is not happening
        eta = f"stalled: {s.note}"
    elif s.state == "interrupted":
        resume = command(settings, f"jobs resume {s.run_id}")
        eta = f"interrupted: {s.note}; '{resume}' finishes it"
    elif s.state == "queued":
        eta = "queued: no chunk taken by a worker yet"
    return (
        f"run {s.run_id}: {s.chunks_done}/{s.chunks_total} chunks, "
        f"{s.rows_ok + s.rows_error}/{s.rows_total} rows ({s.rows_ok} ok, {s.rows_error} error), "
        f"{rate}, {eta}"
        + (" [complete]" if s.complete else "")
        + (
            f" [failed: {s.failed}; '{command(settings, f'jobs resume {s.run_id}')}' retries it]"
            if s.failed and not s.complete
            else ""
        )
    )


def run_view(status) -> dict:
    """A RunStatus as JSON-ready data."""
    return {"kind": "run", **dataclasses.asdict(status)}
