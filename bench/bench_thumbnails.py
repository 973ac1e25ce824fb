"""Thumbnails: both sizes from one image, ours beside the naive way and beside the floor.

    PYTHONPATH=.:layers/imagerepo .venv/bin/python bench/bench_thumbnails.py [--runs 5]

* naive: full decode, then a LANCZOS resize and an encode per size (250 px WebP,
  1440 px JPEG);
* floor: decoding alone, at the reduced DCT scale our pipeline uses for JPEGs
  (``draft``), in full for other formats;
* ours: :func:`imagerepo.imaging.render_thumbnails`.

Medians of ``--runs``. The 12 MP JPEG is the corpus' Xiaomi photo (4000x3000, EXIF
orientation 6), or a generated 12 MP JPEG without the corpus; the PNG and WebP are the
same pixels re-encoded here; HEIC is the corpus' iPhone photo when a HEIF plugin
(pillow-heif) is installed and registered, else reported missing.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "imagerepo")]

from PIL import Image  # noqa: E402

from bench.common import Row, corpus_file, emit, median_seconds  # noqa: E402
from imagerepo import imaging  # noqa: E402

MAX_PIXELS = 100_000_000


def twelve_mp_jpeg() -> tuple[str, bytes]:
    path = corpus_file("photo_xiaomi_mi9t_12mp_orientation6.jpg")
    if path:
        return "12 MP JPEG (corpus, Xiaomi)", path.read_bytes()
    im = Image.effect_mandelbrot((4000, 3000), (-2.0, -1.2, 1.0, 1.2), 100).convert("RGB")
    out = io.BytesIO()
    im.save(out, "JPEG", quality=90)
    return "12 MP JPEG (generated)", out.getvalue()


def reencode(data: bytes, fmt: str, **kw: object) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        out = io.BytesIO()
        im.convert("RGB").save(out, fmt, **kw)
    return out.getvalue()


def heic() -> bytes | None:
    path = corpus_file("heic_iphone11_photo.heic")
    try:
        import pillow_heif  # type: ignore[import-not-found, unused-ignore]

        pillow_heif.register_heif_opener()
    except ImportError:
        return None
    return path.read_bytes() if path else None


def naive(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        for px, fmt in ((1440, "JPEG"), (250, "WEBP")):
            out = im.convert("RGB").resize(imaging._fit_size(im.size, px), Image.Resampling.LANCZOS)
            out.save(io.BytesIO(), fmt, quality=85)


def floor(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as im:
        if im.format in ("JPEG", "MPO"):
            im.draft("RGB", imaging._fit_size(im.size, 1440))
        im.load()


def ours(data: bytes) -> None:
    imaging.render_thumbnails(data, max_pixels=MAX_PIXELS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    label, jpeg = twelve_mp_jpeg()
    cases: list[tuple[str, bytes | None]] = [
        (label, jpeg),
        ("12 MP PNG (same pixels)", reencode(jpeg, "PNG", compress_level=1)),
        ("12 MP WebP (same pixels)", reencode(jpeg, "WEBP", quality=85, method=0)),
        ("HEIC (corpus, iPhone 11)", heic()),
    ]
    rows = []
    for name, data in cases:
        if data is None:
            rows.append(Row("thumbnails", name, "missing", "", "", "", "",
                            None))
            print(f"{name}: no HEIF plugin (pillow-heif) installed: not measured")
            continue
        t_naive = median_seconds(lambda d=data: naive(d), args.runs) * 1000
        t_floor = median_seconds(lambda d=data: floor(d), args.runs) * 1000
        t_ours = median_seconds(lambda d=data: ours(d), args.runs) * 1000
        is_jpeg = name.startswith("12 MP JPEG")
        rows.append(Row("thumbnails", f"{name}: both sizes, ours vs naive", f"{t_ours:.0f} ms",
                        "naive (full decode + LANCZOS per size)", f"{t_naive:.0f} ms",
                        f"{t_naive / t_ours:.2f}x faster", "≥ 2.5x" if is_jpeg else "",
                        (t_naive / t_ours >= 2.5) if is_jpeg else None))
        rows.append(Row("thumbnails", f"{name}: both sizes, ours vs floor", f"{t_ours:.0f} ms",
                        "floor (draft decode alone)" if is_jpeg else "floor (decode alone)",
                        f"{t_floor:.0f} ms", f"{t_ours / t_floor:.2f}x the floor",
                        "≤ 1.4x" if is_jpeg else "", (t_ours / t_floor <= 1.4) if is_jpeg else None))
    emit(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
