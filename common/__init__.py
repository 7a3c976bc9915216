"""What the restore program and the sidecar share: config, database access, schema, store."""
