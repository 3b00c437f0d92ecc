import numpy as np
import pytest
from anigenre.core.errors import DataError
from anigenre.core.genres import GENRES, Vocabulary, column_slug
from anigenre.core.groups import linked_groups, title_stem
from anigenre.core.splits import SPLITS, grouped_stratified_split


def test_vocabulary_is_anilists_18_in_fixed_order_and_hentai_only_when_adult():
    assert len(GENRES) == 18 and GENRES[0] == "Action" and GENRES[-1] == "Thriller"
    adult = Vocabulary.for_content(include_adult=True)
    assert adult.genres[:18] == GENRES and adult.genres[18] == "Hentai"
    with pytest.raises(DataError, match="Hentai"):
        Vocabulary().encode([["Hentai"]])


def test_multi_hot_round_trip_and_column_names():
    vocab = Vocabulary()
    rows = [["Sci-Fi", "Action"], [], ["Slice of Life"]]
    hot = vocab.encode(rows)
    assert hot.shape == (3, 18) and hot.dtype == np.uint8 and hot.sum() == 3
    assert vocab.decode(hot) == [["Action", "Sci-Fi"], [], ["Slice of Life"]]
    assert {"p_action", "p_sci_fi", "p_slice_of_life", "p_mahou_shoujo"} <= set(vocab.columns())
    assert column_slug("Mahou Shoujo") == "mahou_shoujo"
    assert Vocabulary.from_json(vocab.to_json()) == vocab


def test_unknown_genre_error_lists_the_vocabulary():
    with pytest.raises(DataError) as err:
        Vocabulary().encode([["Action", "Isekai"]])
    assert "'Isekai'" in str(err.value) and "Slice of Life" in str(err.value)


@pytest.mark.parametrize(
    ("title", "stem"),
    [
        ("Attack on Titan Season 3 Part 2", "attack on titan"),
        ("Attack on Titan: Junior High", "attack on titan"),
        ("HAIKYU!! 2nd Season", "haikyu"),
        ("Overlord III", "overlord"),
        ("Sword Art Online the Movie: Ordinal Scale", "sword art online"),
        ("Re:ZERO -Starting Life in Another World- Season 2", "re:zero"),
        ("Toradora! OVA", "toradora"),
        ("86", "86"),
    ],
)
def test_title_stem_heuristic(title, stem):
    assert title_stem(title) == stem


def test_linked_groups_join_sources_that_name_one_franchise_differently():
    groups = ["mal1", "t:attack on titan", "mal2", "mal3"]
    titles = ["Attack on Titan", "Attack on Titan Season 2", "Other", None]
    ids = [None, 16498, 16498, None]
    linked = linked_groups(groups, titles, ids)
    assert linked[0] == linked[1] == linked[2] != linked[3]


def _synthetic(seed=0, n_groups=120):
    rng = np.random.default_rng(seed)
    groups, labels = [], []
    for g in range(n_groups):
        base = (rng.random(12) < 0.25).astype(int)
        if g % 30 == 0:
            base[11] = 1  # a rare genre carried by 4 groups
        else:
            base[11] = 0
        for _ in range(rng.integers(1, 5)):
            groups.append(f"g{g}")
            labels.append(base | (rng.random(12) < 0.05))
    return groups, np.array(labels)


def test_no_group_crosses_splits_and_it_is_deterministic():
    groups, labels = _synthetic()
    a = grouped_stratified_split(groups, labels, seed=3)
    b = grouped_stratified_split(groups, labels, seed=3)
    c = grouped_stratified_split(groups, labels, seed=4)
    assert (a == b).all() and not (a == c).all()
    for g in set(groups):
        assert len({s for gg, s in zip(groups, a, strict=True) if gg == g}) == 1
    share = {s: float(np.mean(a == s)) for s in SPLITS}
    assert share["train"] == pytest.approx(0.7, abs=0.06)
    assert share["val"] == pytest.approx(0.15, abs=0.05)


def test_rare_genres_reach_every_split_where_possible():
    groups, labels = _synthetic(1)
    split = grouped_stratified_split(groups, labels, seed=0)
    for s in SPLITS:
        assert labels[split == s, 11].sum() > 0, s


def test_fixed_groups_keep_their_split():
    groups, labels = _synthetic(2)
    fixed = {"g1": "test", "g2": "val"}
    split = grouped_stratified_split(groups, labels, seed=0, fixed=fixed)
    for g, s in fixed.items():
        assert {sp for gg, sp in zip(groups, split, strict=True) if gg == g} == {s}
