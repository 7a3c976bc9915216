"""What the commands, restore and the sidecar share: ``config/`` (settings), ``db/`` (PostgreSQL
access), ``store/`` (the Store interface and its implementations), ``sync/`` (the engine),
``local/`` (the embedded PostgreSQL), plus errors, logging and counted words."""
