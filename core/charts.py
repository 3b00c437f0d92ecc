"""Charts as PNG bytes. matplotlib is imported on first use: most commands draw nothing."""

from __future__ import annotations

import io

import pandas as pd

SPLIT_COLOURS = ["#4c72b0", "#dd8452", "#55a868"]


def barh_png(data: pd.DataFrame, title: str, xlabel: str, colours=None) -> bytes:
    """Horizontal bars, one group per row of ``data`` (top row at the top), one bar per column."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.38 * len(data) + 1.2), dpi=110)
    try:
        data[::-1].plot.barh(ax=ax, width=0.8, color=colours, legend=len(data.columns) > 1)
        ax.set_ylabel("")
        _finish(ax, title, xlabel)
        return _png(fig)
    finally:
        plt.close(fig)


def histogram_png(counts: pd.Series, title: str, xlabel: str) -> bytes:
    """Vertical bars of pre-binned counts (index = bin labels)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=110)
    try:
        counts.plot.bar(ax=ax, color="#4c72b0", width=0.9)
        ax.set_ylabel("posters")
        ax.tick_params(axis="x", labelrotation=0)
        _finish(ax, title, xlabel)
        return _png(fig)
    finally:
        plt.close(fig)


def split_counts_png(stats: pd.DataFrame, genres: list[str], title: str) -> bytes:
    """Positives per genre in each split (the paper's Fig. 4)."""
    data = stats.loc[genres, ["train", "val", "test"]].astype(int)
    return barh_png(data, title, "posters with the genre", SPLIT_COLOURS)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display; safe in workers and CI
    from matplotlib import pyplot as plt

    return plt


def _finish(ax, title: str, xlabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    ax.figure.tight_layout()


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
