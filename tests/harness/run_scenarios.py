"""`make molecule`: run Molecule scenarios a few at a time, each into its own log.

Scenarios are isolated from each other (their own networks, addresses, moto ports, container names
and ephemeral directories), so two can run at once: while one waits on a container, an election or
a health check, the other uses the CPU. Each log is printed whole when its scenario ends, and the
time of each scenario at the end. A failed scenario lets the running ones finish but starts no
other; the exit code is 1 when any failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from tests.harness import strategy


@dataclass(frozen=True)
class Result:
    scenario: str
    returncode: int
    seconds: float
    log: Path


def run(scenario: str, logs: Path) -> Result:
    log = logs / f"{scenario}.log"
    # Mitogen's strategy unless CLINIC_MOLECULE_STRATEGY names another (linear: Ansible's own); the
    # tests' own ansible-playbook runs inherit it.
    env = os.environ | strategy.environment(
        os.environ.get("CLINIC_MOLECULE_STRATEGY", strategy.DEFAULT)
    )
    start = time.monotonic()
    with log.open("w") as out:
        returncode = subprocess.run(
            ["molecule", "test", "-s", scenario],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            check=False,
        ).returncode
    return Result(scenario, returncode, time.monotonic() - start, log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="scenarios at once (default 2)")
    parser.add_argument("scenarios", nargs="+", help="in the order they start")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")

    results: list[Result] = []
    waiting = list(args.scenarios)
    logs = Path(tempfile.mkdtemp(prefix="clinic-molecule-"))
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        running: set[Future[Result]] = set()
        while waiting or running:
            failed = any(r.returncode for r in results)
            while waiting and not failed and len(running) < args.jobs:
                scenario = waiting.pop(0)
                print(f"== molecule test -s {scenario} (started)", flush=True)
                running.add(pool.submit(run, scenario, logs))
            if not running:
                break
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                result = future.result()
                results.append(result)
                verdict = f"exit {result.returncode}, {result.seconds:.0f} s"
                print(f"== molecule test -s {result.scenario}: {verdict}", flush=True)
                sys.stdout.write(result.log.read_text())
                sys.stdout.flush()

    print("\n== Time per scenario")
    for result in results:
        verdict = "passed" if result.returncode == 0 else "FAILED"
        print(f"  {result.scenario:<24} {result.seconds:7.0f} s  {verdict}")
    for scenario in waiting:
        print(f"  {scenario:<24}       -    not started (an earlier scenario failed)")
    failures = sum(1 for r in results if r.returncode)
    print(f"scenarios: {len(results) - failures} passed, {failures + len(waiting)} failed")
    return 1 if failures or waiting else 0


if __name__ == "__main__":
    sys.exit(main())
