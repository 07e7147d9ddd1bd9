"""``python -m tests.bench``: run every tests/bench/bench_*.py and print one table.

``BENCH_ONLY=substring`` keeps the modules whose name contains it; ``BENCH_JSON=FILE`` also
writes the figures as a JSON list. See :mod:`tests.bench.runner`.
"""

import sys

from tests.bench.runner import main

sys.exit(main())
