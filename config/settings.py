"""The one settings object.

Precedence, lowest to highest: field defaults, an optional TOML file, ``ANIGENRE_*``
environment variables, then explicit overrides (the CLI's flags). The environment is
passed in as a mapping so that nothing but the CLI entry point reads ``os.environ``.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from anigenre.core.errors import ConfigError
from anigenre.core.parsing import parse_year_range
from anigenre.core.storage import SCHEMES, S3Options, expand_home, is_remote, open_store
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_PREFIX = "ANIGENRE_"
DEFAULT_CONFIG_FILE = Path("anigenre.toml")


class Settings(BaseModel):
    """Everything the project can be configured with. Field name = env var suffix."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Field(
        Path("data"), description="Root of raw/, processed/, models/ ...; or s3://bucket/prefix"
    )
    # Set when the data dir is an s3:// URI: then data_dir is this URI's local mirror under
    # cache_dir (core.mirror), which every stage reads and writes, pulling from and pushing
    # to the bucket at its edges. Derived, never set directly.
    data_uri: str | None = Field(None, description="The s3:// data dir that data_dir mirrors")
    shared_dir: Path = Field(
        Path("../shared"),
        description="Read-only fixtures: recorded AniList pages, posters, weights",
    )
    # Where models fetched from an s3:// data dir are kept, keyed by the model's hash, so a
    # worker that shares no disk with the trainer downloads each model once.
    # validate_default: a default is not validated otherwise, and an unexpanded "~" here
    # made a folder named "~" in the working directory (one 'rm -rf ~' from the home).
    cache_dir: Path = Field(
        Path("~/.cache/anigenre"),
        description="Local cache of models and files from object storage",
        validate_default=True,
    )
    # Not ANIGENRE_* variables: read from the standard AWS_* ones (S3Options.from_env), so
    # MinIO, Ceph and R2 are set up as for any other S3 client.
    s3: S3Options = Field(default_factory=S3Options, exclude=True)
    anilist_url: str = Field("https://graphql.anilist.co", description="GraphQL endpoint")
    # AniList documents 90/min but has run degraded at 30/min without saying so in its
    # headers, so the safe default is the degraded figure.
    rate_limit_per_min: float = Field(30.0, gt=0, description="Request-rate ceiling")
    poster_concurrency: int = Field(8, ge=1, le=64, description="Parallel poster downloads")
    # The image CDN publishes no limit; this ceiling is shared by every download thread,
    # and a 429 from the CDN pauses them all for its Retry-After.
    poster_rate_limit_per_min: float = Field(
        6000.0, gt=0, description="Poster-request ceiling per minute, all threads together"
    )
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(30.0, gt=0)
    max_retries: int = Field(6, ge=0, description="Retries of a transient failure")
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_cap_s: float = Field(30.0, ge=0)
    incremental_overlap_s: int = Field(
        3600, ge=0, description="How far before the watermark an incremental scrape still reads"
    )
    # Pillow's own bomb limit (PIL.Image.MAX_IMAGE_PIXELS), so a 41 MP print poster passes;
    # big JPEGs are decoded at reduced scale, so memory stays small (core.images.draft_box).
    max_image_pixels: int = Field(
        89_478_485, gt=0, description="Larger images are rejected as decompression bombs"
    )
    weights_dir: Path | None = Field(
        None, description="Local ImageNet weight files; unset: <shared_dir>/weights"
    )
    include_adult: bool = Field(False, description="Adult titles and the Hentai genre")
    split_seed: int = Field(0, description="Seed of the train/val/test assignment")
    broker_url: str | None = Field(None, description="Unset: run jobs in-process")
    # Redis re-delivers an unacknowledged task only after this long, so it must exceed
    # the longest task or a slow chunk is handed to a second worker while still running.
    task_visibility_timeout_s: int = Field(3600, gt=0)
    # How often a worker sweeps for tasks whose worker died (unacked past the visibility
    # timeout). Kombu's default sweep is every ~100 s.
    broker_restore_interval_s: int = Field(30, gt=0)
    # How often predict workers look for chunks whose message the broker lost (jobs.queue.sweeper);
    # a lost chunk is re-queued on the second sweep that finds it.
    sweep_interval_s: float = Field(30.0, ge=1)
    # How often each predict worker tells Redis which messages it holds. A worker silent for
    # three beats is taken for dead; the sweep re-queues its chunks once they have looked
    # orphaned for a fourth beat, on two sweeps: with the defaults within 15 + 2 x 30 s.
    worker_heartbeat_s: float = Field(
        5.0, gt=0, description="Predict workers' heartbeat; silent 3 beats = dead"
    )
    # `jobs status` calls a queued run stalled when no chunk finished for this long.
    run_stall_after_s: float = Field(
        120.0, gt=0, description="A queued run with no part written this long is stalled"
    )
    sweep_max_resends: int = Field(
        3, ge=0, description="Re-queues of one chunk before its run is marked failed"
    )
    task_time_limit_s: int = Field(1800, gt=0, description="Hard limit per task")
    worker_max_memory_per_child_kb: int = Field(
        3_000_000, gt=0, description="Recycle a worker child above this resident size"
    )
    # Off a terminal (a pipe, a log, CI) the CLI's progress is a line this often, not a bar.
    progress_every_s: float = Field(
        5.0, ge=0, description="Seconds between the CLI's progress lines when not on a terminal"
    )
    predict_chunk_size: int = Field(64, ge=1, description="Files per prediction task")
    # LiteRT by measurement (bench/predict.py, MobileNetV2 1.0 at 320x224, two cores, 600
    # posters): 1.7x Keras in-process, 2.1x through a worker, the same top-4 on every
    # poster (probabilities within 6e-6); its workers never import TensorFlow.
    predict_engine: Literal["litert", "keras"] = Field(
        "litert", description="What runs the network when predicting: litert or keras"
    )
    schedule_incremental_scrape: str | None = Field(
        "30 4 * * *", description="Beat's crontab for the incremental scrape; unset: none"
    )
    schedule_scrape_years: str = Field("2013-2030", description="Years the scheduled scrape covers")
    # The inbox: a folder (or s3:// prefix) of posters that beat has predicted on a
    # schedule, each tick queueing only the posters with no ok row for inbox_model yet.
    inbox: str | None = Field(None, description="Posters beat predicts on a schedule; unset: none")
    # A number is seconds between ticks (Celery beat's own interval schedule): for tests and
    # for inboxes that must be answered within seconds.
    inbox_schedule: str = Field(
        "*/10 * * * *", description="Beat's crontab for the inbox, or seconds between ticks"
    )
    inbox_model: str = Field(
        "production", description="Model id or alias the inbox is predicted with"
    )
    # A string, not a Path: Path("s3://b/inbox") would be the local folder "s3:/b/inbox".
    inbox_out: str | None = Field(
        None, description="Where inbox runs and reports land; unset: <data_dir>/inbox-predictions"
    )
    # `anigenre serve` (jobs/api). A secret: its repr is '**********', so a settings object
    # printed or logged never shows it. Unset: the server binds loopback only.
    api_token: SecretStr | None = Field(
        None, description="Bearer token every HTTP API route but /healthz requires"
    )
    # Comma-separated in ANIGENRE_API_ROOTS (s3:// URIs hold no comma), a list in TOML.
    api_roots: tuple[str, ...] = Field(
        (), description="Folders or s3:// prefixes the API's runs may read and write; empty: any"
    )
    api_max_body_bytes: int = Field(
        32 * 2**20, gt=0, description="Largest HTTP API request body; larger is 413"
    )
    api_request_timeout_s: float = Field(
        120.0, gt=0, description="An HTTP API request still unanswered after this is 504"
    )

    @model_validator(mode="before")
    @classmethod
    def _remote_data_dir(cls, values: Any) -> Any:
        if not isinstance(values, dict) or values.get("data_dir") is None:
            return values
        raw = values["data_dir"]
        text = str(raw)
        if lost := _lost_slashes(text):
            raise ConfigError(f"data dir {lost}")
        if not is_remote(text):
            return values
        # open_store: the one place that knows the schemes, and says so in one line.
        store = open_store(text, values.get("s3"))
        s3 = values.get("s3") or S3Options()
        # The endpoint is part of the key: bucket "b" on MinIO is not bucket "b" on AWS.
        key = hashlib.sha256(f"{s3.endpoint_url or ''}\n{store.uri}".encode()).hexdigest()[:16]
        cache = Path(values.get("cache_dir") or cls.model_fields["cache_dir"].default)
        return {**values, "data_uri": store.uri, "data_dir": expand_home(cache) / "data" / key}

    def data_location(self, *parts: str) -> str:
        """Where a data-dir path really lives, for messages: its s3:// URI or local path."""
        if self.data_uri:
            return "/".join([self.data_uri, *parts])
        return str(self.data_dir.joinpath(*parts))

    @field_validator("data_dir", "shared_dir", "weights_dir", "cache_dir")
    @classmethod
    def _home(cls, value: Path | None) -> Path | None:
        try:
            return None if value is None else expand_home(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("data_dir")
    @classmethod
    def _a_folder(cls, value: Path) -> Path:
        # Else every command looks for models/, raw/ ... inside a file, finds none, and
        # says "no trained models" or "no runs" instead of what is wrong.
        if value.exists() and not value.is_dir():
            raise ValueError(
                f"'{value}' is a file, not a folder; give the data folder "
                "(the one holding models/, raw/, processed/ ...)"
            )
        return value

    @field_validator("schedule_scrape_years")
    @classmethod
    def _years(cls, value: str) -> str:
        # Checked here, at load time, not by beat's first tick at 04:30.
        try:
            parse_year_range(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("schedule_incremental_scrape")
    @classmethod
    def _crontab(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return check_crontab(value)

    @field_validator("inbox_schedule", mode="before")
    @classmethod
    def _inbox_schedule(cls, value: Any) -> str:
        value = str(value).strip()  # a TOML file may give the seconds as a number
        if interval_seconds(value) is not None:
            return value
        try:
            return check_crontab(value)
        except ValueError as exc:
            raise ValueError(f"{exc}; or give seconds between ticks, e.g. 30") from None

    @field_validator("api_token", mode="before")
    @classmethod
    def _token(cls, value: Any) -> Any:
        # A blank ANIGENRE_API_TOKEN= (a .env line left empty) is no token, not "".
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        return None if text is None or not str(text).strip() else value

    @field_validator("api_roots", mode="before")
    @classmethod
    def _roots(cls, value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else list(value or ())
        roots = []
        for item in (str(i).strip() for i in items):
            if not item:
                continue
            if lost := _lost_slashes(item):
                raise ValueError(lost)
            if is_remote(item) and not item.startswith(tuple(f"{s}://" for s in SCHEMES)):
                raise ValueError(f"'{item}' is neither a local folder nor an s3://bucket/prefix")
            if not is_remote(item) and not Path(item).expanduser().is_absolute():
                raise ValueError(f"'{item}' is relative; give each root as an absolute path")
            roots.append(item)
        return tuple(roots)

    @field_validator("inbox", "inbox_out", mode="before")
    @classmethod
    def _inbox(cls, value: Any) -> str | None:
        if value is None or not str(value).strip():
            return None
        # A Path given in code is checked as its text; the planner takes local folders
        # as paths, so file:// goes.
        value = str(value).removeprefix("file://")
        if lost := _lost_slashes(value):
            raise ValueError(lost)
        if is_remote(value) and not value.startswith(tuple(f"{s}://" for s in SCHEMES)):
            raise ValueError(f"'{value}' is neither a local folder nor an s3://bucket/prefix")
        if is_remote(value):
            return value
        try:
            return str(expand_home(Path(value)))
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    def inbox_out_dir(self) -> Path | str:
        """Where inbox runs land: a local Path, or an s3:// URI. By default beside the runs
        index (``index_home``): in the bucket when the data dir is one, never in the local
        mirror of whichever worker ran the tick, so every machine reaches the runs."""
        if self.inbox_out:
            return self.inbox_out if is_remote(self.inbox_out) else Path(self.inbox_out)
        if self.data_uri:
            return self.data_location("inbox-predictions")
        return self.data_dir / "inbox-predictions"


def _lost_slashes(text: str) -> str | None:
    """Why ``text`` is refused when it is a URI already folded into a local path
    (``Path("s3://b/p")`` is ``s3:/b/p``); None when it is not one."""
    head = Path(text).parts[0] if Path(text).parts else ""
    if not is_remote(text) and len(head) > 2 and head.endswith(":") and head[:-1].isalnum():
        return (
            f"'{text}' looks like a URI with its '//' lost; "
            f"write {head}//bucket/prefix, or ./{text} for a local folder"
        )
    return None


def check_crontab(value: str) -> str:
    """``value`` if it is a five-field crontab beat can run, else a ValueError saying why."""
    fields = value.split()
    if len(fields) != 5:
        raise ValueError(
            f"'{value}' is not a crontab: write five fields, minute hour day month weekday,"
            " e.g. '30 4 * * *'"
        )
    # celery.schedules is Celery's pure crontab parser (no app, no broker): the same
    # code beat will run, so what passes here cannot fail there.
    from celery.schedules import crontab_parser

    limits = ((60, 0), (24, 0), (31, 1), (12, 1), (7, 0))
    try:
        for text, (size, first) in zip(fields, limits, strict=True):
            crontab_parser(size, first).parse(text)
    except Exception as exc:  # celery raises ParseException and ValueError
        raise ValueError(f"'{value}' is not a valid crontab ({exc})") from None
    return value


def interval_seconds(value: str) -> float | None:
    """The seconds a schedule given as a plain number means; None for anything else (a
    crontab). A number that is not a positive, finite count of seconds is a ValueError."""
    try:
        seconds = float(value)
    except ValueError:
        return None
    if not 0 < seconds < float("inf"):
        raise ValueError(f"'{value}' is no interval: give seconds between ticks above 0")
    return seconds


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Merge every source into a validated Settings, or raise ConfigError with one clear line."""
    env = env or {}
    path = config_file or (
        Path(env[f"{ENV_PREFIX}CONFIG"]) if f"{ENV_PREFIX}CONFIG" in env else None
    )
    layers: dict[str, Any] = {}
    layers.update(_read_toml(path))
    layers.update(_from_env(env))
    layers["s3"] = S3Options.from_env(env)
    layers.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings(**layers)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        where = f"env {ENV_PREFIX}{field.upper()}"
        raise ConfigError(f"setting '{field}' ({where}): {message}") from None


# Filled from AWS_* only, never from ANIGENRE_* or the TOML file.
_NOT_SETTABLE = {"s3", "data_uri"}


def _from_env(env: Mapping[str, str]) -> dict[str, str]:
    known = set(Settings.model_fields) - _NOT_SETTABLE
    out = {}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or key == f"{ENV_PREFIX}CONFIG":
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name not in known:
            raise ConfigError(f"unknown environment variable {key}; known: {_env_names()}")
        out[name] = value
    return out


def _read_toml(path: Path | None) -> dict[str, Any]:
    if path is None:
        if not DEFAULT_CONFIG_FILE.exists():
            return {}
        path = DEFAULT_CONFIG_FILE
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    section = data.get("anigenre", data)
    unknown = set(section) - (set(Settings.model_fields) - _NOT_SETTABLE)
    if unknown:
        raise ConfigError(f"config file {path}: unknown keys {sorted(unknown)}")
    return section


def _env_names() -> str:
    names = [n for n in Settings.model_fields if n not in _NOT_SETTABLE]
    return ", ".join(ENV_PREFIX + n.upper() for n in names)
