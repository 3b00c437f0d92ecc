"""Import a labelled folder (``labels.csv`` + ``images/``) as dataset rows.

Images are copied into ``<data>/images/<sha256>.<ext>`` so the dataset does not depend
on the folder staying where it was, and no file name ever comes from a title.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from anigenre.core.atomic import write_bytes_atomic
from anigenre.core.dataset import COLUMNS
from anigenre.core.errors import DataError, InvalidImage
from anigenre.core.genres import Vocabulary
from anigenre.core.groups import group_for
from anigenre.core.images import inspect_image

REQUIRED = ("file", "genres")
IMAGE_DIR = Path("images")


@dataclass
class ImportResult:
    rows: pd.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (file, same as file)


def import_folder(folder: Path, data_dir: Path, vocab: Vocabulary, max_pixels: int) -> ImportResult:
    folder = Path(folder)
    records = read_labels(folder / "labels.csv")
    _check_genres(records, vocab)
    rows, skipped, duplicates, seen = [], [], [], {}
    for rec in records:
        name = rec["file"].strip()
        data, reason = _read_image(folder / "images", name)
        if reason is None:
            try:
                info = inspect_image(data, max_pixels)
            except InvalidImage as exc:
                reason = f"unreadable image ({exc})"
        if reason is not None:
            skipped.append((name, reason))
            continue
        genres = parse_genres(rec)
        if not genres:
            skipped.append((name, "no genres"))
            continue
        sha = hashlib.sha256(data).hexdigest()
        if sha in seen:
            duplicates.append((name, seen[sha]))
            continue
        seen[sha] = name
        rel = IMAGE_DIR / f"{sha}.{info.extension}"
        if not (data_dir / rel).exists():
            write_bytes_atomic(data_dir / rel, data)
        rows.append(
            {
                "sha256": sha,
                "path": rel.as_posix(),
                "anilist_id": _int(rec.get("anilist_id")),
                "title": rec.get("title") or None,
                "year": _int(rec.get("year")),
                "group": (rec.get("group") or "").strip()
                or group_for(rec.get("title"), f"sha:{sha[:16]}"),
                "source": "import",
                "genres": genres,
                "label_source": (rec.get("label_source") or "").strip() or None,
            }
        )
    return ImportResult(pd.DataFrame(rows, columns=list(COLUMNS)), skipped, duplicates)


def read_labels(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(
                    f"{path} lacks column(s) {', '.join(missing)}; needs {', '.join(REQUIRED)}"
                )
            return list(reader)
    except FileNotFoundError:
        raise DataError(f"{path} not found: a labelled folder has labels.csv and images/") from None


def _check_genres(records: list[dict], vocab: Vocabulary) -> None:
    unknown: dict[str, list[int]] = {}
    for line, rec in enumerate(records, start=2):
        for g in parse_genres(rec):
            if g not in vocab.genres:
                unknown.setdefault(g, []).append(line)
    if unknown:
        where = "; ".join(
            f"{g!r} on line(s) {', '.join(map(str, ls[:5]))}" for g, ls in sorted(unknown.items())
        )
        raise DataError(f"unknown genre(s): {where}. The vocabulary is: {', '.join(vocab.genres)}")


def _read_image(images: Path, name: str) -> tuple[bytes, str | None]:
    if not name or Path(name).name != name or name.startswith("."):
        return b"", "unsafe file name (must be a plain name inside images/)"
    try:
        # A link is followed only as far as images/ itself: one pointing elsewhere would
        # copy any file the importing user can read into the dataset.
        path = (images / name).resolve(strict=True)
        if not path.is_relative_to(images.resolve(strict=True)):
            return b"", "unsafe file (a link pointing outside images/)"
        return path.read_bytes(), None
    except FileNotFoundError:
        return b"", "file not found"
    except RuntimeError:  # Python 3.11's resolve() on a link loop
        return b"", "unsafe file (a link loop)"
    except OSError as exc:
        return b"", f"cannot read ({exc.strerror})"


def parse_genres(rec: dict) -> list[str]:
    return [g.strip() for g in (rec.get("genres") or "").split("|") if g.strip()]


def _int(value) -> int | None:
    try:
        return int(float(value)) if value not in (None, "") else None
    except ValueError:
        return None
