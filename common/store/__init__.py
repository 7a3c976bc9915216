"""The storage interface the engine speaks (``base``), its PostgreSQL implementation
(``postgres``, ``sql``), an in-memory one for tests (``memory``), and the one factory."""
