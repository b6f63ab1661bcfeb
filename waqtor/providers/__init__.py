"""WhatsApp providers: one protocol the worker knows, one implementation per API. May import
the store (each through a narrow interface given at construction), the engine and domain."""
