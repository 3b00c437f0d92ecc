"""The lean decode_image gives the very pixels of the decode it replaced (issue 19).

Training's feature cache keys on content, not on how it was decoded, so a decode that
changed a single pixel would silently mix old and new features. The reference below is
the previous pipeline, kept verbatim: exif_transpose always, convert("RGB") always,
resize always."""

from pathlib import Path

import numpy as np
import pytest
from anigenre.core import images
from anigenre.core.images import RESIZE_POLICIES, decode_image, draft_box
from PIL import Image, ImageOps

from tests import images as gen

SIZES = [(320, 224), (224, 224), (32, 24)]


def reference_decode(data: bytes, size, policy: str = "stretch") -> np.ndarray:
    with images._opened(data, images.DEFAULT_MAX_PIXELS, draft_box(size)) as img:
        img.seek(0)
        rgb = _reference_rgb(ImageOps.exif_transpose(img))
    height, width = size
    if policy == "stretch":
        out = rgb.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    else:
        out = images._resize(rgb, size, policy)
    return np.asarray(out, dtype=np.uint8)


def _reference_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray((arr * (255.0 / top)).clip(0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "RGB" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def test_shared_posters_decode_exactly_as_before(posters_dir: Path):
    """Every format the shared posters come in (JPEG, PNG, WEBP), at the default model's
    size, the paper's and a small one, under every resize policy."""
    files = sorted((posters_dir / "images").iterdir())
    by_format: dict[str, list[Path]] = {}
    for f in files:
        by_format.setdefault(f.suffix.lower(), []).append(f)
    assert {".jpg", ".png", ".webp"} <= set(by_format)
    for group in by_format.values():
        for f in group[:40]:
            data = f.read_bytes()
            for size in SIZES:
                for policy in RESIZE_POLICIES:
                    new, old = (
                        decode_image(data, size, policy),
                        reference_decode(data, size, policy),
                    )
                    assert np.array_equal(new, old), (f.name, size, policy)


def _exact_size_jpeg() -> bytes:
    return gen.save_bytes(gen.two_halves((224, 320)), "JPEG", quality=90)


AWKWARD = {
    **gen.every_kind(),
    "transparent": gen.transparent_png(),
    "animated": gen.animated_gif(),
    "exact-size": _exact_size_jpeg(),
    **{f"exif{o}": gen.with_exif_orientation(gen.two_halves(), o) for o in range(1, 9)},
}


@pytest.mark.parametrize("data", AWKWARD.values(), ids=AWKWARD.keys())
def test_awkward_files_decode_exactly_as_before(data):
    for size in SIZES:
        for policy in RESIZE_POLICIES:
            assert np.array_equal(
                decode_image(data, size, policy), reference_decode(data, size, policy)
            )


def test_a_poster_already_at_the_size_is_not_resized():
    img = gen.two_halves((224, 320))
    out = decode_image(gen.save_bytes(img, "PNG"), (320, 224))
    assert np.array_equal(out, np.asarray(img))
