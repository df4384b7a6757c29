"""Acknowledging cdk-nag findings (cdk-nag 3: CDK's native ``Validations``).

Every acknowledgement names the rule, the exact finding where a rule reports several
(``AwsSolutions-IAM5[Resource::*]``), and a reason; the call sites carry a comment on
why the finding is the right design rather than an oversight. cdk-nag 3 has no
wildcard acknowledgements, so a new wildcard permission fails synthesis until someone
acknowledges it on purpose.
"""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import Acknowledgment, CfnElement, Stack, Validations
from constructs import IConstruct

PACK = "AwsSolutions"


def acknowledge(scope: IConstruct, rule: str, reason: str, findings: Iterable[str] = ()) -> None:
    """Acknowledge ``rule`` (e.g. ``IAM5``) on ``scope`` and everything under it."""
    ids = [f"{PACK}-{rule}[{finding}]" for finding in findings] or [f"{PACK}-{rule}"]
    Validations.of(scope).acknowledge(*(Acknowledgment(id=i, reason=reason) for i in ids))


def arn_ref(resource: IConstruct) -> str:
    """How cdk-nag writes ``Fn::GetAtt [<logical id>, Arn]`` in a finding: ``<Id.Arn>``."""
    default = resource.node.default_child
    assert isinstance(default, CfnElement), f"{resource.node.path} has no CloudFormation resource"
    logical_id = Stack.of(resource).resolve(default.logical_id)
    return f"<{logical_id}.Arn>"


#: What ``IBucket.grant_*`` adds beyond exact actions: CDK's prefix wildcards.
S3_GRANT_ACTIONS = {
    "read": ("s3:GetObject*", "s3:GetBucket*", "s3:List*"),
    "put": ("s3:Abort*",),
    "read_write": ("s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:DeleteObject*", "s3:Abort*"),
}


def acknowledge_prefix_grant(
    role: IConstruct, bucket: IConstruct, grant: str, prefixes: Iterable[str]
) -> None:
    """A bucket grant limited to key prefixes: CDK's action wildcards on ``prefix*`` keys.

    The wildcards are CDK's grant conventions (``s3:GetObject*`` covers the object's
    versions, ACL reads and tags); the resource is the prefix, which is the boundary.
    """
    findings = [f"Action::{action}" for action in S3_GRANT_ACTIONS[grant]]
    findings += [f"Resource::{arn_ref(bucket)}/{prefix}" for prefix in prefixes]
    acknowledge(
        role, "IAM5", f"{grant} limited to {', '.join(prefixes)} of the data bucket", findings
    )
