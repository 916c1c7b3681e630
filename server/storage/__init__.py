"""Durable state: SQLite metadata, the write-ahead log, and index snapshots."""
