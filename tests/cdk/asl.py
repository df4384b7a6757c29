"""Evaluating a synthesized state machine: the requests its tasks would send.

Two parts. :func:`resolve` turns the CloudFormation tokens of a template value
(``Fn::Join``, ``Fn::Sub``, ``Ref``, ``Fn::GetAtt``) into the physical values a
deployment would give them (subnet ids, role ARNs, bucket names, the OpenSearch
endpoint), so the definition reads as Step Functions reads it. :class:`Execution` walks
that definition from ``StartAt`` through Pass, Task, Choice, Succeed and Fail states,
applying ``InputPath``, ``Parameters``, ``ResultSelector``, ``ResultPath`` and
``OutputPath`` as Step Functions does (a key missing from a state is its default); the
JSONPaths and intrinsic functions (``States.Format``, ``States.Array``,
``States.JsonToString``, ``States.StringToJson``, ``States.JsonMerge``) are evaluated
by the interpreter moto ships (derived from LocalStack's), not re-implemented here.
Each Task's request and its resource are recorded; the task's answer comes from a
callback (the real function code, or a job's empty ``.sync`` result).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from antlr4 import CommonTokenStream, InputStream
from moto.stepfunctions.parser.asl.antlr.runtime.ASLIntrinsicLexer import ASLIntrinsicLexer
from moto.stepfunctions.parser.asl.antlr.runtime.ASLIntrinsicParser import ASLIntrinsicParser
from moto.stepfunctions.parser.asl.antlt4utils.antlr4utils import is_production, is_terminal
from moto.stepfunctions.parser.asl.parse.intrinsic.preprocessor import Preprocessor
from moto.stepfunctions.parser.asl.utils.json_path import extract_json

ACCOUNT = "123456789012"
REGION = "eu-west-1"
PARTITION = "aws"
# Step Functions passes at most 256 KiB of data from one state to the next.
MAX_STATE_BYTES = 256 * 1024


class AslError(AssertionError):
    """The definition asks for something this evaluation does not know."""


# ------------------------------------------------------------------ CloudFormation


@dataclass
class PhysicalValues:
    """Realistic physical ids for a template's resources, stable per logical id."""

    template: Mapping[str, Any]
    _numbers: dict[str, int] = field(default_factory=dict)

    def _n(self, logical_id: str) -> int:
        return self._numbers.setdefault(logical_id, len(self._numbers))

    def _props(self, logical_id: str) -> Mapping[str, Any]:
        props: Mapping[str, Any] = self.template["Resources"][logical_id].get("Properties", {})
        return props

    def _name(self, logical_id: str, key: str, fallback: str) -> str:
        value = self._props(logical_id).get(key)
        return value if isinstance(value, str) else fallback

    def ref(self, logical_id: str) -> str:
        pseudo = {
            "AWS::Partition": PARTITION,
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "learnrec-stage",
        }
        if logical_id in pseudo:
            return pseudo[logical_id]
        kind = self.template["Resources"][logical_id]["Type"]
        n = self._n(logical_id)
        generated = f"{logical_id[:40].lower()}-1a2b3c4d5e6f"
        if kind == "AWS::EC2::Subnet":
            return f"subnet-0123456789abcde{n:02x}"
        if kind == "AWS::EC2::SecurityGroup":
            return f"sg-0123456789abcde{n:02x}"
        if kind == "AWS::S3::Bucket":
            return self._name(logical_id, "BucketName", generated)
        if kind == "AWS::Lambda::Function":
            return self._name(logical_id, "FunctionName", f"{logical_id[:40]}-AbCdEf123456")
        if kind == "AWS::IAM::Role":
            return self._name(logical_id, "RoleName", f"{logical_id[:40]}-AbCdEf123456")
        if kind == "AWS::SecretsManager::Secret":
            name = self._name(logical_id, "Name", logical_id)
            return f"arn:{PARTITION}:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf"
        if kind == "AWS::SecretsManager::SecretTargetAttachment":
            secret: str = resolve(self._props(logical_id)["SecretId"], self)
            return secret  # the attached secret's ARN
        if kind == "AWS::SageMaker::ModelPackageGroup":
            return self.get_att(logical_id, "ModelPackageGroupArn")
        if kind == "AWS::OpenSearchService::Domain":
            return self._name(logical_id, "DomainName", "learnrec-search-abcdef")
        raise AslError(f"no physical value for Ref of {kind} ({logical_id})")

    def get_att(self, logical_id: str, attribute: str) -> str:
        kind = self.template["Resources"][logical_id]["Type"]
        if kind == "AWS::IAM::Role" and attribute == "Arn":
            return f"arn:{PARTITION}:iam::{ACCOUNT}:role/{self.ref(logical_id)}"
        if kind == "AWS::Lambda::Function" and attribute == "Arn":
            name = self.ref(logical_id)
            return f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{name}"
        if kind == "AWS::EC2::SecurityGroup" and attribute == "GroupId":
            return self.ref(logical_id)
        if kind == "AWS::S3::Bucket" and attribute == "Arn":
            return f"arn:{PARTITION}:s3:::{self.ref(logical_id)}"
        if kind == "AWS::OpenSearchService::Domain" and attribute == "DomainEndpoint":
            domain = self.ref(logical_id)
            return f"vpc-{domain}-a1b2c3d4e5f6g7h8i9j0k1l2m3.{REGION}.es.amazonaws.com"
        if kind == "AWS::OpenSearchService::Domain" and attribute == "Arn":
            return f"arn:{PARTITION}:es:{REGION}:{ACCOUNT}:domain/{self.ref(logical_id)}"
        if kind == "AWS::SageMaker::ModelPackageGroup" and attribute == "ModelPackageGroupArn":
            name = self._name(logical_id, "ModelPackageGroupName", logical_id.lower())
            return f"arn:{PARTITION}:sagemaker:{REGION}:{ACCOUNT}:model-package-group/{name}"
        if kind == "AWS::RDS::DBProxy" and attribute == "Endpoint":
            name = self._name(logical_id, "DBProxyName", logical_id.lower())
            return f"{name}.proxy-c0ffee1234ab.{REGION}.rds.amazonaws.com"
        raise AslError(f"no physical value for {kind}.{attribute} ({logical_id})")


