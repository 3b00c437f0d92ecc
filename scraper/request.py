"""What a scrape is asked to do, as the queue carries it.

Apart from the scraper (requests, BeautifulSoup) so that the processes that only name a
scrape (the beat schedule in every worker's app, the dispatcher) do not import it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScrapeRequest:
    years: tuple[int, int]
    formats: tuple[str, ...] | None = None
    include_adult: bool = False
    posters: bool = True
    incremental: bool = False
    overlap_s: int = 3600

    def key(self) -> dict:
        """What makes two runs the same run, so a checkpoint is only resumed by its own kind."""
        return {
            "years": list(self.years),
            "formats": list(self.formats) if self.formats else None,
            "include_adult": self.include_adult,
            "posters": self.posters,
            "incremental": self.incremental,
        }

    def to_json(self) -> dict:
        """The request as JSON, for a queued scrape task; ``from_json`` reverses it."""
        return {**self.key(), "overlap_s": self.overlap_s}

    @classmethod
    def from_json(cls, data: dict) -> ScrapeRequest:
        formats = data.get("formats")
        return cls(
            years=(int(data["years"][0]), int(data["years"][1])),
            formats=tuple(formats) if formats else None,
            include_adult=bool(data.get("include_adult", False)),
            posters=bool(data.get("posters", True)),
            incremental=bool(data.get("incremental", False)),
            overlap_s=int(data.get("overlap_s", 3600)),
        )
