"""The poster page and run browser: a Streamlit front end, like the CLI a user of the
stages, runs and registry. ``app.py`` is the script ``anigenre web`` serves; ``pages/``
holds one module per page; the other modules are plain functions testable without a
browser or a Streamlit server."""

from pathlib import Path

# Streamlit serves a script by its file path; named here, beside it, so a move of the
# script moves its one name (no Streamlit import: ``anigenre web`` reads this first).
APP_SCRIPT = Path(__file__).resolve().parent / "app.py"
