"""What every page shares: the settings, the model the server was started with, and the
loaded model, each made once per server process (Streamlit's resource cache) rather than
once per page view or upload."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import streamlit as st
from anigenre.config import Settings
from anigenre.config.discover import discover_settings

if TYPE_CHECKING:
    from anigenre.models.poster_model import PosterModel


@dataclass(frozen=True)
class WebOptions:
    model: str = "latest"


def parse_options(argv: list[str]) -> WebOptions:
    """The script's own arguments (after ``--`` on ``streamlit run``). Everything else
    arrives as ANIGENRE_* variables, read like any other anigenre process reads them."""
    parser = argparse.ArgumentParser(prog="anigenre web", add_help=False)
    parser.add_argument("--model", default="latest")
    known, _ = parser.parse_known_args(argv)
    return WebOptions(model=known.model)


def options() -> WebOptions:
    return parse_options(sys.argv[1:])


@st.cache_resource(show_spinner=False)
def _settings(environ: tuple[tuple[str, str], ...]) -> Settings:
    return discover_settings(env=dict(environ))


def settings() -> Settings:
    """Settings from the server's environment, read as the CLI reads it: ANIGENRE_*
    (``anigenre web`` sets the data dir, config file and broker it resolved) and AWS_*
    (the S3 endpoint, region and keys: without them an s3:// data dir would be looked
    for on AWS, and mirrored under another key than the CLI's). Raises ConfigError with
    one line. The keys only reach Streamlit's cache key, never the page or a log."""
    return _settings(tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(_READ))))


_READ = ("ANIGENRE_", "AWS_")


@st.cache_resource(show_spinner=False, max_entries=2)
def _poster_model(
    _s: Settings, data_dir: str, model_id: str, engine: str, max_pixels: int
) -> PosterModel:
    # Keyed on what makes the model (Streamlit does not hash the "_s" argument).
    from anigenre.jobs.stages.predict import load_predictor
    from anigenre.models.poster_model import PosterModel

    if engine == "keras":
        keep_keras_state()
    loaded = PosterModel(load_predictor(_s, model_id, engine)).one_at_a_time()
    loaded.warm()
    return loaded


def poster_model(s: Settings, model: str) -> PosterModel:
    """The model ``model`` names (id, prefix, alias or 'latest') on the ``predict_engine``
    setting's engine, as ``anigenre.load_model`` loads it, once per server and warmed;
    'latest' is re-resolved on each call, so a newly trained model is picked up."""
    from anigenre.models.synced import Registry

    # With an s3:// data dir, the model in the local mirror, fetched once.
    model_id = Registry(s).fetch(model)
    return _poster_model(s, str(s.data_dir), model_id, s.predict_engine, s.max_image_pixels)


def keep_keras_state() -> None:
    """Stop Streamlit resetting Keras after every script run, in this process.

    Streamlit calls ``keras.backend.clear_session()`` when each run ends, for scripts
    that build a model on every run. That also empties TensorFlow's kernel cache and
    runs a full garbage collection, so the next upload re-creates every kernel of the
    cached model: measured on MobileNetV2, 1.1-1.6 s for the first prediction after a
    run against 50 ms for a second one. This server builds its models once and keeps
    them (``_poster_model``), so the reset only costs; it becomes a no-op here. Only a
    Keras-served page needs it: LiteRT keeps no Keras state, and importing Keras to
    patch it would load TensorFlow for nothing.
    """
    import keras

    keras.backend.clear_session = _kept_session


def _kept_session(free_memory: bool = True) -> None:
    """``keras.backend.clear_session`` in the page's server: nothing to clear."""


def upload_limit_mb() -> int:
    """The largest upload the server accepts, in MB (``anigenre web`` sets it)."""
    return int(st.get_option("server.maxUploadSize"))


def release_upload(file_id: str) -> None:
    """Drop an upload's bytes from Streamlit's file store once the page has what it shows.

    Streamlit keeps every uploaded file of a session in memory until the file leaves its
    uploader or the session is shut down, and a closed tab's session is only dropped
    after ``server.disconnectedSessionTTL``, never shut down: its files stayed for the
    server's life. The record stays, emptied, so the uploader still lists the file (and
    its removal still reaches the page); the page keeps a thumbnail and the genres.
    Streamlit is pinned (pyproject); tests/test_rough_edges_web.py measures the memory."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx
    from streamlit.runtime.uploaded_file_manager import UploadedFileRec

    ctx = get_script_run_ctx()
    store = ctx.uploaded_file_mgr if ctx is not None else None
    if store is None:
        return
    for rec in store.get_files(ctx.session_id, [file_id]):
        store.add_file(ctx.session_id, UploadedFileRec(rec.file_id, rec.name, rec.type, b""))
