"""``/v1/runs``: queue a folder or bucket prefix as a run, follow it, read its rows and
its report, as ``jobs submit predict``, ``jobs status|list``, ``predictions`` and
``report`` do. The runs are jobs.service's; the states are ``jobs status``'s."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Annotated, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from anigenre.core.storage import is_remote, parse_storage_location
from anigenre.jobs.api.predict import AUTH
from anigenre.jobs.service import runs, views
from anigenre.jobs.service.roots import outside_roots
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

PARQUET = "application/vnd.apache.parquet"

router = APIRouter(tags=["runs"], dependencies=AUTH)


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[str] = Field(min_length=1, description="absolute paths or s3:// URIs")
    out: str | None = Field(None, description="output folder or s3:// prefix; default the data dir")
    model: str = Field("latest", description="model id, unique prefix, alias or 'latest'")
    force: bool = Field(False, description="predict again posters that have an ok row")
    top_k: int = Field(4, ge=1, le=64)


@router.post("/v1/runs", status_code=202)
def submit(request: Request, body: RunRequest) -> JSONResponse:
    """Plan the run and queue it (on the broker; without one, in a thread of the server).
    202 with its ``run_id``; 200 with ``run_id`` null when every poster already has an
    ``ok`` row for the model (``force`` predicts them again)."""
    settings = request.app.state.settings
    inputs = [_location(text, settings.api_roots) for text in body.inputs]
    out = None if body.out is None else _location(body.out, settings.api_roots)
    done = runs.submit(
        settings,
        inputs,
        request.app.state.queue(),
        model=body.model,
        out=out,
        force=body.force,
        top_k=body.top_k,
    )
    plan = done.plan
    view = {
        "run_id": done.run_id,
        "model_id": plan.model_id,
        "files": len(plan.inputs),
        "chunks": done.chunks,
        "already_predicted": plan.already_predicted,
        "duplicates": len(plan.duplicates),
    }
    if done.run_id is None:
        note = "nothing new: every poster already has an ok row for this model (force redoes)"
        return JSONResponse({**view, "note": note}, status_code=200)
    request.app.state.metrics.submitted.inc()
    return JSONResponse(view, status_code=202)


@router.get("/v1/runs")
def listing(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict:
    """Runs ``offset`` to ``offset + limit``, newest first, and how many there are in all;
    one that cannot be read has ``state`` null and its ``error``."""
    page = runs.runs_page(request.app.state.settings, limit, offset)
    waiting_for = request.app.state.queue.waiting_for
    return {
        "runs": [views.entry_view(e, waiting_for(e.run_id)) for e in page.entries],
        "total": page.total,
        "offset": page.offset,
        "more": page.more,
    }


@router.get("/v1/runs/{run_id}")
def status(request: Request, run_id: str) -> dict:
    """``state``: queued, running, stalled, interrupted, complete or failed; ``done`` of
    ``total`` posters have a row; then the fields of ``jobs status --json``."""
    settings = _known(request, run_id)
    waiting_for = request.app.state.queue.waiting_for(run_id)
    return views.run_view(runs.status(settings, run_id), waiting_for=waiting_for)


@router.get(
    "/v1/runs/{run_id}/predictions",
    responses={200: {"content": {PARQUET: {}, "application/json": {}}}},
)
def predictions(
    request: Request,
    run_id: str,
    format: Annotated[Literal["parquet", "json"], Query()] = "parquet",  # noqa: A002
    partial: Annotated[bool, Query(description="the rows so far of a run not complete")] = False,
) -> Response:
    """The run's rows, one per poster in input order: Parquet (the predictions table's
    columns, with ``run_id``), or JSON ``{"run_id", "state", "complete", "rows": [...]}``.
    409 until the run is complete, so that a table is never taken for the whole run by
    mistake; ``partial=true`` gives the rows written so far (header ``X-Run-State``)."""
    settings = _known(request, run_id)
    state = runs.status(settings, run_id)
    if not state.complete and not partial:
        done = state.rows_ok + state.rows_error
        raise HTTPException(
            409,
            f"run {run_id} is {state.state} ({done} of {state.rows_total} posters have a "
            "row); its predictions are read once it is complete, or pass partial=true "
            "for the rows so far",
        )
    rows = runs.table(settings, run_id)
    headers = {"x-run-state": state.state}
    if format == "json":
        records = json.loads(rows.to_json(orient="records", date_format="iso"))
        body = {"run_id": run_id, "state": state.state, "complete": state.complete}
        return JSONResponse({**body, "rows": records}, headers=headers)
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), buffer)
    headers["content-disposition"] = f'attachment; filename="{run_id}.parquet"'
    return Response(buffer.getvalue(), media_type=PARQUET, headers=headers)


@router.get("/v1/runs/{run_id}/report", response_class=HTMLResponse)
def report(request: Request, run_id: str) -> HTMLResponse:
    """The run's self-contained report.html, written on first request once the run is
    complete; 409 before."""
    return HTMLResponse(views.report_page(_known(request, run_id), run_id))


def _known(request: Request, run_id: str):
    settings = request.app.state.settings
    if not runs.is_run(settings, run_id):
        raise HTTPException(404, f"no run '{run_id}'; GET /v1/runs lists them")
    return settings


def _location(text: str, roots: tuple[str, ...]) -> Path | str:
    """A path or URI of the request as the CLI parses it; a relative path means nothing
    to a server (400), one outside the roots is refused (403)."""
    where = parse_storage_location(text)  # ConfigError (400) for an unknown scheme
    if not is_remote(str(where)) and not Path(where).is_absolute():
        raise HTTPException(400, f"'{text}' is relative; give an absolute path or s3:// URI")
    if outside_roots(where, roots):
        raise HTTPException(403, f"'{text}' is outside the folders this server may use")
    return where
