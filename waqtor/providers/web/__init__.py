"""WhatsApp Web built in (``"provider": "web"``): an ordinary number linked by QR code, one
live connection per account across all processes (a Redis lease), sends relayed to the holder.

``adapter`` is our boundary (the tests fake it); ``neonize_client`` is the real client,
present with the ``web`` extra.
"""
