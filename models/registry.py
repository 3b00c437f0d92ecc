"""The model registry: ``<data>/models/<model_id>/`` holds one artifact (its files are
named in ``models.artifacts``): the Keras model, its manifest, metrics and card, and beside
them the LiteRT export (``models.export``).

An artifact is written into a hidden temp folder and renamed into place, so a listing
never shows a half-written model. The manifest carries everything inference needs:
genres in order, input size, resize policy, thresholds.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anigenre.core.atomic import write_text_atomic
from anigenre.core.errors import ConfigError, DataError, StorageError
from anigenre.core.genres import Vocabulary
from anigenre.models import aliases
from anigenre.models.artifacts import (
    CARD_FILE,
    CHECKSUMS_FILE,
    KERAS_FILE,
    LITERT_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    MODELS_DIR,
    file_sha256,
    model_folder,
)
from anigenre.models.card import render_card
from anigenre.models.export import export_litert, litert_current
from anigenre.models.manifest import Manifest, read_manifest

log = logging.getLogger(__name__)


def new_model_id(backbone: str, created: dt.datetime, fingerprint: str) -> str:
    salt = hashlib.sha256(f"{backbone}{created.isoformat()}{fingerprint}".encode()).hexdigest()[:6]
    return f"{backbone}-{created:%Y%m%dT%H%M%S}-{salt}"


def save_artifact(data_dir: Path, model_id: str, model, manifest: Manifest, metrics: dict) -> Path:
    root = Path(data_dir) / MODELS_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / model_id
    if final.exists():
        raise ConfigError(f"model {model_id} already exists")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{model_id}.", dir=root))
    except OSError as exc:
        raise StorageError.from_os(exc, root) from exc
    try:
        model.save(tmp / KERAS_FILE)
        _export_at_save(model, tmp, manifest)
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest.to_json(), indent=2, sort_keys=True))
        (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True))
        (tmp / CARD_FILE).write_text(render_card(manifest, metrics), encoding="utf-8")
        write_checksums(tmp)
        os.replace(tmp, final)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):  # a full disk after an hour of training: say so
            raise StorageError.from_os(exc, final) from exc
        raise
    return final


def write_checksums(folder: Path) -> None:
    sums = {
        p.name: file_sha256(p)
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.name != CHECKSUMS_FILE
    }
    (folder / CHECKSUMS_FILE).write_text(json.dumps(sums, indent=2, sort_keys=True))


def read_checksums(folder: Path) -> dict[str, str]:
    """``{file name: sha256}`` of an artifact; empty for one saved before they were kept.
    An unreadable file is a ``DataError``: it must not turn the checks off."""
    path = Path(folder) / CHECKSUMS_FILE
    try:
        sums = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} ({exc}); copy the artifact again") from None
    if not isinstance(sums, dict) or not all(isinstance(v, str) for v in sums.values()):
        raise DataError(f"{path} is not a map of file names to sha256; copy the artifact again")
    return sums


@dataclass(frozen=True)
class Listing:
    """A data dir's models: those that can be listed, oldest first, and what is wrong
    with any folder of ``models/`` that holds a manifest (one line each, by folder name).
    An edited manifest is both: listed, so ``latest`` still means the newest model, and
    named here, since it is refused when used."""

    models: list[Manifest]
    problems: dict[str, str]


def scan_models(data_dir: Path) -> Listing:
    """Every artifact's manifest, and every damaged one's problem. One damaged folder
    must not hide the other models, nor be hidden itself. A model mirrored from object
    storage may have only its manifest and checksums here until it is first used
    (models.remote fetches the rest)."""
    root = Path(data_dir) / MODELS_DIR
    out, problems = [], {}
    for folder in sorted(root.glob("[!.]*")):
        manifest = folder / MANIFEST_FILE
        if not manifest.exists():
            continue  # not a model (a file such as the aliases), or one still being copied
        if not (folder / KERAS_FILE).exists() and not (folder / CHECKSUMS_FILE).exists():
            problems[folder.name] = (
                f"{folder} has a manifest but no {KERAS_FILE}; copy the artifact again"
            )
            continue
        try:
            out.append(read_manifest(manifest))
            check_manifest_sum(folder)
        except DataError as exc:
            problems[folder.name] = str(exc)
    return Listing(sorted(out, key=lambda m: m.created), problems)


def list_models(data_dir: Path) -> list[Manifest]:
    """Manifests of every model that can be listed, oldest first (``scan_models``)."""
    return scan_models(data_dir).models


def check_manifest_sum(folder: Path) -> None:
    """A ``DataError`` when ``manifest.json`` is not the one saved with the model.
    ``checksums.json`` lists it; an ``s3://`` data dir checks it when fetching
    (models.remote), and a local one here: an edited threshold must not go unnoticed
    because the model happens to sit on this disk."""
    want = read_checksums(folder).get(MANIFEST_FILE)
    path = Path(folder) / MANIFEST_FILE
    if want is not None and file_sha256(path) != want:
        raise DataError(
            f"{path} does not match the sha256 in {CHECKSUMS_FILE} (edited or damaged since "
            "the model was saved), so it is not used: copy the artifact again, or train a "
            "new model with 'anigenre train'"
        )


def resolve_model_id(data_dir: Path, model_id: str) -> str:
    listing = scan_models(data_dir)
    models = listing.models
    if not models:
        where = Path(data_dir) / MODELS_DIR
        if listing.problems:
            why = next(iter(listing.problems.values()))  # it names its folder
            more = len(listing.problems) - 1
            raise DataError(
                f"no usable model in {where}: {why}"
                + (f" ({more} more damaged: 'anigenre models list')" if more else "")
            )
        raise DataError(f"no trained models in {where}; run 'anigenre train'")
    if model_id == "latest":
        return models[-1].model_id
    ids = [m.model_id for m in models]
    if model_id in ids:
        return model_id
    aliased = aliases.alias_target(data_dir, model_id, ids)  # an alias beats an id prefix
    if aliased is not None:
        return aliased
    matches = [i for i in ids if i.startswith(model_id)]
    if len(matches) == 1:
        return matches[0]
    if model_id in listing.problems:  # there, but damaged: not "no such model"
        raise DataError(f"model {model_id}: {listing.problems[model_id]}")
    raise ConfigError(aliases.no_match(model_id))


def load_manifest(data_dir: Path, model_id: str) -> Manifest:
    """The manifest of ``model_id`` ('latest', an alias, an id prefix), one that can serve."""
    model_id = resolve_model_id(data_dir, model_id)
    path = model_folder(data_dir, model_id) / MANIFEST_FILE
    manifest = read_manifest(path)
    check_manifest_sum(path.parent)
    if not manifest.genres:
        raise DataError(f"{path} lists no genres; copy the artifact again")
    return manifest


def read_metrics(data_dir: Path, model_id: str) -> dict | None:
    """The ``metrics.json`` report of a model; None when it cannot be read."""
    try:
        metrics = json.loads((model_folder(data_dir, model_id) / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None


def model_card(data_dir: Path, model_id: str) -> tuple[str, Path, bool]:
    """(card text, ``MODEL_CARD.md`` path, whether it was written now) of ``model_id``.

    Rendered afresh from the manifest and metrics.json. A model saved before cards were
    written gets its file now: the card is no part of what check_artifact or the LiteRT
    key hash, so adding it changes nothing they check. A read-only artifact just goes
    without the file."""
    manifest = load_manifest(data_dir, model_id)
    text = render_card(manifest, read_metrics(data_dir, manifest.model_id))
    path = model_folder(data_dir, manifest.model_id) / CARD_FILE
    if path.exists():
        return text, path, False
    try:
        write_text_atomic(path, text)
    except (OSError, StorageError):
        return text, path, False
    return text, path, True


def check_artifact(data_dir: Path, model_id: str) -> Manifest:
    """The manifest of ``model_id``, once its model file is known to load and to fit it.

    Cheap and without TensorFlow, so a run is refused before any input is hashed or any
    run recorded: ``model.keras`` is a zip whose members must pass their CRC, and whose
    ``config.json`` must give the model as many outputs as the manifest has genres."""
    manifest = load_manifest(data_dir, model_id)
    path = model_folder(data_dir, manifest.model_id) / KERAS_FILE
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            if bad is not None:
                raise zipfile.BadZipFile(f"{bad} fails its checksum")
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, OSError) as exc:
        raise DataError(
            f"model file {path} is damaged ({_why(exc)}); copy the artifact again "
            "or train a new model with 'anigenre train'"
        ) from None
    _check_width(manifest, output_width(config), path)
    return manifest


def output_width(config: dict) -> int | None:
    """Units of the model's output, read from a saved ``config.json``; None when its
    structure is one this reader does not know (then loading the model checks it)."""
    return _layer_width(config, {})


# Layers whose output has the width of their (first) input.
_SAME_WIDTH = {"Dropout", "Average", "Add", "Maximum", "Minimum", "Multiply", "Activation"}


def _layer_width(layer: dict, siblings: dict, depth: int = 0) -> int | None:
    if not isinstance(layer, dict) or depth > 64:
        return None
    cfg = layer.get("config") or {}
    if isinstance(cfg.get("units"), int):
        return cfg["units"]
    inner = cfg.get("layers")
    if isinstance(inner, list) and inner:  # a Functional or Sequential model
        by_name = {_name(sub): sub for sub in inner}
        outputs = cfg.get("output_layers")
        if outputs is None:  # Sequential: the last layer that sets a width
            for sub in reversed(inner):
                if sub.get("class_name") not in _SAME_WIDTH:
                    return _layer_width(sub, by_name, depth + 1)
            return None
        if not isinstance(outputs, list) or not outputs:  # named outputs: not ours
            return None
        first = outputs[0] if isinstance(outputs[0], list) else outputs  # [[name, ..], ..]
        return _layer_width(by_name.get(first[0]), by_name, depth + 1)
    if layer.get("class_name") in _SAME_WIDTH:
        source = _first_input(layer.get("inbound_nodes"))
        return _layer_width(siblings.get(source), siblings, depth + 1)
    return None


def _name(layer: dict) -> str | None:
    return layer.get("name") or (layer.get("config") or {}).get("name")


def _first_input(nodes) -> str | None:
    """The layer name of the first tensor a layer is called on, from its inbound nodes."""
    if isinstance(nodes, dict):
        history = (nodes.get("config") or {}).get("keras_history")
        if isinstance(history, list) and history:
            return history[0]
        nodes = list(nodes.values())
    if isinstance(nodes, list):
        for item in nodes:
            found = _first_input(item)
            if found is not None:
                return found
    return None


def _check_width(manifest: Manifest, width: int | None, path: Path) -> None:
    genres = manifest.genres
    if width is not None and width != len(genres):
        raise DataError(
            f"model {manifest.model_id} has {width} outputs but its manifest lists "
            f"{len(genres)} genres; {path.parent / MANIFEST_FILE} was edited or belongs "
            "to another model: copy the artifact again or train a new model"
        )


def _why(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"no {exc.args[0]} inside"
    if isinstance(exc, zipfile.BadZipFile) and "not a zip file" in str(exc):
        return "truncated, or not a Keras archive"
    return str(exc) or type(exc).__name__


def load_artifact(data_dir: Path, model_id: str) -> tuple[Any, Manifest]:
    """(keras model, manifest). ``safe_mode=True``: a model file cannot smuggle in code."""
    import anigenre.models.heads  # noqa: F401 - registers the serializable custom objects
    import anigenre.models.layers  # noqa: F401
    import keras

    manifest = check_artifact(data_dir, model_id)
    path = model_folder(data_dir, manifest.model_id) / KERAS_FILE
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"model file {path} does not load ({_why(exc)})") from None
    _check_width(manifest, model.output_shape[-1], path)
    return model, manifest


def vocabulary_of(manifest: Manifest) -> Vocabulary:
    return manifest.vocabulary


# --- the LiteRT export (models.export), at save time and on first use ---------------------


def _export_at_save(model, folder: Path, manifest: Manifest) -> None:
    """A model whose export fails is still a model: it serves with the Keras engine, and
    the first LiteRT use tries again (and says why it cannot)."""
    try:
        export_litert(model, folder, manifest)
    except Exception as exc:  # noqa: BLE001 - the converter raises many kinds
        log.warning("no LiteRT export for this model (%s); it will predict with Keras", exc)


def litert_model_path(data_dir: Path, model_id: str) -> tuple[Path, Manifest]:
    """(model.tflite, manifest) of ``model_id``, exported now if it is missing or stale.

    Only exporting imports TensorFlow; an artifact with a current export is served
    without it. Concurrent first uses (several workers) export once: the rest wait on a
    lock in the model's folder and then find the export current."""
    manifest = check_artifact(data_dir, model_id)
    folder = model_folder(data_dir, manifest.model_id)
    if litert_current(folder):
        return folder / LITERT_FILE, manifest
    try:
        lock = open(folder / ".litert.lock", "a")  # noqa: SIM115 - held across the export
    except OSError as exc:
        raise StorageError.from_os(exc, folder / LITERT_FILE) from exc
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not litert_current(folder):
            model, manifest = load_artifact(data_dir, manifest.model_id)
            try:
                export_litert(model, folder, manifest)
            except StorageError:
                raise
            except Exception as exc:  # noqa: BLE001 - the converter raises many kinds
                raise DataError(
                    f"model {manifest.model_id} cannot be exported to LiteRT "
                    f"({type(exc).__name__}: {exc}); predict with --engine keras"
                ) from None
    return folder / LITERT_FILE, manifest
