"""Entry point: `python -m tests.doubles.mongodb --config /etc/mongod.conf` (mongod's argv)."""

import sys

from .server import main

sys.exit(main(sys.argv[1:]))
