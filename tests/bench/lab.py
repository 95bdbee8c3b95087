"""Lab benchmark: `make lab` from nothing, then again (the no-op re-run), through `python -m lab`.

Removes the lab first (`python -m lab down`), so the first run converges six fresh hosts (images
cached). Reads each run's figures from lab/state.json and the site.yml log it names: the wall time
of `make lab`, site.yml's time, its changed count, and tasks per second (host-task results, i.e.
ok + skipped + failed over every host, per second of site.yml), and the strategy the lab ran with
(CLINIC_LAB_STRATEGY=linear measures Ansible's own). Last line:
    lab_first_s=A site_first_s=B lab_rerun_s=C site_rerun_s=D rerun_changed=E tasks_per_s=F
    strategy=S
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

from lab.settings import ROOT, STATE_FILE

RECAP = re.compile(
    r"^\S+\s+:\s+ok=(\d+)\s+changed=\d+\s+unreachable=\d+\s+failed=(\d+)\s+skipped=(\d+)",
    re.MULTILINE,
)


def make_lab() -> tuple[float, dict]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "lab", "up"], cwd=ROOT, check=False)
    elapsed = time.monotonic() - started
    if done.returncode:
        sys.exit(f"bench: make lab failed (exit {done.returncode}); see lab/.state/logs")
    return elapsed, json.loads(STATE_FILE.read_text())


def host_tasks(state: dict) -> int:
    log = (ROOT / state["converge"]["site.yml"]["log"]).read_text()
    _, _, recap = log.rpartition("PLAY RECAP")
    return sum(int(ok) + int(failed) + int(skipped) for ok, failed, skipped in RECAP.findall(recap))


def main() -> int:
    subprocess.run([sys.executable, "-m", "lab", "down"], cwd=ROOT, check=True)
    first_s, first = make_lab()
    rerun_s, rerun = make_lab()
    site_first = first["converge"]["site.yml"]
    site_rerun = rerun["converge"]["site.yml"]
    tasks_per_s = host_tasks(rerun) / site_rerun["seconds"]
    for name, state in (("first", first), ("rerun", rerun)):
        load = state["timings"]["load_average_1_5_15_min"]
        print(f"{name}: timings {state['timings']} (load average {load})")
    print(
        f"lab_first_s={first_s:.0f} site_first_s={site_first['seconds']:.0f} "
        f"lab_rerun_s={rerun_s:.0f} site_rerun_s={site_rerun['seconds']:.0f} "
        f"rerun_changed={site_rerun['changed']} tasks_per_s={tasks_per_s:.1f} "
        f"strategy={rerun['strategy']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
