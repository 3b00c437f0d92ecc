"""decode_image and the loader against a generated corpus of every awkward file."""

from pathlib import Path

import numpy as np
import pytest
from anigenre.core.errors import InvalidImage
from anigenre.core.images import PAD_VALUE, decode_image
from anigenre.core.loader import decode_file, iter_batches, iter_decoded
from PIL import Image

from tests import images as gen

SIZE = (32, 24)  # (height, width), poster-shaped


KINDS = gen.every_kind()


@pytest.mark.parametrize("data", KINDS.values(), ids=KINDS.keys())
def test_every_supported_kind_becomes_rgb_uint8(data):
    out = decode_image(data, SIZE)
    assert out.shape == (*SIZE, 3) and out.dtype == np.uint8


def test_sixteen_bit_is_scaled_not_clipped():
    out = decode_image(gen.png16(value=32896), SIZE)  # 32896/65535 ~ 128/255
    assert abs(int(out.mean()) - 128) <= 1


def test_alpha_is_composited_on_white():
    out = decode_image(gen.transparent_png(), (56, 40))
    assert (out[:, :15] >= 250).all()  # the transparent half is white, not black
    assert np.allclose(out[:, 25:], gen.RED, atol=3)


def test_gif_gives_its_first_frame():
    out = decode_image(gen.animated_gif(), SIZE)
    assert out[..., 1].mean() > 150 and out[..., 2].mean() < 50


def test_exif_orientation_is_applied():
    # Orientation 6 means "rotate 90 degrees clockwise to display": a 60x40 landscape
    # image with red left / blue right displays as 40x60 portrait, red on top.
    data = gen.with_exif_orientation(gen.two_halves((60, 40)), 6)
    out = decode_image(data, (60, 40))
    top, bottom = out[:20].reshape(-1, 3).mean(0), out[40:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60


def test_resize_policies():
    wide = gen.save_bytes(gen.two_halves((80, 40)), "PNG")
    stretch = decode_image(wide, (40, 40), "stretch")
    pad = decode_image(wide, (40, 40), "pad")
    crop = decode_image(wide, (40, 40), "center-crop")
    assert stretch.shape == pad.shape == crop.shape == (40, 40, 3)
    assert (pad[:5] == PAD_VALUE).all() and (pad[-5:] == PAD_VALUE).all()  # letterbox bars
    assert stretch[:, :15, 0].mean() > 200 and stretch[:, 25:, 2].mean() > 200
    # The crop keeps the middle 40 of 80 columns: half red, half blue, no bars.
    assert crop[:, :15, 0].mean() > 200 and crop[:, 25:, 2].mean() > 200 and crop[0, 0, 0] > 200
    with pytest.raises(ValueError, match="resize policy"):
        decode_image(wide, (40, 40), "squash")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"<!DOCTYPE html><html><head><title>404</title></head></html>", "not-an-image"),
        (b"GIF? no. plain text saved as poster.jpg\n", "not-an-image"),
        (gen.encode("JPEG", size=(300, 400))[:700], "corrupt"),
        (gen.encode("PNG", size=(300, 400))[:-40], "corrupt"),
        (gen.png_header_only(8_000, 8_000), "too-large"),
        (gen.png_header_only(200_000, 200_000), "decompression-bomb"),
        (gen.encode("PNG", size=(4, 4)), "absurd-size"),
        (gen.encode("PNG", size=(20, 900)), "absurd-size"),
        (gen.encode("TIFF"), "unsupported-format"),
    ],
    ids=[
        "zero",
        "html",
        "text",
        "trunc-jpeg",
        "trunc-png",
        "too-large",
        "bomb",
        "tiny",
        "strip",
        "tiff",
    ],
)
def test_rejections_have_reasons(data, reason):
    with pytest.raises(InvalidImage) as err:
        decode_image(data, SIZE, max_pixels=10_000_000)
    assert err.value.reason == reason


def _corpus(tmp_path: Path) -> list[Path]:
    files = {
        "good1.jpg": gen.encode("JPEG"),
        "empty.jpg": b"",
        "good2.webp": gen.encode("WEBP"),
        "page.jpg": b"<html><body>not found</body></html>",
        "cut.jpg": gen.encode("JPEG", size=(300, 400))[:500],
        "good3.png": gen.encode("PNG", mode="P"),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return [tmp_path / n for n in files] + [tmp_path / "gone.jpg"]


def test_loader_keeps_order_and_returns_failures_as_values(tmp_path):
    paths = _corpus(tmp_path)
    results = list(
        iter_decoded(paths, lambda p: decode_file(p, SIZE, "pad", 10**7), workers=3, prefetch=2)
    )
    assert [r.path for r in results] == [str(p) for p in paths]
    assert [r.ok for r in results] == [True, False, True, False, False, True, False]
    assert results[1].error.startswith("empty") and results[3].error.startswith("not-an-image")
    assert results[4].error.startswith("corrupt") and results[6].error.startswith("unreadable")

    batches = list(iter_batches(results, batch_size=4, size=SIZE))
    assert [len(b.paths) for b in batches] == [4, 3]
    assert batches[0].arrays.shape == (2, *SIZE, 3) and batches[0].ok.tolist() == [1, 0, 1, 0]
    assert set(batches[1].errors) == {str(paths[4]), str(paths[6])}


def test_same_function_serves_training_and_inference(tmp_path):
    path = tmp_path / "p.png"
    Image.new("RGB", (50, 70), (10, 20, 30)).save(path)
    direct = decode_image(path.read_bytes(), SIZE, "center-crop")
    via_loader = decode_file(path, SIZE, "center-crop", 10**7).array
    assert np.array_equal(direct, via_loader)
