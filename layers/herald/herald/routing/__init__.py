"""Routing: from one request and what Herald knows about the user to a delivery plan (pure)."""
