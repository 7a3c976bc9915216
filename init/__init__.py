"""The restore program: fills the sessions volume from the database before WAHA starts."""
