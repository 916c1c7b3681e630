"""Authentication (API keys) and authorization."""
