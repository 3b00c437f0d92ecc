"""The poster page and run browser: a Streamlit front end, like the CLI a user of the
stages, runs and registry. ``app.py`` is the script ``anigenre web`` serves; ``pages/``
holds one module per page; the other modules are plain functions testable without a
browser or a Streamlit server."""
