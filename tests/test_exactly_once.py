"""Exactly one row per file for a model in an output dir, whatever the operator does:
re-runs and resumes in any order, two runs at once, awkward names, copies, huge posters."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from anigenre.core.errors import ConfigError
from anigenre.core.genres import Vocabulary
from anigenre.jobs import stages
from anigenre.jobs.runs.chunks import execute_chunk
from anigenre.jobs.runs.index import list_runs, load_plan
from anigenre.jobs.runs.markers import mark_failed, mark_queued
from anigenre.jobs.runs.parts import missing_chunks
from anigenre.jobs.stages.predict import claim_run
from PIL import Image, ImageDraw

from tests import images as gen
from tests.procs import ROOT, own_redis, run_cli
from tests.synthetic import poster_folder, poster_png, trained_tiny_model

VOCAB = Vocabulary()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_dir):
    """A small trained model in its own data dir (as in test_jobs.py)."""
    data = tmp_path_factory.mktemp("once-data")
    settings, model_id = trained_tiny_model(data, shared_dir, epochs=1)
    return settings, model_id


def _env(settings) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ANIGENRE_")}
    return {**clean, "ANIGENRE_DATA_DIR": str(settings.data_dir), "TF_CPP_MIN_LOG_LEVEL": "2"}


def posters(folder: Path, n: int, seed: int = 3000) -> Path:
    return poster_folder(folder, n, seed, "p{i:03d}")


def model_rows(out: Path, model_id: str) -> pd.DataFrame:
    """Every row of the model under ``out``, all runs together, as a user reads them."""
    rows = pd.read_parquet(out / "predictions")
    return rows[rows.model_id == model_id]


def _name(path: str, root: Path) -> str:
    return str(Path(path).relative_to(root.resolve()))


def big_jpeg(size=(5400, 7600)) -> bytes:
    """A 41 MP print-resolution poster, striped so it is not trivially compressible."""
    img = Image.new("RGB", size, (200, 30, 60))
    draw = ImageDraw.Draw(img)
    for x in range(0, size[0], 300):
        draw.rectangle([x, 0, x + 150, size[1]], fill=(x % 255, 100, 50))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


# --- re-runs and resumes ----------------------------------------------------------------


def test_resume_after_a_rerun_writes_no_second_row(trained, tmp_path):
    """A predict killed after one chunk, a re-run that finishes the rest under a new run
    id, then `jobs resume` of the first: one ok row per file, not the re-run's twice."""
    settings, model_id = trained
    folder = posters(tmp_path / "in", 20)
    out = tmp_path / "out"
    first = stages.plan_prediction(settings, [folder], model_id="latest", out_dir=out, chunk_size=4)
    # What a killed `predict` leaves: its plan, one part, and no lock (the kernel dropped it).
    execute_chunk(first, 0, stages.load_predictor(settings, model_id))

    env = _env(settings)
    rerun = run_cli("predict", str(folder), "--out", str(out), "--chunk-size", "4", env=env)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "16 files to predict" in rerun.stdout
    assert "4 files already have an ok row" in rerun.stdout

    resumed = run_cli("jobs", "resume", first.run_id, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "[complete]" in resumed.stdout and "16 file(s) left to the other runs" in resumed.stdout

    rows = model_rows(out, model_id)
    assert len(rows) == 20 and rows["path"].is_unique and (rows.status == "ok").all()
    first = load_plan(settings.data_dir, first.run_id)
    assert len(first.inputs) == 4 and first.already_predicted == 16
    assert first.manifest_path.exists() and not missing_chunks(first)


def test_queued_resume_leaves_out_files_other_runs_predicted(trained, tmp_path):
    settings, model_id = trained
    folder = posters(tmp_path / "in", 12)
    out = tmp_path / "out"
    first = stages.plan_prediction(settings, [folder], model_id="latest", out_dir=out, chunk_size=4)
    predictor = stages.load_predictor(settings, model_id)
    execute_chunk(first, 0, predictor)
    second = stages.plan_prediction(settings, [folder], model_id="latest", out_dir=out)
    assert len(second.inputs) == 8  # the first run is not alive: nobody holds or queued it
    stages.predict_in_process(settings, second, predictor=predictor)

    with own_redis(tmp_path / "redis") as (url, client):
        env = _env(settings)
        resumed = run_cli("jobs", "--broker", url, "resume", first.run_id, env=env, timeout=120)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert "re-queued 2 chunk(s)" in resumed.stdout
        assert client.llen("predict") == 2
    queued = load_plan(settings.data_dir, first.run_id)
    assert queued.chunks == [[0, 4], [4, 4], [4, 4]] and queued.already_predicted == 8
    # What the workers then do with those two messages: write two empty parts, finalise.
    manifest = stages.predict_in_process(settings, queued, predictor=predictor)
    assert manifest["rows"] == 4
    rows = model_rows(out, model_id)
    assert len(rows) == 12 and rows["path"].is_unique


def test_resuming_a_forced_run_still_redoes_what_was_predicted_before_it(trained, tmp_path):
    settings, model_id = trained
    folder = posters(tmp_path / "in", 6)
    out = tmp_path / "out"
    predictor = stages.load_predictor(settings, model_id)

    def plan(**kw):
        return stages.plan_prediction(settings, [folder], model_id="latest", out_dir=out, **kw)

    stages.predict_in_process(settings, plan(), predictor=predictor)
    forced = plan(force=True, chunk_size=2)
    assert len(forced.inputs) == 6
    execute_chunk(forced, 0, predictor)  # then it was killed
    forced, dropped = claim_run(load_plan(settings.data_dir, forced.run_id), resume=True)
    assert dropped == 0 and len(forced.inputs) == 6  # asked to redo them, it still does
    assert stages.predict_in_process(settings, forced, predictor=predictor)["rows"] == 6
    rows = model_rows(out, model_id)
    assert len(rows) == 12 and rows["path"].value_counts().eq(2).all()


# --- two runs at once -------------------------------------------------------------------


def test_two_predicts_of_one_folder_at_once_write_each_file_once(trained, tmp_path):
    settings, model_id = trained
    folder = posters(tmp_path / "in", 24)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "anigenre.jobs.cli", "predict", str(folder), "--out", str(out)]
    procs = [
        subprocess.Popen(
            [*argv, "--chunk-size", "2"],
            cwd=ROOT,
            env=_env(settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1][-2000:] for r in results]
    rows = model_rows(out, model_id)
    assert len(rows) == 24 and rows["path"].is_unique and (rows.status == "ok").all()
    said = [r[0].splitlines()[0] for r in results]
    assert sum(s.startswith("nothing new: ") for s in said) == 1, said


def test_files_of_a_live_run_are_left_to_it_and_taken_over_once_it_dies(trained, tmp_path):
    settings, _ = trained
    folder = posters(tmp_path / "in", 5)
    out = tmp_path / "out"

    def plan():
        return stages.plan_prediction(settings, [folder], model_id="latest", out_dir=out)

    queued = plan()
    mark_queued(queued)  # on the broker: its workers will write these files
    skipped = plan()
    assert skipped.inputs == [] and skipped.in_live_runs == {queued.run_id: 5}
    assert skipped.run_id not in list_runs(settings.data_dir) and not skipped.run_dir.exists()
    mark_failed(queued, [0], 3)  # a failed run owns nothing

    held = plan()
    holder = subprocess.Popen(  # another process running `held`, as `predict` would
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import fcntl, sys, time
                fh = open(sys.argv[1], "a")
                fcntl.flock(fh, fcntl.LOCK_EX)
                print("locked", flush=True)
                time.sleep(120)
                """
            ),
            str(held.run_dir / "_running.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert plan().in_live_runs == {held.run_id: 5}
        with pytest.raises(ConfigError, match="being run by another process"):
            claim_run(load_plan(settings.data_dir, held.run_id), resume=True)
    finally:
        holder.kill()
        holder.wait()
    taken = plan()  # its process died: its files are free again
    assert len(taken.inputs) == 5 and taken.in_live_runs == {}


def test_predicting_twice_says_nothing_new_and_records_no_run(trained, tmp_path):
    settings, _ = trained
    poster = tmp_path / "one.png"
    poster.write_bytes(poster_png(4242))
    out = tmp_path / "out"
    stages.predict_in_process(
        settings, stages.plan_prediction(settings, [poster], model_id="latest", out_dir=out)
    )
    runs = list_runs(settings.data_dir)
    again = run_cli("predict", str(poster), "--out", str(out), env=_env(settings))
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.strip() == "nothing new: 1 file already has an ok row (use --force)"
    assert again.stderr.strip() == ""
    assert list_runs(settings.data_dir) == runs
    assert len(list((out / "predictions").glob("run_id=*"))) == 1


# --- awkward files ----------------------------------------------------------------------


def test_a_name_that_is_not_utf8_gets_its_row_and_its_neighbours_theirs(trained, tmp_path):
    settings, model_id = trained
    folder = posters(tmp_path / "in", 3)
    odd = Path(os.fsdecode(bytes(folder) + b"/caf\xe9 \xff.png"))  # Latin-1, not UTF-8
    odd.write_bytes(poster_png(77))
    plan = stages.plan_prediction(settings, [folder], model_id="latest", out_dir=tmp_path / "o")
    stages.predict_in_process(settings, plan)
    rows = model_rows(tmp_path / "o", model_id).set_index("path")
    assert len(rows) == 4 and (rows.status == "ok").all()
    shown = str(folder.resolve() / "caf\\xe9 \\xff.png")
    assert shown in rows.index
    # Predicting again finds every row, the odd name's too.
    again = stages.plan_prediction(settings, [folder], model_id="latest", out_dir=tmp_path / "o")
    assert again.inputs == [] and again.already_predicted == 4


def test_byte_identical_files_get_a_row_each_with_the_same_probabilities(trained, tmp_path):
    settings, model_id = trained
    folder = tmp_path / "in"
    (folder / "nested").mkdir(parents=True)
    (folder / "a.png").write_bytes(poster_png(1))
    (folder / "b.png").write_bytes(poster_png(2))
    (folder / "nested" / "a copy.png").write_bytes(poster_png(1))
    (folder / "z.png").write_bytes(poster_png(1))
    plan = stages.plan_prediction(
        settings, [folder], model_id="latest", out_dir=tmp_path / "o", chunk_size=1
    )
    names = [Path(e["path"]).name for e in plan.inputs]
    assert names == ["a.png", "a copy.png", "z.png", "b.png"]
    assert plan.chunks == [[0, 3], [3, 4]]  # copies share their original's chunk
    assert {Path(d["path"]).name for d in plan.duplicates} == {"a copy.png", "z.png"}
    (folder / "z.png").write_bytes(poster_png(9))  # changed after planning: its own error
    stages.predict_in_process(settings, plan)
    rows = model_rows(tmp_path / "o", model_id)
    rows = rows.set_index(rows["path"].map(lambda p: Path(p).name))
    assert sorted(rows.index) == ["a copy.png", "a.png", "b.png", "z.png"]
    cols = VOCAB.columns()
    assert np.array_equal(rows.loc["a.png", cols].to_numpy(), rows.loc["a copy.png", cols])
    assert rows.loc["a copy.png", "status"] == "ok"
    assert rows.loc["z.png", "error"].startswith("changed")


def test_a_41_megapixel_jpeg_is_predicted_and_decoded_small(trained, tmp_path):
    settings, model_id = trained
    poster = tmp_path / "poster-5400x7600.jpg"
    poster.write_bytes(big_jpeg())
    plan = stages.plan_prediction(settings, [poster], model_id="latest", out_dir=tmp_path / "o")
    stages.predict_in_process(settings, plan)
    (row,) = model_rows(tmp_path / "o", model_id).itertuples()
    assert row.status == "ok", row.error

    # Peak memory of the decode alone, in a fresh process: a full decode needs 123 MB
    # for the pixels; a draft decode at 1/8 scale needs 2 MB.
    probe = textwrap.dedent(
        """
        import resource, sys
        from anigenre.core.images import decode_image
        data = open(sys.argv[1], "rb").read()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        decode_image(data, (40, 32))
        decode_image(data, (320, 224), "center-crop")
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
        """
    )
    grew_kb = subprocess.run(
        [sys.executable, "-c", probe, str(poster)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert int(grew_kb) < 40_000, f"decoding grew the peak by {int(grew_kb) // 1024} MB"


def awkward_folder(root: Path) -> tuple[set[str], dict[str, str]]:
    """Real images of every sort, and broken files: (names that must be ok, name -> reason)."""
    good = {
        "formats/a.png": poster_png(11),
        "formats/b.jpg": gen.encode("JPEG"),
        "formats/c.webp": gen.encode("WEBP"),
        "formats/d animated.gif": gen.animated_gif(),
        "formats/e.bmp": gen.encode("BMP"),
        "formats/f 16-bit.png": gen.png16(),
        "formats/cmyk.jpg": gen.encode("JPEG", mode="CMYK"),
        "formats/palette.png": gen.encode("PNG", mode="P"),
        "formats/alpha.png": gen.transparent_png(),
        "formats/grey.jpg": gen.encode("JPEG", mode="L"),
        "formats/rotated.jpg": gen.with_exif_orientation(gen.two_halves(), 6),
        "formats/UPPER.JPG": gen.encode("JPEG", size=(50, 70)),
        "names/with space.png": poster_png(12),
        "names/ポスター 日本.png": poster_png(13),
        "names/caf\\xe9.png": poster_png(14),  # written under the Latin-1 byte 0xE9
        "sizes/poster-5400x7600.jpg": big_jpeg(),
        "sizes/small-16x20.png": gen.encode("PNG", size=(16, 20)),
        "dupes/original.png": poster_png(15),
        "dupes/deep/er/copy of original.png": poster_png(15),
        "nested/a/b/c/deep.webp": gen.encode("WEBP", size=(41, 57)),
    }
    broken = {
        "broken/zero.jpg": (b"", "empty"),
        "broken/zero again.jpg": (b"", "empty"),  # a copy of a broken file
        "broken/cut.jpg": (gen.encode("JPEG", size=(300, 400))[:600], "corrupt"),
        "broken/page.jpg": (b"<!DOCTYPE html><html>Not found</html>", "not-an-image"),
        "broken/bomb.png": (gen.png_header_only(200_000, 200_000), "decompression-bomb"),
        "broken/tiny.png": (gen.encode("PNG", size=(4, 4)), "absurd-size"),
        "broken/a tiff.png": (gen.encode("TIFF"), "unsupported-format"),
    }
    for name, data in [*good.items(), *((n, d) for n, (d, _) in broken.items())]:
        raw = name.replace("\\xe9", "\udce9")  # the surrogate Python reads 0xE9 as
        path = root / raw
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "broken" / "gone.jpg").symlink_to(root / "nowhere.jpg")
    (root / "notes.txt").write_text("not an image name: no row")
    reasons = {n: r for n, (_, r) in broken.items()} | {"broken/gone.jpg": "unreadable"}
    return set(good), reasons


def test_a_folder_of_awkward_files_gets_one_row_per_file(trained, tmp_path):
    settings, model_id = trained
    root = tmp_path / "awkward"
    good, bad = awkward_folder(root)
    out = tmp_path / "out"
    env = _env(settings)
    result = run_cli("predict", str(root), "--out", str(out), "--chunk-size", "5", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = model_rows(out, model_id)
    rows = rows.set_index(rows["path"].map(lambda p: _name(p, root)))
    assert rows.index.is_unique and set(rows.index) == good | set(bad)
    assert rows.loc[sorted(good), "status"].eq("ok").all(), rows.loc[sorted(good), "error"]
    for name, reason in bad.items():
        assert rows.loc[name, "status"] == "error" and rows.loc[name, "error"].startswith(reason)
    cols = VOCAB.columns()
    assert np.array_equal(
        rows.loc["dupes/original.png", cols].to_numpy(),
        rows.loc["dupes/deep/er/copy of original.png", cols].to_numpy(),
    )
    again = run_cli("predict", str(root), "--out", str(out), env=env)
    # Only the error files are planned again, and they fail again: nothing was predicted.
    assert again.returncode == 1 and again.stdout.startswith("run ")
    assert "nothing was predicted" in again.stderr
    assert f"{len(good)} files already have an ok row" in again.stdout  # only errors again
