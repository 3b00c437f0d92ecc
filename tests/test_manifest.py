"""The typed manifest: one reader for every version of manifest.json, and the models
package's imports going one way (lazy imports in functions count)."""

from __future__ import annotations

import ast

import pytest
from anigenre.core.errors import DataError
from anigenre.models.manifest import Manifest, read_manifest

from tests.conftest import ROOT

# A manifest as the first version wrote it: no decision rule, rates, seen posters, taps,
# companion, years or prior thresholds.
OLDEST = {
    "model_id": "old",
    "created": "2025-01-01T00:00:00",
    "backbone": "mobilenet_v2_0.35",
    "weights": {"source": "imagenet", "path": None, "sha256": None},
    "genres": ["Action", "Drama"],
    "input_size": [64, 48],
    "resize_policy": "pad",
    "tta": [],
    "thresholds": {"Action": 0.3, "Drama": 0.4},
    "global_threshold": 0.35,
    "train_prevalence": {"Action": 0.5, "Drama": 0.25},
    "training": {"mode": "frozen", "epochs_run": 3, "best_epoch": 2},
    "dataset": {"fingerprint": "abc", "rows": {"train": 10}},
    "metrics_summary": {"test": {"macro_map": 0.5}},
}


def test_the_reader_gives_an_older_manifest_what_it_did_not_record():
    m = Manifest.from_json(OLDEST)
    assert m.vocabulary.genres == ("Action", "Drama") and m.input_size == (64, 48)
    assert m.decision_rule == {} and m.expected_rates == {}
    assert m.expected_genres_per_poster is None  # never guessed without rates
    assert m.train_genres_per_poster == pytest.approx(0.75)  # the prevalences' sum
    assert m.prior_thresholds is None and m.seen is None and m.seed is None
    assert m.training.taps is None and m.training.companion is None
    assert not m.dataset.years_recorded and m.weights.features is None


def test_to_json_round_trips_and_keeps_what_was_not_recorded_unrecorded():
    m = Manifest.from_json(OLDEST)
    again = Manifest.from_json(m.to_json())
    assert again == m
    assert "taps" not in m.to_json()["training"] and "years" not in m.to_json()["dataset"]


def test_weights_with_int8_features_and_a_companion_are_typed():
    weights = {
        "source": "file",
        "path": "/w/a.h5",
        "sha256": "1" * 64,
        "features": {"path": "/w/int8.tflite", "sha256": "2" * 64},
        "companion": {"source": "file", "path": "/w/b.h5", "sha256": "3" * 64},
    }
    m = Manifest.from_json({**OLDEST, "weights": weights})
    assert m.weights.features is not None and str(m.weights.features.path) == "/w/int8.tflite"
    assert m.weights.companion is not None and m.weights.companion.sha256 == "3" * 64
    assert m.to_json()["weights"] == weights


def test_a_file_without_an_id_is_no_manifest(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text('{"genres": ["Action"]}')
    with pytest.raises(DataError, match="copy the artifact again"):
        read_manifest(path)
    path.write_text("{not json")
    with pytest.raises(DataError, match=str(path)):
        read_manifest(path)


def _model_imports() -> dict[str, set[str]]:
    """models/ module -> the models/ modules it imports, at any depth."""
    graph = {}
    for path in (ROOT / "models").glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            deps |= {n.split(".")[2] for n in names if n.startswith("anigenre.models.")}
        graph[path.stem] = deps - {path.stem}
    return graph


def test_models_imports_go_one_way_even_inside_functions():
    graph = _model_imports()
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                raise AssertionError("import circle: " + " -> ".join([*stack, node, dep]))
            if dep not in state:
                visit(dep, [*stack, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
