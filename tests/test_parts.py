"""One definition of a complete part: the worker's skip, the sweeper's and status's view
and finalize's verification all agree, so a short part left by a crash is redone by
everyone's account, never counted done by one and missing by another."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from anigenre.core.errors import DataError
from anigenre.jobs.runs.markers import finalize
from anigenre.jobs.runs.parts import (
    PartCounts,
    all_written,
    chunk_done,
    missing_chunks,
    part_counts,
)
from anigenre.jobs.runs.plan import RunPlan, run_id_at
from anigenre.jobs.runs.status import run_status


def _plan(tmp_path) -> RunPlan:
    inputs = [{"path": f"/in/{i}.png", "size": 1, "sha256": f"{i:064x}"} for i in range(5)]
    plan = RunPlan(
        run_id="r1", model_id="m", out_dir=str(tmp_path), created="2026-01-01T00:00:00+00:00",
        top_k=4, chunk_size=3, inputs=inputs, chunks=[[0, 3], [3, 5]],
    )  # fmt: skip
    plan.parts_dir.mkdir(parents=True)
    return plan


def _part(plan, index, statuses):
    pq.write_table(pa.table({"status": statuses}), plan.part_path(index))


@pytest.mark.parametrize(
    "second",
    [
        None,  # never written
        ["ok"],  # short: a crash or an old plan's part
        ["ok", "error", "ok"],  # long: a part of some other plan
        ["ok", None],  # the right length, but a row that is neither ok nor error
    ],
)
def test_every_reader_calls_an_incomplete_part_missing(tmp_path, second):
    plan = _plan(tmp_path)
    _part(plan, 0, ["ok", "ok", "error"])
    if second is not None:
        _part(plan, 1, second)
    assert part_counts(plan, 0) == (2, 1) and chunk_done(plan, 0)
    assert part_counts(plan, 1) is None and not chunk_done(plan, 1)
    assert missing_chunks(plan) == [1]
    assert PartCounts()(plan, 1) is None
    status = run_status(plan)
    assert (status.chunks_done, status.rows_ok, status.rows_error) == (1, 2, 1)
    with pytest.raises(DataError, match="missing 1 part"):
        finalize(plan)
    assert not plan.manifest_path.exists()


def test_finalize_counts_what_the_parts_hold_and_keeps_its_first_finish(tmp_path):
    plan = _plan(tmp_path)
    _part(plan, 0, ["ok", "ok", "error"])
    _part(plan, 1, ["ok", "error"])
    first = finalize(plan)
    assert (first["rows"], first["ok"], first["error"]) == (5, 3, 2)
    assert finalize(plan)["finished"] == first["finished"]  # a second finalize changes nothing


def test_all_written_asks_one_listing_and_missing_chunks_still_reads(tmp_path):
    plan = _plan(tmp_path)
    _part(plan, 0, ["ok", "ok", "error"])
    assert not all_written(plan)
    _part(plan, 1, ["ok"])  # short: a file, but not a complete part
    assert all_written(plan) and missing_chunks(plan) == [1]


def test_run_ids_sort_by_creation_time_even_within_one_second():
    t = dt.datetime(2026, 1, 1, 12, 0, 5, tzinfo=dt.UTC)
    ids = [run_id_at(t + dt.timedelta(milliseconds=m)) for m in (0, 1, 999, 1000)]
    assert sorted(reversed(ids)) == ids
    older = ["20260101T120004-ffffff", "20260101T120005-000000"]  # ids before milliseconds
    assert sorted(ids + older) == [older[0], older[1], *ids]
