"""The IAM policies of a synthesized template's roles, with CloudFormation resolved.

Statements name resources through intrinsics (``Ref``, ``Fn::GetAtt``, ``Fn::Join``,
``Fn::Sub``); each is resolved to what CloudFormation would produce for the stage's
account and region, from the resources' own properties (a bucket's ``BucketName``, a
secret's ``Name`` plus the random suffix AWS appends). A reference this module cannot
resolve is an error, never a silently dropped statement.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from .actions import SECRET_SUFFIX


class UnresolvedReferenceError(ValueError):
    pass


class Template:
    def __init__(self, template: dict[str, Any], account: str, region: str) -> None:
        self.template = template
        self.resources: dict[str, dict[str, Any]] = template["Resources"]
        self.account = account
        self.region = region
        self.pseudo = {
            "AWS::Partition": "aws",
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "learnrec",
        }

    def arn(self, service: str, resource: str, region: bool = True, account: bool = True) -> str:
        return (
            f"arn:aws:{service}:{self.region if region else ''}:"
            f"{self.account if account else ''}:{resource}"
        )

    # Ref / GetAtt ----------------------------------------------------------------------

    def _property(self, logical_id: str, name: str) -> str:
        value = self.resources[logical_id].get("Properties", {}).get(name)
        if value is None:
            raise UnresolvedReferenceError(f"{logical_id} has no {name}: cannot name it")
        return str(self.resolve(value))

    def ref(self, logical_id: str) -> str:
        if logical_id in self.pseudo:
            return self.pseudo[logical_id]
        if logical_id not in self.resources:
            parameters = self.template.get("Parameters", {})
            if logical_id in parameters and "Default" in parameters[logical_id]:
                return str(parameters[logical_id]["Default"])
            raise UnresolvedReferenceError(f"Ref {logical_id}: no such resource")
        kind = self.resources[logical_id]["Type"]
        if kind == "AWS::S3::Bucket":
            return self._property(logical_id, "BucketName")
        if kind == "AWS::Kinesis::Stream":
            return self._property(logical_id, "Name")
        if kind == "AWS::SQS::Queue":
            name = self._property(logical_id, "QueueName")
            return f"https://sqs.{self.region}.amazonaws.com/{self.account}/{name}"
        if kind == "AWS::SecretsManager::Secret":
            # A secret without a Name (Aurora's generated one) is named after its id.
            name = self.resources[logical_id].get("Properties", {}).get("Name", logical_id)
            return self.arn("secretsmanager", f"secret:{self.resolve(name)}{SECRET_SUFFIX}")
        if kind == "AWS::SecretsManager::SecretTargetAttachment":
            return str(self.resolve(self.resources[logical_id]["Properties"]["SecretId"]))
        if kind == "AWS::StepFunctions::StateMachine":
            name = self._property(logical_id, "StateMachineName")
            return self.arn("states", f"stateMachine:{name}")
        if kind in ("AWS::Lambda::Function", "AWS::Logs::LogGroup", "AWS::IAM::Role"):
            return self._name(logical_id)
        if kind == "AWS::OpenSearchService::Domain":
            return self._domain_name(logical_id)
        if kind == "AWS::EC2::Subnet":
            return f"subnet-{logical_id.lower()[:17]}"
        if kind == "AWS::RDS::DBCluster":
            return logical_id.lower()
        raise UnresolvedReferenceError(f"Ref of a {kind} ({logical_id}) is not modelled")

    def _name(self, logical_id: str) -> str:
        kind = self.resources[logical_id]["Type"]
        field = {
            "AWS::Lambda::Function": "FunctionName",
            "AWS::Logs::LogGroup": "LogGroupName",
            "AWS::IAM::Role": "RoleName",
        }[kind]
        properties = self.resources[logical_id].get("Properties", {})
        # CloudFormation generates a name from the logical id when none is given.
        return str(self.resolve(properties[field])) if field in properties else logical_id

    def _domain_name(self, logical_id: str) -> str:
        properties = self.resources[logical_id].get("Properties", {})
        if "DomainName" in properties:
            return str(self.resolve(properties["DomainName"]))
        return logical_id.lower()[:28]

    def get_att(self, logical_id: str, attribute: str) -> str:
        if logical_id not in self.resources:
            raise UnresolvedReferenceError(f"Fn::GetAtt {logical_id}: no such resource")
        kind = self.resources[logical_id]["Type"]
        if attribute == "Arn":
            if kind == "AWS::S3::Bucket":
                return self.arn("s3", self.ref(logical_id), region=False, account=False)
            if kind == "AWS::Kinesis::Stream":
                return self.arn("kinesis", f"stream/{self.ref(logical_id)}")
            if kind == "AWS::SQS::Queue":
                return self.arn("sqs", self._property(logical_id, "QueueName"))
            if kind == "AWS::Lambda::Function":
                return self.arn("lambda", f"function:{self._name(logical_id)}")
            if kind == "AWS::Logs::LogGroup":
                return self.arn("logs", f"log-group:{self._name(logical_id)}:*")
            if kind == "AWS::IAM::Role":
                return self.arn("iam", f"role/{self._name(logical_id)}", region=False)
            if kind == "AWS::OpenSearchService::Domain":
                return self.arn("es", f"domain/{self._domain_name(logical_id)}")
            if kind == "AWS::StepFunctions::StateMachine":
                return self.ref(logical_id)
            if kind == "AWS::SecretsManager::Secret":
                return self.ref(logical_id)
        if attribute == "GroupId" and kind == "AWS::EC2::SecurityGroup":
            return f"sg-{logical_id.lower()[:17]}"
        if attribute == "DomainEndpoint" and kind == "AWS::OpenSearchService::Domain":
            return f"vpc-{self._domain_name(logical_id)}.{self.region}.es.amazonaws.com"
        if attribute == "DomainArn" and kind == "AWS::OpenSearchService::Domain":
            return self.get_att(logical_id, "Arn")
        if attribute == "QueueName" and kind == "AWS::SQS::Queue":
            return self._property(logical_id, "QueueName")
        if attribute == "Endpoint" and kind == "AWS::RDS::DBProxy":
            name = self._property(logical_id, "DBProxyName")
            return f"{name}.proxy-c0ffee.{self.region}.rds.amazonaws.com"
        if attribute == "ModelPackageGroupArn" and kind == "AWS::SageMaker::ModelPackageGroup":
            name = self._property(logical_id, "ModelPackageGroupName")
            return self.arn("sagemaker", f"model-package-group/{name}")
        raise UnresolvedReferenceError(
            f"Fn::GetAtt {logical_id}.{attribute} ({kind}) is not modelled"
        )

    # intrinsics ------------------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Fn::GetAtt":
                logical_id, attribute = (
                    argument if isinstance(argument, list) else argument.split(".", 1)
                )
                return self.get_att(logical_id, attribute)
            if key == "Fn::Join":
                separator, parts = argument
                return separator.join(str(self.resolve(p)) for p in parts)
            if key == "Fn::Sub":
                return self._sub(argument)
            if key == "Fn::Select":
                index, items = argument
                return self.resolve(items)[int(index)]
            if key == "Fn::Split":
                separator, text = argument
                return str(self.resolve(text)).split(separator)
            if key.startswith("Fn::"):
                raise UnresolvedReferenceError(f"{key} is not modelled")
        return {k: self.resolve(v) for k, v in value.items()}

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return self.get_att(logical_id, attribute)
            return self.ref(name)

        return re.sub(r"\$\{([^}!]+)\}", replace, text)

    # roles -----------------------------------------------------------------------------

    def role_id(self, name_part: str) -> str:
        roles = [k for k, r in self.resources.items() if r["Type"] == "AWS::IAM::Role"]
        found = [k for k in roles if name_part in k]
        if len(found) != 1:
            raise LookupError(f"{len(found)} roles match {name_part!r}: {found}")
        return found[0]

    def role_policies(self, role_id: str) -> list[dict[str, Any]]:
        """Every identity policy of the role (inline and attached), resolved."""
        role = self.resources[role_id]["Properties"]
        documents = [p["PolicyDocument"] for p in role.get("Policies", [])]
        for resource in self.resources.values():
            if resource["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                continue
            properties = resource["Properties"]
            if {"Ref": role_id} in properties.get("Roles", []):
                documents.append(properties["PolicyDocument"])
        for managed in role.get("ManagedPolicyArns", []):
            raise UnresolvedReferenceError(
                f"{role_id} has a managed policy {managed}: not modelled"
            )
        return [self.resolve(copy.deepcopy(document)) for document in documents]

    def domain_arn(self) -> str:
        domains = [
            k for k, r in self.resources.items() if r["Type"] == "AWS::OpenSearchService::Domain"
        ]
        if len(domains) != 1:
            raise LookupError(f"expected one OpenSearch domain, found {domains}")
        return self.get_att(domains[0], "Arn")

    def state_machine(self) -> dict[str, Any]:
        """The one state machine's definition, resolved and parsed."""
        machines = [
            r for r in self.resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine"
        ]
        if len(machines) != 1:
            raise LookupError(f"expected one state machine, found {len(machines)}")
        text = self.resolve(machines[0]["Properties"]["DefinitionString"])
        definition: dict[str, Any] = json.loads(text)
        return definition
