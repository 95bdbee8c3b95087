"""Entry point: `python -m <package> ctl -a status` (the ctl) or `... start-agent` (the service)."""

import sys

from .ctl import main as ctl_main
from .paths import Paths
from .service import AGENT_MARKER, run_agent

USAGE = f"usage: python -m {__package__} ctl [ctl flags...] | {AGENT_MARKER}"

if len(sys.argv) > 1 and sys.argv[1] == "ctl":
    sys.exit(ctl_main(sys.argv[2:]))
if len(sys.argv) == 2 and sys.argv[1] == AGENT_MARKER:
    sys.exit(run_agent(Paths.from_env()))
print(USAGE, file=sys.stderr)
sys.exit(2)
