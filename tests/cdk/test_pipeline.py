"""The state machine is PIPELINE, in order; schedules per stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from learnrec.pipeline.definition import (
    PIPELINE,
    Mode,
    StepKind,
    load_entry,
    processing_arguments,
)
from learnrec.pipeline.definition import step as registered_step
from learnrec.pipeline.functions import START, function_entry

from .conftest import Synthesized

REPO = Path(__file__).resolve().parents[2]


def definition(synth: Synthesized) -> dict[str, Any]:
    machine = next(iter(synth.resources("AWS::StepFunctions::StateMachine").values()))
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    text = "".join(part if isinstance(part, str) else "REF" for part in parts)
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def successors(state: dict[str, Any]) -> list[str]:
    nexts = [choice["Next"] for choice in state.get("Choices", [])]
    nexts += [state[key] for key in ("Next", "Default") if key in state]
    return nexts


def tasks_in_order(machine: dict[str, Any], mode: str | None = None) -> list[str]:
    """Task states reachable from StartAt, depth first; with ``mode``, only the branch
    a run in that mode takes at each mode Choice."""
    order: list[str] = []
    seen: set[str] = set()
    stack = [machine["StartAt"]]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        state = machine["States"][name]
        if state["Type"] == "Task":
            order.append(name)
        nexts = successors(state)
        choices = state.get("Choices", [])
        if mode and choices and choices[0].get("Variable") == "$.run.mode":
            taken = choices[0]["Next"] if choices[0]["StringEquals"] == mode else state["Default"]
            nexts = [taken]
        stack.extend(reversed(nexts))
    return order


def test_state_machine_runs_the_pipeline_steps_in_order(prod: Synthesized) -> None:
    machine = definition(prod)
    assert tasks_in_order(machine) == ["start", *(step.name for step in PIPELINE)]
    for mode in Mode:
        expected = ["start", *(s.name for s in PIPELINE if s.runs_in(mode))]
        assert tasks_in_order(machine, mode.value) == expected


def test_each_step_kind_uses_its_integration(prod: Synthesized) -> None:
    states = definition(prod)["States"]
    for step in PIPELINE:
        state = states[step.name]
        resource = state["Resource"]
        if step.kind is StepKind.TRAINING:
            assert resource.endswith(":states:::sagemaker:createTrainingJob.sync")
            params = state["Parameters"]
            assert [c["ChannelName"] for c in params["InputDataConfig"]] == [
                c.name for c in step.channels
            ]
            assert (
                f"/pipeline/{{}}/{step.outputs[0]}/" in params["OutputDataConfig"]["S3OutputPath.$"]
            )
            assert "States.JsonMerge" in params["HyperParameters.$"]
            hyper = states[f"{step.name} hyperparameters"]["Parameters"]
            assert hyper["fixed"]["learnrec_entry_point"] == step.entry_point
            assert hyper["fixed"]["sagemaker_submit_directory"].startswith("s3://")
            assert hyper["defaults"] == dict(step.hyperparameters)
            for name in step.run_hyperparameters:
                assert hyper["fixed"][f"{name}.$"] == f"$.run.{name}"
        elif step.kind is StepKind.PROCESSING:
            assert resource.endswith(":states:::sagemaker:createProcessingJob.sync")
            params = state["Parameters"]
            # Fixed arguments: the run document is an input, never an argument.
            assert params["AppSpecification"]["ContainerArguments"] == processing_arguments(step)
            inputs = [i["InputName"] for i in params["ProcessingInputs"]]
            assert inputs == ["code", *step.artifact_inputs]
            outputs = [o["OutputName"] for o in params["ProcessingOutputConfig"]["Outputs"]]
            assert set(outputs) == {o for m in Mode for o in step.outputs_for(m)}
        else:
            # payload_response_only: the function's ARN is the resource, the payload the
            # parameters (a reference, "REF" here).
            assert resource == "REF"
            assert state["Parameters"] == {"step": step.name, "run.$": "$.run"}
            assert state["ResultPath"] == f"$.results.{step.name}"
        # Every answer goes to its own place: a job's Describe output must not replace
        # the state (a missing ResultPath is "$", the whole state).
        assert state["ResultPath"] == f"$.results.{step.name}", step.name
        assert any(c["Next"] == "run failed" for c in state.get("Catch", [])), step.name


def test_the_state_machine_names_only_registered_steps(prod: Synthesized) -> None:
    """Every task runs ``start`` or a step of the registry, and what it hands its runner
    (payload, container arguments, script) resolves to that step's registered entry."""
    states = definition(prod)["States"]
    for name, state in states.items():
        if state["Type"] != "Task":
            continue
        if name == START:
            assert state["Parameters"]["step"] == START
            continue
        registered = registered_step(name)  # KeyError: a state for a step nobody registered
        entry = load_entry(registered)
        if registered.kind is StepKind.FUNCTION:
            assert function_entry(state["Parameters"]["step"]) is entry
        elif registered.kind is StepKind.PROCESSING:
            script, step_name = state["Parameters"]["AppSpecification"]["ContainerArguments"]
            assert step_name == name and (REPO / script).is_file()
        else:
            hyper = states[f"{name} hyperparameters"]["Parameters"]["fixed"]
            script = hyper["learnrec_entry_point"]
            assert script == registered.entry_point and (REPO / script).is_file()


