"""The embedded PostgreSQL for laptops and tests."""
