"""Code shared by every orderflow Lambda function: the event envelope, the event store, identity, HTTP helpers."""
