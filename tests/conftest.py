"""Test-wide set-up: fake AWS credentials and region before any boto3 client exists; sockets stay off."""

import os

os.environ.update(
    {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        # botocore >= 1.44 routes DynamoDB Streams calls to an account endpoint that moto 5.2.5 does not match.
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
)
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_name, None)

# The X-Ray SDK (imported by Powertools' Tracer) opens its UDP emitter socket when first imported. Import it
# here, before pytest-socket switches sockets off for the tests, as the Lambda runtime would at init.
import aws_xray_sdk.core  # noqa: E402,F401
