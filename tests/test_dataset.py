"""Building dataset.parquet: filters, import, merging, splits, stats — read back from disk."""

from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pandas as pd
import pytest
from anigenre.config import load_settings
from anigenre.core import dataset as ds
from anigenre.core.dataset_store import DATASET_PATH, read_dataset
from anigenre.core.errors import DataError
from anigenre.core.genres import Vocabulary
from anigenre.core.splits import SPLITS
from anigenre.jobs import stages

from tests import images as gen
from tests.procs import run_cli

VOCAB = Vocabulary()


def _settings(tmp_path, **kw):
    return load_settings(overrides={"data_dir": tmp_path / "data", **kw}, env={})


def _media_and_posters():
    now = dt.datetime(2021, 12, 13, tzinfo=dt.UTC)
    media = pd.DataFrame(
        {
            "anilist_id": [1, 2, 3, 4, 5, 6],
            "title": ["A", "A Season 2", "B", "C", "D", "E"],
            "year": [2013, 2014, 2012, 2015, 2016, 2017],
            "average_score": [70, None, 80, 60, 50, 40],
            "main_studios": [["X"], ["X"], ["Y"], [], ["Z"], ["Z"]],
            "genres": [["Action"], ["Action", "Drama"], ["Comedy"], ["Drama"], [], ["Romance"]],
            "is_adult": [False] * 6,
            "updated_at": [now] * 6,
        }
    )
    posters = pd.DataFrame(
        {
            "anilist_id": [1, 2, 3, 4, 5, 6],
            "path": [f"raw/posters/{i}.jpg" for i in range(1, 7)],
            "sha256": [f"{i:064x}" for i in range(1, 7)],
            "status": ["ok", "ok", "ok", "ok", "ok", "missing"],
        }
    )
    return media, posters


def test_scrape_filters_report_what_each_removed():
    media, posters = _media_and_posters()
    filters = ds.Filters(years=(2013, 2021), require_score=True, require_studio=True)
    rows, report = ds.from_scrape(media, posters, filters, VOCAB)
    assert dict(report) == {
        "poster not ok": 1,
        "year outside 2013-2021": 1,
        "no average score": 1,
        "no main studio": 1,
        "no genres": 1,
        "adult title": 0,
    }
    assert rows["anilist_id"].tolist() == [1]
    assert rows.loc[0, "group"] == "t:a" and rows.loc[0, "source"] == "scrape"


def _folder(tmp_path, rows, files):
    folder = tmp_path / "labelled"
    (folder / "images").mkdir(parents=True)
    for name, data in files.items():
        (folder / "images" / name).write_bytes(data)
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    return folder


def test_import_reports_missing_and_unreadable_and_dedupes(tmp_path):
    red, blue = gen.encode("JPEG"), gen.encode("PNG", color=(0, 0, 255))
    folder = _folder(
        tmp_path,
        {
            "file": ["a.jpg", "b.png", "copy.jpg", "gone.jpg", "bad.jpg", "none.jpg", "../x.jpg"],
            "genres": ["Action|Drama", "Comedy", "Action|Drama", "Drama", "Drama", "", "Drama"],
            "title": ["Alpha", "Beta", "Alpha again", "G", "H", "I", "J"],
        },
        {
            "a.jpg": red,
            "b.png": blue,
            "copy.jpg": red,
            "bad.jpg": b"<html></html>",
            "none.jpg": red,
        },
    )
    change = stages.import_dataset(_settings(tmp_path), folder)
    assert change.added == 2 and change.total == 2
    reasons = dict(change.skipped)
    assert reasons["gone.jpg"] == "file not found"
    assert "not-an-image" in reasons["bad.jpg"]
    assert reasons["none.jpg"] == "no genres"
    assert "unsafe file name" in reasons["../x.jpg"]
    assert change.duplicate_files == [("copy.jpg", "a.jpg")]

    dataset, vocab = read_dataset(tmp_path / "data" / DATASET_PATH)
    assert vocab == VOCAB
    for row in dataset.itertuples():
        assert row.path == f"images/{row.sha256}.{'jpg' if row.title == 'Alpha' else 'png'}"
        assert (tmp_path / "data" / row.path).exists()
    alpha = dataset.set_index("title").loc["Alpha"]
    assert list(alpha["genres"]) == ["Action", "Drama"]
    assert list(alpha["labels"]) == VOCAB.encode([["Action", "Drama"]])[0].tolist()


def test_import_with_unknown_genre_writes_nothing_and_lists_the_vocabulary(tmp_path):
    folder = _folder(
        tmp_path, {"file": ["a.jpg"], "genres": ["Action|Isekai"]}, {"a.jpg": gen.encode("JPEG")}
    )
    with pytest.raises(DataError) as err:
        stages.import_dataset(_settings(tmp_path), folder)
    assert "'Isekai' on line(s) 2" in str(err.value) and "Thriller" in str(err.value)
    assert not (tmp_path / "data" / DATASET_PATH).exists()


def test_merge_keeps_existing_splits_and_replace_source_swaps_rows():
    existing_rows = pd.DataFrame(
        {
            "sha256": ["a", "b"],
            "path": ["images/a.jpg", "images/b.jpg"],
            "anilist_id": [None, None],
            "title": ["One", "Two"],
            "year": [None, None],
            "group": ["g1", "g2"],
            "source": ["import", "scrape"],
            "genres": [["Action"], ["Drama"]],
        }
    )
    first, _ = ds.merge(existing_rows.iloc[:0], existing_rows, VOCAB)
    first.loc[first["group"] == "g1", "split"] = "test"  # as if assigned earlier
    new = existing_rows.iloc[[1]].assign(sha256="c", genres=[["Comedy"]])
    merged, dupes = ds.merge(first, new, VOCAB, replace_source="scrape")
    assert dupes == 0
    assert sorted(merged["sha256"]) == ["a", "c"]  # b (old scrape row) replaced by c
    assert merged.set_index("sha256").loc["a", "split"] == "test"
    assert (
        merged.set_index("sha256").loc["c", "split"] == first.set_index("sha256").loc["b", "split"]
    )