def test_schedules_follow_the_stage(each_stage: Synthesized) -> None:
    config = each_stage.config
    (machine,) = each_stage.resources("AWS::StepFunctions::StateMachine")
    rules = {
        r["Properties"]["ScheduleExpression"]: r["Properties"]
        for r in each_stage.resources("AWS::Events::Rule").values()
        if r["Properties"]["Targets"][0]["Arn"] == {"Ref": machine}
    }
    expected = {
        config.schedules.full_retrain: {"mode": "full"},
        config.schedules.ranking_retrain: {"mode": "ranking"},
    }
    assert set(rules) == set(expected)
    for expression, payload in expected.items():
        rule = rules[expression]
        assert rule["State"] == ("ENABLED" if config.schedules_enabled else "DISABLED")
        assert json.loads(rule["Targets"][0]["Input"]) == payload


def test_state_machine_logs_and_traces(prod: Synthesized) -> None:
    machine = next(iter(prod.resources("AWS::StepFunctions::StateMachine").values()))
    props = machine["Properties"]
    assert props["StateMachineName"] == prod.config.names.state_machine
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    assert props["TracingConfiguration"] == {"Enabled": True}


def test_the_model_registry_group_is_part_of_the_stack(each_stage: Synthesized) -> None:
    groups = list(each_stage.resources("AWS::SageMaker::ModelPackageGroup").values())
    assert len(groups) == 1
    name = each_stage.config.names.model_package_group
    assert groups[0]["Properties"]["ModelPackageGroupName"] == name


def _statements(synth: Synthesized, role_part: str) -> list[dict[str, Any]]:
    roles = [k for k in synth.resources("AWS::IAM::Role") if role_part in k]
    assert len(roles) == 1, roles
    return [
        statement
        for policy in synth.resources("AWS::IAM::Policy").values()
        if {"Ref": roles[0]} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return set(action if isinstance(action, list) else [action])


def test_the_pipeline_function_may_do_what_register_and_promote_do(prod: Synthesized) -> None:
    statements = _statements(prod, "RetrainPipelineRole")
    by_action: dict[str, list[str]] = {}
    for statement in statements:
        for action in _actions(statement):
            by_action.setdefault(action, []).append(json.dumps(statement["Resource"]))
    # start writes run/, register version/, promote active/ under pipeline/<run id>/.
    assert any("/pipeline/*" in r for r in by_action["s3:PutObject"])
    group = prod.config.names.model_package_group
    assert any(f"model-package/{group}/*" in r for r in by_action["sagemaker:UpdateModelPackage"])
    assert any(f"model-package/{group}/*" in r for r in by_action["sagemaker:CreateModelPackage"])
    # The group is the stack's: nothing creates it at run time.
    assert "sagemaker:CreateModelPackageGroup" not in by_action
    # promote moves the serving alias: read it, swap it; nothing else in OpenSearch.
    es = {a: r for a, r in by_action.items() if a.startswith("es:")}
    assert set(es) == {"es:ESHttpGet", "es:ESHttpPost"}
    assert all("/_alias/learnrec-items" in r for r in es["es:ESHttpGet"])
    assert all("/_aliases" in r for r in es["es:ESHttpPost"])


def test_jobs_and_the_pipeline_function_fill_and_move_the_opensearch_index(
    prod: Synthesized,
) -> None:
    functions = prod.resources("AWS::Lambda::Function").values()
    pipeline = next(
        f["Properties"]
        for f in functions
        if f["Properties"].get("FunctionName") == prod.config.names.pipeline_function
    )
    env = pipeline["Environment"]["Variables"]
    assert env["VECTOR_INDEX"] == "opensearch"
    assert env["OPENSEARCH_ALIAS"] == prod.config.names.opensearch_alias
    assert env["OPENSEARCH_ENDPOINT"]
    states = definition(prod)["States"]
    for step in PIPELINE:
        if step.kind is not StepKind.FUNCTION:
            job_env = states[step.name]["Parameters"]["Environment"]
            assert job_env["VECTOR_INDEX"] == "opensearch", step.name
            assert job_env["OPENSEARCH_ALIAS"] == prod.config.names.opensearch_alias
    api = _statements(prod, "ServingApiRole")
    swaps = [s for s in api if "es:ESHttpPost" in _actions(s) and "_aliases" in json.dumps(s)]
    assert swaps  # promote/rollback through the API move the alias too
