"""The outbox relay: table streams in, CloudEvents out to the one EventBridge bus."""
