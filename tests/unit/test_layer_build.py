"""The built layer (``make build``) holds only aarch64 binaries built for CPython 3.13.

Runs when ``.aws-sam/build/ImageRepoLayer`` exists (``make build`` runs it right
after ``sam build`` with IMAGEREPO_REQUIRE_LAYER_BUILD=1, so there it cannot skip).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / ".aws-sam" / "build" / "ImageRepoLayer" / "python"

EM_AARCH64 = 183
_EXT = re.compile(r"\.(cpython-(?P<ver>\d+)-(?P<plat>[a-z0-9_]+-linux-gnu)|abi3)\.so$")
_WHEEL_TAG = re.compile(r"^Tag: (?P<py>[a-z0-9]+)-(?P<abi>[a-z0-9_]+)-(?P<plat>[a-z0-9_]+)$", re.M)


def _layer() -> Path:
    if not LAYER.is_dir():
        if os.environ.get("IMAGEREPO_REQUIRE_LAYER_BUILD"):
            pytest.fail(f"{LAYER} is missing: sam build did not produce the layer")
        pytest.skip("no built layer (.aws-sam/build/ImageRepoLayer): run `make build`")
    return LAYER


def _elf_machine(path: Path) -> int | None:
    head = path.read_bytes()[:20]
    if head[:4] != b"\x7fELF":
        return None
    assert head[4] == 2, f"{path.name}: not a 64-bit ELF"
    byteorder = "little" if head[5] == 1 else "big"
    return int.from_bytes(head[18:20], byteorder)


def _shared_objects(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and (p.suffix == ".so" or ".so." in p.name)]


def test_every_shared_object_is_aarch64() -> None:
    sos = _shared_objects(_layer())
    assert sos, "the layer has no compiled code at all (Pillow, cryptography expected)"
    wrong = {str(p.relative_to(LAYER)): _elf_machine(p) for p in sos if _elf_machine(p) != EM_AARCH64}
    assert wrong == {}, f"not aarch64 ELF (e_machine): {wrong}"


def test_every_extension_module_is_for_cpython_313() -> None:
    bad = []
    for p in _shared_objects(_layer()):
        m = _EXT.search(p.name)
        if m is None:
            continue  # a bundled C library (pillow.libs/…), checked for aarch64 above
        if m.group(1) == "abi3":
            continue  # stable ABI: the wheel tags below bound its minimum version
        if (m.group("ver"), m.group("plat")) != ("313", "aarch64-linux-gnu"):
            bad.append(str(p.relative_to(LAYER)))
    assert bad == []


def test_every_wheel_was_resolved_for_cp313_aarch64() -> None:
    tags = {}
    for wheel in _layer().glob("*.dist-info/WHEEL"):
        tags[wheel.parent.name] = [m.groupdict() for m in _WHEEL_TAG.finditer(wheel.read_text())]
    assert tags
    for dist, found in tags.items():
        assert found, f"{dist}: WHEEL has no Tag"
        ok = False
        for t in found:
            pure = t["abi"] == "none" and t["plat"] == "any"
            cp313 = t["py"] == "cp313" and t["abi"] == "cp313"
            abi3 = t["abi"] == "abi3" and t["py"].startswith("cp3") and int(t["py"][3:]) <= 13
            ok = ok or pure or ((cp313 or abi3) and t["plat"].endswith("_aarch64"))
        assert ok, f"{dist}: {found}"


def test_heic_and_avif_decoders_are_in_the_layer() -> None:
    layer = _layer()
    assert list(layer.glob("pillow_heif/_pillow_heif.cpython-313-aarch64-linux-gnu.so")) or list(
        layer.glob("_pillow_heif.cpython-313-aarch64-linux-gnu.so"))
    assert list(layer.glob("PIL/_avif.cpython-313-aarch64-linux-gnu.so"))
    assert list(layer.glob("pillow_heif.libs/libheif-*.so*"))


def test_the_compiled_chunker_is_in_the_layer() -> None:
    """FastCDC must run compiled in Lambda too (pyfastcdc's pure-Python fallback is ~500x slower)."""
    layer = _layer()
    assert list(layer.glob("pyfastcdc/cy/fastcdc.cpython-313-aarch64-linux-gnu.so"))


def test_the_runtime_boto_is_not_shadowed_and_domain_code_is_there() -> None:
    layer = _layer()
    assert not (layer / "botocore").exists()
    assert not (layer / "boto3").exists()
    assert (layer / "imagerepo" / "chunkstore.py").is_file()


def test_the_migrations_travel_with_the_layer() -> None:
    shipped = {p.name: p.read_bytes() for p in (_layer() / "imagerepo" / "migrations").glob("*.sql")}
    source = {p.name: p.read_bytes() for p in (ROOT / "shared" / "migrations").glob("*.sql")}
    if shipped != source and not os.environ.get("IMAGEREPO_REQUIRE_LAYER_BUILD"):
        pytest.skip("the built layer predates the current migrations: run `make build`")
    assert shipped == source and shipped
