"""Deterministic data: vectors, documents and exact ground truth, all seeded."""
