"""The Streamlit script ``anigenre web`` serves: page set-up, navigation, and the one place
an error becomes a line on the page instead of a traceback."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from anigenre.core.errors import AnigenreError

PAGES = Path(__file__).resolve().parent / "pages"


def main() -> None:
    st.set_page_config(page_title="anigenre", page_icon=":material/movie:", layout="wide")
    page = st.navigation(
        [
            st.Page(
                PAGES / "try_poster.py", title="Try a poster", icon=":material/image:", default=True
            ),
            st.Page(PAGES / "runs.py", title="Runs", icon=":material/table_view:"),
            st.Page(PAGES / "queue.py", title="Queue", icon=":material/queue:"),
            st.Page(PAGES / "models.py", title="Models", icon=":material/model_training:"),
        ],
        position="top",
    )
    try:
        page.run()
    except AnigenreError as exc:
        # Settings that do not load, a run index that points nowhere: one line, and the
        # other pages still work.
        st.error(f"anigenre: error: {exc}")


if __name__ == "__main__":
    main()
