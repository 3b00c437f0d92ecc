"""Runs: every run with its state and progress; one opened with filters, a table, a
gallery, per-genre charts, its report and downloads. Pages of rows, never all of them."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from anigenre.core.errors import AnigenreError
from anigenre.core.storage import open_store
from anigenre.jobs.runs.index import index_home, indexed_out_dir, load_plan
from anigenre.jobs.runs.layout import parts_dir_for, parts_folder
from anigenre.jobs.runs.parts import PartCounts
from anigenre.jobs.service import runs
from anigenre.jobs.service.hints import command
from anigenre.jobs.web import context
from anigenre.jobs.web import runs as data
from anigenre.jobs.web.posters import thumbnail
from anigenre.models.manifest import Manifest
from anigenre.models.synced import Registry

RUNS_PER_PAGE = 20
ROWS_PER_PAGE = 50
GALLERY_PER_PAGE = 12
GALLERY_COLUMNS = 6
THUMB_WIDTH = 150
POLL_S = 2.0


def render() -> None:
    st.title("Runs")
    s = context.settings()
    listed = _page_of_runs(s, st.session_state.get("runs_page", 1))
    if not listed.total:
        st.info(
            f"No runs recorded in {s.data_location('runs')} yet. `anigenre predict FOLDER` makes "
            "one here; the Queue page sends one to the workers."
        )
        return
    shown = runs_list(s, listed)
    ids = [e.run_id for e in shown]
    # A run named in the address (a shared link) opens wherever it is in the list.
    wanted = st.query_params.get("run")
    if wanted and wanted not in ids:
        ids.append(wanted)
    run_id = st.selectbox("Open a run", ids, key="run", bind="query-params")
    if run_id:
        run_detail(s, run_id, next((e for e in shown if e.run_id == run_id), None))


@st.cache_resource(show_spinner=False, max_entries=256)
def _counts(run_id: str) -> PartCounts:
    """Part counts remembered between polls: a poll re-reads only the parts that changed."""
    return PartCounts()


def _page_of_runs(s, page: int) -> runs.RunsPage:
    """The runs on 1-based ``page`` of the list, newest first: only those are read, so a
    page costs the same whatever the number of runs (a page past the end: the last)."""
    listed = runs.runs_page(s, RUNS_PER_PAGE, (page - 1) * RUNS_PER_PAGE)
    last = data.page_count(listed.total, RUNS_PER_PAGE)
    if page > last:  # runs were removed since the page was chosen
        listed = runs.runs_page(s, RUNS_PER_PAGE, (last - 1) * RUNS_PER_PAGE)
    return listed


def runs_list(s, listed: runs.RunsPage) -> list[runs.RunEntry]:
    """The table of one page of runs; the entries it was first drawn from."""
    pages = data.page_count(listed.total, RUNS_PER_PAGE)
    first, offset = listed.entries, listed.offset
    live = any(data.is_live(e.status) for e in first)
    unread = [first]  # the page's own read; only the fragment's polls read again

    @st.fragment(run_every=POLL_S if live else None)
    def table() -> None:
        entries = unread.pop() if unread else runs.runs(s, RUNS_PER_PAGE, offset)
        rows = [data.run_row(e, s.s3) for e in entries]
        st.dataframe(
            rows,
            hide_index=True,
            width="stretch",  # room for the note: why a run stalled or was interrupted
            column_order=data.RUN_COLUMNS,
            column_config={
                "run_id": st.column_config.TextColumn("run"),
                "progress": st.column_config.ProgressColumn(
                    "progress", min_value=0.0, max_value=1.0, format="percent"
                ),
                "model_id": st.column_config.TextColumn("model"),
            },
        )
        for row in rows:
            if row["state"] == data.UNREADABLE:
                # In full: a grid cell shows one line of a note, cut at its width.
                st.warning(row["note"], icon=":material/error:")
        if live and not any(data.is_live(e.status) for e in entries):
            st.rerun()  # a run just stopped moving: redraw the page once, then stop polling

    span = f"; {offset + 1}-{offset + len(first)} shown" if pages > 1 else ""
    st.caption(f"{listed.total} run(s), newest first" + (" (updating live)" if live else "") + span)
    table()
    if pages > 1:
        st.pagination(pages, key="runs_page")
    return first


@st.cache_resource(show_spinner=False, max_entries=4)
def _rows(_s, run_id: str, parts_dir: str, signature: tuple):
    """A run's rows with true labels, read once per version of its parts (``signature``
    changes when a part is written). Shared between sessions: never modified."""
    return data.with_labels(data.with_file(runs.table(_s, run_id)))


@st.cache_data(show_spinner=False, max_entries=512)
def _thumb(path: str, mtime_ns: int) -> bytes | None:
    try:
        return thumbnail(Path(path).read_bytes(), (180, 256))
    except OSError:
        return None


def _manifest(s, model_id: str | None) -> Manifest | None:
    try:
        return Registry(s).manifest(model_id) if model_id else None
    except (AnigenreError, OSError, ValueError):
        return None  # the model was deleted: its genres are read from the columns


def run_detail(s, run_id: str, listed: runs.RunEntry | None) -> None:
    """``listed``: the run's entry when it is on the list's page, so a complete run is
    drawn from its manifest and not from its plan (which lists every input)."""
    if listed is not None and listed.status is None:
        st.header(f"Run {run_id}")
        st.error(data.unreadable_note(listed, s.s3))
        return
    try:
        out = open_store(indexed_out_dir(index_home(s), run_id, s.s3), s.s3)
        if listed is None:
            listed = runs.RunEntry(
                run_id, None, *_about(s, str(index_home(s)), run_id), runs.status(s, run_id)
            )
    except AnigenreError as exc:
        st.error(str(exc))
        return
    status, model_id, created = listed.status, listed.model_id, listed.created
    out_dir = Path(out.path()) if out.is_local else None
    parts_dir = parts_dir_for(out_dir, run_id) if out_dir else out.uri_of(parts_folder(run_id))
    st.header(f"Run {run_id}")
    st.caption(
        f"model `{model_id}`, created {data.when(created)} ({data.age(created)}); "
        f"writes to {parts_dir}"
    )
    resume = command(s, f"jobs resume {run_id}")

    @st.fragment(run_every=POLL_S if data.is_live(status) else None)
    def progress() -> None:
        # Only a live run is read again; a finished one is drawn as the list read it.
        try:
            now = runs.status(s, run_id, _counts(run_id)) if data.is_live(status) else status
        except AnigenreError as exc:  # its folder moved or unreadable: say so, every poll
            st.error(str(exc))
            return
        st.progress(min(data.fraction(now), 1.0), text=data.progress_text(now))
        warning = data.warning_text(now, resume)
        if warning:
            st.warning(warning)
        if data.is_live(status) and not data.is_live(now):
            st.rerun()

    progress()
    if out_dir is None:
        st.info(
            "This run writes to object storage: read its rows from the bucket "
            "(pyarrow, DuckDB or Polars; see the README). The page shows the rows of "
            "runs in local folders."
        )
        return
    try:
        rows = _rows(s, run_id, str(parts_dir), data.part_signature(parts_dir))
    except AnigenreError as exc:  # a damaged part: named, and set aside for a resume
        st.error(str(exc))
        return
    if not len(rows):
        st.info("No rows written yet.")
        return
    vocab = data.genres_of(rows, _manifest(s, model_id))
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
        _downloads(s, run_id, out_dir, status, filtered)


@st.cache_data(show_spinner=False, max_entries=256)
def _about(_s, home: str, run_id: str) -> tuple[str | None, str | None]:
    """The run's model and creation time, fixed at planning: its plan is read once."""
    p = load_plan(home, run_id, _s.s3)
    return p.model_id, p.created


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


def _downloads(s, run_id, out_dir, status, filtered) -> None:
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
    elif status.complete:
        st.caption(f"No report yet ({report}).")
        if st.button("Make report.html"):
            from anigenre.jobs import stages

            with st.spinner("Writing the report..."):
                stages.report_run(s, run_id)
            st.rerun()
    else:
        st.caption("The report can be made once the run is complete.")
    st.write(f"Download the {len(filtered)} row(s) that match the filters:")
    export = filtered.drop(columns=["file"])
    formats = (
        ("Parquet", data.parquet_bytes, "parquet", "application/vnd.apache.parquet"),
        ("CSV", data.csv_bytes, "csv", "text/csv"),
    )
    for column, (label, encode, suffix, mime) in zip(st.columns(2), formats, strict=True):
        column.download_button(
            label,
            data=lambda encode=encode: encode(export),  # made only when clicked
            file_name=f"{run_id}.{suffix}",
            mime=mime,
            on_click="ignore",
            icon=":material/download:",
        )


if __name__ == "__main__":
    render()
