"""From a recorded API call to the IAM request(s) AWS authorizes for it.

Each mapping follows the Service Authorization Reference: the action, the resource ARN
the action is authorized on (an object, a bucket, a stream, ...), and the condition keys
AWS fills in from the request (``s3:prefix`` of a listing, ``cloudwatch:namespace`` of
``PutMetricData``). An operation without a mapping is an error that says where to add
one, so code that starts calling a new API cannot pass unchecked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlparse

from .recorder import Call

#: Suffix AWS appends to a secret's name in its ARN (six random characters).
SECRET_SUFFIX = "-AbCdEf"


class UnmappedOperationError(LookupError):
    pass


@dataclass(frozen=True)
class Target:
    """Where the synthesized stack lives, and how recorded names translate to it."""

    account: str
    region: str
    rename: Callable[[str], str]
    opensearch_domain_arn: str
    partition: str = "aws"

    def arn(self, service: str, resource: str, region: bool = True, account: bool = True) -> str:
        return (
            f"arn:{self.partition}:{service}:{self.region if region else ''}:"
            f"{self.account if account else ''}:{resource}"
        )


@dataclass(frozen=True)
class Request:
    """One authorization AWS makes for a call."""

    action: str
    resource: str
    context: dict[str, str | list[str]] = field(default_factory=dict)

    def describe(self) -> str:
        extra = f" {self.context}" if self.context else ""
        return f"{self.action} on {self.resource}{extra}"


Mapper = Callable[[Call, Target], list[Request]]


def _bucket(call: Call, target: Target) -> str:
    return target.arn("s3", target.rename(call.params["Bucket"]), region=False, account=False)


def _object(call: Call, target: Target, key: str | None = None) -> str:
    return f"{_bucket(call, target)}/{key if key is not None else call.params['Key']}"


def _missing(call: Call) -> bool:
    return call.status == 404 or call.error in ("NoSuchKey", "404")


def _versioned(action: str, call_or_object: Call | dict[str, str]) -> str:
    """An object action on one version of the key is a separate action (``...Version``)."""
    params = call_or_object.params if isinstance(call_or_object, Call) else call_or_object
    return f"{action}Version" if params.get("VersionId") else action


def s3_read(call: Call, target: Target) -> list[Request]:
    requests = [Request(_versioned("s3:GetObject", call), _object(call, target))]
    if _missing(call):
        # Without s3:ListBucket, S3 answers 403 for a missing key instead of 404, and
        # code that treats "not there yet" as normal (the active pointer) breaks.
        requests.append(Request("s3:ListBucket", _bucket(call, target)))
    return requests


def s3_put(call: Call, target: Target) -> list[Request]:
    return [Request("s3:PutObject", _object(call, target))]


def s3_list(call: Call, target: Target, action: str = "s3:ListBucket") -> list[Request]:
    context: dict[str, str | list[str]] = {}
    if call.params.get("Prefix"):
        context["s3:prefix"] = call.params["Prefix"]
    if call.params.get("Delimiter"):
        context["s3:delimiter"] = call.params["Delimiter"]
    return [Request(action, _bucket(call, target), context)]


def s3_list_versions(call: Call, target: Target) -> list[Request]:
    return s3_list(call, target, "s3:ListBucketVersions")


def s3_delete(call: Call, target: Target) -> list[Request]:
    return [Request(_versioned("s3:DeleteObject", call), _object(call, target))]


def s3_copy(call: Call, target: Target) -> list[Request]:
    source = call.params["CopySource"]
    if isinstance(source, str):
        bucket, _, key = unquote(source.lstrip("/")).partition("/")
        key = key.split("?versionId=")[0]
    else:
        bucket, key = source["Bucket"], source["Key"]
    source_arn = target.arn("s3", f"{target.rename(bucket)}/{key}", region=False, account=False)
    return [Request("s3:GetObject", source_arn), *s3_put(call, target)]


def s3_delete_many(call: Call, target: Target) -> list[Request]:
    objects = call.params.get("Delete", {}).get("Objects", [])
    return [
        Request(_versioned("s3:DeleteObject", o), _object(call, target, o["Key"])) for o in objects
    ]


def _stream(call: Call, target: Target) -> str:
    if call.params.get("StreamARN"):
        name = call.params["StreamARN"].rsplit("/", 1)[-1]
    elif call.params.get("StreamName"):
        name = call.params["StreamName"]
    else:
        raise UnmappedOperationError(f"{call.describe()}: which stream is not known")
    return target.arn("kinesis", f"stream/{target.rename(name)}")


def kinesis(action: str) -> Mapper:
    return lambda call, target: [Request(f"kinesis:{action}", _stream(call, target))]


def _queue(call: Call, target: Target) -> str:
    if "QueueUrl" in call.params:
        name = urlparse(call.params["QueueUrl"]).path.rstrip("/").rsplit("/", 1)[-1]
    else:
        name = call.params["QueueName"]
    return target.arn("sqs", target.rename(name))


def sqs(action: str) -> Mapper:
    return lambda call, target: [Request(f"sqs:{action}", _queue(call, target))]


def _secret(call: Call, target: Target) -> str:
    secret = str(call.params["SecretId"])
    if secret.startswith("arn:"):
        # An ARN as the local AWS made it: its name, without its random suffix.
        secret = secret.split(":secret:", 1)[1].rsplit("-", 1)[0]
    return target.arn("secretsmanager", f"secret:{target.rename(secret)}{SECRET_SUFFIX}")


def secrets(action: str) -> Mapper:
    return lambda call, target: [Request(f"secretsmanager:{action}", _secret(call, target))]


def _renamed_arn(arn: str, target: Target) -> str:
    parts = arn.split(":", 5)
    parts[3], parts[4] = target.region, target.account
    return target.rename(":".join(parts))


def _package(call: Call, target: Target) -> str:
    arn = call.params.get("ModelPackageArn") or call.params.get("ModelPackageName")
    if not arn or not str(arn).startswith("arn:"):
        raise UnmappedOperationError(f"{call.operation} by name: map the name to its ARN")
    return _renamed_arn(str(arn), target)


def _package_group(call: Call, target: Target) -> str:
    name = target.rename(call.params["ModelPackageGroupName"])
    return target.arn("sagemaker", f"model-package-group/{name}")


def create_model_package(call: Call, target: Target) -> list[Request]:
    # Authorized on the new package's ARN (model-package/<group>/<version>), which the
    # answer names; the group's ARN when the call failed before one existed.
    created = call.result.get("ModelPackageArn")
    if created:
        return [Request("sagemaker:CreateModelPackage", _renamed_arn(created, target))]
    return [Request("sagemaker:CreateModelPackage", _package_group(call, target))]


def sagemaker(action: str, resource: Callable[[Call, Target], str]) -> Mapper:
    return lambda call, target: [Request(f"sagemaker:{action}", resource(call, target))]


def put_metric_data(call: Call, target: Target) -> list[Request]:
    namespace = call.params["Namespace"]
    return [Request("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": namespace})]


def states(action: str, param: str) -> Mapper:
    return lambda call, target: [
        Request(f"states:{action}", _renamed_arn(call.params[param], target))
    ]


def opensearch(call: Call, target: Target) -> list[Request]:
    method = call.operation.removeprefix("HTTP ").capitalize()
    path = call.params["path"].lstrip("/")
    return [Request(f"es:ESHttp{method}", f"{target.opensearch_domain_arn}/{path}")]


def wildcard(action: str) -> Mapper:
    """An action AWS authorizes only on Resource "*"."""
    return lambda call, target: [Request(action, "*")]


MAPPINGS: dict[tuple[str, str], Mapper] = {
    ("s3", "GetObject"): s3_read,
    ("s3", "HeadObject"): s3_read,
    ("s3", "PutObject"): s3_put,
    ("s3", "CreateMultipartUpload"): s3_put,
    ("s3", "UploadPart"): s3_put,
    ("s3", "CompleteMultipartUpload"): s3_put,
    ("s3", "AbortMultipartUpload"): lambda c, t: [
        Request("s3:AbortMultipartUpload", _object(c, t))
    ],
    ("s3", "DeleteObject"): s3_delete,
    ("s3", "DeleteObjects"): s3_delete_many,
    ("s3", "CopyObject"): s3_copy,
    ("s3", "ListObjectsV2"): s3_list,
    ("s3", "ListObjects"): s3_list,
    ("s3", "ListObjectVersions"): s3_list_versions,
    ("s3", "HeadBucket"): lambda c, t: [Request("s3:ListBucket", _bucket(c, t))],
    ("kinesis", "PutRecord"): kinesis("PutRecord"),
    ("kinesis", "PutRecords"): kinesis("PutRecords"),
    ("kinesis", "DescribeStream"): kinesis("DescribeStream"),
    ("kinesis", "DescribeStreamSummary"): kinesis("DescribeStreamSummary"),
    ("kinesis", "ListShards"): kinesis("ListShards"),
    ("kinesis", "GetShardIterator"): kinesis("GetShardIterator"),
    ("kinesis", "GetRecords"): kinesis("GetRecords"),
    ("sqs", "SendMessage"): sqs("SendMessage"),
    ("sqs", "SendMessageBatch"): sqs("SendMessage"),
    ("sqs", "GetQueueUrl"): sqs("GetQueueUrl"),
    ("sqs", "GetQueueAttributes"): sqs("GetQueueAttributes"),
    ("sqs", "ReceiveMessage"): sqs("ReceiveMessage"),
    ("sqs", "DeleteMessage"): sqs("DeleteMessage"),
    ("sqs", "DeleteMessageBatch"): sqs("DeleteMessage"),
    ("sqs", "ChangeMessageVisibility"): sqs("ChangeMessageVisibility"),
    ("sqs", "ChangeMessageVisibilityBatch"): sqs("ChangeMessageVisibility"),
    ("secretsmanager", "GetSecretValue"): secrets("GetSecretValue"),
    ("secretsmanager", "DescribeSecret"): secrets("DescribeSecret"),
    ("sagemaker", "CreateModelPackage"): create_model_package,
    ("sagemaker", "UpdateModelPackage"): sagemaker("UpdateModelPackage", _package),
    ("sagemaker", "DescribeModelPackage"): sagemaker("DescribeModelPackage", _package),
    ("sagemaker", "ListModelPackages"): wildcard("sagemaker:ListModelPackages"),
    ("sagemaker", "DescribeModelPackageGroup"): sagemaker(
        "DescribeModelPackageGroup", _package_group
    ),
    ("sagemaker", "CreateModelPackageGroup"): sagemaker("CreateModelPackageGroup", _package_group),
    ("cloudwatch", "PutMetricData"): put_metric_data,
    ("stepfunctions", "StartExecution"): states("StartExecution", "stateMachineArn"),
    ("stepfunctions", "DescribeExecution"): states("DescribeExecution", "executionArn"),
    ("es", "HTTP GET"): opensearch,
    ("es", "HTTP HEAD"): opensearch,
    ("es", "HTTP POST"): opensearch,
    ("es", "HTTP PUT"): opensearch,
    ("es", "HTTP DELETE"): opensearch,
    ("es", "HTTP PATCH"): opensearch,
}


def requests_for(call: Call, target: Target) -> list[Request]:
    mapper = MAPPINGS.get((call.service, call.operation))
    if mapper is None:
        raise UnmappedOperationError(
            f"{call.service}.{call.operation} has no IAM mapping: add one to MAPPINGS in "
            "tests/iam/actions.py (action, resource ARN and condition keys per the Service "
            "Authorization Reference)"
        )
    return mapper(call, target)


def rename_map(pairs: dict[str, str]) -> Callable[[str], str]:
    """Replace each recorded name with its synthesized counterpart, longest first."""
    ordered = sorted(pairs.items(), key=lambda item: -len(item[0]))

    def rename(text: str) -> str:
        for old, new in ordered:
            text = text.replace(old, new)
        return text

    return rename
