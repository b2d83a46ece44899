"""The snapshotter: takes aggregate snapshots from the event stores' streams, off the hot path."""
