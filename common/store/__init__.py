"""The storage interface the engine speaks, and its PostgreSQL implementation."""
