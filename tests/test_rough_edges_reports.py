"""Issue 18, items 11-14: reports and tables that say what they mean. Labels found for
posters wherever they were copied (and a missing labels file refused), shift flags only
where a test with that many posters can tell, intervals that suit small sets, a gallery
that marks what passed and what is true, and a per-poster list with its header."""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from anigenre.core import metrics as m
from anigenre.core.run_summary import SHIFT_ALPHA, decision_rows, shift_p_values
from anigenre.jobs.cli.predict_cmd import format_top_k

from tests.procs import run_cli
from tests.synthetic import labelled_folder, trained_tiny_model
from tests.test_trust import GENRES, manifest_of, run_summary

# --- item 14: the per-poster list says what it shows -----------------------------------


def test_per_poster_list_has_a_header_and_shows_the_predicted_genres():
    rows = pd.DataFrame(
        {
            "path": ["/in/a.png", "/in/b.png", "/in/bad.jpg"],
            "status": ["ok", "ok", "error"],
            "top_genres": [["Action", "Drama", "Comedy", "Horror"]] * 2 + [[]],
            "predicted": [["Action"], [], []],
            "error": [None, None, "corrupt: cut off"],
        }
    )
    header, *lines = format_top_k(rows).splitlines()
    assert "predicted" in header and "top 4" in header
    at = header.index("predicted")
    top = header.index("top 4")
    assert lines[0][at:top].strip() == "Action"  # the one genre that passed, not four
    assert lines[0][top:].strip() == "Action, Drama, Comedy, Horror"
    assert lines[1][at:top].strip() == "none"  # nothing passed its threshold
    assert lines[2][at:].strip() == "error: corrupt: cut off"


# --- item 12: shift flags a test can back, intervals that suit small sets --------------


def test_on_21_posters_only_a_shift_a_test_can_tell_is_flagged():
    # Horror: none of 21 against 0.17 expected (what the issue saw flagged): 0.83^21 = 2%
    # by chance, and one of four genres tested. Action: 21 of 21 against 0.2 expected.
    predicted = [["Action"]] * 21
    manifest = manifest_of(
        thresholds=dict.fromkeys(GENRES, 0.5),
        expected_rates={"Action": 0.2, "Drama": 0.05, "Comedy": 0.1, "Horror": 0.17},
        train_prevalence=dict.fromkeys(GENRES, 0.2),
    )
    table = decision_rows(manifest, run_summary(predicted), GENRES)
    per_genre = table[table.section == "decision"].set_index("name")
    assert per_genre["flagged"].to_dict() == {
        "Action": True, "Drama": False, "Comedy": False, "Horror": False
    }  # fmt: skip
    assert per_genre.loc["Horror", "p_value"] > SHIFT_ALPHA
    assert per_genre.loc["Action", "p_value"] < 1e-6
    mean = table[table.section == "genres_per_poster"].iloc[0]
    assert pd.isna(mean["flagged"])  # a mean of counts: no exact test, so no verdict


def test_shift_p_values_match_scipys_exact_tests_then_holm():
    stats = pytest.importorskip("scipy.stats")
    # (observed, posters, expected rate, validation posters or None)
    cases = [(0, 21, 0.17, None), (9, 21, 0.2, None), (3, 40, 0.1, 100), (30, 40, 0.3, 90)]
    raw = [
        stats.binomtest(k, n, p).pvalue
        if n_val is None
        else stats.fisher_exact([[k, n - k], [round(p * n_val), n_val - round(p * n_val)]])[1]
        for k, n, p, n_val in cases
    ]
    order = np.argsort(raw)
    holm = np.empty(len(raw))
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (len(raw) - i) * raw[j]))
        holm[j] = running
    got = shift_p_values([c[0] for c in cases], [c[1] for c in cases],
                         [c[2] for c in cases], [c[3] for c in cases])  # fmt: skip
    assert got == pytest.approx(holm.tolist(), rel=1e-6)


def test_intervals_are_bca_and_none_below_the_minimum():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(4)
    x = rng.exponential(1.0, 40)  # skewed: where percentile and BCa differ
    mean = {"mean": lambda P, Y, t: float(P[:, 0].mean())}
    P, Y = x[:, None], np.zeros((40, 1), dtype=int)
    lo, hi = m.bootstrap_ci(P, Y, np.zeros(1), n_boot=4000, seed=1, metrics=mean)["mean"]
    ref = stats.bootstrap((x,), np.mean, method="BCa", n_resamples=4000, random_state=1)
    assert (lo, hi) == pytest.approx(
        (ref.confidence_interval.low, ref.confidence_interval.high), abs=0.03
    )
    few = m.MIN_INTERVAL_POSTERS - 1
    assert m.bootstrap_ci(P[:few], Y[:few], np.zeros(1), n_boot=200, metrics=mean) == {}


