"""The demo's labelled folders import whole: copies, since an import refuses links that
point outside images/ (a fresh ``make demo`` once died on exactly this)."""

from __future__ import annotations

import pytest
from anigenre.config import load_settings
from anigenre.core.errors import DataError
from anigenre.jobs import stages
from anigenre.jobs.stages.demo import split_posters


def test_demo_folders_import_every_poster(tmp_path, posters_dir, shared_dir):
    labelled, inbox = split_posters(posters_dir, tmp_path / "inputs")
    assert not any(p.is_symlink() for p in (labelled / "images").iterdir())
    settings = load_settings(overrides={"data_dir": tmp_path / "data", "shared_dir": shared_dir})
    change = stages.import_dataset(settings, inbox)
    assert change.skipped == [] and change.added == len(list((inbox / "images").iterdir()))


def test_a_folder_with_nothing_importable_is_one_clear_error(tmp_path, shared_dir):
    folder = tmp_path / "bad"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "a.png").write_text("<html>not an image</html>")
    (folder / "labels.csv").write_text("file,genres\na.png,Action\n")
    settings = load_settings(overrides={"data_dir": tmp_path / "data", "shared_dir": shared_dir})
    with pytest.raises(DataError, match="nothing to import .* every file was skipped"):
        stages.import_dataset(settings, folder)
    assert not (tmp_path / "data" / "processed").exists()


def test_the_demo_trains_on_every_shared_labelled_folder(tmp_path, shared_dir):
    """posters/ (less the held-out year), then the thumbnails and the small covers; a
    folder that is not there is left out, not an error."""
    from anigenre.jobs.stages.demo import EXTRA_FOLDERS, labelled_folders

    data = shared_dir / "data"
    first = tmp_path / "labelled"
    folders = labelled_folders(data, first)
    assert folders == [first, *(data / name for name in EXTRA_FOLDERS)]
    assert all((f / "labels.csv").exists() for f in folders[1:])
    assert labelled_folders(tmp_path, first) == [first]
