"""The model registry: ``<data>/models/<model_id>/{model.keras, manifest.json, metrics.json}``.

An artifact is written into a hidden temp folder and renamed into place, so a listing
never shows a half-written model. The manifest carries everything inference needs:
genres in order, input size, resize policy, thresholds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

from core.errors import ConfigError, DataError
from core.genres import Vocabulary

MODELS_DIR = Path("models")
MANIFEST_VERSION = 1


def new_model_id(backbone: str, created: dt.datetime, fingerprint: str) -> str:
    salt = hashlib.sha256(f"{backbone}{created.isoformat()}{fingerprint}".encode()).hexdigest()[:6]
    return f"{backbone}-{created:%Y%m%dT%H%M%S}-{salt}"


def library_versions() -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
    }


def save_artifact(data_dir: Path, model_id: str, model, manifest: dict, metrics: dict) -> Path:
    root = Path(data_dir) / MODELS_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / model_id
    if final.exists():
        raise ConfigError(f"model {model_id} already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".{model_id}.", dir=root))
    try:
        model.save(tmp / "model.keras")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def list_models(data_dir: Path) -> list[dict]:
    """Manifests of every complete artifact, oldest first."""
    root = Path(data_dir) / MODELS_DIR
    out = []
    for folder in sorted(root.glob("[!.]*")):
        manifest = folder / "manifest.json"
        if manifest.exists() and (folder / "model.keras").exists():
            out.append(json.loads(manifest.read_text()))
    return sorted(out, key=lambda m: m["created"])


def resolve_model_id(data_dir: Path, model_id: str) -> str:
    models = list_models(data_dir)
    if not models:
        raise DataError(f"no trained models in {Path(data_dir) / MODELS_DIR}; run 'anigenre train'")
    if model_id == "latest":
        return models[-1]["model_id"]
    ids = [m["model_id"] for m in models]
    if model_id in ids:
        return model_id
    matches = [i for i in ids if i.startswith(model_id)]
    if len(matches) == 1:
        return matches[0]
    raise ConfigError(f"no single model matches '{model_id}'; 'anigenre models list' shows them")


def load_manifest(data_dir: Path, model_id: str) -> dict:
    model_id = resolve_model_id(data_dir, model_id)
    return json.loads((Path(data_dir) / MODELS_DIR / model_id / "manifest.json").read_text())


def load_artifact(data_dir: Path, model_id: str):
    """(keras model, manifest). ``safe_mode=True``: a model file cannot smuggle in code."""
    import keras

    import models.heads  # noqa: F401 - registers the serializable custom objects
    import models.layers  # noqa: F401

    manifest = load_manifest(data_dir, model_id)
    path = Path(data_dir) / MODELS_DIR / manifest["model_id"] / "model.keras"
    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    return model, manifest


def vocabulary_of(manifest: dict) -> Vocabulary:
    return Vocabulary(tuple(manifest["genres"]))
