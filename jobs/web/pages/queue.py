"""Queue: send a folder to the workers for prediction and watch it progress; the scrape
and train tasks submitted from this data dir, with their states."""

from __future__ import annotations

import streamlit as st
from anigenre.core.errors import AnigenreError
from anigenre.core.urls import masked_url
from anigenre.jobs.service import runs, tasks
from anigenre.jobs.service.hints import command
from anigenre.jobs.service.wiring import dispatcher_for
from anigenre.jobs.web import context
from anigenre.jobs.web import runs as data
from anigenre.jobs.web.submit import BROKER_HELP, folder_location, output_location

POLL_S = 1.0
TASK_COLUMNS = ["id", "name", "queue", "submitted", "state", "error"]


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
        out = st.text_input(
            "Output folder (on this machine, or s3://bucket/prefix)",
            key="q_out",
            placeholder=f"the data dir, {s.data_uri or s.data_dir}",
            help="Where the run writes its rows; left empty, the data dir.",
        )
        a, b, c = st.columns([3, 1, 1], vertical_alignment="bottom")
        model = a.text_input("Model", value=context.options().model, key="q_model")
        top_k = b.number_input("Top genres", 1, 10, 4, key="q_top_k")
        force = c.checkbox("Predict again", key="q_force", help="Also files already predicted ok")
        sent = st.form_submit_button("Queue for prediction", type="primary")
    if sent:
        submit(s, folder, out, model, int(top_k), force)
    run_id = st.session_state.get("q_run")
    if run_id:
        watch(s, run_id)
    task_list(s)


def submit(s, folder: str, out: str, model: str, top_k: int, force: bool) -> None:
    try:
        where = folder_location(folder)
        to = output_location(out)
        dispatcher = dispatcher_for(s)  # checks the broker answers before files are hashed
        with st.spinner("Hashing the files and queuing their chunks..."):
            done = runs.submit(
                s, [where], dispatcher, model=model, top_k=top_k, force=force, out=to
            )
    except AnigenreError as exc:
        st.error(str(exc))
        return
    if done.run_id is None:
        p = done.plan
        st.info(
            f"Nothing new to predict in {where}: {p.already_predicted} file(s) already "
            "predicted ok (tick 'Predict again' to redo them), "
            f"{sum(p.in_live_runs.values())} left to runs still predicting them."
        )
        return
    st.session_state["q_run"] = done.run_id
    st.success(done.describe())


def watch(s, run_id: str) -> None:
    live = data.is_live(runs.status(s, run_id))
    resume = command(s, f"jobs resume {run_id}")

    @st.fragment(run_every=POLL_S if live else None)
    def progress() -> None:
        try:
            now = runs.status(s, run_id)
        except AnigenreError as exc:  # its folder moved or unreadable: say so, every poll
            st.error(str(exc))
            return
        st.progress(min(data.fraction(now), 1.0), text=f"run {run_id}: {data.progress_text(now)}")
        warning = data.warning_text(now, resume)
        if warning:
            st.warning(warning)
        if live and not data.is_live(now):
            st.rerun()  # stopped moving: stop polling
        if not data.is_live(now):
            st.caption("Open it on the Runs page for its rows, gallery and report.")

    progress()


def task_list(s) -> None:
    """Recorded tasks; the broker is asked for their states only when there are some."""
    views = tasks.task_views(s, None)
    if not views:
        return
    try:
        views = tasks.task_views(s, dispatcher_for(s))
    except AnigenreError as exc:
        st.warning(f"Task states unknown: {exc}")
    st.subheader("Tasks")
    st.caption(f"{len(views)} scrape or train task(s) submitted from this data dir, oldest first")
    st.dataframe(
        [
            {**{k: v.get(k, "") for k in TASK_COLUMNS}, "submitted": data.when(v["submitted"])}
            for v in views
        ],
        hide_index=True,
        column_order=TASK_COLUMNS,
    )


if __name__ == "__main__":
    render()
