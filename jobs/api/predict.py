"""``POST /v1/predict``: the genres of the posters in one request, from the process's one
``PosterModel``. A poster that is no usable image is a result with status ``error`` and
the reason a bulk run gives it, never a failed request."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.security import HTTPBearer

# The check itself is jobs.api.guard.BearerToken; this only shows the scheme in /docs.
AUTH = [Depends(HTTPBearer(auto_error=False, description="ANIGENRE_API_TOKEN"))]

router = APIRouter(tags=["predict"], dependencies=AUTH)


@router.post("/v1/predict")
def predict(
    request: Request,
    file: Annotated[list[UploadFile], File(description="one or more posters")],
    top_k: Annotated[int, Query(ge=1, le=64, description="genres in top_genres")] = 4,
) -> dict:
    """Each uploaded ``file`` (a multipart field, repeated for several posters) gives one
    result, in the order sent: ``predicted`` (the genres over the model's thresholds),
    ``top_genres`` and ``probabilities`` per genre."""
    model = request.app.state.model
    names = [f.filename or f"<file {i}>" for i, f in enumerate(file)]
    # A plain function: FastAPI runs it in its thread pool, so decoding and the network
    # never hold up the server's event loop.
    rows = model.predict([f.file.read() for f in file], top_k=top_k)
    columns = list(zip(model.genres, model.predictor.vocab.columns(), strict=True))
    records = rows.to_dict("records")
    results = [_result(name, row, columns) for name, row in zip(names, records, strict=True)]
    tally = request.app.state.metrics.predictions
    for r in results:
        tally.labels(r["status"]).inc()
    return {"model": model.model_id, "results": results}


def _result(name: str, row: dict, columns: list[tuple[str, str]]) -> dict:
    ok = row["status"] == "ok"
    return {
        "file": name,
        "status": row["status"],
        "error": None if ok else row["error"],
        "sha256": row["sha256"],
        "predicted": list(row["predicted"]) if ok else [],
        "top_genres": list(row["top_genres"]) if ok else [],
        "probabilities": {g: float(row[c]) for g, c in columns} if ok else {},
    }
