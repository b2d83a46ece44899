"""The order service: an event-sourced order aggregate behind a REST API."""
