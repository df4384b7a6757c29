"""Alembic migration scripts of learnrec's tables (see learnrec.storage.migrate)."""
