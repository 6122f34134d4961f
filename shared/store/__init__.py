"""What is written and read: the engine, the tables, migrations, and every SQL statement."""
