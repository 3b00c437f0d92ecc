"""anigenre: predict an anime's genres from its poster.

The installed package maps the repository's top-level folders: ``anigenre.config``,
``anigenre.core``, ``anigenre.scraper``, ``anigenre.models`` and ``anigenre.jobs``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("anigenre")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
