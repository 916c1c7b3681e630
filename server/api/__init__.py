"""Transports: REST (Flask) over the one service layer."""
