"""paperdigest's benchmark suite: `make bench` (full) or `make bench-quick` (CI smoke test)."""
