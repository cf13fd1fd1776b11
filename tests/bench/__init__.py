"""labmail's benchmarks: ``python -m tests.bench [--quick]``. Not collected by pytest."""
