"""The deploy's shape, read from template.yaml: database modes, schema custom resource,
failure destinations, alarms, tracing and access logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devstack.template import load_yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_yaml(ROOT / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
PARAMETERS: dict[str, Any] = TEMPLATE["Parameters"]
CONDITIONS: dict[str, Any] = TEMPLATE["Conditions"]
GLOBALS: dict[str, Any] = TEMPLATE["Globals"]["Function"]
FUNCTIONS = sorted(k for k, v in RESOURCES.items() if v.get("Type") == "AWS::Serverless::Function")
ASYNC = ["IngestFunction", "ThumbnailerFunction", "GcFunction", "SweepFunction",
         "OneDriveImportWorkerFunction"]


def _props(name: str) -> dict[str, Any]:
    return dict(RESOURCES[name].get("Properties") or {})


# -- DatabaseMode ---------------------------------------------------------------------------
def test_database_mode_parameter_and_conditions() -> None:
    mode = PARAMETERS["DatabaseMode"]
    assert (mode["Default"], sorted(mode["AllowedValues"])) == ("create", ["create", "existing"])
    assert CONDITIONS["CreateDb"] == {"Fn::Equals": [{"Ref": "DatabaseMode"}, "create"]}
    assert CONDITIONS["ExistingDb"] == {"Fn::Equals": [{"Ref": "DatabaseMode"}, "existing"]}
    assert CONDITIONS["CreateProxy"] == {"Fn::And": [{"Fn::Condition": "CreateDb"},
                                                     {"Fn::Equals": [{"Ref": "UseRdsProxy"}, "true"]}]}
    assert PARAMETERS["UseRdsProxy"]["Default"] == "false"  # idle cost: see the README
    # existing mode: today's parameters, required by a rule; subnets optional.
    assert PARAMETERS["DbHost"]["Default"] == "" and PARAMETERS["DbSecretArn"]["Default"] == ""
    rule = TEMPLATE["Rules"]["ExistingDatabaseIsNamed"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "DatabaseMode"}, "existing"]}
    assert len(rule["Assertions"]) == 2
    assert CONDITIONS["ExistingInVpc"]["Fn::And"][0] == {"Fn::Condition": "ExistingDb"}


@pytest.mark.parametrize("name", [
    "Vpc", "PrivateSubnetA", "PrivateSubnetB", "PrivateRouteTable", "S3GatewayEndpoint",
    "SecretsManagerEndpoint", "FunctionSecurityGroup", "DatabaseSecurityGroup", "DbSubnetGroup",
    "DbCluster", "DbInstance"])
def test_create_mode_resources(name: str) -> None:
    assert RESOURCES[name]["Condition"] == "CreateDb"


def test_two_private_subnets_in_two_zones_and_endpoints_instead_of_nat() -> None:
    zones = [_props(s)["AvailabilityZone"] for s in ("PrivateSubnetA", "PrivateSubnetB")]
    assert zones == [{"Fn::Select": [0, {"Fn::GetAZs": ""}]}, {"Fn::Select": [1, {"Fn::GetAZs": ""}]}]
    s3 = _props("S3GatewayEndpoint")
    assert s3["VpcEndpointType"] == "Gateway"
    assert s3["ServiceName"] == {"Fn::Sub": "com.amazonaws.${AWS::Region}.s3"}
    sm = _props("SecretsManagerEndpoint")
    assert sm["VpcEndpointType"] == "Interface" and sm["PrivateDnsEnabled"] is True
    assert sm["ServiceName"] == {"Fn::Sub": "com.amazonaws.${AWS::Region}.secretsmanager"}
    assert RESOURCES["NatGateway"]["Condition"] == "CreateNat"
    assert PARAMETERS["EnableNatGateway"]["Default"] == "false"


def test_aurora_serverless_v2_scales_to_zero_and_pauses() -> None:
    cluster = _props("DbCluster")
    assert cluster["Engine"] == "aurora-postgresql"
    assert cluster["ServerlessV2ScalingConfiguration"] == {
        "MinCapacity": 0, "MaxCapacity": {"Ref": "DbMaxCapacity"},
        "SecondsUntilAutoPause": {"Ref": "DbAutoPauseSeconds"}}
    assert cluster["ManageMasterUserPassword"] is True  # RDS-managed secret, rotated
    assert cluster["StorageEncrypted"] is True
    assert _props("DbInstance")["DBInstanceClass"] == "db.serverless"
    assert RESOURCES["DbCluster"]["DeletionPolicy"] == "Snapshot"
    for name in ("DbProxy", "DbProxyTargets", "DbProxyRole"):
        assert RESOURCES[name]["Condition"] == "CreateProxy"


def test_functions_get_the_database_of_either_mode() -> None:
    env = GLOBALS["Environment"]["Variables"]
    assert env["DB_HOST"] == {"Fn::If": ["CreateDb", {"Fn::If": [
        "CreateProxy", {"Fn::GetAtt": ["DbProxy", "Endpoint"]},
        {"Fn::GetAtt": ["DbCluster", "Endpoint.Address"]}]}, {"Ref": "DbHost"}]}
    assert env["DB_SECRET_ARN"] == {"Fn::If": ["CreateDb", {"Fn::GetAtt": [
        "DbCluster", "MasterUserSecret.SecretArn"]}, {"Ref": "DbSecretArn"}]}
    vpc = GLOBALS["VpcConfig"]["Fn::If"]
    assert vpc[0] == "CreateDb"
    assert vpc[1]["SubnetIds"] == [{"Ref": "PrivateSubnetA"}, {"Ref": "PrivateSubnetB"}]
    assert vpc[2]["Fn::If"][0] == "ExistingInVpc" and vpc[2]["Fn::If"][2] == {"Ref": "AWS::NoValue"}


# -- schema ------------------------------------------------------------------------------------
def test_migration_custom_resource_runs_in_both_modes() -> None:
    schema = RESOURCES["DatabaseSchema"]
    assert schema["Type"] == "AWS::CloudFormation::CustomResource"
    assert "Condition" not in schema
    props = schema["Properties"]
    assert props["ServiceToken"] == {"Fn::GetAtt": ["MigrateFunction", "Arn"]}
    assert props["LayerVersion"] == {"Ref": "ImageRepoLayer"}  # new migrations, new layer: re-run
    assert props["Database"] == {"Fn::If": ["CreateDb", {"Fn::GetAtt": ["DbInstance", "Endpoint.Address"]},
                                            {"Ref": "DbHost"}]}
    assert _props("MigrateFunction")["CodeUri"] == "functions/migrate/"


# -- failure destinations ---------------------------------------------------------------------
def test_failed_events_queue_keeps_14_days() -> None:
    assert _props("FailedEventsQueue")["MessageRetentionPeriod"] == 14 * 86400


@pytest.mark.parametrize("name", ASYNC)
def test_every_async_function_has_bounded_retries_and_an_sqs_destination(name: str) -> None:
    config = _props(name)["EventInvokeConfig"]
    assert 0 <= config["MaximumRetryAttempts"] <= 2
    assert config["MaximumEventAgeInSeconds"] <= 21600
    assert config["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS", "Destination": {"Fn::GetAtt": ["FailedEventsQueue", "Arn"]}}


def test_the_async_list_is_complete() -> None:
    """S3- or schedule-triggered functions, and the worker invoked with InvocationType=Event."""
    triggered = {f for f in FUNCTIONS
                 if any(e["Type"] in ("S3", "Schedule", "ScheduleV2")
                        for e in (_props(f).get("Events") or {}).values())}
    assert triggered | {"OneDriveImportWorkerFunction"} == set(ASYNC)


@pytest.mark.parametrize("name", ["GcFunction", "ThumbnailerFunction", "SweepFunction"])
def test_housekeeping_shares_one_schedule(name: str) -> None:
    """One rate for the three, created together: a paused Aurora is woken about once per period."""
    events = _props(name)["Events"].values()
    schedules = [e["Properties"]["Schedule"] for e in events if e["Type"] == "Schedule"]
    assert schedules == [{"Ref": "HousekeepingRate"}]
    assert PARAMETERS["HousekeepingRate"]["Default"] == "rate(1 hour)"


# -- observability ------------------------------------------------------------------------------
def test_tracing_and_access_logs() -> None:
    assert GLOBALS["Tracing"] == "Active"
    logs = _props("HttpApi")["AccessLogSettings"]
    assert logs["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogs", "Arn"]}
    assert "$context.requestId" in logs["Format"] and "$context.status" in logs["Format"]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_errors_and_throttles_alarms_per_function(function: str) -> None:
    stem = function.removesuffix("Function")
    for metric in ("Errors", "Throttles"):
        alarm = _props(f"{stem}{metric}Alarm")
        assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", metric)
        assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function}}]
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_api_5xx_rate_alarm() -> None:
    alarm = _props("Api5xxRateAlarm")
    metrics = {m["Id"]: m for m in alarm["Metrics"]}
    assert metrics["errors"]["MetricStat"]["Metric"]["MetricName"] == "5xx"
    assert metrics["requests"]["MetricStat"]["Metric"]["MetricName"] == "Count"
    for m in ("errors", "requests"):
        dims = metrics[m]["MetricStat"]["Metric"]["Dimensions"]
        assert dims == [{"Name": "ApiId", "Value": {"Ref": "HttpApi"}}]
    assert metrics["rate"]["Expression"] == "IF(requests > 0, 100 * errors / requests, 0)"
    assert metrics["rate"]["ReturnData"] is True


def test_failed_events_age_alarm() -> None:
    alarm = _props("FailedEventsAgeAlarm")
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateAgeOfOldestMessage")
    queue = {"Fn::GetAtt": ["FailedEventsQueue", "QueueName"]}
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": queue}]
