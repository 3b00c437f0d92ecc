"""History and current view of a predictions folder: every run's rows are kept, and the
current view is one row per (path, model_id), the newest ok row, else the newest error.
The pure rule on hand-made tables; then real runs into a real folder, read back by
read_predictions, the CLI (parquet, csv, json), the README's DuckDB and Polars queries,
and from a bucket."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from anigenre.core.current import current_rows
from anigenre.core.errors import ConfigError, DataError
from anigenre.core.schemas import RUN_PARTITION, predictions_schema
from anigenre.jobs import stages
from anigenre.jobs.runs.current import read_predictions

from tests.procs import run_cli
from tests.synthetic import poster_folder, poster_png, trained_tiny_model
from tests.test_readers import readme_block

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
SCHEMA = predictions_schema(["p_action"]).append(RUN_PARTITION.field("run_id"))


def table(*rows: tuple) -> pa.Table:
    """Rows as (path, model_id, status, minutes after T0, run_id); p_action tells rows apart."""
    return pa.Table.from_pylist(
        [
            {
                "model_id": model,
                "path": path,
                "sha256": f"sha-{i}",
                "status": status,
                "error": None if status == "ok" else "truncated",
                "p_action": float(i) if status == "ok" else None,
                "predicted_at": T0 + dt.timedelta(minutes=minute),
                "run_id": run_id,
            }
            for i, (path, model, status, minute, run_id) in enumerate(rows)
        ],
        SCHEMA,
    )


def picked(result: pa.Table) -> list[tuple]:
    return list(zip(*(result[c].to_pylist() for c in ("path", "model_id", "sha256")), strict=True))


# --- the rule --------------------------------------------------------------------------


def test_the_newest_ok_row_wins_over_a_newer_error_and_an_older_ok():
    rows = table(
        ("a.png", "m", "ok", 0, "r1"),
        ("a.png", "m", "ok", 5, "r2"),
        ("a.png", "m", "error", 9, "r3"),  # the file broke later: its last answer stands
    )
    assert picked(current_rows(rows)) == [("a.png", "m", "sha-1")]


def test_a_file_never_predicted_ok_keeps_its_newest_error_row():
    rows = table(("b.png", "m", "error", 3, "r1"), ("b.png", "m", "error", 7, "r2"))
    assert picked(current_rows(rows)) == [("b.png", "m", "sha-1")]


def test_each_model_has_its_own_current_row():
    rows = table(
        ("a.png", "old", "ok", 9, "r2"),
        ("a.png", "new", "ok", 1, "r1"),
        ("a.png", "new", "error", 8, "r3"),
        ("a.png", "old", "ok", 2, "r1"),
    )
    assert picked(current_rows(rows)) == [("a.png", "new", "sha-1"), ("a.png", "old", "sha-0")]


def test_a_tie_on_predicted_at_goes_to_the_later_run():
    # Two --force runs at once can stamp the same millisecond; run ids sort by creation.
    later, earlier = "20250101T000000001-bbbbbb", "20250101T000000000-ffffff"
    rows = table(("a.png", "m", "ok", 0, later), ("a.png", "m", "ok", 0, earlier))
    assert current_rows(rows)["run_id"].to_pylist() == [later]
    assert current_rows(rows.take([1, 0]))["run_id"].to_pylist() == [later]


def test_columns_kept_in_order_rows_sorted_by_path_then_model():
    rows = table(
        ("c.png", "m", "ok", 0, "r1"),
        ("a.png", "z", "ok", 0, "r1"),
        ("a.png", "b", "ok", 0, "r1"),
        ("b.png", "m", "error", 0, "r1"),
    )
    result = current_rows(rows)
    assert result.schema == rows.schema
    assert [(p, m) for p, m, _ in picked(result)] == [
        ("a.png", "b"), ("a.png", "z"), ("b.png", "m"), ("c.png", "m")
    ]  # fmt: skip
    assert current_rows(rows.slice(0, 0)).num_rows == 0


def test_run_id_read_as_a_dictionary_column_is_sorted_by_its_text():
    rows = table(("a.png", "m", "ok", 0, "r1"), ("a.png", "m", "ok", 0, "r2"))
    at = rows.schema.get_field_index("run_id")
    encoded = rows.set_column(at, "run_id", rows["run_id"].dictionary_encode())
    assert current_rows(encoded)["run_id"].to_pylist() == ["r2"]


# --- real runs into a real folder --------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_dir):
    data = tmp_path_factory.mktemp("current-data")
    return trained_tiny_model(data, shared_dir, epochs=1)


@pytest.fixture(scope="module")
def runs(trained, tmp_path_factory):
    """``root/out`` after four runs over four posters and a broken file: a run, a forced
    re-run, one after p0's bytes changed, one after p1's were damaged. (root, run ids)."""
    settings, model_id = trained
    root = tmp_path_factory.mktemp("current")
    folder = poster_folder(root / "posters", 4, 8100)
    (folder / "broken.png").write_bytes(b"not an image")
    predictor = stages.load_predictor(settings, model_id)

    def predict(force: bool = False) -> str:
        plan = stages.plan_prediction(
            settings, [folder], model_id="latest", out_dir=root / "out", force=force
        )
        stages.predict_in_process(settings, plan, predictor=predictor)
        return plan.run_id

    first, forced = predict(), predict(force=True)
    (folder / "p0.png").write_bytes(poster_png(9100))  # new bytes at the same path
    changed = predict()
    (folder / "p1.png").write_bytes(b"damaged since")  # fails now; its ok row stands
    damaged = predict()
    return root, [first, forced, changed, damaged]


def by_name(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.set_index(rows["path"].map(lambda p: Path(p).name))


def test_history_keeps_every_run_and_the_current_view_one_row_per_file(runs):
    root, (first, forced, changed, damaged) = runs
    history = read_predictions(root / "out", history=True)
    per_run = history["run_id"].value_counts().to_dict()
    assert per_run == {first: 5, forced: 5, changed: 2, damaged: 2}

    current = read_predictions(root / "out")
    assert list(current.columns) == list(history.columns) and "run_id" in current
    assert current["path"].tolist() == sorted(current["path"])
    now = by_name(current)
    assert now["run_id"].to_dict() == {
        "broken.png": damaged,  # never ok: its newest error
        "p0.png": changed,  # new bytes, newest ok
        "p1.png": forced,  # damaged later: the last ok stands
        "p2.png": forced,
        "p3.png": forced,
    }
    assert now.loc["broken.png", "status"] == "error"
    assert (now.drop("broken.png")["status"] == "ok").all()
    sha_of = {r: by_name(history[history["run_id"] == r])["sha256"] for r in (first, changed)}
    assert now.loc["p0.png", "sha256"] == sha_of[changed]["p0.png"] != sha_of[first]["p0.png"]


def test_a_forced_rerun_doubles_the_history_not_the_current_view(trained, tmp_path):
    settings, model_id = trained
    folder = poster_folder(tmp_path / "posters", 3, 8200)
    out = tmp_path / "out"
    run_ids = []
    for force in (False, True):
        plan = stages.plan_prediction(
            settings, [folder], model_id="latest", out_dir=out, force=force
        )
        stages.predict_in_process(settings, plan)
        run_ids.append(plan.run_id)
    assert len(read_predictions(out, history=True)) == 6
    current = read_predictions(out)
    assert len(current) == 3 and set(current["run_id"]) == {run_ids[1]}


def test_the_readme_duckdb_and_polars_queries_give_the_same_rows(runs):
    root, _ = runs
    scope: dict = {}
    here = os.getcwd()
    os.chdir(root)
    try:
        exec(readme_block("readers-current"), scope)  # noqa: S102 - the README, verbatim
    finally:
        os.chdir(here)
    ours = read_predictions(root / "out")
    duck, polars = scope["current"], scope["latest"].to_pandas()
    assert len(duck) == len(polars) == len(ours) == 5, "fetched rows, one per file"
    for name, theirs in (("duckdb", duck), ("polars", polars)):
        for column in ("path", "model_id", "run_id", "sha256", "status", "error"):
            assert theirs[column].astype(object).where(theirs[column].notna(), None).tolist() == (
                ours[column].astype(object).where(ours[column].notna(), None).tolist()
            ), (name, column)
        stamps = pd.to_datetime(theirs["predicted_at"], utc=True).dt.as_unit("ms")
        assert stamps.tolist() == ours["predicted_at"].tolist(), name
        assert np.allclose(theirs["p_action"], ours["p_action"], equal_nan=True), name


def test_an_out_dir_without_predictions_is_one_line_saying_what_to_give(tmp_path):
    with pytest.raises(ConfigError, match=r"predictions does not exist; give the output dir") as e:
        read_predictions(tmp_path / "nothing-here")
    assert "\n" not in str(e.value)


def test_a_predictions_folder_with_no_part_yet_reads_as_no_rows(tmp_path):
    (tmp_path / "out" / "predictions" / "run_id=r1").mkdir(parents=True)
    rows = read_predictions(tmp_path / "out")
    assert rows.empty and {"path", "model_id", "status", "run_id"} <= set(rows.columns)


def test_a_damaged_part_is_named_not_dropped(runs, tmp_path):
    root, (_, forced, *_) = runs
    out = tmp_path / "out"
    shutil.copytree(root / "out" / "predictions", out / "predictions")
    part = out / "predictions" / f"run_id={forced}" / "part-00000.parquet"
    part.write_bytes(part.read_bytes()[: len(part.read_bytes()) // 2])
    with pytest.raises(DataError, match=rf"run_id={forced}/part-00000.parquet is not a"):
        read_predictions(out, history=True)
    # Named once, and set aside (jobs.runs.parts): the folder reads as one table again.
    assert not part.exists() and len(read_predictions(out, history=True)) > 0


def test_read_from_a_bucket_as_from_a_folder(runs, s3):
    root, _ = runs
    bucket = s3.new_bucket()
    for path in (root / "out" / "predictions").rglob("*.parquet"):
        bucket.upload(path, f"out/{path.relative_to(root / 'out').as_posix()}")
    for history in (True, False):
        remote = read_predictions(bucket.uri_of("out"), history=history, s3=s3.options)
        local = read_predictions(root / "out", history=history)
        pd.testing.assert_frame_equal(remote, local)


# --- the CLI -----------------------------------------------------------------------------


def cli(*args: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIGENRE_")}
    done = run_cli(
        "predictions", *args, env={**env, "ANIGENRE_DATA_DIR": str(cwd / "data")}, cwd=cwd
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_cli_writes_parquet_csv_and_json_that_pandas_reads_back(runs, tmp_path):
    root, _ = runs
    out = str(root / "out")
    current = read_predictions(out)
    history = read_predictions(out, history=True)

    assert "5 rows (one per file and model)" in cli(out, "--to", "now.parquet", cwd=tmp_path)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "now.parquet"), current)

    cli(out, "--history", "--to", "all.csv", cwd=tmp_path)
    written = pd.read_csv(tmp_path / "all.csv")
    assert written["run_id"].tolist() == history["run_id"].tolist()
    joined = ["|".join(g) if g is not None else "" for g in history["top_genres"]]
    assert written["top_genres"].fillna("").tolist() == joined and any(joined)

    lines = cli(out, "--format", "json", cwd=tmp_path).splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["path"] for r in records] == current["path"].tolist()
    assert [r["run_id"] for r in records] == current["run_id"].tolist()
    (tmp_path / "stdout.jsonl").write_text("\n".join(lines) + "\n")
    back = pd.read_json(tmp_path / "stdout.jsonl", lines=True)
    assert back["sha256"].tolist() == current["sha256"].tolist()

    csv = cli(out, cwd=tmp_path)
    assert csv.splitlines()[0].split(",") == list(current.columns)


def test_parquet_to_a_terminal_is_refused_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIGENRE_")}
    done = run_cli("predictions", str(tmp_path), "--format", "parquet", env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "anigenre: error: parquet is not for a terminal; give --to FILE, or --format csv|json"
    ]
    missing = run_cli("predictions", str(tmp_path / "nope"), env=env, cwd=tmp_path)
    assert missing.returncode == 2 and "give the output dir a 'predict' wrote to" in missing.stderr
