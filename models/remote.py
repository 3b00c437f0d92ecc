"""Models in an ``s3://`` data dir: the listing, and one model fetched whole and verified.

A machine that shares nothing with the trainer but the bucket (a predict worker, say)
keeps its models in the data dir's local mirror under ``ANIGENRE_CACHE_DIR``, keyed by
model id. ``sync_listing`` fetches what listing and resolving ids need: the files at the
top of ``models/`` (aliases) and each model's small files (manifest, metrics, card,
checksums), not the weights. ``fetch_model`` then fetches one model's files, each checked
against the sha256 its ``checksums.json`` records before it is written to the mirror:
a damaged or half-replaced object in the bucket is refused in one line, never loaded,
and the mirror keeps the last good copy; a copy damaged on this machine's disk is
fetched again. A model already fetched is not downloaded again
unless its objects changed in the bucket (size or mtime; see core.mirror).

With a local data dir every function here is a no-op, so callers need not ask.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from anigenre.core.errors import ConfigError
from anigenre.core.mirror import Mirror, mirror_of
from anigenre.core.seen import file_sha256
from anigenre.core.storage import Store
from anigenre.models.artifacts import (
    CHECKSUMS_FILE,
    KERAS_FILE,
    MANIFEST_FILE,
    MODELS_DIR,
    SMALL_FILES,
)
from anigenre.models.registry import read_checksums, resolve_model_id

_MODELS = MODELS_DIR.as_posix()


def sync_listing(settings) -> None:
    """Make ``list_models``/``resolve_model_id`` on the mirror see the bucket's models."""
    mirror = mirror_of(settings)
    if mirror is not None:
        _sync_listing(mirror)


def fetch_model(settings, model_id: str) -> str:
    """Resolve ``model_id`` ('latest', a prefix) against the bucket's models and make its
    artifact whole in the mirror; returns the full id. Locally: just the id, unresolved
    (the registry resolves it as before)."""
    mirror = mirror_of(settings)
    if mirror is None:
        return model_id
    _sync_listing(mirror)
    resolved = resolve_model_id(settings.data_dir, model_id)
    folder = f"{_MODELS}/{resolved}"
    sums = read_checksums(mirror.root / folder)
    expect = {f"{folder}/{name}": sha for name, sha in sums.items()}
    mirror.pull(folder, expect=expect)
    # The copy here is checked too (a process loads a model once, and hashing it costs
    # little next to loading it): one damaged on this disk is fetched again, not run.
    damaged = [
        rel
        for rel, sha in expect.items()
        if (mirror.root / rel).exists() and file_sha256(mirror.root / rel) != sha
    ]
    if damaged:
        for rel in damaged:
            (mirror.root / rel).unlink()
        mirror.pull(folder, expect=expect)
    return resolved


def push_model(settings, model_id: str) -> None:
    """Upload a model saved in the mirror; its manifest goes last, so no machine lists the
    model before every file it names is in the bucket."""
    mirror = mirror_of(settings)
    if mirror is not None:
        mirror.push(f"{_MODELS}/{model_id}", last=(MANIFEST_FILE,))


def _sync_listing(mirror: Mirror) -> None:
    files = mirror.store.list_files(_MODELS)
    if not files:
        _check_bucket(mirror.store)
    with_sums = {
        PurePosixPath(f.path).parent for f in files if PurePosixPath(f.path).name == CHECKSUMS_FILE
    }

    def listed(rel: str) -> bool:
        path = PurePosixPath(rel)
        depth = len(path.relative_to(_MODELS).parts)
        if depth == 1:
            return True  # models/_aliases.json and the like
        # Saved before checksums were kept: listing needs its weights to be there.
        legacy = path.name == KERAS_FILE and path.parent not in with_sums
        return depth == 2 and (path.name in SMALL_FILES or legacy)

    mirror.pull(_MODELS, select=listed)


def _check_bucket(store: Store) -> None:
    """A ``ConfigError`` when the data dir's bucket does not exist: listing a missing
    bucket finds nothing, as an empty data dir does, and "no models" would hide a typo
    in the bucket's name or the endpoint."""
    bucket = store.root.split("/", 1)[0]
    if not Store(store.fs, bucket, f"s3://{bucket}").exists():
        raise ConfigError(
            f"{store.uri}: no such bucket '{bucket}' (or these credentials cannot see it); "
            "check the data dir and AWS_ENDPOINT_URL, or create the bucket"
        )
