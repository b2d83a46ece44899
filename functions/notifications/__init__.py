"""Notifications (choreography): tells customers how their order ended, by email, once per event."""
