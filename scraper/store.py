"""The raw layer on disk: media and posters tables, the run checkpoint, the scrape lock."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow.compute as pc
from anigenre.core import schemas
from anigenre.core.atomic import write_text_atomic
from anigenre.core.errors import ConfigError
from anigenre.core.tables import read_table, upsert


class RawStore:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.raw_dir = self.data_dir / "raw"
        self.media_path = self.raw_dir / "media.parquet"
        self.posters_path = self.raw_dir / "posters.parquet"
        self.checkpoint_path = self.raw_dir / "_scrape_checkpoint.json"

    def media(self):
        return read_table(self.media_path, schemas.MEDIA)

    def posters(self):
        return read_table(self.posters_path, schemas.POSTERS)

    def posters_by_id(self) -> dict[int, dict]:
        return {r["anilist_id"]: r for r in self.posters().to_pylist()}

    def upsert_media(self, rows: Sequence[dict]) -> None:
        if rows:
            upsert(self.media_path, rows, "anilist_id", schemas.MEDIA)

    def upsert_posters(self, rows: Sequence[dict]) -> None:
        if rows:
            upsert(self.posters_path, rows, "anilist_id", schemas.POSTERS)

    def watermark(self, years: tuple[int, int]) -> dt.datetime | None:
        """Newest ``updated_at`` stored for titles in ``years``; derived, not kept separately."""
        media = self.media()
        in_range = pc.and_(
            pc.greater_equal(media["year"], years[0]), pc.less_equal(media["year"], years[1])
        )
        return pc.max(media.filter(in_range)["updated_at"]).as_py()

    def load_checkpoint(self) -> dict | None:
        try:
            return json.loads(self.checkpoint_path.read_text())
        except FileNotFoundError:
            return None

    def save_checkpoint(self, checkpoint: dict) -> None:
        write_text_atomic(self.checkpoint_path, json.dumps(checkpoint, sort_keys=True))

    def clear_checkpoint(self) -> None:
        self.checkpoint_path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One scrape per data dir at a time; a second one fails fast instead of interleaving."""
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        with open(self.raw_dir / ".scrape.lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConfigError(
                    f"another scrape is running on {self.data_dir}; wait for it or use --data-dir"
                ) from None
            # Temp files left by a killed run are garbage once we hold the lock.
            for stale in self.raw_dir.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
            for stale in (self.raw_dir / "posters").glob(".*.tmp"):
                stale.unlink(missing_ok=True)
            yield
