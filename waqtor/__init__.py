"""waqtor: send one personalised WhatsApp text to many recipients, safely."""

__version__ = "0.1.0"
__all__ = ["__version__"]
