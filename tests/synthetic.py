"""A synthetic labelled dataset whose genres are visible as colour: separable on purpose."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pandas as pd
from anigenre.core import dataset as ds
from anigenre.core.dataset_store import DATASET_PATH, write_dataset
from anigenre.core.genres import Vocabulary
from PIL import Image

VOCAB = Vocabulary()
SIGNALS = {"Action": 0, "Drama": 1, "Comedy": 2}  # genre -> colour channel it brightens


def synthetic_dataset(data_dir, n=96, seed=0, size=(40, 32)):
    """Posters whose genres show as colour: separable, so a working model must learn them."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        genres = [g for g in SIGNALS if rng.random() < 0.4] or ["Comedy"]
        arr = rng.integers(0, 90, (*size, 3))
        for g in genres:
            arr[..., SIGNALS[g]] += 150
        data = _png(arr.clip(0, 255).astype(np.uint8))
        sha = hashlib.sha256(data).hexdigest()
        (data_dir / "images").mkdir(parents=True, exist_ok=True)
        (data_dir / "images" / f"{sha}.png").write_bytes(data)
        rows.append(
            {
                "sha256": sha,
                "path": f"images/{sha}.png",
                "anilist_id": None,
                "title": f"t{i}",
                "year": None,
                "group": f"g{i}",
                "source": "import",
                "genres": genres,
            }
        )
    merged, _ = ds.merge(pd.DataFrame(columns=ds.COLUMNS), pd.DataFrame(rows), VOCAB, seed=seed)
    write_dataset(data_dir / DATASET_PATH, merged, VOCAB)
    return merged


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def poster_png(seed: int, size=(40, 32), genres=("Action",)) -> bytes:
    """One distinct synthetic poster."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 90, (*size, 3))
    for g in genres:
        arr[..., SIGNALS[g]] += 150
    return _png(arr.clip(0, 255).astype(np.uint8))


def labelled_folder(folder, n: int, *, seed: int, other: str, extra_rows=()) -> None:
    """``folder/images`` of ``n`` posters alternating Action and ``other``, plus labels.csv."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        genres = ["Action"] if i % 2 else [other]
        (folder / "images" / f"x{i}.png").write_bytes(poster_png(seed + i, genres=genres))
        rows.append({"file": f"x{i}.png", "genres": "|".join(genres)})
    pd.DataFrame([*rows, *extra_rows]).to_csv(folder / "labels.csv", index=False)


def trained_tiny_model(data_dir, shared_dir, epochs: int = 3):
    """(settings, model id): the paper's small CNN at 40x32 trained for seconds on a
    synthetic dataset in ``data_dir``; what the prediction tests predict with."""
    from anigenre.config import load_settings
    from anigenre.jobs import stages
    from anigenre.models.config import TrainConfig

    synthetic_dataset(data_dir, n=60)
    settings = load_settings(overrides={"data_dir": data_dir, "shared_dir": shared_dir}, env={})
    config = TrainConfig(
        backbone="custom_cnn", weights="none", input_size=(40, 32), epochs=epochs, bootstrap=10
    )
    model_id, _ = stages.train_model(settings, config)
    return settings, model_id


def poster_folder(folder, n: int, seed: int, name: str = "p{i}"):
    """``folder`` (made if missing) with ``n`` distinct posters, ``name.format(i=i)`` + .png."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{name.format(i=i)}.png").write_bytes(poster_png(seed + i))
    return folder
