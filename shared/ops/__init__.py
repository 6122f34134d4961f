"""How processes are wired: the broker's settings, PostgreSQL's roles and databases."""
