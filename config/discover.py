"""Settings found as the ``anigenre`` command finds them, for every caller that is one.

The CLI and the Python API both call :func:`discover_settings`, so a notebook sees the
data dir, config file and object store that ``anigenre`` run in the same shell sees.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from anigenre.config.settings import Settings, load_settings


def discover_settings(
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | os.PathLike | None = None,
) -> Settings:
    """:func:`load_settings` with this process's environment when ``env`` is None.

    Sources, lowest first: defaults, the config file (``config_file``, else
    ``ANIGENRE_CONFIG``, else ``./anigenre.toml`` if present), ``ANIGENRE_*`` and ``AWS_*``
    variables, then ``overrides`` (None values are ignored). ``env={}`` reads no
    environment at all. Raises ConfigError with one line.
    """
    # The one reader of os.environ below the entry points: load_settings itself takes the
    # environment as an argument, where leaving it out silently meant defaults.
    return load_settings(
        overrides,
        env=os.environ if env is None else env,
        config_file=Path(config_file) if config_file else None,
    )
