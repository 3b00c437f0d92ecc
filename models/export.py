"""The LiteRT export of a saved model: ``model.tflite`` beside ``model.keras``, keyed by
``model.tflite.json``.

Made at save time, and on first use for artifacts saved before it existed. It is keyed by
the hash of model.keras, so a model file copied over an old one is exported afresh
instead of served stale; reading the key needs no TensorFlow, making the export does.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

from anigenre.core.atomic import write_bytes_atomic, write_text_atomic
from anigenre.models.artifacts import (
    FEATURES_FILE,
    KERAS_FILE,
    LITERT_FILE,
    LITERT_KEY,
    file_sha256,
)
from anigenre.models.int8 import checked_extractor
from anigenre.models.manifest import Manifest


def litert_current(folder: Path) -> bool:
    """Whether ``folder``'s model.tflite (and features.tflite, for a head on int8 features)
    is the export of its model.keras as it is now."""
    try:
        key = json.loads((folder / LITERT_KEY).read_text())
        same_model = key["keras_sha256"] == file_sha256(folder / KERAS_FILE)
        features = folder / FEATURES_FILE
        # The engine runs features.tflite whenever it is there, so it must be this export's.
        same_features = (
            key["features_sha256"] == file_sha256(features)
            if "features_sha256" in key
            else not features.exists()
        )
        return (
            same_model
            and same_features
            and key["tflite_sha256"] == file_sha256(folder / LITERT_FILE)
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def convert_to_litert(model) -> bytes:
    """The float32 LiteRT flatbuffer of a Keras model (custom layers are plain TF ops)."""
    import tensorflow as tf

    # The converter prints the traced signature to stdout, which would land in our output.
    with contextlib.redirect_stdout(io.StringIO()):
        return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def export_files(model, manifest: Manifest | None) -> dict[str, bytes]:
    """The LiteRT files of ``model``: the whole network as ``model.tflite``, or, for a head
    trained on int8 features (``models.int8``), the int8 extractor and the float head."""
    if manifest is not None and manifest.weights.features is not None:
        head = model.layers[-1]  # models.train.compose: image -> backbone -> head
        return {FEATURES_FILE: checked_extractor(manifest), LITERT_FILE: convert_to_litert(head)}
    return {LITERT_FILE: convert_to_litert(model)}


def export_litert(model, folder: Path, manifest: Manifest | None = None) -> Path:
    """Write ``folder``/model.tflite from ``model`` (the one saved in ``folder``), then its
    key. Each file is replaced atomically; a reader that sees a new export with an old key
    (or the reverse) finds the hashes disagree and does not use it."""
    files = export_files(model, manifest)
    if FEATURES_FILE not in files:
        (folder / FEATURES_FILE).unlink(missing_ok=True)
    for name, data in files.items():
        write_bytes_atomic(folder / name, data)
    key = {
        "keras_sha256": file_sha256(folder / KERAS_FILE),
        "tflite_sha256": hashlib.sha256(files[LITERT_FILE]).hexdigest(),
        "tensorflow": _tf_version(),
    }
    if FEATURES_FILE in files:
        key["features_sha256"] = hashlib.sha256(files[FEATURES_FILE]).hexdigest()
    write_text_atomic(folder / LITERT_KEY, json.dumps(key, indent=2, sort_keys=True))
    return folder / LITERT_FILE


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__
