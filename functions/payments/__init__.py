"""The payments service: event-sourced customer accounts (deposits, holds for orders, captures, voids)."""
