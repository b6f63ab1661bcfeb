"""waqtor's tests. A regular package, so ``tests.*`` is ours even where a dependency installs a
top-level ``tests`` package of its own (linkpreview, under neonize, does)."""
