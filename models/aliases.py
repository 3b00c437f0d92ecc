"""Model aliases: names such as ``production`` that point at one model id.

Kept in ``<data>/models/_aliases.json`` (``{"production": "<model id>"}``), replaced
atomically, so a worker resolving ``--model production`` reads the old alias or the new
one. ``latest`` is not an alias: it always means the newest model.

A name resolves after an exact model id and before an id prefix, and a name that is the
start of an existing model id is refused, so ``--model NAME`` never reads two ways.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
from collections.abc import Iterator
from pathlib import Path

from anigenre.core.atomic import write_text_atomic
from anigenre.core.errors import ConfigError, DataError, StorageError

ALIASES_FILE = Path("models") / "_aliases.json"
LOCK_FILE = Path("models") / "_aliases.lock"
NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
RESERVED = {"latest"}
DEFAULT_ALIAS = "production"


def read_aliases(data_dir: Path) -> dict[str, str]:
    """Alias -> model id; empty when none was ever set."""
    path = Path(data_dir) / ALIASES_FILE
    try:
        loaded = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise DataError(
            f"cannot read {path} ({exc}); set the aliases again with "
            "'anigenre models promote ID --as NAME'"
        ) from None
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in loaded.items()
    ):
        raise DataError(f"{path} is not a map of alias names to model ids; remove it and promote")
    return loaded


def check_name(name: str, model_ids: list[str]) -> None:
    """Refuse a name that is malformed, reserved, or could be read as a model id."""
    if name in RESERVED:
        raise ConfigError(f"'{name}' always means the newest model; choose another alias name")
    if not NAME.fullmatch(name):
        raise ConfigError(
            f"alias '{name}' is not a valid name: a lowercase letter, then up to 39 "
            "lowercase letters, digits, '-' or '_' (e.g. production)"
        )
    clash = next((i for i in model_ids if i.startswith(name)), None)
    if clash is not None:
        raise ConfigError(
            f"alias '{name}' is the start of model id {clash}, so '--model {name}' would read "
            "two ways; choose another alias name"
        )


def set_alias(data_dir: Path, name: str, model_id: str, model_ids: list[str]) -> str | None:
    """Point ``name`` at ``model_id`` (one of ``model_ids``); returns the id it pointed at."""
    check_name(name, model_ids)
    with _locked(data_dir):
        aliases = read_aliases(data_dir)
        previous = aliases.get(name)
        aliases[name] = model_id
        _write(data_dir, aliases)
    return previous


def remove_alias(data_dir: Path, name: str) -> str:
    """Forget ``name``; returns the model id it pointed at. The model itself stays."""
    with _locked(data_dir):
        aliases = read_aliases(data_dir)
        if name not in aliases:
            raise ConfigError(f"no alias '{name}'; {_known(aliases)}")
        model_id = aliases.pop(name)
        _write(data_dir, aliases)
    return model_id


def alias_target(data_dir: Path, name: str, model_ids: list[str]) -> str | None:
    """The model id alias ``name`` points at; None when ``name`` is no alias. An alias
    whose model is gone is an error, not a fall-through to an id prefix."""
    if not NAME.fullmatch(name) or name in RESERVED:
        return None  # not an alias name: no need to read the file
    target = read_aliases(data_dir).get(name)
    if target is None or target in model_ids:
        return target
    raise DataError(
        f"alias '{name}' points at model {target}, which is not in "
        f"{Path(data_dir) / 'models'}; point it at another with "
        f"'anigenre models promote ID --as {name}'"
    )


def no_match(name: str) -> str:
    """The one line for a ``--model`` that is no id, unique prefix or alias."""
    if name == DEFAULT_ALIAS:  # what the inbox and a fresh deployment ask for first
        return f"no alias '{name}'; set one with 'anigenre models promote ID --as {name}'"
    return f"no single model matches '{name}'; 'anigenre models list' shows them"


def names_by_model(data_dir: Path) -> dict[str, list[str]]:
    """Model id -> its alias names, sorted: for listings."""
    out: dict[str, list[str]] = {}
    for name, model_id in sorted(read_aliases(data_dir).items()):
        out.setdefault(model_id, []).append(name)
    return out


def _known(aliases: dict[str, str]) -> str:
    if not aliases:
        return "none is set ('anigenre models promote ID --as NAME' sets one)"
    return "known: " + ", ".join(sorted(aliases))


def _write(data_dir: Path, aliases: dict[str, str]) -> None:
    write_text_atomic(Path(data_dir) / ALIASES_FILE, json.dumps(aliases, indent=2, sort_keys=True))


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """Two promotes at once must not lose one of them (read, change, write)."""
    path = Path(data_dir) / LOCK_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise StorageError.from_os(exc, path) from exc
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
