"""Frozen-backbone embeddings, computed once per (backbone + weights, preprocessing, image).

Layout: ``<data>/features/<key>/meta.json`` names what the key stands for, and
``part-<n>.parquet`` files (sha256, features) are only ever added, atomically, so a
crash mid-way loses at most the part being written and never corrupts the cache.
Invalidation is by key: other weights, size, resize policy, view or engine give another
folder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from anigenre.core.atomic import write_text_atomic
from anigenre.core.tables import write_table

_SCHEMA = pa.schema([("sha256", pa.string()), ("features", pa.list_(pa.float32()))])


def cache_key(
    backbone: str,
    weights_id: str,
    size: tuple[int, int],
    policy: str,
    view: str,
    engine: str = "keras",
) -> dict:
    key = {
        "backbone": backbone,
        "weights": weights_id,
        "size": list(size),
        "policy": policy,
        "view": view,  # "plain" or "flip": a test-time augmentation is its own embedding
    }
    # Engines give (slightly) different numbers for the same image. Keras's features keep
    # the key they had before engines existed, so caches made then stay valid.
    if engine != "keras":
        key["engine"] = engine
    return key


class FeatureCache:
    def __init__(self, root: Path, key: dict) -> None:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        self.dir = Path(root) / digest
        self.key = key

    def load(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for part in sorted(self.dir.glob("part-*.parquet")):
            table = pq.read_table(part, schema=_SCHEMA)
            feats = table["features"].combine_chunks()
            matrix = feats.values.to_numpy().reshape(len(table), -1) if len(table) else None
            for i, sha in enumerate(table["sha256"].to_pylist()):
                out[sha] = matrix[i]
        return out

    def get_or_compute(
        self,
        shas: Sequence[str],
        compute: Callable[[list[str]], np.ndarray],
    ) -> tuple[np.ndarray, int]:
        """Features for ``shas`` in order; ``compute`` gets only the missing ones.

        Returns the matrix and how many rows had to be computed.
        """
        have = self.load()
        missing = list(dict.fromkeys(s for s in shas if s not in have))
        if missing:
            fresh = np.asarray(compute(missing), dtype=np.float32)
            self._append(missing, fresh)
            have.update(zip(missing, fresh, strict=True))
        return np.stack([have[s] for s in shas]).astype(np.float32), len(missing)

    def _append(self, shas: list[str], features: np.ndarray) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.dir / "meta.json", json.dumps(self.key, indent=2, sort_keys=True))
        # Named by content, so two writers of the same rows write the same file.
        name = hashlib.sha256("\n".join(shas).encode()).hexdigest()[:16]
        table = pa.table(
            {"sha256": shas, "features": pa.array(list(features), type=pa.list_(pa.float32()))},
            schema=_SCHEMA,
        )
        write_table(self.dir / f"part-{name}.parquet", table)
