"""testkube: run declared suites (pytest, bench, chaos), keep a history, report, shard for CI."""
