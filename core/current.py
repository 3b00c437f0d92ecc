"""The current view of a predictions table: one row per (path, model_id). Pure.

The predictions folder keeps every run's rows (a ``--force`` re-run, two runs at once, a
poster whose bytes changed at the same path each add rows), so a file can have several.
The current answer for a file and a model is its newest ``ok`` row, else its newest
``error`` row: a poster that fails to decode today keeps yesterday's prediction rather
than losing it. "Newest" is ``predicted_at``; on a tie, the larger ``run_id``, which
sorts by creation time (``jobs.runs.plan.run_id_at``).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

KEY = ("path", "model_id")

# Which row of a key wins: the first under this order. Nulls sort last, so a row with no
# predicted_at counts as the oldest.
_PREFERENCE = [
    ("path", "ascending", "at_end"),
    ("model_id", "ascending", "at_end"),
    ("_ok", "descending", "at_end"),
    ("predicted_at", "descending", "at_end"),
    ("run_id", "descending", "at_end"),
]


def current_rows(table: pa.Table) -> pa.Table:
    """One row per (path, model_id) of ``table`` (predictions rows with ``run_id``): the
    newest ok row, else the newest error row. Same columns in the same order; rows sorted
    by path, then model_id."""
    ok = pc.fill_null(pc.equal(table.column("status"), "ok"), False)
    keys = pa.table(
        {
            "path": _plain(table.column("path")),
            "model_id": _plain(table.column("model_id")),
            "_ok": ok,
            "predicted_at": table.column("predicted_at"),
            "run_id": _plain(table.column("run_id")),
        }
    )
    # Arrow's sort is stable, so rows equal on every key keep their input order.
    order = pc.sort_indices(keys, sort_keys=_PREFERENCE)
    return table.take(order).filter(_first_of_each_key(keys.take(order)))


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """``column`` with dictionary encoding undone: Arrow cannot sort by a dictionary
    column, and ``pq.read_table`` of the folder reads ``run_id`` as one."""
    if pa.types.is_dictionary(column.type):
        return column.cast(column.type.value_type)
    return column


def _first_of_each_key(sorted_keys: pa.Table) -> pa.Array:
    """True where a row's (path, model_id) differs from the row before it."""
    n = sorted_keys.num_rows
    first = np.zeros(n, dtype=bool)
    if n:
        first[0] = True
        for name in KEY:
            column = sorted_keys.column(name).combine_chunks()
            this, before = column[1:], column[:-1]
            # A null key (the schema forbids one) is a value of its own, not "unknown".
            differs = pc.coalesce(
                pc.not_equal(this, before), pc.xor(pc.is_null(this), pc.is_null(before))
            )
            first[1:] |= differs.to_numpy(zero_copy_only=False)
    return pa.array(first)
