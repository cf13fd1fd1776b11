"""``python -m tests.bench``: run labmail's benchmarks (see tests/bench/run.py)."""

from tests.bench.run import main

raise SystemExit(main())
