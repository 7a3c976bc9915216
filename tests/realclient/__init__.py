"""The writers WAHA itself runs, for tests and benchmarks: real Baileys (``baileys``),
whatsmeow's schema and a whatsmeow-like writer (``gows``), WAHA's own layout (``waha``)."""
