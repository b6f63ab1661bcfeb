"""The send path: the worker, the senders (one at a time and in batches), flow control, rate
slots, the breaker, outcome callbacks and reconciling with bullmq. May import runtime, the
engine, providers, store and domain; never campaigns, api, dashboard or cli."""
