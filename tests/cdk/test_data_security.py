"""Security-relevant properties of the data stores and the search domain, per stage."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Match, Template

from learnrec.events.dead_letter import DEAD_LETTER_PREFIX
from learnrec.stages import EVENTS_PREFIX

from .conftest import Synthesized


def _data_bucket(synth: Synthesized) -> dict[str, Any]:
    name = synth.config.names.data_bucket
    prefix = name.rsplit("-", 5)[0]  # learnrec-<stage>-data
    buckets = [
        b
        for b in synth.resources("AWS::S3::Bucket").values()
        if str(b["Properties"].get("BucketName", "")).startswith(prefix)
    ]
    assert len(buckets) == 1, buckets
    return buckets[0]


def test_buckets_encrypted_private_and_tls_only(each_stage: Synthesized) -> None:
    buckets = each_stage.resources("AWS::S3::Bucket")
    assert len(buckets) == 2  # data and its access logs
    for bucket in buckets.values():
        props = bucket["Properties"]
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
    policies = each_stage.resources("AWS::S3::BucketPolicy").values()
    denies_plain_http = [
        p
        for p in policies
        if any(
            s["Effect"] == "Deny"
            and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            and s["Action"] == "s3:*"
            for s in p["Properties"]["PolicyDocument"]["Statement"]
        )
    ]
    assert len(denies_plain_http) == len(buckets)


def test_data_bucket_versioned_with_event_retention(each_stage: Synthesized) -> None:
    props = _data_bucket(each_stage)["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["LoggingConfiguration"]["DestinationBucketName"]
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    events = rules["raw-events-retention"]
    assert events["Prefix"] == EVENTS_PREFIX
    assert events["ExpirationInDays"] == 90
    assert events["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    assert events["Status"] == "Enabled"
    # Dead letters are kept no longer than an investigation and a replay need.
    dead_letters = rules["dead-letter-payloads"]
    assert dead_letters["Prefix"] == DEAD_LETTER_PREFIX
    assert dead_letters["ExpirationInDays"] == 14
    assert dead_letters["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    # Model bundles are never expired, only their superseded versions, after a year.
    models = rules["model-bundle-history"]
    assert "ExpirationInDays" not in models
    assert models["NoncurrentVersionExpiration"]["NoncurrentDays"] >= 365


def test_stream_queue_and_secrets_encrypted(each_stage: Synthesized) -> None:
    template = Template.from_json(each_stage.template)
    template.has_resource_properties(
        "AWS::Kinesis::Stream",
        {"StreamEncryption": {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}},
    )
    template.has_resource_properties(
        "AWS::SQS::Queue",
        {"SqsManagedSseEnabled": True, "MessageRetentionPeriod": 7 * 24 * 3600},
    )
    names = each_stage.config.names
    for name in (names.jwt_secret, names.user_id_hash_secret):
        template.has_resource_properties("AWS::SecretsManager::Secret", {"Name": name})


def test_aurora_serverless_v2_encrypted_with_generated_secret(each_stage: Synthesized) -> None:
    config = each_stage.config
    template = Template.from_json(each_stage.template)
    template.has_resource_properties(
        "AWS::RDS::DBCluster",
        {
            "Engine": "aurora-postgresql",
            "StorageEncrypted": True,
            "DatabaseName": "learnrec",
            "ServerlessV2ScalingConfiguration": {
                "MinCapacity": config.aurora_min_acu,
                "MaxCapacity": config.aurora_max_acu,
            },
            "MasterUserPassword": Match.any_value(),  # resolved from the generated secret
            "DeletionProtection": each_stage.stage == "prod",
        },
    )
    template.has_resource_properties("AWS::RDS::DBInstance", {"DBInstanceClass": "db.serverless"})
    template.resource_count_is("AWS::SecretsManager::SecretTargetAttachment", 1)
    cluster = next(iter(each_stage.resources("AWS::RDS::DBCluster").values()))
    assert "{{resolve:secretsmanager:" in str(cluster["Properties"]["MasterUserPassword"])
    assert cluster["Properties"].get("PubliclyAccessible") is None


def test_opensearch_in_vpc_encrypted_with_fine_grained_access(each_stage: Synthesized) -> None:
    config = each_stage.config
    domain = next(iter(each_stage.resources("AWS::OpenSearchService::Domain").values()))
    props = domain["Properties"]
    assert props["VPCOptions"]["SubnetIds"] and props["VPCOptions"]["SecurityGroupIds"]
    assert props["EncryptionAtRestOptions"] == {"Enabled": True}
    assert props["NodeToNodeEncryptionOptions"] == {"Enabled": True}
    assert props["DomainEndpointOptions"]["EnforceHTTPS"] is True
    assert props["DomainEndpointOptions"]["TLSSecurityPolicy"] == "Policy-Min-TLS-1-2-2019-07"
    security = props["AdvancedSecurityOptions"]
    assert security["Enabled"] is True
    assert security["InternalUserDatabaseEnabled"] is False
    assert security["MasterUserOptions"]["MasterUserARN"]  # the pipeline's job role
    assert props["ClusterConfig"]["InstanceCount"] == config.opensearch_instances
    assert props["ClusterConfig"]["ZoneAwarenessEnabled"] is (config.opensearch_instances > 1)
    assert str(props["EngineVersion"]).startswith("OpenSearch_2.")
    assert "AccessPolicies" not in props  # IAM identity policies and FGAC only
