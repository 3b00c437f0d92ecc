"""Issue 21: a chunk's bookkeeping does not grow with its run, planning streams, and
runs planned before the plan was split still read, run and resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from anigenre.jobs import stages
from anigenre.jobs.queue import counter
from anigenre.jobs.runs.index import load_plan, record_run
from anigenre.jobs.runs.layout import CHUNKS, PLAN
from anigenre.jobs.runs.plan import _walk, plan_run, reclaim
from anigenre.jobs.runs.planfile import ChunkBounds, chunk_name
from anigenre.jobs.runs.status import run_status

from tests.procs import own_redis
from tests.synthetic import poster_folder, poster_png, trained_tiny_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_dir):
    return trained_tiny_model(tmp_path_factory.mktemp("scale-data"), shared_dir)


def test_a_plan_is_a_small_header_and_a_manifest_per_chunk(tmp_path):
    folder = poster_folder(tmp_path / "in", 7, 500)
    plan = plan_run([folder], model_id="m", out_dir=tmp_path / "out", chunk_size=3)
    header = json.loads((plan.run_dir / PLAN).read_text())
    assert "inputs" not in header and (header["n_inputs"], header["n_chunks"]) == (7, 3)
    assert header["odd_sizes"] == {"2": 1}  # only the short last chunk is listed
    # A chunk needs the header and its own manifest: the others may as well not exist.
    (plan.run_dir / chunk_name(0)).unlink()
    (plan.run_dir / chunk_name(1)).unlink()
    record_run(tmp_path / "data", plan)
    again = load_plan(tmp_path / "data", plan.run_id)
    assert len(again.inputs) == 7 and len(again.chunks) == 3 and again.chunk_rows(2) == 1
    assert [Path(e["path"]).name for e in again.chunk_entries(2)] == ["p6.png"]


def test_copies_far_apart_still_share_their_originals_chunk(tmp_path):
    folder = poster_folder(tmp_path / "in", 6, 700)
    (folder / "zz").mkdir()
    (folder / "zz" / "late copy.png").write_bytes(poster_png(700))  # same bytes as p0
    plan = plan_run([folder], model_id="m", out_dir=tmp_path / "out", chunk_size=2)
    names = [Path(e["path"]).name for e in plan.inputs]
    assert names[:3] == ["p0.png", "late copy.png", "p1.png"]
    assert plan.chunks == [[0, 2], [2, 4], [4, 6], [6, 7]]  # never split from its original
    assert [Path(d["path"]).name for d in plan.duplicates] == ["late copy.png"]


def test_discovery_walks_folders_as_sorted_rglob_did(tmp_path):
    root = tmp_path / "in"
    for rel in ["b/x.png", "a b.png", "a/c.JPG", "a/a.jpg", "a.jpg/inner.png", ".h/y.gif", "n.txt"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    (root / "link").symlink_to(root / "b")  # a link to a folder: not followed
    expected = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}
    )
    assert list(_walk(root)) == expected


def test_a_resume_rewrites_only_the_missing_chunks(tmp_path):
    folder = poster_folder(tmp_path / "in", 6, 900)
    plan = plan_run([folder], model_id="m", out_dir=tmp_path / "out", chunk_size=2)
    record_run(tmp_path / "data", plan)
    plan = load_plan(tmp_path / "data", plan.run_id)
    before = {i: os.stat(plan.run_dir / chunk_name(i)).st_mtime_ns for i in range(3)}
    # Chunk 1's files now belong to a live run: a resume leaves them to it.
    other = plan_run(
        [folder / "p2.png", folder / "p3.png"],
        model_id="m",
        out_dir=tmp_path / "out",
        force=True,
        hold=True,
    )
    plan, dropped = reclaim(plan, [1, 2])
    assert dropped == 2 and plan.in_live_runs == {other.run_id: 2}
    assert plan.chunks == [[0, 2], [2, 2], [2, 4]] and len(plan.inputs) == 4
    assert os.stat(plan.run_dir / chunk_name(0)).st_mtime_ns == before[0]
    reread = load_plan(tmp_path / "data", plan.run_id)
    assert reread.chunk_entries(1) == [] and reread.chunks == plan.chunks


def test_the_count_never_counts_a_chunk_twice(tmp_path):
    with own_redis(tmp_path / "redis") as (_url, client):
        assert counter.chunk_written(client, "r1", 3) == 1
        assert counter.chunk_written(client, "r1", 3) == 1  # redelivered
        assert counter.chunk_written(client, "r1", 0) == 2
        counter.chunks_sent(client, "r1", [3, 7])  # a resume sends 3 again (7 never ran)
        assert counter.written_count(client, "r1") == 1
        assert counter.chunk_written(client, "r1", 3) == 2
        assert counter.written_count(client, "r2") == 0
        counter.forget(client, "r1")
        assert counter.written_count(client, "r1") == 0 and not client.keys("anigenre:run:*")


def test_chunk_bounds_from_a_few_odd_sizes():
    bounds = ChunkBounds(4, 5, {"1": 6, "4": 1})
    assert list(bounds) == [[0, 4], [4, 10], [10, 14], [14, 18], [18, 19]]
    assert bounds.rows() == 19 and bounds[-1] == [18, 19] and bounds[1:3] == [[4, 10], [10, 14]]
    bounds.resize(1, 4)
    assert bounds.record() == {"4": 1} and bounds[2] == [8, 12]


def _old_plan(plan) -> dict:
    """The plan as it was saved before issue 21: every input and bound in _plan.json."""
    header = plan.header()
    for key in ("n_inputs", "n_chunks", "n_duplicates", "odd_sizes"):
        header.pop(key)
    return {
        **header,
        "inputs": list(plan.inputs),
        "chunks": [list(b) for b in plan.chunks],
        "duplicates": list(plan.duplicates),
    }


def test_a_run_planned_before_the_split_reads_runs_and_resumes(trained, tmp_path):
    settings, model_id = trained
    folder = poster_folder(tmp_path / "in", 5, 1200)
    plan = stages.plan_prediction(
        settings, [folder], model_id=model_id, out_dir=tmp_path / "out", chunk_size=2
    )
    old = _old_plan(plan)
    for f in (plan.run_dir / CHUNKS).iterdir():
        f.unlink()
    (plan.run_dir / PLAN).write_text(json.dumps(old))
    loaded = load_plan(settings.data_dir, plan.run_id)
    assert (
        not loaded.stored and len(loaded.inputs) == 5 and loaded.chunks == [[0, 2], [2, 4], [4, 5]]
    )
    assert run_status(loaded).chunks_total == 3
    manifest = stages.predict_in_process(settings, loaded)
    assert manifest["rows"] == 5 and manifest["ok"] == 5
    s = run_status(load_plan(settings.data_dir, plan.run_id))
    assert s.complete and s.rows_total == 5
