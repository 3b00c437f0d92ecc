"""Queue: send a folder to the workers for prediction and watch it progress."""

from __future__ import annotations

import streamlit as st
from anigenre.core.errors import AnigenreError
from anigenre.jobs.runs.index import index_home
from anigenre.jobs.web import context
from anigenre.jobs.web import runs as data
from anigenre.jobs.web.submit import BROKER_HELP, masked_url, submit_folder

POLL_S = 1.0


def render() -> None:
    st.title("Queue")
    s = context.settings()
    if not s.broker_url:
        st.info(BROKER_HELP)
        return
    st.caption(f"Broker {masked_url(s.broker_url)}; workers take chunks from the 'predict' queue.")
    with st.form("submit"):
        folder = st.text_input(
            "Folder of posters (on this machine, or s3://bucket/prefix)", key="q_folder"
        )
        a, b, c = st.columns([3, 1, 1], vertical_alignment="bottom")
        model = a.text_input("Model", value=context.options().model, key="q_model")
        top_k = b.number_input("Top genres", 1, 10, 4, key="q_top_k")
        force = c.checkbox("Predict again", key="q_force", help="Also files already predicted ok")
        sent = st.form_submit_button("Queue for prediction", type="primary")
    if sent:
        try:
            with st.spinner("Hashing the files and queuing their chunks..."):
                done = submit_folder(s, folder, model_id=model, top_k=int(top_k), force=force)
        except AnigenreError as exc:
            st.error(str(exc))
        else:
            st.session_state["q_run"] = done.run_id
            st.success(done.describe())
    run_id = st.session_state.get("q_run")
    if run_id:
        watch(s, run_id)


def watch(s, run_id: str) -> None:
    live = data.summarize_run(index_home(s), run_id, s3=s.s3).live

    @st.fragment(run_every=POLL_S if live else None)
    def progress() -> None:
        now = data.summarize_run(index_home(s), run_id, s3=s.s3)
        st.progress(min(now.fraction, 1.0), text=f"run {run_id}: {data.progress_text(now)}")
        if now.note:
            st.warning(now.note)
        if live and not now.live:
            st.rerun()  # finished: stop polling
        if not now.live:
            st.caption("Open it on the Runs page for its rows, gallery and report.")

    progress()


if __name__ == "__main__":
    render()
