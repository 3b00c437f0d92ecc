"""Int8 features on several single-thread interpreters side by side (issue 19): the same
numbers, in the same order, as one interpreter gives; extra interpreters only when a batch
needs them; and the predictor's uint8 feed gives what its float32 feed gave."""

import numpy as np
import pytest
from anigenre.models.engines import Int8Features, _Runners
from anigenre.models.int8 import extractor_bytes


@pytest.fixture(scope="module")
def extractor(shared_dir) -> bytes:
    return extractor_bytes(shared_dir / "weights" / "tf2_mobilenet_v2_1.0_224_ptq.tflite")


@pytest.fixture(scope="module")
def posters(shared_dir) -> np.ndarray:
    from anigenre.core.images import decode_image

    files = sorted((shared_dir / "data" / "posters" / "images").iterdir())[:9]
    return np.stack([decode_image(f.read_bytes(), (96, 64)) for f in files])


def test_side_by_side_interpreters_give_one_interpreters_numbers_in_order(extractor, posters):
    one = Int8Features(2, one_interpreter=True, model_content=extractor)
    many = Int8Features(3, model_content=extractor)
    expected = np.concatenate([one(posters[i : i + 1]) for i in range(len(posters))])
    assert expected.shape == (9, 1280) and expected.std() > 0
    for n in (1, 2, 3, 9):
        np.testing.assert_array_equal(many(posters[:n]), expected[:n])
    # Reversed input, reversed rows: each row is its own image's, whoever computed it.
    np.testing.assert_array_equal(many(posters[::-1]), expected[::-1])
    # uint8 or float32 pixels: the same whole numbers.
    np.testing.assert_array_equal(many(posters.astype(np.float32)), expected)


def test_extra_interpreters_are_made_only_when_a_batch_needs_them(extractor, posters):
    runners = _Runners(4, model_content=extractor)
    runners(posters[:1])
    assert len(runners._runners) == 1 and not runners._pool.made  # one image: one interpreter
    runners(posters[:2])
    assert len(runners._runners) == 2
    runners(posters)
    assert len(runners._runners) == 4


def test_a_stream_gives_each_items_output_in_order(extractor, posters):
    """Items run as they are prepared, in whichever thread; results come back in the
    items' order, with None where an item had no image (a poster that failed to decode)."""
    runners = _Runners(3, model_content=extractor)
    expected = runners(posters)
    items = list(range(len(posters)))
    skipped = {2, 5}

    def prepare(i):
        return f"poster {i}", None if i in skipped else posters[i]

    out = list(runners.stream(items, prepare, window=2))
    assert [info for info, _ in out] == [f"poster {i}" for i in items]
    for i, (_, row) in enumerate(out):
        if i in skipped:
            assert row is None
        else:
            np.testing.assert_array_equal(row, expected[i])


def test_a_stream_hands_its_errors_to_the_caller_and_can_be_left_early(extractor, posters):
    runners = _Runners(2, model_content=extractor)

    def broken(i):
        if i == 3:
            raise RuntimeError("poster 3 is unreadable in a way nobody planned")
        return i, posters[i]

    with pytest.raises(RuntimeError, match="poster 3"):
        list(runners.stream(range(len(posters)), broken, window=4))
    # Left after two of a thousand items: its threads stop, and the runners serve again.
    many = runners.stream(range(1000), lambda i: (i, posters[i % len(posters)]), window=4)
    assert [next(many)[0], next(many)[0]] == [0, 1]
    many.close()
    again = [i for i, _ in runners.stream(range(5), lambda i: (i, posters[i]), window=4)]
    assert again == [0, 1, 2, 3, 4]
