"""The manifest: everything inference and a reader of the registry need about a model, typed.

``Manifest.from_json`` is the one reader of ``manifest.json``. Artifacts saved by older
versions lack some keys (the decision rule, expected rates, the prior's thresholds, the seen
posters, feature taps, the companion network); the reader gives each its "not recorded"
value here, so no caller guesses a default of its own. ``to_json`` writes the current form.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from anigenre.core.errors import DataError
from anigenre.core.genres import Vocabulary
from anigenre.core.seen import SEEN_KEY

MANIFEST_VERSION = 1


def _floats(value: Any) -> dict[str, float]:
    return {str(k): float(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _per_poster(recorded: Any, rates: Mapping[str, float]) -> float | None:
    """Genres per poster as recorded; for a model recorded before the mean was kept, the sum
    of its per-genre rates, which is the same figure (None: neither was recorded)."""
    if recorded is not None:
        return float(recorded)
    return sum(rates.values()) if rates else None


@dataclass(frozen=True)
class FileRef:
    """A file named by path and checked by sha256 (the int8 features network)."""

    path: Path
    sha256: str
    # "imagenet-int8": an ImageNet file cut after its pooling; "ptq": our own float backbone
    # quantized to full integer on ``calibration`` training posters (models.int8).
    kind: str = "imagenet-int8"
    calibration: int | None = None


@dataclass(frozen=True)
class Weights:
    """Where a network's starting weights came from: ``source`` is imagenet, file or none."""

    source: str | None = None  # None: not recorded
    path: str | None = None
    sha256: str | None = None
    features: FileRef | None = None  # the int8 file whose features the head was trained on
    companion: Weights | None = None  # the companion network's weights, if there is one

    @classmethod
    def from_json(cls, data: Any) -> Weights:
        data = _dict(data)
        features = data.get("features")
        return cls(
            source=data.get("source"),
            path=data.get("path"),
            sha256=data.get("sha256"),
            features=FileRef(
                Path(features["path"]),
                features["sha256"],
                features.get("kind") or "imagenet-int8",
                features.get("calibration"),
            )
            if features
            else None,
            companion=cls.from_json(data["companion"]) if data.get("companion") else None,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "path": self.path, "sha256": self.sha256}
        if self.features is not None:
            out["features"] = {"path": str(self.features.path), "sha256": self.features.sha256}
            if self.features.kind != "imagenet-int8":
                out["features"] |= {
                    "kind": self.features.kind,
                    "calibration": self.features.calibration,
                }
        if self.companion is not None:
            out["companion"] = self.companion.to_json()
        return out


@dataclass(frozen=True)
class Training:
    """How the network was trained; None or empty where an older model did not record it."""

    mode: str | None = None  # "frozen" | "end-to-end"
    epochs_run: int | None = None
    best_epoch: int | None = None
    val_map_history: tuple[float, ...] = ()
    loss_history: tuple[float, ...] = ()
    features_computed: int | None = None
    learning_rate: float | None = None
    taps: tuple[str, ...] | None = None  # None: recorded before taps existed
    companion: str | None = None  # the companion network's backbone name
    feature_scale: float | None = None

    @classmethod
    def from_json(cls, data: Any) -> Training:
        data = _dict(data)
        companion = data.get("companion")
        return cls(
            mode=data.get("mode"),
            epochs_run=data.get("epochs_run"),
            best_epoch=data.get("best_epoch"),
            val_map_history=tuple(data.get("val_map_history") or ()),
            loss_history=tuple(data.get("loss_history") or ()),
            features_computed=data.get("features_computed"),
            learning_rate=data.get("learning_rate"),
            taps=tuple(data["taps"]) if "taps" in data else None,
            companion=companion.get("backbone") if isinstance(companion, Mapping) else None,
            feature_scale=data.get("feature_scale"),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.mode,
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "val_map_history": list(self.val_map_history),
            "loss_history": list(self.loss_history),
            "features_computed": self.features_computed,
            "learning_rate": self.learning_rate,
            "companion": {"backbone": self.companion} if self.companion else None,
            "feature_scale": self.feature_scale,
        }
        if self.taps is not None:
            out["taps"] = list(self.taps)
        return out


@dataclass(frozen=True)
class DatasetRecord:
    """What the model card says about the training data (models.record.describe_dataset)."""

    fingerprint: str | None = None
    rows: dict[str, int] = field(default_factory=dict)  # posters per split
    sources: dict[str, int] = field(default_factory=dict)
    genre_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> genre -> n
    years: tuple[int, int] | None = None  # None: no poster has a year
    years_recorded: bool = False  # older models did not record the years at all

    @classmethod
    def from_json(cls, data: Any) -> DatasetRecord:
        data = _dict(data)
        years = data.get("years")
        return cls(
            fingerprint=data.get("fingerprint"),
            rows=_dict(data.get("rows")),
            sources=_dict(data.get("sources")),
            genre_counts=_dict(data.get("genre_counts")),
            years=(int(years[0]), int(years[1])) if years else None,
            years_recorded="years" in data,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "fingerprint": self.fingerprint,
            "rows": self.rows,
            "sources": self.sources,
            "genre_counts": self.genre_counts,
        }
        if self.years_recorded:
            out["years"] = list(self.years) if self.years else None
        return out


