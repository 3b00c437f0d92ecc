"""The registry as front ends and stages use it: the models of a data dir wherever it
lives. Each method brings what it reads up to date from an ``s3://`` data dir first (the
listing, or one whole verified model: models.remote) and pushes what it writes, so no
caller has to remember to; with a local data dir the syncing costs nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from anigenre.core import mirror
from anigenre.models import aliases, registry
from anigenre.models.aliases import ALIASES_FILE
from anigenre.models.artifacts import MODELS_DIR
from anigenre.models.manifest import Manifest
from anigenre.models.remote import fetch_model, push_model, sync_listing


@dataclass(frozen=True)
class Card:
    text: str
    path: Path
    written: bool  # the model had no card file, and this wrote it
    where: str  # the card's location as the user knows the data dir (s3:// or a path)


class Registry:
    def __init__(self, settings):
        self._settings = settings
        self._data_dir = settings.data_dir

    def models(self) -> list[Manifest]:
        """Every model, oldest first (the newest is ``latest``)."""
        sync_listing(self._settings)
        return registry.list_models(self._data_dir)

    def listing(self) -> registry.Listing:
        """Every model, oldest first, and what is wrong with each damaged one."""
        sync_listing(self._settings)
        return registry.scan_models(self._data_dir)

    def names(self) -> dict[str, list[str]]:
        """Model id -> its aliases, as of the last :meth:`models`, :meth:`listing` or
        :meth:`resolve`."""
        return aliases.names_by_model(self._data_dir)

    def resolve(self, model: str) -> str:
        """The full id of an id, unique prefix, alias or ``latest``."""
        sync_listing(self._settings)
        return registry.resolve_model_id(self._data_dir, model)

    def manifest(self, model: str) -> Manifest:
        return registry.load_manifest(self._data_dir, self.resolve(model))

    def fetch(self, model: str) -> str:
        """Resolve ``model`` and make its whole artifact local (verified by sha256);
        its full id."""
        return registry.resolve_model_id(self._data_dir, fetch_model(self._settings, model))

    def checked(self, model: str) -> Manifest:
        """The model fetched and checked to load (a truncated file, a manifest that does
        not fit it are refused here, in one line)."""
        return registry.check_artifact(self._data_dir, self.fetch(model))

    def card(self, model: str) -> Card:
        """The model card; one missing (a model trained before cards) is written, and
        pushed beside the model."""
        text, path, written = registry.model_card(self._data_dir, self.resolve(model))
        rel = f"{MODELS_DIR.as_posix()}/{path.parent.name}"
        if written:
            mirror.push(self._settings, rel)
        return Card(text, path, written, self._settings.data_location(rel, path.name))

    def promote(self, model: str, alias: str) -> tuple[str, str | None]:
        """Point ``alias`` at ``model``; (its full id, the id the alias pointed at before).
        Refused if another machine changed the aliases since the listing: run it again."""
        model_id = self.resolve(model)
        ids = [m.model_id for m in registry.list_models(self._data_dir)]
        previous = aliases.set_alias(self._data_dir, alias, model_id, ids)
        mirror.push(self._settings, ALIASES_FILE.as_posix())
        return model_id, previous

    def demote(self, alias: str) -> str:
        """Remove ``alias``; the id it pointed at."""
        sync_listing(self._settings)
        model_id = aliases.remove_alias(self._data_dir, alias)
        mirror.push(self._settings, ALIASES_FILE.as_posix())
        return model_id

    def published(self, model_id: str) -> None:
        """A model just saved here goes to the bucket, its manifest last."""
        push_model(self._settings, model_id)
