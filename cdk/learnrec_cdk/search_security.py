"""The custom resource that maps the stack's IAM roles to OpenSearch roles.

With fine-grained access control on, a role that IAM lets reach the domain still gets
403 until the security plugin maps it to an OpenSearch role; the stack does that itself,
on every deployment, so nobody has to by hand. A Lambda function in the app subnets
(it must reach the VPC-only domain) answers CloudFormation directly on the request's
``ResponseURL``; no provider framework, hence no extra Node.js functions and roles. It
signs as the domain's master user by assuming :attr:`Search.admin_role`; its own role
may only assume that one role. The logic is :mod:`learnrec.search_security`.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import CustomResource, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from constructs import Construct

from learnrec.search_security import INDEXER_ROLE, SEARCH_ROLE, roles_digest

from .functions import FunctionPlatform
from .search import Search

RESOURCE_TYPE = "Custom::LearnrecSearchSecurity"


class SearchSecurity(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        platform: FunctionPlatform,
        search: Search,
        function_name: str,
        search_roles: Sequence[iam.IRole],
        indexer_roles: Sequence[iam.IRole],
    ) -> None:
        super().__init__(scope, construct_id)
        self.handler = platform.function(
            self,
            "Handler",
            package="search_security",
            function_name=function_name,
            description="learnrec: OpenSearch roles and role mappings (custom resource)",
            memory_mb=256,
            # Four security API calls, each at most 7 attempts of 10 s plus 90 s of
            # waits (learnrec.search_security.RETRY_DELAYS): under 11 minutes even if
            # every call exhausts its retries, so the handler always gets to answer.
            timeout=Duration.minutes(15),
            environment={"POWERTOOLS_SERVICE_NAME": "search-security"},
        )
        search.admin_role.grant_assume_role(self.handler.role)
        self.resource = CustomResource(
            self,
            "Mappings",
            service_token=self.handler.function.function_arn,
            resource_type=RESOURCE_TYPE,
            properties={
                "Endpoint": search.endpoint,
                "AdminRoleArn": search.admin_role.role_arn,
                "IndexPattern": f"{search.alias}*",
                # The handler's code is not a property: without this, a change to the
                # roles' permissions alone would never reach the domain.
                "RolesDigest": roles_digest(f"{search.alias}*"),
                "Mappings": {
                    SEARCH_ROLE: [role.role_arn for role in search_roles],
                    INDEXER_ROLE: [role.role_arn for role in indexer_roles],
                },
            },
            removal_policy=RemovalPolicy.DESTROY,
        )
        # The admin role must carry its es:ESHttp* policy before the first request.
        self.resource.node.add_dependency(search.admin_role)
