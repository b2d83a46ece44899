"""The inventory service: state-based products and per-order reservations, with a transactional outbox.

The contrast to the event-sourced services: the tables hold the current state, and every change writes its
integration event as an outbox item in the same ``TransactWriteItems``. The key design is in repository.py.
"""
