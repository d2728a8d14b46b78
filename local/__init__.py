"""Herald's local stack: everything needed to run Herald on one machine without AWS or providers."""