@pytest.fixture(scope="module")
def imported(tmp_path_factory, posters_dir):
    data = tmp_path_factory.mktemp("imported")
    settings = load_settings(overrides={"data_dir": data}, env={})
    change = stages.import_dataset(settings, posters_dir)
    dataset, _ = read_dataset(data / DATASET_PATH)
    return settings, change, dataset


def test_importing_the_shared_posters(imported, posters_dir):
    _, change, dataset = imported
    labels = pd.read_csv(posters_dir / "labels.csv")
    assert change.total == len(labels) == len(dataset) and not change.skipped
    assert set(dataset["sha256"]) == set(labels["sha256"])  # content hashes agree with the source
    by_sha = labels.set_index("sha256")
    assert (dataset["group"] == by_sha.loc[dataset["sha256"], "group"].to_numpy()).all()


def test_no_franchise_crosses_splits_and_rare_genres_are_everywhere(imported):
    _, _, dataset = imported
    assert (dataset.groupby("group")["split"].nunique() == 1).all()
    labels = np.stack(dataset["labels"].to_numpy())
    groups_with = {
        g: dataset.loc[labels[:, j] > 0, "group"].nunique() for j, g in enumerate(VOCAB.genres)
    }
    for j, genre in enumerate(VOCAB.genres):
        if groups_with[genre] >= len(SPLITS):
            for split in SPLITS:
                assert labels[(dataset["split"] == split).to_numpy(), j].sum() > 0, (genre, split)
    share = dataset["split"].value_counts(normalize=True)
    assert share["train"] == pytest.approx(0.7, abs=0.05)


def test_reimport_adds_nothing_and_moves_nothing(imported, posters_dir):
    settings, _, before = imported
    change = stages.import_dataset(settings, posters_dir)
    after, _ = read_dataset(settings.data_dir / DATASET_PATH)
    assert change.added == 0 and change.duplicates == len(before)
    splits_before = before.set_index("sha256")["split"].sort_index()
    assert splits_before.equals(after.set_index("sha256")["split"].sort_index())


def test_stats_table_and_chart(imported):
    settings, _, dataset = imported
    result = stages.dataset_stats(settings)
    table = result.table
    assert table.loc["posters", "all"] == len(dataset)
    assert table.loc["Comedy", "all"] == sum("Comedy" in g for g in dataset["genres"])
    assert sum(table.loc["Action", s] for s in SPLITS) == table.loc["Action", "all"]
    assert 2.5 < table.loc["labels per poster", "all"] < 3.3
    assert result.png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (
        pd.read_csv(result.csv_path, index_col="genre").loc["Action", "all"]
        == table.loc["Action", "all"]
    )


def test_cli_import_then_stats_as_a_user_runs_it(tmp_path, posters_dir):
    small = tmp_path / "small"
    (small / "images").mkdir(parents=True)
    labels = pd.read_csv(posters_dir / "labels.csv").head(30)
    for name in labels["file"]:
        shutil.copy(posters_dir / "images" / name, small / "images" / name)
    labels.to_csv(small / "labels.csv", index=False)
    env = {"PATH": "/usr/bin:/bin", "ANIGENRE_DATA_DIR": str(tmp_path / "data")}

    def cli(*args):
        return run_cli(*args, env=env)

    imported = cli("dataset", "import", str(small))
    assert imported.returncode == 0, imported.stderr
    assert "30 posters" in imported.stdout
    stats = cli("dataset", "stats")
    assert stats.returncode == 0, stats.stderr
    assert "labels per poster" in stats.stdout and "dataset_stats.png" in stats.stdout
    missing = cli("dataset", "import", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1


def test_preprocess_after_a_scrape_then_import_links_franchises(replay, make_settings, posters_dir):
    from anigenre.scraper.run import ScrapeRequest
    from anigenre.scraper.wiring import build_scraper

    server = replay()
    settings = make_settings(server.url)
    build_scraper(settings).run(ScrapeRequest(years=(2021, 2021)))
    change = stages.preprocess(settings, ds.Filters(years=(2021, 2021)))
    filtered = dict(change.filtered)
    assert filtered["poster not ok"] > 0 and change.total == change.added > 0

    imported = stages.import_dataset(settings, posters_dir)
    assert imported.duplicates == change.total  # the scraped posters are the same files
    dataset, _ = read_dataset(settings.data_dir / DATASET_PATH)
    assert dataset["sha256"].is_unique
    # A scraped title and an imported poster of the same AniList id share a split even
    # though their group names came from different sources.
    by_id = dataset.dropna(subset=["anilist_id"]).groupby("anilist_id")["split"].nunique()
    assert (by_id == 1).all()

    again = stages.preprocess(settings, ds.Filters(years=(2021, 2021)))
    after, _ = read_dataset(settings.data_dir / DATASET_PATH)
    assert again.total == len(dataset)
    splits_before = dataset.set_index("sha256")["split"].sort_index()
    assert splits_before.equals(after.set_index("sha256")["split"].sort_index())
