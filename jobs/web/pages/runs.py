"""Runs: every run with its state and progress; one opened with filters, a table, a
gallery, per-genre charts, its report and downloads. Pages of rows, never all of them."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from anigenre.core.errors import AnigenreError
from anigenre.core.storage import open_store
from anigenre.jobs.runs.index import index_home, indexed_out_dir
from anigenre.jobs.runs.layout import parts_dir_for, parts_folder
from anigenre.jobs.runs.parts import PartCounts
from anigenre.jobs.web import context
from anigenre.jobs.web import runs as data
from anigenre.jobs.web.posters import thumbnail

RUNS_PER_PAGE = 20
ROWS_PER_PAGE = 50
GALLERY_PER_PAGE = 12
GALLERY_COLUMNS = 6
THUMB_WIDTH = 150
POLL_S = 2.0


def render() -> None:
    st.title("Runs")
    s = context.settings()
    ids = data.runs_newest_first(index_home(s), s.s3)
    if not ids:
        st.info(
            f"No runs recorded in {s.data_location('runs')} yet. `anigenre predict FOLDER` makes "
            "one here; the Queue page sends one to the workers."
        )
        return
    runs_list(s, ids)
    run_id = st.selectbox("Open a run", ids, key="run", bind="query-params")
    if run_id:
        run_detail(s, run_id)


@st.cache_resource(show_spinner=False, max_entries=256)
def _counts(run_id: str) -> PartCounts:
    """Part counts remembered between polls: a poll re-reads only the parts that changed."""
    return PartCounts()


def _summaries(s, ids: list[str]) -> list[data.RunSummary]:
    return [data.summarize_run(index_home(s), r, _counts(r), s.s3) for r in ids]


def runs_list(s, ids: list[str]) -> None:
    pages = data.page_count(len(ids), RUNS_PER_PAGE)
    page = st.session_state.get("runs_page", 1) if pages > 1 else 1
    shown = list(data.page_slice_list(ids, page, RUNS_PER_PAGE))
    first = _summaries(s, shown)
    live = any(x.live for x in first)

    @st.fragment(run_every=POLL_S if live else None)
    def table() -> None:
        summaries = _summaries(s, shown)
        st.dataframe(
            [x.as_row() for x in summaries],
            hide_index=True,
            column_order=data.RUN_COLUMNS,
            column_config={
                "run_id": st.column_config.TextColumn("run"),
                "progress": st.column_config.ProgressColumn(
                    "progress", min_value=0.0, max_value=1.0, format="percent"
                ),
                "model_id": st.column_config.TextColumn("model"),
            },
        )
        if live and not any(x.live for x in summaries):
            st.rerun()  # a run just finished: redraw the whole page once, then stop polling

    st.caption(f"{len(ids)} run(s), newest first" + (" (updating live)" if live else ""))
    table()
    if pages > 1:
        st.pagination(pages, key="runs_page")


@st.cache_resource(show_spinner=False, max_entries=4)
def _rows(parts_dir: str, signature: tuple):
    """A run's rows with true labels, read once per version of its parts (``signature``
    changes when a part is written). Shared between sessions: never modified."""
    return data.with_labels(data.load_rows(Path(parts_dir)))


@st.cache_data(show_spinner=False, max_entries=512)
def _thumb(path: str, mtime_ns: int) -> bytes | None:
    try:
        return thumbnail(Path(path).read_bytes(), (180, 256))
    except OSError:
        return None


def _manifest(data_dir: Path, model_id: str | None) -> dict | None:
    from anigenre.models.registry import load_manifest

    try:
        return load_manifest(data_dir, model_id) if model_id else None
    except (AnigenreError, OSError, ValueError):
        return None  # the model was deleted: its genres are read from the columns


def run_detail(s, run_id: str) -> None:
    try:
        out = open_store(indexed_out_dir(index_home(s), run_id, s.s3), s.s3)
    except AnigenreError as exc:
        st.error(str(exc))
        return
    out_dir = Path(out.path()) if out.is_local else None
    parts_dir = parts_dir_for(out_dir, run_id) if out_dir else out.uri_of(parts_folder(run_id))
    summary = data.summarize_run(index_home(s), run_id, _counts(run_id), s.s3)
    st.header(f"Run {run_id}")
    st.caption(
        f"model `{summary.model_id}`, created {data.when(summary.created)} "
        f"({data.age(summary.created)}); "
        f"writes to {parts_dir}"
    )

    @st.fragment(run_every=POLL_S if summary.live else None)
    def progress() -> None:
        now = data.summarize_run(index_home(s), run_id, _counts(run_id), s.s3)
        st.progress(min(now.fraction, 1.0), text=data.progress_text(now))
        if now.note:
            st.warning(now.note)
        if summary.live and not now.live:
            st.rerun()

    progress()
    if out_dir is None:
        st.info(
            "This run writes to object storage: read its rows from the bucket "
            "(pyarrow, DuckDB or Polars; see the README). The page shows the rows of "
            "runs in local folders."
        )
        return
    rows = _rows(str(parts_dir), data.part_signature(parts_dir))
    if not len(rows):
        st.info("No rows written yet.")
        return
    vocab = data.genres_of(rows, _manifest(s.data_dir, summary.model_id))
    chosen = _filters(vocab)
    filtered = data.apply_filter(rows, vocab, chosen)
    st.caption(f"{len(filtered)} of {len(rows)} row(s) match")
    table, gallery, charts, files = st.tabs(["Table", "Gallery", "Genres", "Report and downloads"])
    with table:
        _table(filtered, vocab, chosen)
    with gallery:
        _gallery(filtered, vocab)
    with charts:
        _charts(rows, vocab)
    with files:
        _downloads(s, run_id, out_dir, summary, filtered)


def _filters(vocab) -> data.RowFilter:
    a, b, c, d = st.columns([3, 2, 2, 1.4], vertical_alignment="bottom")
    genres = a.multiselect(
        "Predicted genre (passes the model's threshold)",
        vocab.genres,
        key="f_genres",
        placeholder="any genre",
    )
    low = b.slider(
        "Minimum probability",
        0.0,
        1.0,
        0.0,
        0.05,
        key="f_prob",
        help="Of the chosen genres, or of the top genre when none is chosen.",
    )
    name = c.text_input("File name contains", key="f_name")
    errors = d.checkbox("Errors only", key="f_errors")
    return data.RowFilter(tuple(genres), float(low), bool(errors), name.strip())


def _table(filtered, vocab, chosen) -> None:
    pages = data.page_count(len(filtered), ROWS_PER_PAGE)
    page = st.session_state.get("rows_page", 1)
    shown = data.page_slice(filtered, page, ROWS_PER_PAGE)
    st.dataframe(
        data.table_view(shown, vocab, chosen.genres),
        hide_index=True,
        column_config={
            "probability": st.column_config.ProgressColumn(
                "probability", min_value=0.0, max_value=1.0, format="%.2f"
            )
        },
    )
    if pages > 1:
        st.pagination(pages, key="rows_page")


def _gallery(filtered, vocab) -> None:
    ok = filtered[filtered["status"] == "ok"]
    if not len(ok):
        st.info("No predicted posters match the filters.")
        return
    pages = data.page_count(len(ok), GALLERY_PER_PAGE)
    shown = data.page_slice(ok, st.session_state.get("gallery_page", 1), GALLERY_PER_PAGE)
    columns = dict(zip(vocab.genres, vocab.columns(), strict=True))
    grid = st.columns(GALLERY_COLUMNS)
    for i, row in enumerate(shown.itertuples(index=False)):
        with grid[i % GALLERY_COLUMNS]:
            path = Path(row.path)
            try:
                thumb = _thumb(str(path), path.stat().st_mtime_ns)
            except OSError:
                thumb = None
            if thumb:
                st.image(thumb, width=THUMB_WIDTH)
            probs = ", ".join(f"{g} {getattr(row, columns[g]):.2f}" for g in row.top_genres)
            labels = getattr(row, "labels", None)
            st.markdown(
                f"**{row.file}**  \n{probs}"
                + (f"  \n*true:* {', '.join(labels)}" if isinstance(labels, list | tuple) else "")
            )
    if pages > 1:
        st.pagination(pages, key="gallery_page")


def _charts(rows, vocab) -> None:
    summary = data.genre_summary(rows, vocab)
    left, right = st.columns(2)
    with left:
        st.subheader("Posters per predicted genre")
        st.bar_chart(summary[["predicted", "ranked first"]], horizontal=True, stack=False)
    with right:
        st.subheader("Mean probability")
        st.bar_chart(summary["mean probability"], horizontal=True)
    if "average precision" in summary:
        st.subheader("Average precision against the true labels")
        st.bar_chart(summary["average precision"].dropna(), horizontal=True)
    st.dataframe(summary, width="stretch")


def _downloads(s, run_id, out_dir, summary, filtered) -> None:
    report = data.report_path(out_dir, run_id)
    if report.exists():
        st.download_button(
            "Download report.html",
            data=report.read_bytes,
            file_name=f"{run_id}-report.html",
            mime="text/html",
            on_click="ignore",
            icon=":material/description:",
        )
        st.caption(f"The run's self-contained report: {report}")
    elif summary.state == "complete":
        st.caption(f"No report yet ({report}).")
        if st.button("Make report.html"):
            from anigenre.jobs import stages

            with st.spinner("Writing the report..."):
                stages.report_run(s, run_id)
            st.rerun()
    else:
        st.caption("The report can be made once the run is complete.")
    st.write(f"Download the {len(filtered)} row(s) that match the filters:")
    a, b = st.columns(2)
    export = filtered.drop(columns=["file"])
    a.download_button(
        "Parquet",
        data=lambda: data.parquet_bytes(export),
        file_name=f"{run_id}.parquet",
        mime="application/vnd.apache.parquet",
        on_click="ignore",
        icon=":material/download:",
    )
    b.download_button(
        "CSV",
        data=lambda: data.csv_bytes(export),
        file_name=f"{run_id}.csv",
        mime="text/csv",
        on_click="ignore",
        icon=":material/download:",
    )


if __name__ == "__main__":
    render()
