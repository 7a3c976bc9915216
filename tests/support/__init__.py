"""What the tests and the benchmarks in ``bench/`` share; none of it is a test.

- ``dbtarget``: database targets, the test server (``Server``) and one fresh database on it
  (``DbTarget``), the 40001 rate of the ``crdb-like`` mode, ``backdate`` for a commit.
- ``podsim``: pod simulation, the sidecar as a real subprocess (``SidecarProc``) beside
  WAHA-like writers, HTTP probes, a restored copy of what the database holds.
- ``wahatree``: generators of WAHA-like session trees (NOWEB sessions, SQLite databases).
- ``tls_servers``: PostgreSQL servers with real TLS certificates (pytest fixtures).
- ``imagefiles``, ``k8sfiles``, ``composefiles``: the image definitions and the Kubernetes
  manifests as data, the Compose binary that reads ``deploy/compose.yaml``.
- ``fake_waha``, ``fake_mongo``: programs run as subprocesses in WAHA's and MongoDB's place.

``dbtarget``, ``podsim`` and ``wahatree`` never import pytest (``bench/`` runs without it);
this ``__init__`` imports nothing, so importing one module loads only that one.
"""
