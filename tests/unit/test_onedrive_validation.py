"""Item ids and names are validated and URL-encoded; import bookkeeping is deterministic."""

from __future__ import annotations

from typing import Any

import pytest

from imagerepo.errors import BadRequest
from imagerepo.onedrive.drive import is_image, item_json
from imagerepo.onedrive.graph import item_path, validate_item_id, validate_name
from imagerepo.onedrive.importer import source_ref


@pytest.mark.parametrize("item_id", ["root", "01BYE5RZ6QN3ZWBTUFOFD3GSPGOHDJD36K", "D4648F06C91D9D3D!54927",
                                     "b!abc-DEF_1.2"])
def test_valid_item_ids(item_id: str) -> None:
    assert validate_item_id(item_id) == item_id


@pytest.mark.parametrize("item_id", ["", "../me", "a/b", "a?b", "a b", "a%2Fb", "x" * 257, None, 5,
                                     "id:/name:"])
def test_invalid_item_ids(item_id: Any) -> None:
    with pytest.raises(BadRequest):
        validate_item_id(item_id)


def test_item_paths_are_encoded() -> None:
    assert item_path("root") == "/me/drive/root"
    assert item_path("D4648F06C91D9D3D!54927") == "/me/drive/items/D4648F06C91D9D3D%2154927"
    with pytest.raises(BadRequest):
        item_path("../../users")


@pytest.mark.parametrize("name", ["Holiday 2024", "photo.jpg", "été", "a" * 255, "x.y.z", "#hash"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", " lead", "trail ", "dot.", "a/b", "a\\b", "a:b", "a*b", 'a"b',
                                  "a<b", "a|b", "a?b", "tab\tname", "CON", "nul", "com1", "LPT9",
                                  ".lock", "desktop.ini", "~$temp.docx", "x_vti_y", "a" * 256, None, 3])
def test_invalid_names(name: Any) -> None:
    with pytest.raises(BadRequest) as err:
        validate_name(name)
    assert err.value.code == "invalid_name"


def test_source_ref_follows_content_not_metadata() -> None:
    item = {"id": "A!1", "cTag": '"c:{A!1},1"', "eTag": '"{A!1},1"', "parentReference": {"driveId": "d1"}}
    renamed = {**item, "eTag": '"{A!1},2"', "name": "renamed.jpg"}
    edited = {**item, "cTag": '"c:{A!1},2"'}
    assert source_ref(item) == source_ref(renamed) == 'd1/A!1@"c:{A!1},1"'
    assert source_ref(edited) != source_ref(item)
    hashed = {"id": "B", "file": {"hashes": {"quickXorHash": "q=="}}}
    assert source_ref(hashed) == "/B@q=="


@pytest.mark.parametrize(("item", "expected"), [
    ({"name": "a.JPG", "file": {"mimeType": "application/octet-stream"}}, True),
    ({"name": "scan", "file": {"mimeType": "image/png"}}, True),
    ({"name": "scan", "file": {}, "image": {"width": 1}}, True),
    ({"name": "notes.txt", "file": {"mimeType": "text/plain"}}, False),
])
def test_is_image(item: dict[str, Any], expected: bool) -> None:
    assert is_image(item) is expected


def test_item_json_shape() -> None:
    body = item_json({"id": "F", "name": "Pics", "folder": {"childCount": 3},
                      "parentReference": {"id": "R", "path": "/drive/root:"}})
    assert body["type"] == "folder" and body["childCount"] == 3 and body["parentId"] == "R"
    body = item_json({"id": "I", "name": "a.png", "size": 10, "file": {"mimeType": "image/png"},
                      "image": {"width": 4, "height": 3}})
    assert body["type"] == "file" and body["isImage"] and (body["width"], body["height"]) == (4, 3)
