"""Tests for imagerepo.imaging: upload validation and thumbnail rendering.

Generated images (always run) plus the shared real-world corpus (skipped when
``../shared/corpus`` or ``$IMAGEREPO_CORPUS_DIR`` is absent).
"""

from __future__ import annotations

import io
import math
import os
import struct
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from PIL import Image, ImageCms, ImageDraw, ImageOps, JpegImagePlugin

from imagerepo.errors import BadRequest, UnsupportedMediaType
from imagerepo.imaging import (
    SUPPORTED_FORMATS,
    ImageInfo,
    Thumbnails,
    inspect_image,
    render_thumbnails,
)

MAX_PIXELS = 50_000_000
SMALL_PX = 250
PREVIEW_PX = 1440

_DEFAULT_CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
_CORPUS_ENV = os.environ.get("IMAGEREPO_CORPUS_DIR")
CORPUS_DIR = Path(_CORPUS_ENV) if _CORPUS_ENV else _DEFAULT_CORPUS
_CORPUS_LABEL = _CORPUS_ENV or "../shared/corpus"

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
YELLOW = (255, 255, 0)
WHITE = (255, 255, 255)


# --------------------------------------------------------------------------
# Helpers


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if not CORPUS_DIR.is_dir():
        pytest.skip(f"{_CORPUS_LABEL} not present: corpus tests skipped")
    return CORPUS_DIR


@pytest.fixture
def corpus(corpus_dir: Path) -> Callable[[str], bytes]:
    def read(name: str) -> bytes:
        path = corpus_dir / name
        if not path.is_file():
            pytest.skip(f"corpus file {name} not present in {_CORPUS_LABEL}")
        return path.read_bytes()

    return read


def encode(im: Image.Image, fmt: str, **params: Any) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **params)
    return out.getvalue()


def decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def on_white(im: Image.Image) -> Image.Image:
    """RGB view of an image, alpha composited onto white."""
    rgba = im.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*WHITE, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def assert_fits(size: tuple[int, int], display: tuple[int, int], limit: int) -> None:
    """Longest side = min(limit, original longest side); aspect ratio kept to 1 px."""
    width, height = size
    disp_w, disp_h = display
    assert max(width, height) == min(limit, max(disp_w, disp_h))
    if disp_w >= disp_h:
        assert width >= height
        assert abs(height - disp_h * width / disp_w) <= 1
    else:
        assert width < height
        assert abs(width - disp_w * height / disp_h) <= 1


def gray_thumb(im: Image.Image) -> Image.Image:
    """32x32 grey version, to compare pictures whatever their size and encoding."""
    return on_white(im).convert("L").resize((32, 32), Image.Resampling.BOX)


def gray_vector(im: Image.Image) -> list[float]:
    return [float(v) for v in im.tobytes()]


def correlation(a: list[float], b: list[float]) -> float:
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b, strict=True))
    var_a = sum((x - mean_a) ** 2 for x in a)
    var_b = sum((y - mean_b) ** 2 for y in b)
    return cov / math.sqrt(var_a * var_b)


def color_at(im: Image.Image, rel_x: float, rel_y: float) -> tuple[int, ...]:
    rgb = on_white(im)
    x = min(rgb.width - 1, int(rel_x * rgb.width))
    y = min(rgb.height - 1, int(rel_y * rgb.height))
    pixel = rgb.getpixel((x, y))
    assert isinstance(pixel, tuple)
    return pixel


def assert_color_close(actual: tuple[int, ...], expected: tuple[int, ...], tol: int = 40) -> None:
    assert all(abs(a - e) <= tol for a, e in zip(actual, expected, strict=True)), (
        actual,
        expected,
    )


