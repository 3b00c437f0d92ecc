"""Try a poster: upload posters, see each one's top genres and which pass the thresholds."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st
from anigenre.core.errors import AnigenreError, InvalidImage
from anigenre.jobs.web import context
from anigenre.jobs.web.posters import (
    ACCEPTED,
    PosterResult,
    predict_upload,
    thumbnail,
    too_large_message,
    upload_message,
)

TOP_K = 5
THUMB_WIDTH = 240  # the thumbnail's own width: sharp, and no wider on a phone


def render() -> None:
    st.title("Try a poster")
    s = context.settings()
    try:
        with st.spinner("Loading the model (once per server)..."):
            model = context.poster_model(s, context.options().model)
    except AnigenreError as exc:
        st.error(f"No model to try: {exc}")
        return
    height, width = model.input_size
    st.caption(
        f"Model `{model.model_id}` ({model.backbone}, input {height}x{width}, "
        f"engine {model.engine}). "
        f"A genre passes when its probability is at or over the model's own threshold for it."
    )
    limit = context.upload_limit_mb()
    files = st.file_uploader(
        f"Drop one or more posters here ({ACCEPTED}, up to {limit} MB each)",
        accept_multiple_files=True,
        key="posters",
    )
    k = st.slider("Genres to show per poster", 3, len(model.genres), TOP_K, key="top_k")
    # file id -> Outcome. A rerun (moving the slider, another upload) shows what was made
    # when the file arrived: its bytes are let go as soon as its thumbnail and genres are.
    done: dict[str, Outcome] = st.session_state.setdefault("predictions", {})
    current = [upload.file_id for upload in files or []]
    for stale in set(done) - set(current):  # removed from the uploader: forget it
        del done[stale]
    for upload in files or []:
        if upload.file_id not in done:
            done[upload.file_id] = _outcome(model, upload, limit)
            context.release_upload(upload.file_id)
        _show(done[upload.file_id], k)


@dataclass(frozen=True)
class Outcome:
    """What the page keeps of an upload: never the upload itself."""

    name: str
    result: PosterResult | str  # or the line saying why it was refused
    thumb: bytes | None
    model_id: str


def _outcome(model, upload, limit_mb: int) -> Outcome:
    if upload.size > limit_mb * 2**20:
        return Outcome(upload.name, too_large_message(upload.name, upload.size, limit_mb), None, "")
    result, thumb = _predict(model, upload.name, upload.getvalue())
    return Outcome(upload.name, result, thumb, model.model_id)


def _predict(model, name: str, data: bytes):
    try:
        return predict_upload(model, name, data), thumbnail(data)
    except InvalidImage as exc:
        return upload_message(name, exc), None
    except Exception as exc:  # noqa: BLE001 - any failure is one line; the page goes on
        first = (str(exc).splitlines() or [""])[0][:160]
        return f"{name} could not be read ({type(exc).__name__}: {first}).", None


def _show(outcome: Outcome, k: int) -> None:
    result, thumb, name = outcome.result, outcome.thumb, outcome.name
    with st.container(border=True):
        if not isinstance(result, PosterResult):
            st.error(result, icon=":material/block:")
            return
        left, right = st.columns([1, 3], vertical_alignment="top")
        with left:
            if thumb is not None:
                st.image(thumb, caption=name, width=THUMB_WIDTH)
            else:
                st.write(name)
        with right:
            top = result.top(k)
            st.markdown(f"**{name}**: top genres " + ", ".join(s.genre for s in top))
            for score in top:
                st.progress(min(max(score.probability, 0.0), 1.0), text=bar_text(score))
            passing = result.passing
            st.markdown(
                "**Passes the model's thresholds:** "
                + (", ".join(passing) if passing else "none (no genre reaches its threshold)")
            )
            st.caption(f"model {outcome.model_id}, {result.seconds * 1000:.0f} ms")


def bar_text(score) -> str:
    """``Action 0.62 (passes its threshold 0.41)``; three decimals where two would show
    a probability equal to a threshold it does not reach."""
    digits = 2 if f"{score.probability:.2f}" != f"{score.threshold:.2f}" else 3
    mark = "passes" if score.passes else "below"
    return (
        f"{score.genre} {score.probability:.{digits}f} "
        f"({mark} its threshold {score.threshold:.{digits}f})"
    )


if __name__ == "__main__":
    render()
