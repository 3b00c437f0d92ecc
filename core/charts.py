"""Charts as PNG bytes. matplotlib is imported on first use: most commands draw nothing."""

from __future__ import annotations

import io

import pandas as pd


def split_counts_png(stats: pd.DataFrame, genres: list[str], title: str) -> bytes:
    """Grouped horizontal bars: positives per genre in each split (the paper's Fig. 4)."""
    import matplotlib

    matplotlib.use("Agg")  # no display; safe in workers and CI
    from matplotlib import pyplot as plt

    data = stats.loc[genres, ["train", "val", "test"]][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.38 * len(genres) + 1.2), dpi=110)
    try:
        data.plot.barh(ax=ax, width=0.8, color=["#4c72b0", "#dd8452", "#55a868"])
        ax.set_xlabel("posters with the genre")
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)