@dataclass(frozen=True)
class Manifest:
    model_id: str
    created: str  # ISO 8601; sorts the registry's listing
    backbone: str = ""
    weights: Weights = field(default_factory=Weights)
    genres: tuple[str, ...] = ()
    input_size: tuple[int, int] = (0, 0)  # (height, width); (0, 0): not recorded
    input_note: str = ""  # what the model takes, in words ("input" in the file)
    resize_policy: str = ""
    tta: tuple[str, ...] = ()
    thresholds: dict[str, float] = field(default_factory=dict)
    global_threshold: float | None = None
    decision_rule: dict[str, Any] = field(default_factory=dict)  # rule, cap, text, n_posters..
    expected_rates: dict[str, float] = field(default_factory=dict)  # on validation posters
    expected_genres_per_poster: float | None = None
    train_genres_per_poster: float | None = None
    # The prior baseline, fixed at training time so `evaluate` scores it as `train` did.
    train_prevalence: dict[str, float] = field(default_factory=dict)
    prior_thresholds: dict[str, float] | None = None  # None: trained before they were kept
    prior_global_threshold: float | None = None
    # sha256 of the train and validation posters; None: trained before they were recorded.
    seen: tuple[str, ...] | None = None
    dataset: DatasetRecord = field(default_factory=DatasetRecord)
    seed: int | None = None
    config: dict[str, Any] = field(default_factory=dict)  # models.config.TrainConfig.as_dict
    training: Training = field(default_factory=Training)
    libraries: dict[str, str] = field(default_factory=dict)
    metrics_summary: dict[str, Any] = field(default_factory=dict)  # models.evaluation.summary
    manifest_version: int = MANIFEST_VERSION

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """The manifest of a ``manifest.json`` object, of any version; a ValueError when it
        is not one (no model id or creation time)."""
        if not isinstance(data, Mapping):
            raise ValueError("not a JSON object")
        if not isinstance(data.get("model_id"), str) or not isinstance(data.get("created"), str):
            raise ValueError("no model_id or created")
        expected = _floats(data.get("expected_rates"))
        prevalence = _floats(data.get("train_prevalence"))
        prior = data.get("prior_thresholds")
        seen = data.get(SEEN_KEY)
        size = data.get("input_size") or (0, 0)
        return cls(
            model_id=data["model_id"],
            created=data["created"],
            backbone=data.get("backbone") or "",
            weights=Weights.from_json(data.get("weights")),
            genres=tuple(data.get("genres") or ()),
            input_size=(int(size[0]), int(size[1])),
            input_note=data.get("input") or "",
            resize_policy=data.get("resize_policy") or "",
            tta=tuple(data.get("tta") or ()),
            thresholds=_floats(data.get("thresholds")),
            global_threshold=_opt_float(data.get("global_threshold")),
            decision_rule=_dict(data.get("decision_rule")),
            expected_rates=expected,
            expected_genres_per_poster=_per_poster(
                data.get("expected_genres_per_poster"), expected
            ),
            train_genres_per_poster=_per_poster(data.get("train_genres_per_poster"), prevalence),
            train_prevalence=prevalence,
            prior_thresholds=_floats(prior) if prior is not None else None,
            prior_global_threshold=_opt_float(data.get("prior_global_threshold")),
            seen=tuple(seen) if seen is not None else None,
            dataset=DatasetRecord.from_json(data.get("dataset")),
            seed=data.get("seed"),
            config=_dict(data.get("config")),
            training=Training.from_json(data.get("training")),
            libraries=_dict(data.get("libraries")),
            metrics_summary=_dict(data.get("metrics_summary")),
            manifest_version=int(data.get("manifest_version") or MANIFEST_VERSION),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "manifest_version": self.manifest_version,
            "model_id": self.model_id,
            "created": self.created,
            "backbone": self.backbone,
            "weights": self.weights.to_json(),
            "genres": list(self.genres),
            "input_size": list(self.input_size),
            "input": self.input_note,
            "resize_policy": self.resize_policy,
            "tta": list(self.tta),
            "thresholds": self.thresholds,
            "global_threshold": self.global_threshold,
            "decision_rule": self.decision_rule,
            "expected_rates": self.expected_rates,
            "expected_genres_per_poster": self.expected_genres_per_poster,
            "train_genres_per_poster": self.train_genres_per_poster,
            "train_prevalence": self.train_prevalence,
            "prior_thresholds": self.prior_thresholds,
            "prior_global_threshold": self.prior_global_threshold,
            SEEN_KEY: None if self.seen is None else list(self.seen),
            "dataset": self.dataset.to_json(),
            "seed": self.seed,
            "config": self.config,
            "training": self.training.to_json(),
            "libraries": self.libraries,
            "metrics_summary": self.metrics_summary,
        }

    @property
    def vocabulary(self) -> Vocabulary:
        return Vocabulary(self.genres)

    # --- read by key, for callers not yet moved to the attributes -------------------------
    # The file's own keys and values (lists, not tuples), as a dict manifest gave them.

    @cached_property
    def _json(self) -> dict[str, Any]:
        return self.to_json()

    def __getitem__(self, key: str) -> Any:
        return self._json[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._json.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._json

    def keys(self) -> Iterator[str]:
        return iter(self._json)


def read_manifest(path: Path) -> Manifest:
    """The manifest in the file ``path``; a DataError naming it when it cannot be read."""
    try:
        return Manifest.from_json(json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise DataError(f"cannot read {path} ({exc}); copy the artifact again") from None
