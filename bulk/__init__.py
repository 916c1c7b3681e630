"""Bulk import and export: bring your own dataset (CSV, JSONL, Parquet, .npy, HDF5)."""
