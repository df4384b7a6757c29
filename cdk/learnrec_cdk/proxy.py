"""RDS Proxy in front of the Aurora catalog: the one way functions and jobs reach it.

Lambda scales out by containers, each with its own SQLAlchemy pool; without a proxy a
traffic jump opens a connection per container and exhausts ``max_connections`` of a
cluster that has scaled down. The proxy multiplexes those client connections onto a
bounded set of database connections, keeps them warm across container churn, and rides
through a writer failover. Clients authenticate with the cluster's own secret (the proxy
reads the same secret), connect to :attr:`CatalogProxy.endpoint` (``DATABASE_HOST``,
``learnrec.storage.url``) and must use TLS.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from .network import DATA_SUBNETS

POSTGRES_PORT = 5432
# Room for what connects to the cluster directly: operators, the migration at deploy.
MAX_CONNECTIONS_PERCENT = 90
# Below the api function's 15 s timeout: a request that cannot get a database connection
# fails with an error it can report, rather than timing out.
BORROW_TIMEOUT = Duration.seconds(10)


class CatalogProxy(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        cluster: rds.DatabaseCluster,
        secret: secretsmanager.ISecret,
        vpc: ec2.IVpc,
        app_security_group: ec2.ISecurityGroup,
    ) -> None:
        super().__init__(scope, construct_id)
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="learnrec RDS Proxy: from functions and jobs to Aurora",
            allow_all_outbound=False,
        )
        self.security_group.add_ingress_rule(
            app_security_group, ec2.Port.tcp(POSTGRES_PORT), "PostgreSQL from functions and jobs"
        )
        # Also opens the proxy group's egress to the cluster, its only way out.
        cluster.connections.allow_default_port_from(self.security_group, "RDS Proxy")
        self.proxy = rds.DatabaseProxy(
            self,
            "Proxy",
            db_proxy_name=name,
            proxy_target=rds.ProxyTarget.from_cluster(cluster),
            secrets=[secret],
            vpc=vpc,
            vpc_subnets=DATA_SUBNETS,
            security_groups=[self.security_group],
            require_tls=True,
            iam_auth=False,  # the functions log in with the cluster secret's password
            max_connections_percent=MAX_CONNECTIONS_PERCENT,
            borrow_timeout=BORROW_TIMEOUT,
            debug_logging=False,  # would log SQL text, which carries learner ids
        )

        # The bundled CloudFormation schema predates tags on proxy target groups, which
        # CloudFormation (and cfn-lint's current schema) accept.
        Validations.of(self.proxy).acknowledge(
            Acknowledgment(
                id="CloudFormation-Validate::F3002",
                reason="DBProxyTargetGroup takes Tags; the validator's schema is older",
            )
        )

    @property
    def endpoint(self) -> str:
        return self.proxy.endpoint
