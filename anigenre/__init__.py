"""anigenre: predict an anime's genres from its poster.

The Python API (docs/python-api.md)::

    import anigenre
    model = anigenre.load_model("latest")          # id, unique prefix, alias or "latest"
    rows = model.predict(["a.jpg", pil_image, raw_bytes])
    current = anigenre.read_predictions("out")     # one row per (path, model)

Settings are found as the ``anigenre`` command finds them (``--config``/ANIGENRE_CONFIG/
./anigenre.toml, then ANIGENRE_* and AWS_*), unless ``settings=`` is given.

Importing this package is light: everything below is imported on first use (``_LAZY``),
so ``import anigenre`` loads neither TensorFlow nor Celery.

The installed package maps the repository's top-level folders: ``anigenre.config``,
``anigenre.core``, ``anigenre.scraper``, ``anigenre.models`` and ``anigenre.jobs``.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from anigenre.config import Settings
    from anigenre.models.poster_model import PosterModel

try:
    __version__ = version("anigenre")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

# Public name -> (module, attribute; None for the module itself), imported on first use.
# A new public name is one line here and one in __all__.
_LAZY: dict[str, tuple[str, str | None]] = {
    "Settings": ("anigenre.config.settings", "Settings"),
    # The CLI's lookup, not the bare loader: with no env= it reads this process's
    # environment and config file, as `anigenre` does.
    "load_settings": ("anigenre.config.discover", "discover_settings"),
    "errors": ("anigenre.core.errors", None),
    "PosterModel": ("anigenre.models.poster_model", "PosterModel"),
    "Run": ("anigenre.runs", "Run"),
    "predict": ("anigenre.runs", "predict"),
    "submit": ("anigenre.runs", "submit"),
    "train": ("anigenre.runs", "train"),
    "scrape": ("anigenre.runs", "scrape"),
}

__all__ = [
    "PosterModel",
    "Run",
    "Settings",
    "__version__",
    "errors",
    "load_model",
    "load_settings",
    "predict",
    "read_predictions",
    "scrape",
    "submit",
    "train",
]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'anigenre' has no attribute {name!r}") from None
    loaded = importlib.import_module(module)
    value = loaded if attribute is None else getattr(loaded, attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    # What a notebook's tab completion offers: the API and the subpackages, no helpers.
    subpackages = [
        k for k, v in globals().items() if getattr(v, "__name__", "") == f"{__name__}.{k}"
    ]
    return sorted({*__all__, *subpackages})


def load_model(
    model: str = "latest",
    *,
    data_dir: str | os.PathLike | None = None,
    settings: Settings | None = None,
    engine: str | None = None,
) -> PosterModel:
    """The model ``model`` names (an id, a unique id prefix, an alias such as
    ``production``, or ``latest``), loaded and ready to ``predict``.

    ``settings``: default, found as the CLI finds them. ``data_dir`` (a folder or
    ``s3://bucket/prefix``) replaces the settings' data dir. ``engine``: ``litert`` or
    ``keras`` (the reference), as ``--engine``; default the ``predict_engine`` setting.
    Raises ConfigError or DataError (``anigenre.errors``) with one line.
    """
    from anigenre.core.errors import ConfigError
    from anigenre.jobs.stages.predict import load_predictor
    from anigenre.models.engines import ENGINES
    from anigenre.models.poster_model import PosterModel

    settings = _settings(settings, data_dir)
    engine = engine or settings.predict_engine
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    return PosterModel(load_predictor(settings, model, engine))


def read_predictions(
    out: str | os.PathLike | None = None,
    *,
    history: bool = False,
    data_dir: str | os.PathLike | None = None,
    settings: Settings | None = None,
) -> pd.DataFrame:
    """The predictions in ``out`` (a folder or ``s3://bucket/prefix``; default where
    ``anigenre predict`` without ``--out`` writes: the data dir): the current answer,
    one row per (path, model), or with ``history`` every row of every run. An s3://
    ``out`` is reached with the settings' S3 options (AWS_* variables)."""
    from anigenre.jobs.runs.current import read_predictions as read

    settings = _settings(settings, data_dir)
    if out is None:
        from anigenre.jobs.runs.index import index_home

        out = index_home(settings)
    return read(out, history=history, s3=settings.s3)


def _settings(settings: Settings | None, data_dir: str | os.PathLike | None) -> Settings:
    from anigenre.config.discover import discover_settings

    if settings is None:
        return discover_settings({"data_dir": data_dir})
    if data_dir is None:
        return settings
    # Validated again, so an s3:// data dir gets its local mirror as it would from a file.
    fields = settings.model_dump(exclude={"data_dir", "data_uri", "s3"})
    return type(settings)(**fields, s3=settings.s3, data_dir=data_dir)
