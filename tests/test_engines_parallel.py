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
