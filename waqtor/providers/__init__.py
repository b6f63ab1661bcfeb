"""WhatsApp providers: one protocol the worker knows, one implementation per API."""
