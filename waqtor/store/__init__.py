"""Everything that touches Redis: keys, scripts, connections, the ledger and pacing."""
