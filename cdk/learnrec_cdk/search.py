"""The OpenSearch domain serving k-NN candidates, inside the VPC.

k-NN is a plugin every OpenSearch domain carries; indexes opt in with ``index.knn``
(``learnrec.retrieval.opensearch_index``). Fine-grained access control (FGAC) is on:
IAM lets a role reach the domain, FGAC decides what it may do there. Its master user is
:attr:`Search.admin_role`, a role of its own that no function or job runs as; the stack's
custom resource (:mod:`learnrec_cdk.search_security`) signs as it to map the serving,
job and pipeline roles to narrow OpenSearch roles (:mod:`learnrec.search_security`).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_opensearchservice as opensearch
from constructs import Construct

from .nag import acknowledge, arn_ref
from .network import DATA_SUBNETS

# HTTP methods the API sends: POST <alias>/_search and _count, GET _alias/<alias> and
# POST _aliases (promote, rollback); HEAD for health checks.
QUERY_ACTIONS = ["es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost"]
# Index building: create/delete versioned indexes, bulk load, alias swap.
ADMIN_ACTIONS = [*QUERY_ACTIONS, "es:ESHttpPut", "es:ESHttpDelete", "es:ESHttpPatch"]


class Search(Construct):
    """The domain, its log groups and :attr:`admin_role`, its master user.

    Nothing runs as the admin role but the search security custom resource; operators
    in the account assume it for what the stack's OpenSearch roles may not do
    (reindexing by hand, reading or repairing the security configuration)::

        aws sts assume-role --role-session-name "$USER" --role-arn "$(aws cloudformation
          describe-stacks --stack-name learnrec-<stage> --query
          "Stacks[0].Outputs[?OutputKey=='SearchAdminRoleArn'].OutputValue" --output text)"

    then sign requests with the returned credentials for service ``es`` (e.g. ``awscurl
    --service es``) from inside the VPC, the domain being VPC-only (SSM port forwarding
    through a host in the app subnets). The role trusts the account, not everyone in
    it: an operator's own IAM policy must allow ``sts:AssumeRole`` on this role.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        alias: str,
        instance_type: str,
        instances: int,
        volume_gb: int,
        vpc: ec2.IVpc,
        app_security_group: ec2.ISecurityGroup,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.alias = alias
        # The master user (see the class docstring for how operators use it).
        self.admin_role = iam.Role(
            self,
            "AdminRole",
            assumed_by=iam.AccountRootPrincipal(),
            description="learnrec OpenSearch master user: security configuration, operators",
            max_session_duration=Duration.hours(1),
        )
        security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="learnrec OpenSearch",
            allow_all_outbound=False,
        )
        security_group.add_ingress_rule(
            app_security_group, ec2.Port.tcp(443), "HTTPS from functions and jobs"
        )
        log_groups = {
            kind: logs.LogGroup(
                self, f"{kind}Logs", retention=log_retention, removal_policy=removal_policy
            )
            for kind in ("App", "SlowSearch", "SlowIndex")
        }
        # The domain's own logs policy is an SDK custom resource; a plain resource policy
        # scoped to these groups does the same without an extra Lambda.
        logs.CfnResourcePolicy(
            self,
            "LogsPolicy",
            policy_name=f"{Stack.of(self).stack_name}-opensearch-logs",
            policy_document=Stack.of(self).to_json_string(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "es.amazonaws.com"},
                            "Action": ["logs:PutLogEvents", "logs:CreateLogStream"],
                            "Resource": [group.log_group_arn for group in log_groups.values()],
                        }
                    ],
                }
            ),
        )
        zone_aware = instances > 1
        # A single node lives in one subnet: the first data subnet, picked by position
        # rather than by zone name (zones may be deploy-time Fn::GetAZs picks).
        subnets = (
            DATA_SUBNETS
            if zone_aware
            else ec2.SubnetSelection(
                subnets=vpc.select_subnets(
                    subnet_group_name=DATA_SUBNETS.subnet_group_name
                ).subnets[:1]
            )
        )
        self.domain = opensearch.Domain(
            self,
            "Domain",
            version=opensearch.EngineVersion.OPENSEARCH_2_19,
            capacity=opensearch.CapacityConfig(
                data_nodes=instances,
                data_node_instance_type=instance_type,
                multi_az_with_standby_enabled=False,
            ),
            ebs=opensearch.EbsOptions(
                volume_size=volume_gb, volume_type=ec2.EbsDeviceVolumeType.GP3
            ),
            zone_awareness=opensearch.ZoneAwarenessConfig(
                enabled=zone_aware, availability_zone_count=2 if zone_aware else None
            ),
            vpc=vpc,
            vpc_subnets=[subnets],
            security_groups=[security_group],
            encryption_at_rest=opensearch.EncryptionAtRestOptions(enabled=True),
            node_to_node_encryption=True,
            enforce_https=True,
            tls_security_policy=opensearch.TLSSecurityPolicy.TLS_1_2,
            fine_grained_access_control=opensearch.AdvancedSecurityOptions(
                master_user_arn=self.admin_role.role_arn
            ),
            logging=opensearch.LoggingOptions(
                app_log_enabled=True,
                app_log_group=log_groups["App"],
                slow_search_log_enabled=True,
                slow_search_log_group=log_groups["SlowSearch"],
                slow_index_log_enabled=True,
                slow_index_log_group=log_groups["SlowIndex"],
            ),
            suppress_logs_resource_policy=True,
            enable_auto_software_update=True,
            removal_policy=removal_policy,
        )
        # VPC-only domain: reachable through its security group, every request SigV4-signed
        # by a role granted in IAM and mapped in fine-grained access control; there is no
        # resource policy, hence no IP allow list and no anonymous principal to check.
        acknowledge(self.domain, "OS3", "VPC-only domain; IAM and FGAC, no resource policy")
        acknowledge(self.domain, "OS5", "VPC-only domain; IAM and FGAC, no resource policy")
        # Dedicated masters pay off from about 10 data nodes; learnrec runs 1-2.
        acknowledge(self.domain, "OS4", "1-2 data nodes: dedicated masters not needed")
        if not zone_aware:
            # One node by the stage's choice (dev/staging); serving falls back to popularity.
            acknowledge(self.domain, "OS7", "single-node stage; serving falls back to popularity")

        self.grant_admin(self.admin_role)

    @property
    def endpoint(self) -> str:
        return f"https://{self.domain.domain_endpoint}"

    def grant_query(self, role: iam.IRole) -> None:
        """Search the serving alias and the versioned indexes behind it; what FGAC lets
        it do there is the ``learnrec_search`` role. Moving the alias (promote and
        rollback through the API) is :meth:`grant_alias_swap`."""
        iam.Grant.add_to_principal(
            grantee=role,
            actions=QUERY_ACTIONS,
            resource_arns=[f"{self.domain.domain_arn}/{self.alias}*"],
        )
        # Index names are versioned (<alias>-<version>); the alias prefix is the boundary.
        acknowledge(
            role,
            "IAM5",
            "k-NN queries on the alias and its versioned indexes",
            [f"Resource::{arn_ref(self.domain)}/{self.alias}*"],
        )

    def grant_admin(self, role: iam.IRole) -> None:
        """Create indexes, bulk-load them and swap the alias (``_aliases``, ``_bulk``)."""
        iam.Grant.add_to_principal(
            grantee=role,
            actions=ADMIN_ACTIONS,
            resource_arns=[self.domain.domain_arn, f"{self.domain.domain_arn}/*"],
        )
        # The index builder works on new, per-version index names and the cluster APIs.
        acknowledge(
            role,
            "IAM5",
            "the index builder creates per-version indexes and swaps the alias",
            [f"Resource::{arn_ref(self.domain)}/*"],
        )

    def grant_alias_swap(self, role: iam.IRole) -> None:
        """Move the serving alias between version indexes, nothing else: read who holds
        it (``GET _alias/<alias>``) and swap it atomically (``POST _aliases``).

        For promote and rollback (the pipeline function, the API's admin routes); the
        indexes themselves are made by the jobs (:meth:`grant_admin`).
        """
        iam.Grant.add_to_principal(
            grantee=role,
            actions=["es:ESHttpGet"],
            resource_arns=[f"{self.domain.domain_arn}/_alias/{self.alias}"],
        )
        iam.Grant.add_to_principal(
            grantee=role,
            actions=["es:ESHttpPost"],
            resource_arns=[f"{self.domain.domain_arn}/_aliases"],
        )
