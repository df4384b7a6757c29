"""The state machine is PIPELINE, in order; schedules per stage."""

from __future__ import annotations

import json
from typing import Any

from learnrec.pipeline.definition import PIPELINE, Mode, StepKind

from .conftest import Synthesized


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
            arguments = params["AppSpecification"]["ContainerArguments.$"]
            assert f"'{step.entry_point}', '{step.name}', '--run'" in arguments
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
        assert any(c["Next"] == "run failed" for c in state.get("Catch", [])), step.name


def test_schedules_follow_the_stage(each_stage: Synthesized) -> None:
    config = each_stage.config
    rules = {
        r["Properties"]["ScheduleExpression"]: r["Properties"]
        for r in each_stage.resources("AWS::Events::Rule").values()
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
