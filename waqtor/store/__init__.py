"""Everything that touches Redis: keys, Lua scripts, connections, and the typed readers and
writers the layers above use (``bundle.Store``). May import domain and config only."""
