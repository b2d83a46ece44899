"""Every supported resource type is created in moto with its settings; names and skipped types."""

from __future__ import annotations

import json
from typing import Any

import boto3

from offline.deploy import readable_name
from tests.offline.support import function, queue, table, template


def test_resources_are_created_with_their_settings(run: Any) -> None:
    key = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
    rt = run(template(
        Orders=table(
            KeySchema=key,
            AttributeDefinitions=[{"AttributeName": name, "AttributeType": "S"} for name in ("pk", "sk", "gsi1")],
            GlobalSecondaryIndexes=[{"IndexName": "byGsi1", "KeySchema": [{"AttributeName": "gsi1",
                                                                          "KeyType": "HASH"}],
                                     "Projection": {"ProjectionType": "ALL"}}],
            LocalSecondaryIndexes=[{"IndexName": "bySk", "KeySchema": [key[0], {"AttributeName": "gsi1",
                                                                                "KeyType": "RANGE"}],
                                    "Projection": {"ProjectionType": "KEYS_ONLY"}}],
            TimeToLiveSpecification={"AttributeName": "expires_at", "Enabled": True},
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        ),
        Provisioned=table(stream=None, BillingMode="PROVISIONED",
                          ProvisionedThroughput={"ReadCapacityUnits": 2, "WriteCapacityUnits": 3}),
        Dlq=queue(FifoQueue=True),
        Jobs=queue(FifoQueue=True, ContentBasedDeduplication=True, VisibilityTimeout=45,
                   RedrivePolicy={"deadLetterTargetArn": {"Fn::GetAtt": ["Dlq", "Arn"]}, "maxReceiveCount": 4}),
        Topic={"Type": "AWS::SNS::Topic", "Properties": {}},
        Inbox=queue(),
        Subscription={"Type": "AWS::SNS::Subscription", "Properties": {
            "TopicArn": {"Ref": "Topic"}, "Protocol": "sqs", "Endpoint": {"Fn::GetAtt": ["Inbox", "Arn"]},
            "RawMessageDelivery": True}},
        Sender={"Type": "AWS::SES::EmailIdentity", "Properties": {"EmailIdentity": "shop@example.com"}},
        Logs={"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 14}},
        Setting={"Type": "AWS::SSM::Parameter", "Properties": {"Type": "String", "Value": {"Ref": "Orders"}}},
        Bus={"Type": "AWS::Events::EventBus", "Properties": {"Name": "bus"}},
        Archive={"Type": "AWS::Events::Archive", "Properties": {
            "SourceArn": {"Fn::GetAtt": ["Bus", "Arn"]}, "RetentionDays": 30}},
        Fn=function("h.handler", LoggingConfig={"LogGroup": {"Ref": "Logs"}},
                    Layers=[{"Ref": "AWS::NoValue"}], TracingConfig={"Mode": "Active"}),
        Custom={"Type": "Custom::Thing", "Properties": {"ServiceToken": {"Fn::GetAtt": ["Fn", "Arn"]}}},
        UsesCustom={"Type": "AWS::SQS::Queue", "Properties": {"QueueName": {"Fn::GetAtt": ["Custom", "Name"]}}},
    ))
    ddb = boto3.client("dynamodb")
    orders = ddb.describe_table(TableName=rt.physical("Orders").name)["Table"]
    assert orders["KeySchema"] == key
    assert [index["IndexName"] for index in orders["GlobalSecondaryIndexes"]] == ["byGsi1"]
    assert [index["IndexName"] for index in orders["LocalSecondaryIndexes"]] == ["bySk"]
    assert orders["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = ddb.describe_time_to_live(TableName=rt.physical("Orders").name)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")
    provisioned = ddb.describe_table(TableName=rt.physical("Provisioned").name)["Table"]["ProvisionedThroughput"]
    assert (provisioned["ReadCapacityUnits"], provisioned["WriteCapacityUnits"]) == (2, 3)

    sqs = boto3.client("sqs")
    jobs = rt.physical("Jobs")
    assert jobs.name == "Test-Jobs.fifo"
    attributes = sqs.get_queue_attributes(QueueUrl=jobs.url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "45" and attributes["FifoQueue"] == "true"
    assert json.loads(attributes["RedrivePolicy"]) == {"deadLetterTargetArn": rt.physical("Dlq").arn,
                                                       "maxReceiveCount": 4}

    boto3.client("sns").publish(TopicArn=rt.physical("Topic").arn, Message="hello")
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=rt.physical("Inbox").url)["Messages"]] == ["hello"]
    assert "shop@example.com" in boto3.client("ses").list_identities()["Identities"]
    [group] = boto3.client("logs").describe_log_groups(logGroupNamePrefix=rt.physical("Logs").name)["logGroups"]
    assert group["retentionInDays"] == 14
    setting = boto3.client("ssm").get_parameter(Name=rt.physical("Setting").name)["Parameter"]
    assert setting["Value"] == rt.physical("Orders").name
    archive = boto3.client("events").describe_archive(ArchiveName=rt.physical("Archive").name)
    assert archive["EventSourceArn"] == rt.physical("Bus").arn and archive["RetentionDays"] == 30
    assert rt.physical("UsesCustom").name == "Test-Custom-Name"  # placeholder values of a skipped type
    assert rt.skipped == {"Custom::Thing": ["Custom"]}


def test_readable_names_drop_the_cdk_hash() -> None:
    assert readable_name("OrdersTable1F8332C7") == "OrdersTable"
    assert readable_name("OrdersTable") == "OrdersTable"
    assert readable_name("ApiDeploymentDC05A82D39a45fa1bd8b0f2a2fc205c8d51bd92f").startswith("ApiDeployment")
    assert readable_name("12345678") == "12345678"


def test_long_names_are_shortened_deterministically(run: Any) -> None:
    long_id = "A" + "VeryLongConstructPath" * 4 + "1A2B3C4D"
    rt = run(template(**{long_id: queue()}, Fn=function("h.handler", FunctionName={"Fn::Sub": "${AWS::StackName}-fn"})),
             stack_name="Stack")
    name = rt.physical(long_id).name
    assert len(name) <= 80 and name.startswith("Stack-AVeryLong")
    assert rt.physical("Fn").name == "Stack-fn"
