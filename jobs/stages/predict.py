"""Prediction stages: plan a run, run its chunks here, report on it."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from pathlib import Path

from anigenre.config import Settings
from anigenre.core.errors import AnigenreError, ConfigError
from anigenre.core.storage import is_remote, open_store
from anigenre.jobs.runs import live
from anigenre.jobs.runs.chunks import decode_ahead, execute_chunk
from anigenre.jobs.runs.index import index_home, load_plan, mark_finished, record_run
from anigenre.jobs.runs.lease import hold_lease
from anigenre.jobs.runs.markers import finalize
from anigenre.jobs.runs.parts import chunk_done, missing_chunks
from anigenre.jobs.runs.plan import RunPlan, plan_run, reclaim


def plan_prediction(
    settings: Settings,
    paths,
    *,
    model_id: str,
    out_dir: Path | None,
    top_k: int = 4,
    chunk_size: int | None = None,
    force: bool = False,
    hold: bool = False,
    engine: str | None = None,
    retry_errors: bool = True,
):
    """Check the model, hash the inputs and write the run plan; needs no TensorFlow.

    A model that cannot load (a truncated file, a manifest that does not fit it) is refused
    here, before thousands of files are hashed and a run is recorded that would never run.
    ``engine`` (default: the ``predict_engine`` setting) is recorded in the plan, so every
    chunk runs on it, in this process or in any worker. A plan with no inputs (everything
    already has an ok row, or belongs to a live run) is neither written nor recorded. With
    ``hold``, this process keeps the run's lock until it exits or runs it: the CLI holds
    it, so no other planner can take the run's files in the moment between planning and
    running (or queueing) them. ``retry_errors=False``: see :func:`jobs.runs.plan.plan_run`.
    """
    from anigenre.models.registry import vocabulary_of
    from anigenre.models.synced import Registry

    manifest = Registry(settings).checked(model_id)
    out = out_dir or index_home(settings)  # the data dir's URI when it is in a bucket
    store = open_store(out, settings.s3)
    if store.is_file():
        flag = "--out" if out_dir else "--data-dir"
        raise ConfigError(f"{flag} {out} is a file; give a folder (it is made if missing)")
    plan = plan_run(
        [p if is_remote(p) else Path(p) for p in paths],
        model_id=manifest.model_id,
        out_dir=out,
        top_k=top_k,
        chunk_size=chunk_size or settings.predict_chunk_size,
        force=force,
        hold=hold,
        engine=engine or settings.predict_engine,
        genre_columns=vocabulary_of(manifest).columns(),
        s3=settings.s3,
        lock=planning_lock(settings, store),
        retry_errors=retry_errors,
    )
    if not plan.inputs:
        return plan
    try:
        record_run(index_home(settings), plan, settings.s3)
    except BaseException:
        # Unrecorded, the plan is a run no command can find: do not leave it behind.
        with contextlib.suppress(AnigenreError, OSError):
            for f in plan.files.list_files():
                plan.files.delete(f.path)
        live.release(plan.files)
        raise
    return plan


def planning_lock(settings: Settings, out):
    """What makes planning into ``out`` exclusive, for an output dir in object storage:
    the broker's Redis lock when a broker is set (planners on any machine), else a lock
    file in the local cache (planners on this machine; see docs/architecture.md).
    None for a local output dir, whose own lock file serves."""
    if out.is_local:
        return None
    if settings.broker_url:
        from anigenre.jobs.queue.locks import planning_lock as broker_lock

        return broker_lock(settings.broker_url, out.uri)
    return lambda: _machine_lock(settings.cache_dir / "locks", out.uri)


@contextlib.contextmanager
def _machine_lock(folder: Path, key: str):
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(key.encode()).hexdigest()[:24] + ".lock"
    with open(folder / name, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def claim_run(plan: RunPlan, resume: bool = False, lock=None) -> tuple[RunPlan, int]:
    """Take the run's lock for this process, or fail if another process runs it. With
    ``resume``, also drop from its missing chunks what other runs have done or own since
    it was planned (:func:`jobs.runs.plan.reclaim`); returns how many files that was.
    ``lock``: the planning lock of an output dir in object storage (:func:`planning_lock`)."""
    with live.planning(plan.out, lock):
        if not live.hold(plan.files):
            raise ConfigError(
                f"run {plan.run_id} is being run by another process; wait for it "
                f"('anigenre jobs status {plan.run_id}' shows its progress)"
            )
        if not resume:
            return plan, 0
        try:
            return reclaim(plan, missing_chunks(plan))
        except BaseException:
            live.release(plan.files)  # a bucket down, a damaged part: not left held by us
            raise


def load_predictor(settings: Settings, model_id: str, engine: str | None = None):
    """A predictor of ``model_id`` on ``engine`` (default: the ``predict_engine`` setting).
    LiteRT reads the manifest and model.tflite only (exporting it first for a model saved
    before exports existed, which alone needs TensorFlow). With an s3:// data dir the model
    is fetched into the local mirror first, once, and verified (models.remote)."""
    from anigenre.models.predictor import Predictor
    from anigenre.models.synced import Registry

    model_id = Registry(settings).fetch(model_id)
    if (engine or settings.predict_engine) == "litert":
        from anigenre.models.engines import LiteRTEngine
        from anigenre.models.registry import litert_model_path

        path, manifest = litert_model_path(settings.data_dir, model_id)
        return Predictor(LiteRTEngine(path), manifest, settings.max_image_pixels)
    from anigenre.models.registry import load_artifact

    model, manifest = load_artifact(settings.data_dir, model_id)
    return Predictor(model, manifest, settings.max_image_pixels)


def predict_in_process(settings: Settings, plan, on_chunk=None, predictor=None) -> dict:
    """Run every chunk of ``plan`` here, then finalise. The embedded default: no broker.
    The run's lock is held throughout, so other planners leave its files alone; its lease
    tells ``jobs status`` on any host that this process is on it (killed, it goes stale)."""
    claim_run(plan, lock=planning_lock(settings, plan.out))
    try:
        with hold_lease(plan.files):
            # A resumed run skips what is already written.
            todo = [i for i in range(len(plan.chunks)) if not chunk_done(plan, i)]
            for k, index in enumerate(todo):
                predictor = predictor or load_predictor(settings, plan.model_id, plan.engine)
                if k + 1 < len(todo):
                    decode_ahead(plan, todo[k + 1], predictor)
                result = execute_chunk(plan, index, predictor)
                if on_chunk:
                    on_chunk(result)
            manifest = finalize(plan)
            with contextlib.suppress(AnigenreError, OSError):  # else the sweep drops it
                mark_finished(index_home(settings), plan.run_id, settings.s3)
            return manifest
    finally:
        live.release(plan.files)


def report_run(
    settings: Settings, run_id: str, labels_csv: Path | None = None, include_seen: bool = False
):
    """The run's report; against labels it scores only posters the model did not train or
    tune on, unless ``include_seen``."""
    from anigenre.jobs.runs.reports import build_report  # pandas: not on a chunk's path
    from anigenre.models.registry import vocabulary_of
    from anigenre.models.synced import Registry

    plan = load_plan(index_home(settings), run_id, settings.s3)
    manifest = Registry(settings).manifest(plan.model_id)
    return build_report(
        plan,
        vocabulary_of(manifest),
        labels_csv=labels_csv,
        manifest=manifest,
        include_seen=include_seen,
    )
