"""Fixtures for tests and integrators: a throwaway CA, operators on port 0, a PostgreSQL.

- `mssante.testing.trust_space.LocalTrustSpace`: CA, operators, white list, configuration;
- `mssante.testing.postgres.PostgresServer`: a throwaway PostgreSQL server;
- `mssante.testing.clients`: small SMTP client helpers for tests and the demo.
"""
