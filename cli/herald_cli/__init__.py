"""`herald`: Herald's operator command line (installed as a console script by `make venv`).

Not part of the Lambda layer: it runs on an operator's machine against a deployed stack (by stack
name) or against the local stack (`make local`, `.local/stack.json`).
"""
