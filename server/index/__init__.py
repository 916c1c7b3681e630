"""Vector indexes: hnswlib per collection."""
