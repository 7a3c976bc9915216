"""PostgreSQL and CockroachDB access: URLs, connections, retried transactions, the schema."""
