"""Least privilege: every function's IAM grants, read from template.yaml, equal the table below.

Grants are (action, resource) pairs. Resources are abbreviated: ``s3:<prefix>*`` for objects
of the images bucket under a key prefix, ``s3:bucket`` for the bucket itself (ListBucket),
``secret:<name>``, ``lambda:<function>``, ``sqs:FailedEvents``. Logging, X-Ray and VPC
network interfaces come from AWS managed policies and are checked separately.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from devstack.template import load_yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_yaml(ROOT / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
FUNCTIONS = sorted(k for k, v in RESOURCES.items() if v.get("Type") == "AWS::Serverless::Function")

GET, PUT, DELETE, LIST = "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"
SECRET = "secretsmanager:GetSecretValue"
DB = {(SECRET, "secret:Db")}
JWT = {(SECRET, "secret:Jwt")}
ONEDRIVE = {(SECRET, "secret:OneDriveClient"), (SECRET, "secret:OneDriveCacheKey")}
BUCKET = {(LIST, "s3:bucket")}
FAILED = {("sqs:SendMessage", "sqs:FailedEvents")}
EVERY_PREFIX = ("chunks/*", "manifests/*", "thumbnails/*", "incoming/*", "materialized/*")


def s3(action: str, *prefixes: str) -> set[tuple[str, str]]:
    return {(action, f"s3:{p}") for p in prefixes}


ONEDRIVE_API = DB | JWT | ONEDRIVE
EXPECTED: dict[str, set[tuple[str, str]]] = {
    "AuthorizerFunction": JWT,  # the JWT key and nothing else
    "HealthFunction": DB | BUCKET,
    "RegisterFunction": DB | JWT,
    "LoginFunction": DB | JWT,
    "MeFunction": DB | JWT,
    "ImagesCreateFunction": DB | JWT | s3(PUT, "chunks/*", "manifests/*"),
    "ImagesListFunction": DB | JWT,
    "ImageGetFunction": DB | JWT | BUCKET | s3(GET, "chunks/*", "materialized/*")
    | s3(PUT, "materialized/*") | s3("s3:AbortMultipartUpload", "materialized/*"),
    "ImageInfoFunction": DB | JWT,
    "ImageUpdateFunction": DB | JWT,
    "ImageAccessKeyFunction": DB | JWT,
    "ImageDeleteFunction": DB | JWT,  # releases references; GC deletes
    "ImageThumbnailFunction": DB | JWT | BUCKET | s3(GET, "thumbnails/*"),
    "AdminStatsFunction": DB | JWT,
    "AdminGcFunction": DB | JWT | BUCKET | s3(DELETE, *EVERY_PREFIX),
    "GcFunction": DB | BUCKET | s3(DELETE, *EVERY_PREFIX) | FAILED,
    "UploadsCreateFunction": DB | JWT | s3(PUT, "incoming/*"),
    "UploadsGetFunction": DB | JWT,
    "IngestFunction": DB | BUCKET | s3(GET, "incoming/*", "chunks/*") | s3(DELETE, "incoming/*")
    | s3(PUT, "chunks/*", "manifests/*") | FAILED,
    "ThumbnailerFunction": DB | BUCKET | s3(GET, "chunks/*", "manifests/*") | s3(PUT, "thumbnails/*")
    | FAILED,
    "SweepFunction": DB | BUCKET | s3(GET, "incoming/*") | s3(PUT, "incoming/*") | s3(DELETE, "incoming/*")
    | {("lambda:InvokeFunction", "lambda:OneDriveImportWorkerFunction")} | FAILED,
    "MigrateFunction": DB,
    "TokenRefreshFunction": DB | JWT,
    "LogoutFunction": DB | JWT,
    "MePasswordFunction": DB | JWT,
    "MeDeleteFunction": DB | JWT,  # its images' blobs are released; GC deletes
    "AdminUsersListFunction": DB | JWT,
    "AdminUsersUpdateFunction": DB | JWT,
    "GroupsListFunction": DB | JWT,
    "GroupsGetFunction": DB | JWT,
    "GroupImagesFunction": DB | JWT,
    "GroupsCreateFunction": DB | JWT,
    "GroupsUpdateFunction": DB | JWT,
    "GroupsDeleteFunction": DB | JWT,
    "OneDriveConnectFunction": ONEDRIVE_API,
    "OneDriveCallbackFunction": ONEDRIVE_API,
    "OneDriveStatusFunction": ONEDRIVE_API,
    "OneDriveItemsListFunction": ONEDRIVE_API,
    "OneDriveFolderCreateFunction": ONEDRIVE_API,
    "OneDriveItemRenameFunction": ONEDRIVE_API,
    "OneDriveItemDeleteFunction": ONEDRIVE_API,
    "OneDriveUploadSessionFunction": ONEDRIVE_API,
    "OneDriveImportFunction": ONEDRIVE_API
    | {("lambda:InvokeFunction", "lambda:OneDriveImportWorkerFunction")},
    "OneDriveImportStatusFunction": ONEDRIVE_API,
    "OneDriveImportWorkerFunction": DB | ONEDRIVE | BUCKET | s3(PUT, "chunks/*", "manifests/*")
    | s3(GET, "chunks/*") | {("lambda:InvokeFunction", "lambda:OneDriveImportWorkerFunction")} | FAILED,
}

_BUCKET_ARN = "arn:${AWS::Partition}:s3:::${AWS::StackName}-images-${AWS::AccountId}"
_SECRETS = {"JwtSecret": "secret:Jwt", "OneDriveClientSecret": "secret:OneDriveClient",
            "OneDriveCacheKeySecret": "secret:OneDriveCacheKey"}


def _resource(value: Any) -> str:
    """The abbreviated name of a policy Resource value (one of the template's forms)."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        text = value["Fn::Sub"]
        if text == _BUCKET_ARN:
            return "s3:bucket"
        if text.startswith(_BUCKET_ARN + "/"):
            return "s3:" + text[len(_BUCKET_ARN) + 1:]
    if isinstance(value, dict) and "Ref" in value and value["Ref"] in _SECRETS:
        return _SECRETS[value["Ref"]]
    if isinstance(value, dict) and "Fn::If" in value and value["Fn::If"][0] == "CreateDb":
        created, existing = value["Fn::If"][1], value["Fn::If"][2]
        assert created == {"Fn::GetAtt": ["DbCluster", "MasterUserSecret.SecretArn"]}
        assert existing["Fn::If"][1] == {"Ref": "DbSecretArn"}
        return "secret:Db"
    if isinstance(value, dict) and "Fn::GetAtt" in value and value["Fn::GetAtt"][1] == "Arn":
        return "lambda:" + value["Fn::GetAtt"][0]
    raise AssertionError(f"unrecognised policy resource {value!r}")


def _statements(document: dict[str, Any]) -> set[tuple[str, str]]:
    grants = set()
    for st in document["Statement"]:
        assert st["Effect"] == "Allow"
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        for action in actions:
            assert "*" not in action, action
            grants |= {(action, _resource(r)) for r in resources}
    return grants


def _managed(ref: Any) -> set[tuple[str, str]]:
    """Grants of one of the template's own managed policies (AWS managed ones give none here)."""
    if isinstance(ref, dict) and "Ref" in ref:
        policy = RESOURCES[ref["Ref"]]
        assert policy["Type"] == "AWS::IAM::ManagedPolicy"
        return _statements(policy["Properties"]["PolicyDocument"])
    return set()


def grants(function: str) -> set[tuple[str, str]]:
    props = RESOURCES[function]["Properties"]
    found: set[tuple[str, str]] = set()
    if "Role" in props:
        assert props["Role"] == {"Fn::GetAtt": ["FunctionRole", "Arn"]}, "only FunctionRole is shared"
        assert "Policies" not in props
        role = RESOURCES["FunctionRole"]["Properties"]
        for arn in role["ManagedPolicyArns"]:
            found |= _managed(arn)
        assert "Policies" not in role
    for item in props.get("Policies", []):
        found |= _managed(item) if "Ref" in item else _statements(item)
    for res in RESOURCES.values():  # separate policies attached to the function's generated role
        if res.get("Type") == "AWS::IAM::Policy" and {"Ref": f"{function}Role"} in res["Properties"]["Roles"]:
            found |= _statements(res["Properties"]["PolicyDocument"])
    destination = (props.get("EventInvokeConfig") or {}).get("DestinationConfig", {}).get("OnFailure")
    if destination:  # SAM grants sqs:SendMessage on an SQS destination
        assert destination == {"Type": "SQS", "Destination": {"Fn::GetAtt": ["FailedEventsQueue", "Arn"]}}
        found |= FAILED
    return found


def test_the_table_covers_every_function() -> None:
    assert sorted(EXPECTED) == FUNCTIONS


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_policy_matches_the_table(function: str) -> None:
    assert function in EXPECTED, f"add {function} to the IAM table in this test"
    assert grants(function) == EXPECTED[function]


def test_only_gc_deletes_chunks_and_readers_cannot_delete() -> None:
    deleters = {f for f in FUNCTIONS if (DELETE, "s3:chunks/*") in grants(f)}
    assert deleters == {"GcFunction", "AdminGcFunction"}
    for f in ("ImageGetFunction", "ImageThumbnailFunction", "ImagesListFunction", "ImageInfoFunction",
              "HealthFunction", "ThumbnailerFunction"):
        assert not any(a == DELETE for a, _ in grants(f)), f


def test_ingest_reads_and_deletes_only_incoming() -> None:
    g = grants("IngestFunction")
    assert {r for a, r in g if a == DELETE} == {"s3:incoming/*"}
    assert {r for a, r in g if a == GET} == {"s3:incoming/*", "s3:chunks/*"}  # chunks: HEAD after staging


def test_only_onedrive_functions_read_onedrive_secrets() -> None:
    readers = {f for f in FUNCTIONS if grants(f) & ONEDRIVE}
    assert readers == {f for f in FUNCTIONS if f.startswith("OneDrive")}


def test_the_authorizer_reads_only_the_jwt_key() -> None:
    assert grants("AuthorizerFunction") == JWT
    assert RESOURCES["AuthorizerFunction"]["Properties"]["VpcConfig"] == {"Ref": "AWS::NoValue"}


def test_shared_role_has_only_aws_managed_basics() -> None:
    role = RESOURCES["FunctionRole"]["Properties"]
    aws_managed = [a["Fn::Sub"] if isinstance(a, dict) and "Fn::Sub" in a else a
                   for a in role["ManagedPolicyArns"] if not (isinstance(a, dict) and "Ref" in a)]
    names = sorted(re.sub(r".*:policy/", "", str(a if not isinstance(a, dict) else a["Fn::If"][1]["Fn::Sub"]))
                   for a in aws_managed)
    assert names == ["AWSXRayDaemonWriteAccess", "service-role/AWSLambdaBasicExecutionRole",
                     "service-role/AWSLambdaVPCAccessExecutionRole"]
