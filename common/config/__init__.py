"""Settings: the pydantic model, the flags generated from it, the sidecar's HTTP settings."""
