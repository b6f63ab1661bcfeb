"""The ``waqtor`` command: serve, worker, accounts. The top of the house: may import anything."""

from waqtor.cli.main import main

__all__ = ["main"]
