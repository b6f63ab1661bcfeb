"""Kept so that ``waqtor.callbacks.verify``, which the docs tell receivers of status callbacks
to call, still imports; the code lives in ``waqtor.sending.callbacks``."""

from waqtor.sending.callbacks import verify

__all__ = ["verify"]