def test_a_small_sets_interval_never_sits_above_its_own_figure():
    """The issue's 'macro mAP 0.417 [0.415, 0.700]': resamples of few posters score higher
    than the posters do (repeated posters, rare genres left out), so the percentile
    interval of an uninformative model on 24 posters was [0.147, 0.268] around 0.146.
    BCa corrects by that bias; where even it cannot place the interval, none is given."""
    rng = np.random.default_rng(14)
    n, g = 24, 18
    Y = (rng.random((n, g)) < rng.uniform(0.02, 0.2, g)).astype(int)
    P = rng.random((n, g))
    t = np.full(g, 0.5)
    cis = m.bootstrap_ci(P, Y, t, n_boot=1000, seed=0)
    for name, (lo, hi) in cis.items():
        point = m.HEADLINE[name](P, Y, t)
        assert lo < point < hi, (name, lo, point, hi)
    assert "macro_map" not in cis

    # 60 posters of a model that learnt something: an interval, around its figure.
    rng = np.random.default_rng(3)
    n = 60
    Y = (rng.random((n, g)) < rng.uniform(0.03, 0.4, g)).astype(int)
    P = np.clip(0.3 * Y + rng.random((n, g)) * 0.7, 0, 1)
    lo, hi = m.bootstrap_ci(P, Y, t, n_boot=1000, seed=0)["macro_map"]
    assert lo < m.HEADLINE["macro_map"](P, Y, t) < hi


# --- item 13: the gallery --------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_dir):
    return trained_tiny_model(tmp_path_factory.mktemp("reports-data"), shared_dir, epochs=1)


def labelled_copy(tmp_path: Path, n: int) -> tuple[Path, Path]:
    """A labelled folder (labels.csv + images/) and a copy of its posters elsewhere: the
    first half under their own names, the rest renamed."""
    source = tmp_path / "labelled"
    labelled_folder(source, n, seed=900, other="Drama")
    copied = tmp_path / "elsewhere" / "inbox"
    copied.mkdir(parents=True)
    for i, image in enumerate(sorted((source / "images").iterdir())):
        name = image.name if i < n // 2 else f"renamed-{i}{image.suffix}"
        shutil.copy(image, copied / name)
    return source, copied


def _env(settings) -> dict:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("ANIGENRE_")},
        "ANIGENRE_DATA_DIR": str(settings.data_dir),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


def test_report_labels_posters_copied_elsewhere_and_refuses_a_missing_file(trained, tmp_path):
    from anigenre.jobs import stages

    settings, model_id = trained
    source, copied = labelled_copy(tmp_path, 30)
    plan = stages.plan_prediction(settings, [copied], model_id=model_id, out_dir=tmp_path / "o")
    stages.predict_in_process(settings, plan)
    env = _env(settings)

    missing = run_cli("report", plan.run_id, "--labels", str(tmp_path / "nope.csv"), env=env)
    assert missing.returncode != 0
    assert missing.stderr.strip().count("\n") == 0 and "nope.csv" in missing.stderr
    assert "Traceback" not in missing.stderr

    labels = str(source / "labels.csv")
    text = run_cli("report", plan.run_id, "--labels", labels, env=env, timeout=300)
    assert text.returncode == 0, text.stderr[-2000:]
    assert "30 of 30 posters labelled" in text.stdout

    out = run_cli("report", plan.run_id, "--labels", labels, "--json", env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)  # one object, nothing else on stdout
    assert report["labelled"] == 30 and report["posters"] == 30 and report["ok"] == 30
    for key in ("macro_map", "micro_ap", "p_at_3"):
        assert 0.0 <= report[key] <= 1.0, key

    # A labelled folder of other posters under the same names (x0.png, ...): other bytes,
    # so other posters; none is labelled, and the report says so.
    other = tmp_path / "other"
    labelled_folder(other, 30, seed=5000, other="Drama")
    none = run_cli("report", plan.run_id, "--labels", str(other / "labels.csv"), env=env)
    assert none.returncode == 0 and "0 of 30 posters labelled" in none.stdout
    # The same labels.csv on its own (no images beside it to compare): by file name.
    alone = tmp_path / "alone.csv"
    shutil.copy(other / "labels.csv", alone)
    named = run_cli("report", plan.run_id, "--labels", str(alone), env=env)
    assert named.returncode == 0 and "15 of 30 posters labelled" in named.stdout


