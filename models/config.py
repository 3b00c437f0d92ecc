"""What a training run is asked to do: one frozen value object, recorded in the manifest."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from anigenre.core.images import RESIZE_POLICIES
from anigenre.models.heads import LOSSES

TTA_VIEWS = ("flip",)
AUGMENT_VIEWS = ("flip", "zoom")
FEATURE_SCALES = ("unit-norm", "none")
HEAD_LR, END_TO_END_LR = 3e-3, 1e-3


@dataclass(frozen=True)
class TrainConfig:
    # The float pair quantized to int8 after choosing its training posters: paired over five
    # splits level with the float pair (bench/int8.py), served 1.5x as fast end to end.
    backbone: str = "mobilenet_v2_1.0_with_0.35_int8"
    weights: str = "auto"  # auto | imagenet | none | a file path
    input_size: tuple[int, int] | None = None  # (height, width); None: the backbone's default
    resize_policy: str = "stretch"
    epochs: int = 60
    batch_size: int = 32
    # None: 3e-3 for a frozen backbone's heads (bench/recipe.py: with unit-norm features,
    # +0.018 macro / +0.014 micro mAP over 1e-3 on raw ones), 1e-3 end to end.
    learning_rate: float | None = None
    loss: str = "bce"
    dropout: float = 0.3
    # With ``augment=("flip",)``, on bench/transfer.py's lockbox (three trainings, paired):
    # macro mAP +0.031, micro AP +0.013, P@3 +0.044, each gaining on every training; the
    # five grouped splits level on each label source (docs/benchmarks.md, issue 19).
    hidden: int = 256
    # Frozen mode: average heads trained from seeds seed..seed+n-1. Five measured
    # +0.014 micro mAP over five grouped splits (bench/quality.py), for seconds of work.
    ensemble: int = 5
    patience: int = 10
    seed: int = 0
    fine_tune: int = 0  # unfreeze this many top backbone layers (end-to-end training)
    tta: tuple[str, ...] = field(default_factory=tuple)
    # Views of each training poster that join the training rows (same labels), as TTA's
    # flipped copies do, while the model is served on the plain view: nothing at serving.
    # The mirror image: with ``hidden`` above (its figures there); the training posters are
    # embedded twice, the served model is unchanged.
    augment: tuple[str, ...] = ("flip",)
    bootstrap: int = 1000
    # Frozen mode: the head divides its features by their mean L2 norm on the training
    # posters ("none": as they come, the recipe before; bench/recipe.py pairs the two).
    feature_scale: str = "unit-norm"
    # Inner layers whose pooled outputs join the backbone's features; None: the
    # backbone's own (models.backbones.BackboneSpec.taps), () for none.
    taps: tuple[str, ...] | None = None
    # Frozen mode: the label convention (a ``label_source``) the model predicts in. Rows
    # labelled in another convention get an indicator per convention while the heads
    # train, so the genres one convention adds (AniList's Drama, Slice of Life, ...) are
    # learnt as an offset; served, the indicators are zero. None: one convention for all.
    # "mal-mapped", the independent held-out posters' convention: on the lockbox of
    # bench/transfer.py +0.017 micro AP, +0.023 P@3, genres per poster 1.17x (1.38x before).
    label_convention: str | None = "mal-mapped"

    def __post_init__(self) -> None:
        if self.resize_policy not in RESIZE_POLICIES:
            raise ValueError(f"resize policy must be one of {RESIZE_POLICIES}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}")
        if any(v not in TTA_VIEWS for v in self.tta):
            raise ValueError(f"test-time augmentation views: {TTA_VIEWS}")
        if any(v not in AUGMENT_VIEWS for v in self.augment):
            raise ValueError(f"training augmentation views: {AUGMENT_VIEWS}")
        if self.feature_scale not in FEATURE_SCALES:
            raise ValueError(f"feature scale must be one of {FEATURE_SCALES}")
        if self.ensemble < 1:
            raise ValueError("ensemble must be at least 1")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError("learning rate must be positive")
        if self.epochs < 1 or self.batch_size < 1 or self.fine_tune < 0:
            raise ValueError("epochs and batch size must be positive, fine-tune not negative")

    def lr(self, frozen: bool) -> float:
        """The learning rate a run uses: the one given, else the mode's default."""
        if self.learning_rate is not None:
            return self.learning_rate
        return HEAD_LR if frozen else END_TO_END_LR

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """The inverse of ``as_dict`` (JSON has lists where the config has tuples)."""
        d = dict(data)
        if d.get("input_size"):
            d["input_size"] = tuple(d["input_size"])
        d["tta"] = tuple(d.get("tta") or ())
        d["augment"] = tuple(d.get("augment") or ())  # models trained before it: none
        # Models trained before these existed: unscaled features, the backbone's last layer.
        d.setdefault("feature_scale", "none")
        d.setdefault("label_convention", None)
        if "taps" not in d:
            d["taps"] = ()
        elif d["taps"] is not None:
            d["taps"] = tuple(d["taps"])
        return cls(**d)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size) if self.input_size else None
        d["tta"] = list(self.tta)
        d["augment"] = list(self.augment)
        d["taps"] = list(self.taps) if self.taps is not None else None
        return d
