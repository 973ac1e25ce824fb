"""template.yaml's gallery: CloudFront sends every API route to the API and the gallery's own
client routes to the private site bucket; nothing is public."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from devstack.template import Template, load_yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
CLIENT_ROUTES = ["/", "/group/3", "/public", "/mine", "/image/12", "/upload", "/signin", "/signup",
                 "/account", "/manage"]


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    return dict(load_yaml(TEMPLATE)["Resources"])


def api_patterns(resources: dict[str, Any]) -> list[str]:
    config = resources["SiteDistribution"]["Properties"]["DistributionConfig"]
    return [b["PathPattern"] for b in config["CacheBehaviors"] if b["TargetOriginId"] == "api"]


def sample_path(route_path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", route_path)


def test_every_api_route_goes_to_the_api(resources: dict[str, Any]) -> None:
    patterns = api_patterns(resources)
    for route in Template(TEMPLATE).routes:
        path = sample_path(route.path)
        assert any(fnmatchcase(path, p) for p in patterns), f"{route.route_key} would reach the site bucket"


def test_the_gallery_routes_are_the_sites(resources: dict[str, Any]) -> None:
    patterns = api_patterns(resources)
    routes = Template(TEMPLATE).routes
    app_js = (ROOT / "web" / "js" / "app.js").read_text()
    for path in CLIENT_ROUTES:
        assert not any(fnmatchcase(path, p) for p in patterns), f"{path} would go to the API"
        assert not any(r.regex.match(path) for r in routes), f"{path} is an API route"
        first = path.split("/")[1]
        assert f"/^\\/{first}" in app_js or path == "/", f"{path} is not a client route of web/js/app.js"
    # the viewer-request function rewrites extension-less paths to the app
    code = resources["SiteRoutesFunction"]["Properties"]["FunctionCode"]
    assert "request.uri = '/index.html'" in code


def test_the_site_bucket_is_private_behind_origin_access_control(resources: dict[str, Any]) -> None:
    bucket = resources["SiteBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    statement = resources["SiteBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert [s["Principal"] for s in statement] == [{"Service": "cloudfront.amazonaws.com"}]
    assert all("AWS:SourceArn" in s["Condition"]["StringEquals"] for s in statement)
    origins = resources["SiteDistribution"]["Properties"]["DistributionConfig"]["Origins"]
    site = next(o for o in origins if o["Id"] == "site")
    assert "OriginAccessControlId" in site
    cors = resources["ImagesBucket"]["Properties"]["CorsConfiguration"]["CorsRules"]
    assert [r["AllowedOrigins"] for r in cors] == [[{"Fn::Sub": "https://${SiteDistribution.DomainName}"}]]
