"""Fault injection for the replay server, from a compact spec string.

Spec: comma-separated items, each one of
  ``5xx=P``        answer 503 with probability P (GraphQL and covers)
  ``burst=P:N``    with probability P, start a run of N consecutive 503s
  ``slow=P:S``     delay the answer by S seconds with probability P
  ``malformed=P``  GraphQL: 200 with a body that is not JSON
  ``403=P``        GraphQL: 403, as AniList answers when its API is disabled
  ``truncate=P``   covers: promise the full length, send half, close
  ``html=P``       covers: 200 with an HTML page instead of the image
  ``429=P:S``      covers: 429 with ``Retry-After: S`` seconds (default 1)
  ``KIND@ID``      always apply KIND (html, truncate, 404, 5xx) to cover ID
Example: ``5xx=0.1,slow=0.05:0.5,malformed=0.05,truncate=0.1,html=0.05,html@20996``
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

from anigenre.core.errors import ConfigError

_RANDOM = {"5xx", "burst", "slow", "malformed", "403", "truncate", "html", "429"}
_TARGETED = {"html", "truncate", "404", "5xx"}


@dataclass
class FaultPlan:
    rates: dict[str, tuple[float, float]] = field(default_factory=dict)  # kind -> (p, arg)
    targeted: dict[int, str] = field(default_factory=dict)
    seed: int = 0
    injected: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._burst_left = 0
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, spec: str | None, seed: int = 0) -> FaultPlan:
        plan = cls(seed=seed)
        for item in filter(None, (s.strip() for s in (spec or "").split(","))):
            if "@" in item:
                kind, _, ident = item.partition("@")
                if kind not in _TARGETED or not ident.isdigit():
                    raise ConfigError(f"bad fault '{item}': use KIND@ID with KIND in {_TARGETED}")
                plan.targeted[int(ident)] = kind
                continue
            kind, _, value = item.partition("=")
            if kind not in _RANDOM:
                raise ConfigError(f"unknown fault '{kind}'; known: {sorted(_RANDOM)}")
            p, _, arg = value.partition(":")
            try:
                plan.rates[kind] = (float(p), float(arg) if arg else 0.0)
            except ValueError:
                raise ConfigError(f"bad fault '{item}': expected {kind}=P[:ARG]") from None
        return plan

    def draw(self, kinds: tuple[str, ...], cover_id: int | None = None) -> tuple[str | None, float]:
        """Pick at most one fault of ``kinds`` for this request; returns (kind, arg)."""
        with self._lock:
            if cover_id is not None and cover_id in self.targeted:
                return self._count(self.targeted[cover_id]), 0.0
            if self._burst_left > 0:
                self._burst_left -= 1
                return self._count("5xx"), 0.0
            for kind in kinds:
                p, arg = self.rates.get(kind, (0.0, 0.0))
                if p and self._rng.random() < p:
                    if kind == "burst":
                        self._burst_left = max(int(arg) - 1, 0)
                        return self._count("5xx"), 0.0
                    return self._count(kind), arg
        return None, 0.0

    def _count(self, kind: str) -> str:
        self.injected[kind] = self.injected.get(kind, 0) + 1
        return kind
