"""The predictions folder as users read it: pandas, pyarrow.dataset, DuckDB and Polars take
``<out>/predictions`` as one hive-partitioned table, mid-run and after, with ``run_id``;
runs in the old layout (bookkeeping inside the part folders) are moved out on first touch."""

from __future__ import annotations

import json
import os
import re
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from anigenre.core.atomic import atomic_path
from anigenre.core.errors import ConfigError
from anigenre.jobs import stages
from anigenre.jobs.runs.chunks import execute_chunk
from anigenre.jobs.runs.layout import BOOKKEEPING
from anigenre.jobs.runs.plan import plan_run

from tests.procs import ROOT, run_cli
from tests.synthetic import poster_folder, trained_tiny_model


class Killed(Exception):
    """Where a worker's SIGKILL lands."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_dir):
    data = tmp_path_factory.mktemp("readers-data")
    return trained_tiny_model(data, shared_dir, epochs=1)


def readme_block(marker: str) -> str:
    """The ```python block after ``<!-- marker: ...`` in README.md, exactly as shown."""
    text = (ROOT / "README.md").read_text()
    found = re.search(rf"<!-- {marker}:[^>]*-->\n```python\n(.*?)```", text, re.S)
    assert found, f"README.md has no '{marker}' block"
    return found.group(1)


def read_with_readme(cwd) -> dict:
    """Run the README's reader snippet in ``cwd``; each reader's rows as {run_id: count}."""
    scope: dict = {}
    here = os.getcwd()
    os.chdir(cwd)
    try:
        exec(readme_block("readers"), scope)  # noqa: S102 - the README, verbatim
        counts = {
            "pandas": scope["rows"]["run_id"].astype(str).value_counts().to_dict(),
            "pyarrow": scope["table"].to_pandas()["run_id"].astype(str).value_counts().to_dict(),
            # The rows the block fetched, not a count DuckDB makes itself: fetching is what
            # failed (a zoned timestamp as a Python object needs pytz).
            "duckdb": scope["fetched"]["run_id"].astype(str).value_counts().to_dict(),
            "polars": dict(scope["frame"]["run_id"].value_counts().rows()),
        }
        for name, columns in [
            ("pandas", list(scope["rows"].columns)),
            ("pyarrow", scope["table"].column_names),
            ("duckdb", list(scope["fetched"].columns)),
            ("polars", scope["frame"].columns),
        ]:
            assert columns.count("run_id") == 1 and "p_action" in columns, (name, columns)
        assert scope["fetched"]["predicted_at"].dt.tz is not None, "the zone is kept"
        return counts
    finally:
        os.chdir(here)


def test_every_reader_reads_the_folder_mid_run_and_after(trained, tmp_path):
    settings, model_id = trained
    out = tmp_path / "out"
    first = stages.plan_prediction(
        settings, [poster_folder(tmp_path / "a", 10, 100)], model_id="latest", out_dir=out,
        chunk_size=4,
    )  # fmt: skip
    predictor = stages.load_predictor(settings, model_id)
    execute_chunk(first, 0, predictor)
    execute_chunk(first, 1, predictor)
    # What a worker killed while writing chunk 2 leaves: a half-written temp file, which
    # goes to the run's bookkeeping folder, not beside the parts.
    with pytest.raises(Killed), atomic_path(first.part_path(2), first.run_dir) as tmp:
        assert tmp.parent == first.run_dir
        tmp.write_bytes(b"PAR1 half a part")
        shutil.copy(tmp, first.run_dir / ".part-00002.parquet.killed.tmp")  # SIGKILL's leftover
        raise Killed
    second = stages.plan_prediction(
        settings, [poster_folder(tmp_path / "b", 3, 200)], model_id="latest", out_dir=out
    )
    second.parts_dir.mkdir(parents=True)  # its first part about to land

    assert read_with_readme(tmp_path) == {r: {first.run_id: 8} for r in READERS}

    stages.predict_in_process(settings, first, predictor=predictor)
    stages.predict_in_process(settings, second, predictor=predictor)
    done = {first.run_id: 10, second.run_id: 3}
    assert read_with_readme(tmp_path) == {r: done for r in READERS}
    names = {p.name for p in (out / "predictions").rglob("*") if p.is_file()}
    assert names == {"part-00000.parquet", "part-00001.parquet", "part-00002.parquet"}


READERS = ("pandas", "pyarrow", "duckdb", "polars")


def test_a_model_with_other_genre_columns_needs_its_own_out(trained, tmp_path):
    settings, _ = trained
    out = tmp_path / "out"
    plan = stages.plan_prediction(
        settings, [poster_folder(tmp_path / "a", 2, 300)], model_id="latest", out_dir=out
    )
    stages.predict_in_process(settings, plan)
    columns = [n for n in pq.read_schema(plan.part_path(0)).names if n.startswith("p_")]
    with pytest.raises(ConfigError, match=r"differing: p_hentai.*give this model another --out"):
        plan_run(
            [poster_folder(tmp_path / "b", 2, 400)], model_id="adult", out_dir=out,
            genre_columns=[*columns, "p_hentai"],
        )  # fmt: skip
    assert len(list((out / "prediction-runs").glob("*/"))) == 1, "nothing planned"

    # The README's way to read two such folders together, by column name.
    adult = tmp_path / "out-adult" / "predictions" / "run_id=x"
    adult.mkdir(parents=True)
    part = pq.read_table(plan.part_path(0))
    pq.write_table(part.append_column("p_hentai", pa.array([0.5, 0.25], pa.float32())),
                   adult / "part-00000.parquet")  # fmt: skip
    scope: dict = {}
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(readme_block("readers-union"), scope)  # noqa: S102 - the README, verbatim
        both = scope["both"].df()
    finally:
        os.chdir(here)
    assert sorted(both["run_id"].unique()) == sorted([plan.run_id, "x"])
    assert both.groupby("run_id")["p_hentai"].count().to_dict() == {plan.run_id: 0, "x": 2}


def _to_old_layout(plan) -> None:
    """Put a run's bookkeeping back where runs kept it before: beside its parts, with the
    plan in the one file it was then (every input in _plan.json, no chunk manifests)."""
    old = plan.header()
    for key in ("n_inputs", "n_chunks", "n_duplicates", "odd_sizes"):
        old.pop(key)
    old.update(
        inputs=list(plan.inputs),
        chunks=[list(b) for b in plan.chunks],
        duplicates=list(plan.duplicates),
    )
    (plan.run_dir / "_plan.json").write_text(json.dumps(old))
    for name in BOOKKEEPING:
        if (plan.run_dir / name).exists():
            plan.parts_dir.mkdir(parents=True, exist_ok=True)
            os.replace(plan.run_dir / name, plan.parts_dir / name)
    shutil.rmtree(plan.run_dir)


def test_runs_in_the_old_layout_list_resume_report_and_move_out(trained, tmp_path):
    settings, model_id = trained
    out = tmp_path / "out"
    complete = stages.plan_prediction(
        settings, [poster_folder(tmp_path / "a", 3, 500)], model_id="latest", out_dir=out
    )
    stages.predict_in_process(settings, complete)
    killed = stages.plan_prediction(
        settings, [poster_folder(tmp_path / "b", 6, 600)], model_id="latest", out_dir=out,
        chunk_size=3,
    )  # fmt: skip
    execute_chunk(killed, 0, stages.load_predictor(settings, model_id))
    _to_old_layout(complete)
    _to_old_layout(killed)
    assert (complete.parts_dir / "_manifest.json").exists() and not killed.run_dir.exists()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ANIGENRE_")},
        "ANIGENRE_DATA_DIR": str(settings.data_dir),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }

    listed = run_cli("jobs", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr[-2000:]
    states = {r["run_id"]: r for r in json.loads(listed.stdout)["runs"]}
    assert states[complete.run_id]["state"] == "complete"
    view = states[killed.run_id]
    assert (view["chunks_done"], view["chunks_total"], view["rows_ok"]) == (1, 2, 3)
    assert (killed.run_dir / "_plan.json").exists(), "moved on first touch"
    assert not any(n.startswith("_") for n in os.listdir(killed.parts_dir))

    resumed = run_cli("jobs", "resume", killed.run_id, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "[complete]" in resumed.stdout
    reported = run_cli("report", complete.run_id, env=env, timeout=300)
    assert reported.returncode == 0, reported.stderr[-2000:]
    assert (out / "reports" / complete.run_id / "report.html").exists()

    files = [p for p in (out / "predictions").rglob("*") if p.is_file()]
    assert files and all(re.fullmatch(r"part-\d{5}\.parquet", p.name) for p in files)
    assert read_with_readme(tmp_path) == {
        r: {complete.run_id: 3, killed.run_id: 6} for r in READERS
    }


def test_a_new_plan_moves_old_runs_out_and_still_sees_their_rows(trained, tmp_path):
    """Planning into an out dir with an old-layout run: its rows count as done, and its
    files leave the predictions folder before anything is claimed."""
    settings, _ = trained
    out = tmp_path / "out"
    folder = poster_folder(tmp_path / "a", 4, 700)
    old = stages.plan_prediction(settings, [folder], model_id="latest", out_dir=out)
    stages.predict_in_process(settings, old)
    _to_old_layout(old)
    (out / "predictions" / "_plan.lock").touch()  # the old planning lock's place

    again = stages.plan_prediction(settings, [folder], model_id="latest", out_dir=out)
    assert not again.inputs and again.already_predicted == 4
    assert (old.run_dir / "_manifest.json").exists() and (old.run_dir / "_plan.json").exists()
    assert not (out / "predictions" / "_plan.lock").exists()
    assert sorted(os.listdir(old.parts_dir)) == ["part-00000.parquet"]
