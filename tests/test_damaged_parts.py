"""A damaged part (``echo garbage > OUT/predictions/run_id=R/part-00000.parquet``): every
command that meets it names it in one line, moves it out of ``predictions/`` (so the
folder reads as one table again) into the run's bookkeeping, and the run asks for a
resume, which predicts its files again, once. Real runs of a tiny model, the commands as
a user runs them, the rows read back with pandas."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from anigenre.core.errors import DataError
from anigenre.core.storage import open_store
from anigenre.jobs import stages
from anigenre.jobs.runs import parts as parts_module
from anigenre.jobs.runs.current import read_predictions
from anigenre.jobs.runs.index import load_plan
from anigenre.jobs.runs.parts import missing_chunks
from anigenre.jobs.runs.status import run_status
from anigenre.jobs.service import runs

from tests.procs import run_cli
from tests.synthetic import poster_folder, trained_tiny_model
from tests.test_s3_runs import s3_settings, upload_posters

GARBAGE = b"garbage\n"
PART = "part-00000.parquet"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_dir):
    data = tmp_path_factory.mktemp("damaged-data")
    settings, model_id = trained_tiny_model(data, shared_dir, epochs=1)
    return settings, model_id, stages.load_predictor(settings, model_id)


def _env(settings, **extra) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ANIGENRE_", "AWS_"))}
    return {
        **clean,
        "ANIGENRE_DATA_DIR": str(settings.data_dir),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **extra,
    }


def complete_run(trained, tmp_path, n: int = 8):
    """A complete run of ``n`` posters in chunks of 4, and its input folder."""
    settings, _, predictor = trained
    folder = poster_folder(tmp_path / "in", n, 7000, "p{i:02d}")
    plan = stages.plan_prediction(
        settings, [folder], model_id="latest", out_dir=tmp_path / "out", chunk_size=4
    )
    stages.predict_in_process(settings, plan, predictor=predictor)
    assert plan.manifest_path.exists()
    return plan, folder


def damage(plan) -> Path:
    part = plan.part_path(0)
    part.write_bytes(GARBAGE)  # what `echo garbage > part` does
    return part


def assert_set_aside(plan) -> None:
    """Out of predictions/, kept byte for byte in the run's bookkeeping with a note of why,
    and the run no longer claims to be complete."""
    assert not plan.part_path(0).exists()
    aside = plan.run_dir / "damaged" / PART
    assert aside.read_bytes() == GARBAGE
    note = json.loads((plan.run_dir / "damaged" / f"{PART}.json").read_text())
    assert "Parquet" in note["why"] and note["part"].endswith(f"run_id={plan.run_id}/{PART}")
    assert not plan.manifest_path.exists()
    assert missing_chunks(plan) == [0]


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def assert_one_row_per_file(plan, folder) -> None:
    rows = pd.read_parquet(plan.parts_dir.parent)  # the whole predictions folder, as a user
    names = sorted(Path(p).name for p in rows["path"])
    assert names == sorted(p.name for p in folder.iterdir()), rows[["path", "run_id"]]
    assert (rows["status"] == "ok").all()


def resume_to_complete(settings, plan, folder) -> str:
    done = run_cli("jobs", "resume", plan.run_id, env=_env(settings), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "[complete]" in done.stdout
    assert run_status(load_plan(settings.data_dir, plan.run_id)).complete
    assert_one_row_per_file(plan, folder)
    return done.stderr


# --- each command that meets it -----------------------------------------------------------


def test_status_and_list_name_the_part_and_ask_for_a_resume(trained, tmp_path):
    settings = trained[0]
    plan, folder = complete_run(trained, tmp_path)
    damage(plan)

    status = run_cli("jobs", "status", plan.run_id, env=_env(settings))
    line = one_line(status.stdout)
    assert status.returncode == 1 and "Traceback" not in status.stderr, status.stderr
    assert PART in line and "damaged" in line and f"jobs resume {plan.run_id}" in line
    assert "[complete]" not in line and "1/2 chunks" in line
    assert_set_aside(plan)
    assert len(pd.read_parquet(plan.parts_dir.parent)) == 4  # the folder reads again

    listed = run_cli("jobs", "list", env=_env(settings))
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    (mine,) = [x for x in listed.stdout.splitlines() if plan.run_id in x]
    assert PART in mine and "[complete]" not in mine and "jobs resume" in mine

    resume_to_complete(settings, plan, folder)
    again = run_cli("jobs", "status", plan.run_id, env=_env(settings))
    assert again.returncode == 0 and "[complete]" in again.stdout and "8/8 rows" in again.stdout


def test_list_is_the_first_to_notice(trained, tmp_path):
    """``jobs list`` reads a complete run's manifest only: one listing of its parts shows
    the changed one."""
    settings = trained[0]
    plan, folder = complete_run(trained, tmp_path)
    damage(plan)
    listed = run_cli("jobs", "list", env=_env(settings))
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    (mine,) = [x for x in listed.stdout.splitlines() if plan.run_id in x]
    assert PART in mine and "[complete]" not in mine
    assert_set_aside(plan)


def test_a_manifest_from_before_part_sizes_still_notices(trained, tmp_path):
    """Runs finalised before the manifest recorded part sizes: a part changed after the
    run finished is read again."""
    settings = trained[0]
    plan, _ = complete_run(trained, tmp_path)
    manifest = json.loads(plan.manifest_path.read_text())
    manifest.pop("sizes", None)
    plan.manifest_path.write_text(json.dumps(manifest))
    damage(plan)
    status = runs.status(settings, plan.run_id)
    assert not status.complete and PART in (status.failed or "")
    assert_set_aside(plan)


def test_report_names_the_part(trained, tmp_path):
    settings = trained[0]
    plan, folder = complete_run(trained, tmp_path)
    damage(plan)
    report = run_cli("report", plan.run_id, env=_env(settings), timeout=300)
    assert report.returncode == 1, report.stdout
    line = one_line(report.stderr)
    assert PART in line and f"jobs resume {plan.run_id}" in line
    assert_set_aside(plan)

    resume_to_complete(settings, plan, folder)
    again = run_cli("report", plan.run_id, env=_env(settings), timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "8 ok, 0 error" in again.stdout


def test_resume_sets_it_aside_and_predicts_its_files_again(trained, tmp_path):
    settings = trained[0]
    plan, folder = complete_run(trained, tmp_path)
    damage(plan)
    said = resume_to_complete(settings, plan, folder)
    assert PART in one_line(said)
    assert (plan.run_dir / "damaged" / PART).read_bytes() == GARBAGE


def test_predicting_again_sets_it_aside_and_predicts_its_files_once(trained, tmp_path):
    """The same predict again: planning finds the part unreadable, sets it aside, and
    this run takes its files; resuming the damaged run afterwards writes no second row."""
    settings = trained[0]
    plan, folder = complete_run(trained, tmp_path)
    damage(plan)
    out = str(plan.parts_dir.parents[1])
    again = run_cli("predict", str(folder), "--out", out, "--chunk-size", "4", env=_env(settings))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "4 files to predict" in again.stdout and "4 files already have an ok row" in again.stdout
    assert PART in one_line(again.stderr)
    assert_set_aside(plan)
    assert_one_row_per_file(plan, folder)

    third = run_cli("predict", str(folder), "--out", out, env=_env(settings))
    assert third.returncode == 0 and "nothing new" in third.stdout, third.stderr[-2000:]
    assert not third.stderr.strip()

    resumed = resume_to_complete(settings, plan, folder)  # its files are the re-run's now
    assert "Traceback" not in resumed


def test_reading_the_folder_names_the_part_once(trained, tmp_path):
    """``read_predictions`` (the API, 'anigenre predictions') says which part it could not
    read, and moves it aside: the next read has the rest."""
    settings = trained[0]
    plan, _ = complete_run(trained, tmp_path)
    damage(plan)
    out = plan.parts_dir.parents[1]
    with pytest.raises(DataError, match=f"run_id={plan.run_id}/{PART}.*jobs resume"):
        read_predictions(out)
    assert_set_aside(plan)
    assert len(read_predictions(out)) == 4
    status = runs.status(settings, plan.run_id)
    assert status.state == "failed" and PART in status.failed


def test_the_run_table_names_the_part(trained, tmp_path):
    settings = trained[0]
    plan, _ = complete_run(trained, tmp_path)
    damage(plan)
    with pytest.raises(DataError, match=PART):
        runs.table(settings, plan.run_id)
    assert_set_aside(plan)
    assert len(runs.table(settings, plan.run_id)) == 4


# --- what counts as damaged ---------------------------------------------------------------


def test_a_part_without_a_text_status_column_is_damaged(tmp_path):
    from anigenre.jobs.runs.parts import inspect

    store = open_store(tmp_path)
    pq.write_table(pa.table({"status": [1, 2]}), tmp_path / "ints.parquet")
    pq.write_table(pa.table({"other": ["ok"]}), tmp_path / "none.parquet")
    pq.write_table(pa.table({"status": ["ok", "error"]}), tmp_path / "fine.parquet")
    (tmp_path / "garbage.parquet").write_bytes(GARBAGE)
    assert inspect(store, "fine.parquet") == (1, 1)
    for name in ("ints.parquet", "none.parquet", "garbage.parquet"):
        found = inspect(store, name)
        assert isinstance(found, parts_module.Damage) and found.why, name
    with pytest.raises(FileNotFoundError):
        inspect(store, "absent.parquet")


def test_a_read_that_fails_on_the_way_is_not_damage(tmp_path, monkeypatch):
    """An I/O error (S3 answering 503) reads like a bad file to pyarrow; the part is then
    read whole, and only bytes that do not parse count as damage."""
    from anigenre.jobs.runs.parts import inspect

    store = open_store(tmp_path)
    pq.write_table(pa.table({"status": ["ok", "ok"]}), tmp_path / "fine.parquet")
    real = pq.read_table

    def flaky(source, *args, **kwargs):
        if isinstance(source, str):
            raise OSError("When reading information for key: AWS Error NETWORK_CONNECTION")
        return real(source, *args, **kwargs)

    monkeypatch.setattr(parts_module.pq, "read_table", flaky)
    assert inspect(store, "fine.parquet") == (2, 0)


# --- object storage -----------------------------------------------------------------------


def test_a_damaged_part_in_a_bucket_is_set_aside_and_redone(trained, s3, tmp_path):
    settings, _, predictor = trained
    settings = s3_settings(settings, s3, cache_dir=tmp_path / "cache")
    bucket = s3.new_bucket()
    posters = upload_posters(bucket, 6, 900)
    out = bucket.uri_of("preds")
    plan = stages.plan_prediction(settings, [posters], model_id="latest", out_dir=out, chunk_size=3)
    stages.predict_in_process(settings, plan, predictor=predictor)
    part = f"preds/predictions/run_id={plan.run_id}/{PART}"
    bucket.write_bytes(part, GARBAGE)
    env = _env(settings, **s3.env, ANIGENRE_CACHE_DIR=str(tmp_path / "cache"))

    status = run_cli("jobs", "status", plan.run_id, env=env)
    assert status.returncode == 1 and "Traceback" not in status.stderr, status.stderr
    assert PART in one_line(status.stdout)
    assert not bucket.exists(part)
    aside = f"preds/prediction-runs/{plan.run_id}/damaged/{PART}"
    assert bucket.read_bytes(aside) == GARBAGE

    done = run_cli("jobs", "resume", plan.run_id, env=env, timeout=300)
    assert done.returncode == 0 and "[complete]" in done.stdout, done.stderr[-2000:]
    rows = read_predictions(out, history=True, s3=settings.s3)
    assert len(rows) == 6 and rows["path"].is_unique and (rows["status"] == "ok").all()
