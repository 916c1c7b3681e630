"""Sentence embeddings (all-MiniLM-L6-v2): encoder backends, and how the server reaches them."""
