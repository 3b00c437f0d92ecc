"""What every page shares: the settings, the model the server was started with, and the
loaded model, each made once per server process (Streamlit's resource cache) rather than
once per page view or upload."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

import streamlit as st
from anigenre.config import Settings, load_settings


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
    return load_settings(env=dict(environ))


def settings() -> Settings:
    """Settings from the server's environment, read as the CLI reads it: ANIGENRE_*
    (``anigenre web`` sets the data dir, config file and broker it resolved) and AWS_*
    (the S3 endpoint, region and keys: without them an s3:// data dir would be looked
    for on AWS, and mirrored under another key than the CLI's). Raises ConfigError with
    one line. The keys only reach Streamlit's cache key, never the page or a log."""
    return _settings(tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(_READ))))


_READ = ("ANIGENRE_", "AWS_")


@st.cache_resource(show_spinner=False, max_entries=2)
def _poster_model(data_dir: str, model_id: str, max_pixels: int):
    from anigenre.jobs.web.posters import PosterModel
    from anigenre.models.predictor import Predictor
    from anigenre.models.registry import load_artifact

    keep_keras_state()
    model, manifest = load_artifact(data_dir, model_id)
    loaded = PosterModel(Predictor(model, manifest, max_pixels, batch_size=1))
    loaded.warm()
    return loaded


def poster_model(s: Settings, model: str):
    """The model ``model`` names (id, prefix or 'latest'), loaded and warmed once per
    server; 'latest' is re-resolved on each call, so a newly trained model is picked up."""
    from anigenre.models.registry import resolve_model_id
    from anigenre.models.remote import fetch_model

    # fetch_model: with an s3:// data dir, the model in the local mirror, fetched once.
    model_id = resolve_model_id(s.data_dir, fetch_model(s, model))
    return _poster_model(str(s.data_dir), model_id, s.max_image_pixels)


def keep_keras_state() -> None:
    """Stop Streamlit resetting Keras after every script run, in this process.

    Streamlit calls ``keras.backend.clear_session()`` when each run ends, for scripts
    that build a model on every run. That also empties TensorFlow's kernel cache and
    runs a full garbage collection, so the next upload re-creates every kernel of the
    cached model: measured on MobileNetV2, 1.1-1.6 s for the first prediction after a
    run against 50 ms for a second one. This server builds its models once and keeps
    them (``_poster_model``), so the reset only costs; it becomes a no-op here.
    """
    import keras

    keras.backend.clear_session = _kept_session


def _kept_session(free_memory: bool = True) -> None:
    """``keras.backend.clear_session`` in the page's server: nothing to clear."""
