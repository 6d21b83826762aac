"""tools/benchmark.py's subcommands, one module per family (run through tools/benchmark.py)."""
