"""PostgreSQL: the engine, the tables, the task queries and a local server for development."""
