"""The long-running sidecar (continuous sync, HTTP); built on waha_sync.common."""