def test_a_renamed_copy_is_labelled_by_its_bytes_not_by_a_name_another_poster_has(tmp_path):
    from anigenre.jobs.runs.reports import find_labels

    source = tmp_path / "labelled"
    labelled_folder(source, 2, seed=900, other="Drama")
    records = list(csv.DictReader((source / "labels.csv").open()))
    a, b = (source / "images" / r["file"] for r in records)
    elsewhere = tmp_path / "x"
    elsewhere.mkdir()
    shutil.copy(a, elsewhere / b.name)  # a's bytes under b's name
    import hashlib

    sha = hashlib.sha256(a.read_bytes()).hexdigest()
    found = find_labels([str(elsewhere / b.name)], source / "labels.csv", [sha])
    genres = {r["file"]: r["genres"].split("|") for r in records}
    assert found == {str(elsewhere / b.name): genres[a.name]}


def test_gallery_marks_passed_and_true_genres_and_cuts_long_names(trained, tmp_path):
    from anigenre.jobs import stages

    settings, model_id = trained
    source, copied = labelled_copy(tmp_path, 4)
    long = copied / ("a-very-long-poster-file-name-" * 4 + "end.png")
    shutil.copy(next(copied.iterdir()), long)
    plan = stages.plan_prediction(settings, [copied], model_id=model_id, out_dir=tmp_path / "o")
    stages.predict_in_process(settings, plan)
    report = stages.report_run(settings, plan.run_id, source / "labels.csv")
    page = (report.folder / "report.html").read_text()

    style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    name_rule = re.search(r"\.g \.name\{([^}]*)\}", style).group(1)
    for needed in ("text-overflow:ellipsis", "overflow:hidden", "white-space:nowrap"):
        assert needed in name_rule
    cards = re.findall(r'<div class="g">(.*?)</div>\n', page, re.S)
    assert len(cards) == 5
    full = [c for c in cards if long.name in c][0]
    assert f'title="{long.name}"' in full  # the whole name on hover
    rows = pd.read_parquet(plan.parts_dir)
    for card, row in zip(cards, rows.itertuples(), strict=True):
        passed = re.findall(r'<span class="pass">([^<]*) [0-9.]+</span>', card)
        beyond_top = [g for g in row.predicted if g not in row.top_genres]
        assert passed == [g for g in row.top_genres if g in set(row.predicted)] + beyond_top
        true = re.search(r'<span class="true">true: ([^<]*)</span>', card)
        assert true is not None, card  # every one of them is labelled
    assert "passed its threshold" in page  # the legend


def test_gallery_cards_keep_their_names_inside_in_chromium(trained, tmp_path):
    """report.html in a real browser: each card's name stays inside its card (a long one
    is cut, with the whole name on hover), so no name runs into the next card."""
    from anigenre.jobs import stages

    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is needed: apt-get install chromium")
    settings, model_id = trained
    source, copied = labelled_copy(tmp_path, 4)
    shutil.copy(next(copied.iterdir()), copied / ("x" * 120 + ".png"))
    plan = stages.plan_prediction(settings, [copied], model_id=model_id, out_dir=tmp_path / "o")
    stages.predict_in_process(settings, plan)
    report = stages.report_run(settings, plan.run_id, source / "labels.csv")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM))
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto((report.folder / "report.html").as_uri())
        boxes = page.eval_on_selector_all(
            ".g",
            """cards => cards.map(c => {
                const n = c.querySelector('.name'), a = c.getBoundingClientRect(),
                      b = n.getBoundingClientRect();
                return {card: [a.left, a.right], name: [b.left, b.right],
                        cut: n.scrollWidth > n.clientWidth};
            })""",
        )
        if os.environ.get("KEEP_SHOT"):  # a look by eye: KEEP_SHOT=/tmp/report.png
            page.locator(".gallery").screenshot(path=os.environ["KEEP_SHOT"])
        browser.close()
    assert len(boxes) == 5
    for box in boxes:
        assert box["card"][0] <= box["name"][0] and box["name"][1] <= box["card"][1] + 0.5
    assert sum(box["cut"] for box in boxes) == 1  # only the long name is cut
    lefts = sorted(box["card"][0] for box in boxes)
    assert all(b - a >= 170 for a, b in itertools.pairwise(lefts))  # side by side, apart


CHROMIUM = Path("/usr/bin/chromium")
