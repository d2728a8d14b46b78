"""Repository tooling shared by tests, the local stack and scripts (not deployed)."""
