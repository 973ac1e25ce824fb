"""Thumbnails: both sizes from one image, ours beside the naive way and beside the floor.

    PYTHONPATH=.:layers/imagerepo .venv/bin/python bench/bench_thumbnails.py [--runs 7]

* naive: full decode, then a LANCZOS resize and an encode per size (250 px WebP,
  1440 px JPEG);
* floor: decoding alone, through the very calls our pipeline makes
  (:func:`imagerepo.imaging._open_checked`, ``_draft``, ``load()``): for JPEGs at the
  reduced DCT scale (``draft``), for other formats in full (they have no shrink-on-load);
* ours: :func:`imagerepo.imaging.render_thumbnails`.

The three run side by side on the same bytes: each round runs each once, in an order
rotated per round, and each figure is the median of ``--runs`` rounds (wall clock).
Floor and ours are measured the same way in process CPU time (all threads: what a
Lambda with one vCPU pays), and for the JPEG and the HEIC the time beyond the floor is
split into the pipeline's steps (medians, each step alone) so the gap is explained
where it is not met.

The 12 MP JPEG is the corpus' Xiaomi photo (4000x3000, EXIF orientation 6), or a
generated 12 MP JPEG without the corpus; the PNG and WebP are the same pixels re-encoded
here; HEIC is the corpus' iPhone photo when a HEIF plugin (pillow-heif) is installed and
registered, else reported missing.
"""

from __future__ import annotations

import argparse
import functools
import io
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "imagerepo")]

from PIL import Image  # noqa: E402

from bench.common import Row, corpus_file, emit, interleaved_medians  # noqa: E402
from imagerepo import imaging  # noqa: E402

MAX_PIXELS = 100_000_000
PREVIEW_PX = 1440
SMALL_PX = 250


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
    """Our decode path and nothing else (same open, same draft, same load)."""
    with imaging._open_checked(data, MAX_PIXELS) as im:
        imaging._draft(im, PREVIEW_PX)
        im.load()


def ours(data: bytes) -> None:
    imaging.render_thumbnails(data, max_pixels=MAX_PIXELS)


def steps(data: bytes, runs: int) -> dict[str, float]:
    """Milliseconds per step of ``render_thumbnails`` after the decode, each step alone."""
    with imaging._open_checked(data, MAX_PIXELS) as im:
        icc = im.info.get("icc_profile")
        imaging._draft(im, PREVIEW_PX)
        im.load()
        img = imaging._normalise_mode(im, keep_cmyk=bool(icc)).copy()
        transpose = imaging._TRANSPOSE.get(imaging._orientation(im))
    finish = functools.partial(imaging._to_srgb, icc=icc if isinstance(icc, bytes) else None)

    def shrink() -> Image.Image:
        return imaging._shrink(img, PREVIEW_PX, resample=imaging.PREVIEW_RESAMPLE, transpose=transpose,
                               finish=finish)

    work = shrink()
    what = "".join([f", rotate ({transpose.name})" if transpose is not None else "",
                    ", ICC -> sRGB" if icc else ""])
    factor = max(img.width, img.height) // PREVIEW_PX
    fns = {
        f"{img.width}x{img.height}: {f'reduce({factor}), ' if factor > 1 else ''}"
        f"{imaging.PREVIEW_RESAMPLE.name} to {PREVIEW_PX} px{what}; "
        f"{imaging._STRIPS} strips on threads": shrink,
        f"JPEG encode of the preview (q{imaging.JPEG_QUALITY}, optimized Huffman, baseline, 4:2:0)":
            lambda: imaging._encode_jpeg(imaging._flatten_alpha(work)),
        f"small: BICUBIC to {SMALL_PX} px + WebP encode (q{imaging.WEBP_QUALITY}, "
        f"method {imaging.WEBP_METHOD}), beside the JPEG encode on a second thread":
            lambda: imaging._small_webp(work, SMALL_PX),
    }
    return {name: t * 1000 for name, t in interleaved_medians(fns, runs).items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
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
            rows.append(Row("thumbnails", name, "missing", "", "", "", "", None))
            print(f"{name}: no HEIF plugin (pillow-heif) installed: not measured")
            continue
        t = {k: v * 1000 for k, v in interleaved_medians(
            {"naive": lambda d=data: naive(d), "floor": lambda d=data: floor(d),
             "ours": lambda d=data: ours(d)}, args.runs).items()}
        is_jpeg = name.startswith("12 MP JPEG")
        rows.append(Row("thumbnails", f"{name}: both sizes, ours vs naive", f"{t['ours']:.0f} ms",
                        "naive (full decode + LANCZOS per size)", f"{t['naive']:.0f} ms",
                        f"{t['naive'] / t['ours']:.2f}x faster", "≥ 2.5x" if is_jpeg else "",
                        (t["naive"] / t["ours"] >= 2.5) if is_jpeg else None))
        rows.append(Row("thumbnails", f"{name}: both sizes, ours vs floor", f"{t['ours']:.0f} ms",
                        "floor (our draft decode alone)" if is_jpeg else "floor (our decode alone, no draft)",
                        f"{t['floor']:.0f} ms", f"{t['ours'] / t['floor']:.2f}x the floor",
                        "≤ 1.4x" if is_jpeg else "", (t["ours"] / t["floor"] <= 1.4) if is_jpeg else None))
        cpu = {k: v * 1000 for k, v in interleaved_medians(
            {"floor": lambda d=data: floor(d), "ours": lambda d=data: ours(d)}, args.runs,
            clock=time.process_time).items()}
        rows.append(Row("thumbnails", f"{name}: CPU time (all threads), ours vs floor",
                        f"{cpu['ours']:.0f} ms", "floor, CPU time", f"{cpu['floor']:.0f} ms",
                        f"{cpu['ours'] / cpu['floor']:.2f}x the floor"))
        if is_jpeg or name.startswith("HEIC"):
            for step, ms in steps(data, args.runs).items():
                rows.append(Row("thumbnails", f"profile, {name}: {step}", f"{ms:.1f} ms",
                                "floor (our decode alone)", f"{t['floor']:.0f} ms",
                                f"{ms / t['floor']:.2f}x the floor"))
    emit(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
