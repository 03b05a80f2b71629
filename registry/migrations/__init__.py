"""Alembic migrations of the registry's database (run by ``RegistryStore`` on opening)."""
