"""Availability zones chosen at deploy time, and function versions that follow their layers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from learnrec_dev.packaging import STAMP_FILE

from .conftest import REGION, Synthesized


def _zone_index(subnet: dict[str, Any]) -> int:
    zone = subnet["Properties"]["AvailabilityZone"]
    assert zone.keys() == {"Fn::Select"}, zone
    index, zones = zone["Fn::Select"]
    assert zones == {"Fn::GetAZs": ""}
    return int(index)


def test_no_zone_name_is_hard_coded(each_stage: Synthesized) -> None:
    subnets = each_stage.resources("AWS::EC2::Subnet")
    assert len(subnets) == 6  # public, app and data in two zones
    assert sorted(_zone_index(s) for s in subnets.values()) == [0, 0, 0, 1, 1, 1]
    text = json.dumps(each_stage.template)
    for letter in "abcdef":
        assert f'"{REGION}{letter}"' not in text


def _domain_subnets(synth: Synthesized) -> list[dict[str, Any]]:
    domain = next(iter(synth.resources("AWS::OpenSearchService::Domain").values()))
    refs = domain["Properties"]["VPCOptions"]["SubnetIds"]
    return [synth.template["Resources"][ref["Ref"]] | {"id": ref["Ref"]} for ref in refs]


def test_a_single_search_node_sits_in_one_data_subnet(dev: Synthesized) -> None:
    assert dev.config.opensearch_instances == 1
    (subnet,) = _domain_subnets(dev)
    assert "dataSubnet" in subnet["id"]
    assert _zone_index(subnet) == 0
    domain = next(iter(dev.resources("AWS::OpenSearchService::Domain").values()))
    assert domain["Properties"]["ClusterConfig"]["ZoneAwarenessEnabled"] is False


def test_two_search_nodes_span_both_data_subnets(prod: Synthesized) -> None:
    subnets = _domain_subnets(prod)
    assert all("dataSubnet" in s["id"] for s in subnets)
    assert sorted(_zone_index(s) for s in subnets) == [0, 1]


def test_kinesis_keeps_a_week_in_prod_a_day_elsewhere(each_stage: Synthesized) -> None:
    (stream,) = each_stage.resources("AWS::Kinesis::Stream").values()
    hours = stream["Properties"]["RetentionPeriodHours"]
    assert hours == each_stage.config.stream_retention_hours
    assert hours >= (7 * 24 if each_stage.stage == "prod" else 24)


# ------------------------------------------------------------------ layer versions


def _version_id(tmp: Path, layer_text: str, stamp: str, *, flag: bool) -> str:
    """Logical id of the function version of a one-layer function built from ``tmp``."""
    import sys

    from aws_cdk import App, RemovalPolicy, Stack
    from aws_cdk import aws_lambda as lambda_

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cdk"))
    from learnrec_cdk.functions import RUNTIME, layer_versions
    from learnrec_cdk.stack import FEATURE_FLAGS

    layer = tmp / "layer"
    (layer / "python").mkdir(parents=True, exist_ok=True)
    (layer / "python" / "dependency.py").write_text(layer_text)
    (layer / STAMP_FILE).write_text(stamp)
    code = tmp / "code"
    code.mkdir(exist_ok=True)
    (code / "handler.py").write_text("def handler(event, context):\n    return {}\n")

    context = dict(FEATURE_FLAGS)
    context["@aws-cdk/aws-lambda:recognizeLayerVersion"] = flag
    app = App(context=context, outdir=str(tmp / f"out-{layer_text}-{stamp}-{flag}"))
    stack = Stack(app, "Versions")
    layers = layer_versions(stack, {"deps": str(layer)}, RemovalPolicy.DESTROY, [STAMP_FILE])
    function = lambda_.Function(
        stack,
        "Function",
        runtime=RUNTIME,
        handler="handler.handler",
        code=lambda_.Code.from_asset(str(code)),
        layers=list(layers.values()),
    )
    lambda_.Alias(stack, "Live", alias_name="live", version=function.current_version)
    template = app.synth().get_stack_by_name("Versions").template
    (version,) = [
        k for k, r in template["Resources"].items() if r["Type"] == "AWS::Lambda::Version"
    ]
    return str(version)


@pytest.mark.parametrize("flag", [True, False])
def test_a_change_to_a_layer_alone_publishes_a_new_version(tmp_path: Path, flag: bool) -> None:
    from learnrec_cdk.stack import FEATURE_FLAGS

    first = _version_id(tmp_path, "VALUE = 1\n", "build-1", flag=flag)
    changed = _version_id(tmp_path, "VALUE = 2\n", "build-1", flag=flag)
    restamped = _version_id(tmp_path, "VALUE = 1\n", "build-2", flag=flag)
    # The stack's flags are the ones that make a layer change reach the alias...
    assert FEATURE_FLAGS["@aws-cdk/aws-lambda:recognizeLayerVersion"] is True
    if flag:
        assert changed != first
    else:  # ...without it the version (and so `live`) would stay on the old layer
        assert changed == first
    # The build stamp is not content: rebuilding the same layer publishes nothing.
    assert restamped == first


def test_zones_named_in_the_stage_config_are_used_as_given(
    stack_inputs: Any, tmp_path: Path
) -> None:
    """A stage may name its zones (to avoid one): subnets and the search node follow."""
    from dataclasses import replace

    from aws_cdk import App
    from learnrec_cdk.stack import FEATURE_FLAGS, LearnrecStack

    from .conftest import stage_config

    zones = [f"{REGION}c", f"{REGION}b"]
    config = replace(stage_config("dev"), availability_zones=tuple(zones))
    app = App(context=FEATURE_FLAGS, outdir=str(tmp_path))
    stack = LearnrecStack(app, "learnrec-dev", config=config, inputs=stack_inputs)
    template = app.synth().get_stack_by_name(stack.stack_name).template
    resources = template["Resources"]
    subnets = {k: r for k, r in resources.items() if r["Type"] == "AWS::EC2::Subnet"}
    assert sorted(r["Properties"]["AvailabilityZone"] for r in subnets.values()) == sorted(
        zones * 3
    )
    (domain,) = [r for r in resources.values() if r["Type"] == "AWS::OpenSearchService::Domain"]
    (ref,) = domain["Properties"]["VPCOptions"]["SubnetIds"]
    assert "dataSubnet" in ref["Ref"]
    assert resources[ref["Ref"]]["Properties"]["AvailabilityZone"] == zones[0]