def quadrants(size: tuple[int, int] = (200, 100)) -> Image.Image:
    """Top-left red, top-right green, bottom-left blue, bottom-right yellow."""
    width, height = size
    im = Image.new("RGB", size, RED)
    draw = ImageDraw.Draw(im)
    draw.rectangle((width // 2, 0, width, height // 2), fill=GREEN)
    draw.rectangle((0, height // 2, width // 2, height), fill=BLUE)
    draw.rectangle((width // 2, height // 2, width, height), fill=YELLOW)
    return im


def jpeg_with_exif(im: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    exif[0x010F] = "TestCam"  # Make
    exif[0x0131] = "secret-software"  # Software
    return encode(im, "JPEG", quality=95, exif=exif)


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = b"ftyp" + major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return struct.pack(">I", len(body) + 4) + body + b"\x00\x00\x00\x08free" + b"\x00" * 64


def check_outputs(thumbs: Thumbnails, display: tuple[int, int]) -> tuple[Image.Image, Image.Image]:
    small = decode(thumbs.small)
    preview = decode(thumbs.preview)
    assert small.format == "WEBP"
    assert preview.format == "JPEG"
    assert small.size == thumbs.small_size
    assert preview.size == thumbs.preview_size
    assert_fits(thumbs.small_size, display, SMALL_PX)
    assert_fits(thumbs.preview_size, display, PREVIEW_PX)
    for out in (small, preview):
        assert not out.getexif(), "EXIF must be stripped"
        assert "exif" not in out.info
        assert "icc_profile" not in out.info
        assert "comment" not in out.info
        assert "xmp" not in out.info
    return small, preview


# --------------------------------------------------------------------------
# Corpus: real-world files

# name, Pillow format, content type, display (w, h), frames
GOOD_FILES: list[tuple[str, str, str, tuple[int, int], int]] = [
    ("dedup_nokia83_com20011_inserted.jpg", "JPEG", "image/jpeg", (4608, 1976), 1),
    ("dedup_nokia83_exif_replaced.jpg", "JPEG", "image/jpeg", (4608, 1976), 1),
    ("gif_animated_42frames.gif", "GIF", "image/gif", (245, 245), 42),
    ("gif_static_hopper.gif", "GIF", "image/gif", (128, 128), 1),
    ("jpeg_baseline_flower_3mp.jpg", "JPEG", "image/jpeg", (2268, 1512), 1),
    ("jpeg_cmyk_flower.jpg", "JPEG", "image/jpeg", (510, 532), 1),
    ("jpeg_grayscale_flower_3mp.jpg", "JPEG", "image/jpeg", (2268, 1512), 1),
    ("jpeg_progressive_flower_3mp.jpg", "JPEG", "image/jpeg", (2268, 1512), 1),
    ("mpo_stereo_nintendo3ds.mpo", "MPO", "image/jpeg", (640, 480), 2),
    ("photo_canon_sx60_hdr_off_orientation6.jpg", "JPEG", "image/jpeg", (1536, 2048), 1),
    (
        "photo_canon_sx60_hdr_on_orientation6_near_dup.jpg",
        "JPEG",
        "image/jpeg",
        (1536, 2048),
        1,
    ),
    ("photo_landscape_orientation5_transpose.jpg", "JPEG", "image/jpeg", (1800, 1200), 1),
    ("photo_landscape_orientation8_rotate270.jpg", "JPEG", "image/jpeg", (1800, 1200), 1),
    ("photo_nokia83_9mp_gps.jpg", "JPEG", "image/jpeg", (4608, 1976), 1),
    ("photo_xiaomi_mi9t_12mp_orientation6.jpg", "JPEG", "image/jpeg", (3000, 4000), 1),
    ("png_16bit_rgb_hdr_room.png", "PNG", "image/png", (676, 449), 1),
    ("png_palette_quantized_photo.png", "PNG", "image/png", (290, 442), 1),
    ("png_rgba_roses_xmp_orientation3.png", "PNG", "image/png", (326, 268), 1),
    ("png_rgba_tulips_alpha.png", "PNG", "image/png", (500, 500), 1),
    ("tiff_rgb_uncompressed_hopper.tif", "TIFF", "image/tiff", (128, 128), 1),
    ("tiff_tiled_ycbcr_jpeg_flower.tif", "TIFF", "image/tiff", (480, 360), 1),
    ("webp_lossless_gophers_photo.webp", "WEBP", "image/webp", (600, 400), 1),
    ("webp_lossy_flower_exif.webp", "WEBP", "image/webp", (480, 360), 1),
    # pillow-heif applies the HEIC's irot/imir while decoding: its size is the display size.
    ("heic_iphone11_photo.heic", "HEIF", "image/heic", (2566, 3313), 1),
    ("avif_olympus_mountains.avif", "AVIF", "image/avif", (1920, 1080), 1),
]

BAD_FILES: list[tuple[str, type[Exception], str]] = [
    ("bad_empty_zero_bytes.jpg", BadRequest, "empty_file"),
    ("bad_not_an_image.txt", BadRequest, "invalid_image"),
    ("bad_truncated_half.jpg", BadRequest, "invalid_image"),
    ("bad_decompression_bomb_65535x66601.gif", BadRequest, "too_many_pixels"),
]


@pytest.mark.parametrize(
    ("name", "fmt", "content_type", "display", "frames"),
    GOOD_FILES,
    ids=[row[0] for row in GOOD_FILES],
)
def test_corpus_inspect(
    corpus: Callable[[str], bytes],
    name: str,
    fmt: str,
    content_type: str,
    display: tuple[int, int],
    frames: int,
) -> None:
    info = inspect_image(corpus(name), max_pixels=MAX_PIXELS)
    assert info == ImageInfo(
        format=fmt,
        content_type=content_type,
        width=display[0],
        height=display[1],
        frames=frames,
    )


@pytest.mark.parametrize(
    ("name", "display"),
    [(row[0], row[3]) for row in GOOD_FILES],
    ids=[row[0] for row in GOOD_FILES],
)
def test_corpus_thumbnails(corpus: Callable[[str], bytes], name: str, display: tuple[int, int]) -> None:
    data = corpus(name)
    thumbs = render_thumbnails(data, max_pixels=MAX_PIXELS)
    small, _ = check_outputs(thumbs, display)

    # Orientation: the thumbnail must look like Pillow's exif_transpose of the
    # first frame, and more like it than like any other flip/rotation of it.
    reference = ImageOps.exif_transpose(decode(data))
    assert reference.size == display
    ours = gray_vector(gray_thumb(small))
    expected = gray_thumb(reference)
    best = correlation(ours, gray_vector(expected))
    assert best > 0.9
    for method in Image.Transpose:
        # Flipping/rotating the 32x32 square is the same as doing it before shrinking.
        assert correlation(ours, gray_vector(expected.transpose(method))) < best, method


@pytest.mark.parametrize(("name", "error", "code"), BAD_FILES, ids=[row[0] for row in BAD_FILES])
def test_corpus_bad_files_are_refused(
    corpus: Callable[[str], bytes], name: str, error: type[Exception], code: str
) -> None:
    data = corpus(name)
    with pytest.raises(error) as inspected:
        inspect_image(data, max_pixels=MAX_PIXELS)
    assert getattr(inspected.value, "code", None) == code
    with pytest.raises(error) as rendered:
        render_thumbnails(data, max_pixels=MAX_PIXELS)
    assert getattr(rendered.value, "code", None) == code


@pytest.mark.parametrize("name", ["heic_iphone11_photo.heic", "avif_olympus_mountains.avif"])
@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_corpus_truncated_heic_and_avif_are_invalid(
    corpus: Callable[[str], bytes], name: str, keep: float
) -> None:
    # libheif decodes a tiled HEIC with missing tiles without an error; the box sizes catch it.
    data = corpus(name)
    with pytest.raises(BadRequest) as exc:
        inspect_image(data[: int(len(data) * keep)], max_pixels=MAX_PIXELS)
    assert exc.value.code == "invalid_image"


def test_corpus_heic_pixel_limit(corpus: Callable[[str], bytes]) -> None:
    with pytest.raises(BadRequest) as exc:
        inspect_image(corpus("heic_iphone11_photo.heic"), max_pixels=2566 * 3313 - 1)
    assert exc.value.code == "too_many_pixels"
    assert inspect_image(corpus("heic_iphone11_photo.heic"), max_pixels=2566 * 3313).width == 2566


def test_unsupported_message_lists_accepted_formats() -> None:
    with pytest.raises(UnsupportedMediaType) as exc:
        inspect_image(encode(quadrants((16, 16)), "BMP"), max_pixels=MAX_PIXELS)
    for fmt in ("JPEG", "PNG", "GIF", "WebP", "TIFF", "HEIC/HEIF", "AVIF"):
        assert fmt in exc.value.message


def test_corpus_alpha_kept_in_webp_and_flattened_in_jpeg(
    corpus: Callable[[str], bytes],
) -> None:
    thumbs = render_thumbnails(corpus("png_rgba_tulips_alpha.png"), max_pixels=MAX_PIXELS)
    small, preview = decode(thumbs.small), decode(thumbs.preview)
    assert small.mode == "RGBA"
    low, high = cast("tuple[int, int]", small.getchannel("A").getextrema())
    assert low < 128 < high
    assert preview.mode == "RGB"


def test_corpus_metadata_not_copied(corpus: Callable[[str], bytes]) -> None:
    data = corpus("dedup_nokia83_com20011_inserted.jpg")  # GPS EXIF + 20 kB comment
    thumbs = render_thumbnails(data, max_pixels=MAX_PIXELS)
    for blob in (thumbs.small, thumbs.preview):
        assert b"Exif\x00\x00" not in blob
        assert b"HMD" not in blob  # camera make from the EXIF


def test_corpus_icc_profile_is_applied(corpus: Callable[[str], bytes]) -> None:
    """The Rec.2020 HLG PNG must come out converted to sRGB, not washed out."""
    data = corpus("png_16bit_rgb_hdr_room.png")
    original = decode(data)
    icc = original.info["icc_profile"]
    expected = ImageCms.profileToProfile(
        original,
        ImageCms.ImageCmsProfile(io.BytesIO(icc)),
        ImageCms.createProfile("sRGB"),
        outputMode="RGB",
    )
    assert expected is not None
    preview = decode(render_thumbnails(data, max_pixels=MAX_PIXELS).preview)
    mean = on_white(preview).resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    want = expected.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    naive = original.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    assert isinstance(mean, tuple) and isinstance(want, tuple) and isinstance(naive, tuple)
    assert_color_close(mean, want, tol=6)
    assert max(abs(a - b) for a, b in zip(mean, naive, strict=True)) > 15


def test_corpus_large_jpeg_is_reasonably_small(corpus: Callable[[str], bytes]) -> None:
    thumbs = render_thumbnails(corpus("photo_xiaomi_mi9t_12mp_orientation6.jpg"), max_pixels=MAX_PIXELS)
    assert thumbs.preview_size == (1080, 1440)
    assert thumbs.small_size == (188, 250)
    assert len(thumbs.small) < 64_000
    assert len(thumbs.preview) < 1_000_000


# --------------------------------------------------------------------------
# Generated images: validation


def test_empty_data_is_empty_file() -> None:
    with pytest.raises(BadRequest) as exc:
        inspect_image(b"", max_pixels=MAX_PIXELS)
    assert exc.value.code == "empty_file"
    with pytest.raises(BadRequest) as exc:
        render_thumbnails(b"", max_pixels=MAX_PIXELS)
    assert exc.value.code == "empty_file"


@pytest.mark.parametrize(
    "data",
    [b"hello, this is plain text\n", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"\x00" * 100],
    ids=["text", "jpeg-soi-only", "png-signature-only", "zeros"],
)
def test_garbage_is_invalid_image(data: bytes) -> None:
    with pytest.raises(BadRequest) as exc:
        inspect_image(data, max_pixels=MAX_PIXELS)
    assert exc.value.code == "invalid_image"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image_is_invalid(fmt: str) -> None:
    noise = Image.effect_noise((400, 300), 64).convert("RGB")
    data = encode(noise, fmt)
    truncated = data[: len(data) // 2]
    with pytest.raises(BadRequest) as exc:
        inspect_image(truncated, max_pixels=MAX_PIXELS)
    assert exc.value.code == "invalid_image"
    with pytest.raises(BadRequest) as exc:
        render_thumbnails(truncated, max_pixels=MAX_PIXELS)
    assert exc.value.code == "invalid_image"


def test_truncated_progressive_jpeg_is_invalid() -> None:
    noise = Image.effect_noise((640, 480), 64).convert("RGB")
    data = encode(noise, "JPEG", progressive=True)
    with pytest.raises(BadRequest) as exc:
        inspect_image(data[: int(len(data) * 0.9)], max_pixels=MAX_PIXELS)
    assert exc.value.code == "invalid_image"


@pytest.mark.parametrize(
    ("fmt", "params", "content_type"),
    [
        ("JPEG", {}, "image/jpeg"),
        ("PNG", {}, "image/png"),
        ("GIF", {}, "image/gif"),
        ("WEBP", {}, "image/webp"),
        ("TIFF", {"compression": "tiff_lzw"}, "image/tiff"),
        ("AVIF", {}, "image/avif"),
        ("HEIF", {}, "image/heic"),  # pillow-heif's encoder writes HEVC (brand heic)
    ],
)
def test_accepted_formats(fmt: str, params: dict[str, Any], content_type: str) -> None:
    data = encode(quadrants((120, 80)), fmt, **params)
    info = inspect_image(data, max_pixels=MAX_PIXELS)
    assert info == ImageInfo(format=fmt, content_type=content_type, width=120, height=80, frames=1)
    assert SUPPORTED_FORMATS[fmt] == content_type
    check_outputs(render_thumbnails(data, max_pixels=MAX_PIXELS), (120, 80))


@pytest.mark.parametrize(
    ("fmt", "params"),
    [("BMP", {}), ("PPM", {}), ("ICO", {}), ("TGA", {}), ("JPEG2000", {})],
)
def test_other_pillow_formats_are_unsupported(fmt: str, params: dict[str, Any]) -> None:
    data = encode(quadrants((64, 32)), fmt, **params)
    with pytest.raises(UnsupportedMediaType) as exc:
        inspect_image(data, max_pixels=MAX_PIXELS)
    assert exc.value.code == "unsupported_format"
    assert exc.value.status == 415
    assert "JPEG, PNG, GIF, WebP, TIFF" in exc.value.message
    with pytest.raises(UnsupportedMediaType):
        render_thumbnails(data, max_pixels=MAX_PIXELS)


@pytest.mark.parametrize(
    "brands",
    [
        (b"heic", b"mif1", b"heic"),
        (b"mif1", b"heic"),
        (b"heix", b"mif1"),
        (b"msf1", b"hevc"),
        (b"avif", b"mif1", b"avif"),
        (b"avis", b"msf1"),
    ],
)
def test_heif_and_avif_headers_without_an_image_are_invalid(brands: tuple[bytes, ...]) -> None:
    with pytest.raises(BadRequest) as exc:
        inspect_image(ftyp(*brands), max_pixels=MAX_PIXELS)
    assert exc.value.code == "invalid_image"


def test_other_isobmff_files_are_invalid_images() -> None:
    with pytest.raises(BadRequest) as exc:
        inspect_image(ftyp(b"isom", b"iso2", b"mp41"), max_pixels=MAX_PIXELS)
    assert exc.value.code == "invalid_image"


@pytest.mark.parametrize("fmt", ["AVIF", "HEIF"])
def test_avif_and_heif_orientation_gives_display_size_and_rotated_thumbnails(fmt: str) -> None:
    # Pillow writes EXIF orientation 6 as irot/imir (AVIF: reported back as orientation 6;
    # HEIF: pillow-heif applies it while decoding). Either way the display is portrait.
    im = quadrants((120, 80))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(im, fmt, exif=exif.tobytes())
    info = inspect_image(data, max_pixels=MAX_PIXELS)
    assert (info.width, info.height) == (80, 120)
    thumbs = render_thumbnails(data, max_pixels=MAX_PIXELS)
    assert thumbs.small_size == (80, 120)
    expected = gray_thumb(im.transpose(Image.Transpose.ROTATE_270))
    assert correlation(gray_vector(gray_thumb(decode(thumbs.small))), gray_vector(expected)) > 0.9


def test_pixel_limit_is_checked_from_header() -> None:
    data = encode(Image.new("RGB", (100, 100), RED), "PNG")
    assert inspect_image(data, max_pixels=10_000).width == 100
    render_thumbnails(data, max_pixels=10_000)
    with pytest.raises(BadRequest) as exc:
        inspect_image(data, max_pixels=9_999)
    assert exc.value.code == "too_many_pixels"
    assert "9,999" in exc.value.message
    with pytest.raises(BadRequest) as exc:
        render_thumbnails(data, max_pixels=9_999)
    assert exc.value.code == "too_many_pixels"


def test_pillow_decompression_bomb_error_maps_to_too_many_pixels() -> None:
    """A 44-byte GIF declaring 65535x65535: Pillow refuses it even above our budget."""
    gif = (
        b"GIF89a"
        + struct.pack("<HHBBB", 65535, 65535, 0, 0, 0)
        + b","
        + struct.pack("<HHHHB", 0, 0, 65535, 65535, 0)
        + b"\x02\x02\x4c\x01\x00;"
    )
    with pytest.raises(BadRequest) as exc:
        inspect_image(gif, max_pixels=10**11)
    assert exc.value.code == "too_many_pixels"


def test_bomb_warning_is_neither_leaked_nor_stricter_than_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5_000)
    data = encode(Image.new("RGB", (100, 60), RED), "PNG")  # 6,000 px
    filters_before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Budget above Pillow's limit: the warning must not refuse the image.
        assert inspect_image(data, max_pixels=1_000_000).width == 100
        render_thumbnails(data, max_pixels=1_000_000)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    # Budget below: refused either way, as too_many_pixels.
    with pytest.raises(BadRequest) as exc:
        inspect_image(data, max_pixels=5_000)
    assert exc.value.code == "too_many_pixels"
    assert warnings.filters == filters_before
    assert Image.MAX_IMAGE_PIXELS == 5_000


def test_global_pillow_limit_untouched() -> None:
    before = Image.MAX_IMAGE_PIXELS
    inspect_image(encode(Image.new("RGB", (10, 10)), "PNG"), max_pixels=500)
    assert before == Image.MAX_IMAGE_PIXELS


def test_invalid_sizes_are_rejected() -> None:
    data = encode(Image.new("RGB", (10, 10)), "PNG")
    with pytest.raises(ValueError, match="positive"):
        render_thumbnails(data, small_px=0, max_pixels=MAX_PIXELS)


# --------------------------------------------------------------------------
# Generated images: orientation


def test_orientation_6_puts_left_half_on_top() -> None:
    im = Image.new("RGB", (200, 100), RED)
    ImageDraw.Draw(im).rectangle((100, 0, 200, 100), fill=BLUE)
    data = jpeg_with_exif(im, 6)

    info = inspect_image(data, max_pixels=MAX_PIXELS)
    assert (info.width, info.height) == (100, 200)

    # Expectation computed with Pillow's own exif_transpose.
    reference = ImageOps.exif_transpose(decode(data))
    assert reference.size == (100, 200)
    assert_color_close(color_at(reference, 0.5, 0.25), RED)
    assert_color_close(color_at(reference, 0.5, 0.75), BLUE)

    thumbs = render_thumbnails(data, max_pixels=MAX_PIXELS)
    assert thumbs.small_size == thumbs.preview_size == (100, 200)
    for blob in (thumbs.small, thumbs.preview):
        out = decode(blob)
        assert_color_close(color_at(out, 0.5, 0.25), RED)
        assert_color_close(color_at(out, 0.5, 0.75), BLUE)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_exif_transpose(orientation: int) -> None:
    data = jpeg_with_exif(quadrants((400, 200)), orientation)
    reference = ImageOps.exif_transpose(decode(data))
    display = reference.size
    assert display == ((200, 400) if orientation >= 5 else (400, 200))

    info = inspect_image(data, max_pixels=MAX_PIXELS)
    assert (info.width, info.height) == display

    thumbs = render_thumbnails(data, small_px=100, preview_px=300, max_pixels=MAX_PIXELS)
    small, preview = decode(thumbs.small), decode(thumbs.preview)
    assert_fits(small.size, display, 100)
    assert_fits(preview.size, display, 300)
    for rel_x, rel_y in ((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)):
        expected = color_at(reference, rel_x, rel_y)
        assert_color_close(color_at(small, rel_x, rel_y), expected)
        assert_color_close(color_at(preview, rel_x, rel_y), expected)


def test_png_xmp_orientation_is_applied() -> None:
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
        b'tiff:Orientation="8"/></rdf:RDF></x:xmpmeta>'
    )
    from PIL import PngImagePlugin

    meta = PngImagePlugin.PngInfo()
    meta.add_itxt("XML:com.adobe.xmp", xmp.decode())
    data = encode(quadrants((200, 100)), "PNG", pnginfo=meta)
    reference = ImageOps.exif_transpose(decode(data))
    assert reference.size == (100, 200)
    info = inspect_image(data, max_pixels=MAX_PIXELS)
    assert (info.width, info.height) == (100, 200)
    small = decode(render_thumbnails(data, max_pixels=MAX_PIXELS).small)
    assert small.size == (100, 200)
    assert_color_close(color_at(small, 0.25, 0.25), color_at(reference, 0.25, 0.25))
    assert_color_close(color_at(small, 0.75, 0.75), color_at(reference, 0.75, 0.75))


def test_exif_is_stripped_from_thumbnails() -> None:
    data = jpeg_with_exif(quadrants((300, 200)), 1)
    thumbs = render_thumbnails(data, max_pixels=MAX_PIXELS)
    check_outputs(thumbs, (300, 200))
    for blob in (thumbs.small, thumbs.preview):
        assert b"TestCam" not in blob
        assert b"secret-software" not in blob


# --------------------------------------------------------------------------
# Generated images: colour modes and sizes


def test_cmyk_jpeg_becomes_rgb() -> None:
    data = encode(Image.new("CMYK", (300, 200), (0, 255, 255, 0)), "JPEG")
    info = inspect_image(data, max_pixels=MAX_PIXELS)
    assert (info.format, info.width, info.height) == ("JPEG", 300, 200)
    thumbs = render_thumbnails(data, max_pixels=MAX_PIXELS)
    small, preview = check_outputs(thumbs, (300, 200))
    assert small.mode == "RGB"
    assert preview.mode == "RGB"
    assert_color_close(color_at(preview, 0.5, 0.5), RED)
    assert_color_close(color_at(small, 0.5, 0.5), RED)


def test_palette_png_with_transparency() -> None:
    im = Image.new("P", (300, 100), 0)
    im.putpalette([*RED, *BLUE] + [0, 0, 0] * 254)
    ImageDraw.Draw(im).rectangle((150, 0, 300, 100), fill=1)
    data = encode(im, "PNG", transparency=1)  # right half fully transparent
    thumbs = render_thumbnails(data, max_pixels=MAX_PIXELS)
    small, preview = check_outputs(thumbs, (300, 100))
    assert small.mode == "RGBA"
    left, right = small.getpixel((20, 50)), small.getpixel((small.width - 20, 50))
    assert isinstance(left, tuple) and isinstance(right, tuple)
    assert left[3] == 255 and right[3] == 0
    assert_color_close(left[:3], RED)
    assert preview.mode == "RGB"
    assert_color_close(color_at(preview, 0.1, 0.5), RED)
    assert_color_close(color_at(preview, 0.9, 0.5), WHITE)


def test_palette_png_without_transparency_is_rgb() -> None:
    im = quadrants((200, 100)).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    thumbs = render_thumbnails(encode(im, "PNG"), max_pixels=MAX_PIXELS)
    small, _ = check_outputs(thumbs, (200, 100))
    assert small.mode == "RGB"
    assert_color_close(color_at(small, 0.75, 0.75), YELLOW)


def test_rgba_png_alpha_kept_in_webp_flattened_in_jpeg() -> None:
    im = Image.new("RGBA", (400, 200), (0, 0, 255, 255))
    ImageDraw.Draw(im).rectangle((200, 0, 400, 200), fill=(0, 0, 0, 0))
    thumbs = render_thumbnails(encode(im, "PNG"), max_pixels=MAX_PIXELS)
    small, preview = check_outputs(thumbs, (400, 200))
    assert small.mode == "RGBA"
    alpha = small.getchannel("A")
    assert alpha.getpixel((10, 10)) == 255
    assert alpha.getpixel((small.width - 10, 10)) == 0
    assert preview.mode == "RGB"
    assert_color_close(color_at(preview, 0.25, 0.5), BLUE)
    assert_color_close(color_at(preview, 0.75, 0.5), WHITE)


def test_opaque_alpha_is_dropped() -> None:
    im = quadrants((200, 100)).convert("RGBA")
    small = decode(render_thumbnails(encode(im, "PNG"), max_pixels=MAX_PIXELS).small)
    assert small.mode == "RGB"


def test_la_png() -> None:
    im = Image.new("LA", (200, 100), (40, 255))
    ImageDraw.Draw(im).rectangle((100, 0, 200, 100), fill=(40, 0))
    thumbs = render_thumbnails(encode(im, "PNG"), max_pixels=MAX_PIXELS)
    small, preview = check_outputs(thumbs, (200, 100))
    assert small.mode == "RGBA"
    assert preview.mode == "L"
    assert preview.getpixel((20, 50)) == pytest.approx(40, abs=8)
    assert preview.getpixel((180, 50)) == pytest.approx(255, abs=8)


def test_grayscale_jpeg_preview_stays_grayscale() -> None:
    data = encode(Image.linear_gradient("L").resize((600, 400)), "JPEG")
    thumbs = render_thumbnails(data, max_pixels=MAX_PIXELS)
    small, preview = check_outputs(thumbs, (600, 400))
    assert preview.mode == "L"
    assert small.mode == "RGB"


def test_16bit_grayscale_png_is_scaled_not_clipped() -> None:
    row = b"".join(struct.pack("<H", x * 257) for x in range(256))
    im = Image.frombytes("I;16", (256, 16), row * 16)
    data = encode(im, "PNG")
    assert decode(data).mode == "I;16"
    info = inspect_image(data, max_pixels=MAX_PIXELS)
    assert (info.format, info.width, info.height) == ("PNG", 256, 16)
    thumbs = render_thumbnails(data, max_pixels=MAX_PIXELS)
    _, preview = check_outputs(thumbs, (256, 16))
    assert preview.mode == "L"
    for x in (8, 64, 128, 192, 247):
        assert preview.getpixel((x, 8)) == pytest.approx(x, abs=10)


def test_32bit_int_tiff_is_scaled() -> None:
    im = Image.linear_gradient("L").resize((64, 64)).convert("I").point(lambda v: v * 1000)
    data = encode(im, "TIFF")
    thumbs = render_thumbnails(data, max_pixels=MAX_PIXELS)
    _, preview = check_outputs(thumbs, (64, 64))
    top, bottom = preview.getpixel((32, 2)), preview.getpixel((32, 61))
    assert isinstance(top, int) and isinstance(bottom, int)
    assert top < 30 and bottom > 225


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (60, 40), color) for color in (RED, GREEN, BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    info = inspect_image(data, max_pixels=MAX_PIXELS)
    assert info == ImageInfo(format="GIF", content_type="image/gif", width=60, height=40, frames=3)
    thumbs = render_thumbnails(data, max_pixels=MAX_PIXELS)
    small, preview = check_outputs(thumbs, (60, 40))
    assert_color_close(color_at(small, 0.5, 0.5), RED)
    assert_color_close(color_at(preview, 0.5, 0.5), RED)


def test_animated_webp_uses_first_frame() -> None:
    frames = [Image.new("RGB", (60, 40), color) for color in (BLUE, GREEN)]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100)
    info = inspect_image(data, max_pixels=MAX_PIXELS)
    assert (info.format, info.frames) == ("WEBP", 2)
    small = decode(render_thumbnails(data, max_pixels=MAX_PIXELS).small)
    assert_color_close(color_at(small, 0.5, 0.5), BLUE)


def test_tiny_image_is_not_upscaled() -> None:
    data = encode(Image.new("RGB", (10, 10), GREEN), "PNG")
    thumbs = render_thumbnails(data, max_pixels=MAX_PIXELS)
    assert thumbs.small_size == (10, 10)
    assert thumbs.preview_size == (10, 10)
    check_outputs(thumbs, (10, 10))


def test_extreme_aspect_ratio_keeps_one_pixel() -> None:
    data = encode(Image.new("RGB", (3000, 2), GREEN), "PNG")
    thumbs = render_thumbnails(data, max_pixels=MAX_PIXELS)
    assert thumbs.preview_size == (1440, 1)
    assert thumbs.small_size == (250, 1)


def test_custom_sizes_even_when_small_exceeds_preview() -> None:
    data = encode(quadrants((800, 400)), "PNG")
    thumbs = render_thumbnails(data, small_px=300, preview_px=200, max_pixels=MAX_PIXELS)
    assert thumbs.small_size == (300, 150)
    assert thumbs.preview_size == (200, 100)


def test_icc_profile_is_converted_and_not_embedded() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode(quadrants((200, 100)), "PNG", icc_profile=srgb)
    thumbs = render_thumbnails(data, max_pixels=MAX_PIXELS)
    small, preview = check_outputs(thumbs, (200, 100))
    assert_color_close(color_at(preview, 0.25, 0.25), RED)
    assert_color_close(color_at(small, 0.75, 0.75), YELLOW)


def test_broken_icc_profile_falls_back_silently() -> None:
    data = encode(quadrants((200, 100)), "PNG", icc_profile=b"definitely not an ICC profile")
    thumbs = render_thumbnails(data, max_pixels=MAX_PIXELS)
    _, preview = check_outputs(thumbs, (200, 100))
    assert_color_close(color_at(preview, 0.25, 0.25), RED)


def test_mismatched_icc_profile_falls_back_silently() -> None:
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    data = encode(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), "JPEG", icc_profile=lab)
    _, preview = check_outputs(render_thumbnails(data, max_pixels=MAX_PIXELS), (64, 64))
    assert preview.mode == "RGB"


def test_12mp_jpeg_is_shrunk_on_load(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded_sizes: list[tuple[int, int]] = []
    original_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self: JpegImagePlugin.JpegImageFile, mode: str | None, size: tuple[int, int] | None) -> Any:
        result = original_draft(self, mode, size)
        decoded_sizes.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    photo = Image.linear_gradient("L").resize((4000, 3000)).convert("RGB")
    data = encode(photo, "JPEG", quality=90)

    thumbs = render_thumbnails(data, max_pixels=MAX_PIXELS)
    assert thumbs.preview_size == (1440, 1080)
    assert thumbs.small_size == (250, 188)
    check_outputs(thumbs, (4000, 3000))
    # Decoded at 1/2 scale (2000x1500 >= 1440x1080), not at 12 MP.
    assert decoded_sizes == [(2000, 1500)]


def test_jpeg_draft_keeps_thumbnail_quality() -> None:
    """Scaled decoding plus LANCZOS must not distort the picture."""
    data = jpeg_with_exif(quadrants((4000, 2000)), 1)
    preview = decode(render_thumbnails(data, max_pixels=MAX_PIXELS).preview)
    assert preview.size == (1440, 720)
    assert_color_close(color_at(preview, 0.25, 0.25), RED, tol=10)
    assert_color_close(color_at(preview, 0.75, 0.75), YELLOW, tol=10)


def test_outputs_are_deterministic() -> None:
    data = encode(quadrants((500, 300)), "PNG")
    first = render_thumbnails(data, max_pixels=MAX_PIXELS)
    second = render_thumbnails(data, max_pixels=MAX_PIXELS)
    assert first == second


def test_resize_in_parallel_strips_is_pixel_identical() -> None:
    """Thumbnails resize large images in strips on two threads: no seams, the same pixels
    (to the rounding of a fractional source row: at most 1 level off)."""
    from PIL import ImageChops

    from imagerepo.imaging import _resize

    src = Image.effect_noise((2000, 1500), 64).convert("RGB")
    for size, resample in (((1440, 1081), Image.Resampling.BICUBIC), ((1001, 751), Image.Resampling.LANCZOS),
                           ((1440, 1081), Image.Resampling.BILINEAR)):
        expected = src.resize(size, resample)
        diff = ImageChops.difference(_resize(src, size, resample), expected)
        assert max(high for _, high in diff.getextrema()) <= 1
    assert ImageChops.difference(_resize(src, (1000, 750), Image.Resampling.BICUBIC),
                                 src.resize((1000, 750), Image.Resampling.BICUBIC)).getbbox() is None


@pytest.mark.parametrize("method", list(Image.Transpose))
def test_resize_and_transpose_in_strips_equals_resize_then_transpose(method: Image.Transpose) -> None:
    """The strips are rotated on their threads and pasted where the rotation puts them."""
    from PIL import ImageChops

    from imagerepo.imaging import _resize

    src = Image.effect_noise((2000, 1500), 64).convert("RGB")
    expected = src.resize((1000, 750), Image.Resampling.BILINEAR).transpose(method)
    ours = _resize(src, (1000, 750), Image.Resampling.BILINEAR, method)
    assert ours.size == expected.size
    assert ImageChops.difference(ours, expected).getbbox() is None


def _rgb_profiles() -> list[tuple[str, bytes]]:
    """sRGB, and the corpus' Rec.2020 profile when present (a conversion that changes pixels)."""
    profiles = [("sRGB", ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())]
    hdr = CORPUS_DIR / "png_16bit_rgb_hdr_room.png"
    if hdr.is_file():
        with Image.open(hdr) as im:
            profiles.append(("Rec.2020", im.info["icc_profile"]))
    return profiles


@pytest.mark.parametrize("method", [None, Image.Transpose.ROTATE_270, Image.Transpose.TRANSPOSE])
@pytest.mark.parametrize(("profile", "icc"), _rgb_profiles(), ids=[name for name, _ in _rgb_profiles()])
def test_strips_convert_to_srgb_like_the_whole_image(method: Image.Transpose | None, profile: str,
                                                     icc: bytes) -> None:
    """The sRGB conversion runs on each strip's thread: same pixels as on the whole image."""
    from functools import partial

    from PIL import ImageChops

    from imagerepo.imaging import PREVIEW_RESAMPLE, _resize, _to_srgb

    src = Image.effect_noise((2000, 1500), 64).convert("RGB")
    whole = src.resize((1000, 750), PREVIEW_RESAMPLE)
    expected = _to_srgb(whole if method is None else whole.transpose(method), icc)
    ours = _resize(src, (1000, 750), PREVIEW_RESAMPLE, method, partial(_to_srgb, icc=icc))
    assert ours.mode == expected.mode == "RGB"
    assert ImageChops.difference(ours, expected).getbbox() is None
    if profile != "sRGB":
        assert ImageChops.difference(expected, whole if method is None else whole.transpose(method)).getbbox()


def test_strips_may_change_the_mode() -> None:
    """CMYK without a profile becomes RGB on the strips; the canvas takes their mode."""
    from functools import partial

    from imagerepo.imaging import _resize, _to_srgb

    src = Image.new("CMYK", (2000, 1500), (0, 255, 255, 0))
    out = _resize(src, (1000, 750), Image.Resampling.HAMMING, Image.Transpose.ROTATE_90,
                  partial(_to_srgb, icc=None))
    assert out.mode == "RGB" and out.size == (750, 1000)
    assert_color_close(color_at(out, 0.5, 0.5), RED)


def psnr(a: Image.Image, b: Image.Image) -> float:
    from PIL import ImageChops, ImageStat

    assert a.size == b.size
    rms = ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).rms
    mse = sum(v * v for v in rms) / len(rms)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def _photo_like(size: tuple[int, int]) -> Image.Image:
    """Smooth gradients plus fine detail, as a photo has."""
    base = Image.merge("RGB", [Image.linear_gradient("L").resize(size),
                               Image.radial_gradient("L").resize(size),
                               Image.linear_gradient("L").rotate(90).resize(size)])
    detail = Image.effect_mandelbrot(size, (-2.0, -1.2, 1.0, 1.2), 60).convert("RGB")
    return Image.blend(base, detail, 0.5)


def test_preview_is_close_to_a_full_decode_lanczos_resize() -> None:
    """Draft decode, reduce() and the BILINEAR step stay within the noise of the q85
    encode: against the naive rendering (full decode, exif_transpose, LANCZOS) the
    preview differs by no more than that rendering's own JPEG encode does, and both
    are far above the ~30 dB where differences become visible."""
    cases = [("generated 4000x3000, orientation 6", jpeg_with_exif(_photo_like((4000, 3000)), 6))]
    photo = CORPUS_DIR / "photo_xiaomi_mi9t_12mp_orientation6.jpg"
    if photo.is_file():  # the generated case alone runs without the corpus
        cases.append((photo.name, photo.read_bytes()))
    for label, data in cases:
        full = ImageOps.exif_transpose(decode(data)).convert("RGB")
        thumbs = render_thumbnails(data, max_pixels=MAX_PIXELS)
        preview = decode(thumbs.preview)
        reference = full.resize(preview.size, Image.Resampling.LANCZOS)
        reference_encoded = decode(encode(reference, "JPEG", quality=85))
        assert psnr(preview, reference) >= 36, label
        assert psnr(preview, reference) >= psnr(reference_encoded, reference) - 3, label
        small = decode(thumbs.small)
        assert psnr(small, full.resize(small.size, Image.Resampling.LANCZOS)) >= 30, label
