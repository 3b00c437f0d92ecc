"""``anigenre models promote ID --as NAME``: aliases that ``--model NAME`` resolves, beside
``latest``, which stays the newest model."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from anigenre.jobs.cli import main
from anigenre.models.aliases import read_aliases
from anigenre.models.registry import resolve_model_id, write_checksums

from tests.synthetic import poster_folder, trained_tiny_model


@pytest.fixture(scope="module")
def two_models(tmp_path_factory, shared_dir):
    """(data dir, older id, newer id): a trained model and a copy registered after it."""
    data = tmp_path_factory.mktemp("aliases-data")
    _, old = trained_tiny_model(data, shared_dir, epochs=1)
    new = old.replace(old.split("-")[1], "29990101T000000")
    shutil.copytree(data / "models" / old, data / "models" / new)
    manifest = json.loads((data / "models" / new / "manifest.json").read_text())
    manifest.update(model_id=new, created="2999-01-01T00:00:00+00:00")
    (data / "models" / new / "manifest.json").write_text(json.dumps(manifest))
    write_checksums(data / "models" / new)  # registered as saved, not a hand edit
    return data, old, new


def cli(capsys, data, *argv) -> tuple[int, str, str]:
    code = main(["--data-dir", str(data), *argv], env={})
    out, err = capsys.readouterr()
    return code, out, err


def test_promote_points_an_alias_that_predict_resolves(two_models, capsys, tmp_path):
    data, old, new = two_models
    code, out, err = cli(capsys, data, "predict", str(tmp_path), "--model", "production")
    assert (code, err.strip()) == (
        2,
        "anigenre: error: no alias 'production'; set one with "
        "'anigenre models promote ID --as production'",
    )

    code, out, _ = cli(capsys, data, "models", "promote", old[:20])  # a unique prefix
    assert (code, out.strip()) == (0, f"production -> {old}")
    assert read_aliases(data) == {"production": old}
    assert resolve_model_id(data, "latest") == new  # latest stays the newest
    assert resolve_model_id(data, "production") == old

    posters = poster_folder(tmp_path / "in", 3, seed=7)
    code, out, err = cli(
        capsys, data, "predict", str(posters), "--model", "production", "--out", str(tmp_path)
    )
    assert code == 0, err
    rows = pd.read_parquet(tmp_path / "predictions")
    assert len(rows) == 3 and set(rows["model_id"]) == {old}

    # Moving the alias, and an alias of an alias, resolve to ids when set.
    assert cli(capsys, data, "models", "promote", "latest", "--as", "staging")[0] == 0
    code, out, _ = cli(capsys, data, "models", "promote", "staging")
    assert (code, out.strip()) == (0, f"production -> {new} (was {old})")
    assert read_aliases(data) == {"production": new, "staging": new}


def test_models_list_shows_aliases_and_latest(two_models, capsys):
    data, old, new = two_models
    assert cli(capsys, data, "models", "promote", old, "--as", "canary")[0] == 0
    code, out, _ = cli(capsys, data, "models", "list", "--json")
    listed = {m["model_id"]: m["aliases"] for m in json.loads(out)}
    assert "canary" in listed[old] and "latest" not in listed[old]
    assert listed[new][0] == "latest"
    code, out, _ = cli(capsys, data, "models", "list")
    (old_line,) = [line for line in out.splitlines() if line.startswith(old)]
    assert "canary" in old_line

    code, out, _ = cli(capsys, data, "models", "demote", "canary")
    assert code == 0 and "canary" not in read_aliases(data)
    assert resolve_model_id(data, new) == new  # the models stay


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["promote", "latest", "--as", "latest"], "always means the newest model"),
        (["promote", "latest", "--as", "Prod"], "is not a valid name"),
        (["promote", "latest", "--as", "9lives"], "is not a valid name"),
        (["promote", "latest", "--as", "custom"], "is the start of model id custom_cnn-"),
        (["promote", "nosuch"], "no single model matches 'nosuch'"),
        (["demote", "nosuch"], "no alias 'nosuch'"),
    ],
)
def test_alias_mistakes_are_one_line(two_models, capsys, argv, fragment):
    data, _, _ = two_models
    before = read_aliases(data)
    code, out, err = cli(capsys, data, "models", *argv)
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err
    assert read_aliases(data) == before  # nothing changed


def test_an_alias_whose_model_is_gone_says_so(tmp_path, two_models, capsys):
    data, old, _ = two_models
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    assert cli(capsys, copy, "models", "promote", old, "--as", "gone")[0] == 0
    shutil.rmtree(copy / "models" / old)
    code, _, err = cli(capsys, copy, "evaluate", "gone")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert f"alias 'gone' points at model {old}, which is not in" in err
    (copy / "models" / "_aliases.json").write_text("{not json")
    code, _, err = cli(capsys, copy, "models", "list")
    assert code == 1 and "cannot read" in err and len(err.strip().splitlines()) == 1
