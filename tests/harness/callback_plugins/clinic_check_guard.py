"""Fail a --check run that reports changes or failures.

Molecule's `check` step only proves that a check-mode run does not fail. The house rule is stricter:
a `--check` run on a converged host reports no changes either. This callback, enabled for every
scenario by the shared Molecule config, turns any change seen in check mode into a non-zero exit.
"""

from __future__ import annotations

from typing import Any

from ansible import context
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: clinic_check_guard
    type: aggregate
    short_description: Exit non-zero when a check-mode run reports changes
    description:
      - In check mode, records every task result that reports a change and, at the end of the run,
        lists them and exits with status 2. Outside check mode it does nothing.
    requirements:
      - enabled in callbacks_enabled
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "clinic_check_guard"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._changed: list[str] = []

    def _active(self) -> bool:
        return bool(context.CLIARGS.get("check"))

    def v2_runner_on_ok(self, result: Any) -> None:
        if self._active() and result._result.get("changed", False):
            self._changed.append(f"{result._host.get_name()}: {result._task.get_name()}")

    def v2_runner_item_on_ok(self, result: Any) -> None:
        self.v2_runner_on_ok(result)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        if not self._active() or not self._changed:
            return
        lines = "\n  ".join(sorted(set(self._changed)))
        self._display.error(f"check mode on a converged host reported changes:\n  {lines}")
        # Raised past the callback dispatcher (it catches Exception only): ansible-playbook exits 2.
        raise SystemExit(2)
