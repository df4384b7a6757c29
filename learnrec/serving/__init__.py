"""Serving: the recommendation path, vector indexes, auth, and the HTTP API over them."""