def resolve(value: Any, physical: PhysicalValues) -> Any:
    """``value`` with every CloudFormation function replaced by its physical value."""
    if isinstance(value, list):
        return [resolve(item, physical) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (key, arg), *_ = value.items()
        if key == "Ref":
            return physical.ref(arg)
        if key == "Fn::GetAtt":
            logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            return physical.get_att(logical, attribute)
        if key == "Fn::Join":
            separator, parts = arg
            return separator.join(str(resolve(part, physical)) for part in parts)
        if key == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else arg
            values = {k: resolve(v, physical) for k, v in variables.items()}

            def substitute(match: re.Match[str]) -> str:
                name = match.group(1)
                if name in values:
                    return str(values[name])
                if "." in name:
                    return physical.get_att(*name.split(".", 1))
                return physical.ref(name)

            return re.sub(r"\$\{([^}!]+)\}", substitute, text)
        if key.startswith("Fn::"):
            raise AslError(f"no evaluation of {key}")
    return {k: resolve(v, physical) for k, v in value.items()}


# ------------------------------------------------------------------ Step Functions


class _Stack:
    """What moto's intrinsic function components need from their environment."""

    def __init__(self, data: Any) -> None:
        self.stack: list[Any] = [data]
        self.next_field_name: str | None = None

    def is_running(self) -> bool:
        return True


def json_path(path: str, data: Any) -> Any:
    """A reference path (``$.a.b``) read from ``data``."""
    if path == "$":
        return data
    return extract_json(path, data)


class _AwsEscapes(Preprocessor):
    """moto's intrinsic preprocessor, reading string literals by the ASL's rules.

    Inside an intrinsic function's string literal, Step Functions reads ``\\'``,
    ``\\{``, ``\\}`` and ``\\\\`` as the plain character (the CDK escapes every
    JSON literal it embeds, e.g. in ``States.StringToJson``); moto's preprocessor leaves
    those escapes in the text. (Literal braces in a ``States.Format`` template would
    then read as placeholders: the definitions evaluated here have none.)
    """

    @staticmethod
    def _text_of_str(parse_tree: Any) -> str:
        node: Any = is_production(parse_tree) or is_terminal(parse_tree)
        text: str = node.getText()[1:-1]
        return re.sub(r"\\(['{}\\])", r"\1", text)


def _parse(expression: str) -> Any:
    parser: Any = ASLIntrinsicParser(CommonTokenStream(ASLIntrinsicLexer(InputStream(expression))))
    return _AwsEscapes().visit(parser.func_decl())


def intrinsic(expression: str, data: Any) -> Any:
    """An intrinsic function call (``States.Format(...)``) evaluated against ``data``."""
    function = _parse(expression)
    env = _Stack(data)
    function.eval(env)  # a duck-typed environment: moto's components need only these
    return env.stack.pop()


def template(parameters: Any, data: Any) -> Any:
    """A payload template (``Parameters``): ``key.$`` fields evaluated, the rest copied."""
    if isinstance(parameters, list):
        return [template(item, data) for item in parameters]
    if not isinstance(parameters, dict):
        return parameters
    out: dict[str, Any] = {}
    for key, value in parameters.items():
        if key.endswith(".$"):
            if not isinstance(value, str):
                raise AslError(f"{key}: a path field needs a string, got {value!r}")
            out[key[:-2]] = (
                intrinsic(value, data) if value.startswith("States.") else json_path(value, data)
            )
        else:
            out[key] = template(value, data)
    return out


def put_result(data: Any, path: str | None, result: Any) -> Any:
    """``ResultPath``: ``null`` keeps the input, ``$`` replaces it, ``$.a.b`` sets a field."""
    if path is None:
        return data
    if path == "$":
        return result
    if not path.startswith("$."):
        raise AslError(f"unsupported ResultPath {path!r}")
    out = copy.deepcopy(data)
    node = out
    *parents, last = path[2:].split(".")
    for name in parents:
        node = node.setdefault(name, {})
        if not isinstance(node, dict):
            raise AslError(f"ResultPath {path} crosses a non-object")
    node[last] = result
    return out


def choice_matches(rule: Mapping[str, Any], data: Any) -> bool:
    if "And" in rule:
        return all(choice_matches(r, data) for r in rule["And"])
    if "Or" in rule:
        return any(choice_matches(r, data) for r in rule["Or"])
    if "Not" in rule:
        return not choice_matches(rule["Not"], data)
    variable = rule["Variable"]
    try:
        value, present = json_path(variable, data), True
    except Exception:
        value, present = None, False
    if "IsPresent" in rule:
        return present is rule["IsPresent"]
    if not present:
        raise AslError(f"Choice reads {variable}, which is not in the state's input")
    if "StringEquals" in rule:
        return isinstance(value, str) and value == rule["StringEquals"]
    if "BooleanEquals" in rule:
        return isinstance(value, bool) and value is rule["BooleanEquals"]
    raise AslError(f"unsupported Choice rule {sorted(rule)}")


@dataclass(frozen=True)
class TaskCall:
    state: str
    resource: str
    request: Any


Answer = Callable[[TaskCall], Any]


@dataclass
class Execution:
    """One walk through a definition, recording the Task requests."""

    definition: Mapping[str, Any]
    answer: Answer
    calls: list[TaskCall] = field(default_factory=list)
    path: list[str] = field(default_factory=list)
    outcome: str | None = None
    max_steps: int = 200

    def run(self, data: Any) -> Any:
        states = self.definition["States"]
        name: str | None = self.definition["StartAt"]
        while name is not None:
            if len(self.path) >= self.max_steps:
                raise AslError(f"more than {self.max_steps} states: a loop? {self.path[-10:]}")
            self.path.append(name)
            state = states[name]
            kind = state["Type"]
            size = len(json.dumps(data).encode())
            if size > MAX_STATE_BYTES:
                raise AslError(f"{name}: input of {size} bytes is over Step Functions' limit")
            if kind in ("Succeed", "Fail"):
                self.outcome = f"{kind}: {name}"
                return data
            effective = json_path(state.get("InputPath", "$"), data)
            if kind == "Choice":
                name = next(
                    (c["Next"] for c in state["Choices"] if choice_matches(c, effective)),
                    state.get("Default"),
                )
                if name is None:
                    raise AslError(f"{self.path[-1]}: no Choice matched and no Default")
                continue
            if "Parameters" in state:
                effective = template(state["Parameters"], effective)
            if kind == "Pass":
                result = state.get("Result", effective)
            elif kind == "Task":
                call = TaskCall(name, state["Resource"], effective)
                self.calls.append(call)
                result = self.answer(call)
                if "ResultSelector" in state:
                    result = template(state["ResultSelector"], result)
            else:
                raise AslError(f"{name}: state type {kind} is not evaluated here")
            data = put_result(data, state.get("ResultPath", "$"), result)
            if "OutputPath" in state:
                data = json_path(state["OutputPath"], data)
            name = None if state.get("End") else state["Next"]
        raise AslError("the walk ended without a Succeed or Fail state")
