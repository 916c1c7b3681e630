"""AkiDB reference server: SQLite metadata, write-ahead log, hnswlib index, REST API."""

__version__ = "0.1.0"
