"""Fault injection: a Toxiproxy-compatible network proxy (more injectors to come)."""
