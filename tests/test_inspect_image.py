import pytest
from anigenre.core.errors import InvalidImage
from anigenre.core.images import inspect_image

from tests.images import encode, png_header_only

LIMIT = 10_000_000


@pytest.mark.parametrize(("fmt", "ext"), [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")])
def test_real_images_pass_with_their_true_format(fmt, ext):
    info = inspect_image(encode(fmt), LIMIT)
    assert (info.format, info.width, info.height, info.extension) == (fmt, 40, 56, ext)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"<!DOCTYPE html><html><body>oops</body></html>", "not-an-image"),
        (b"just some text, saved as .jpg", "not-an-image"),
        (encode("JPEG", size=(300, 400))[:900], "corrupt"),
        (png_header_only(8_000, 8_000), "too-large"),
    ],
    ids=["empty", "html", "text", "truncated", "bomb"],
)
def test_rejections_carry_a_reason(data, reason):
    with pytest.raises(InvalidImage) as err:
        inspect_image(data, LIMIT)
    assert err.value.reason == reason


def test_pillows_own_bomb_limit_is_enforced_even_under_a_looser_setting():
    # 200k x 200k is over twice Pillow's MAX_IMAGE_PIXELS: Pillow refuses before our check.
    with pytest.raises(InvalidImage) as err:
        inspect_image(png_header_only(200_000, 200_000), 10**12)
    assert err.value.reason == "decompression-bomb"
