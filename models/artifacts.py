"""The files of a saved model, named once: the registry writes them, the engines and the int8
export read them, and the object-storage mirror fetches them by these names.

``<data>/models/<model_id>/`` holds every file below; ``features.tflite`` only beside a head
trained on int8 features."""

from __future__ import annotations

import hashlib
from pathlib import Path

MODELS_DIR = Path("models")  # under the data dir

KERAS_FILE = "model.keras"
LITERT_FILE = "model.tflite"
LITERT_KEY = "model.tflite.json"  # which model.keras (by hash) the export was made from
FEATURES_FILE = "features.tflite"  # beside model.tflite when the head reads int8 features
MANIFEST_FILE = "manifest.json"
METRICS_FILE = "metrics.json"
CARD_FILE = "MODEL_CARD.md"
# sha256 of every other file of the artifact, written last: what a machine that fetches the
# model from object storage checks each file against (models.remote).
CHECKSUMS_FILE = "checksums.json"

# What listing and resolving ids need, without the weights (models.remote syncs only these).
SMALL_FILES = frozenset({MANIFEST_FILE, METRICS_FILE, CARD_FILE, CHECKSUMS_FILE})


def model_folder(data_dir: Path, model_id: str) -> Path:
    return Path(data_dir) / MODELS_DIR / model_id


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in blocks (a model file can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
