"""Benchmarks: scenarios against real servers, results as JSON with an environment fingerprint."""
