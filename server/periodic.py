"""One background loop for the server's periodic jobs: the SLA sweep, webhook deliveries, the
retention purge.

Each job is a plain function run on its own daemon thread, once at start and then every
``interval_s``. A failure is logged and the job simply runs again next round, so a database blip
never ends the loop; a job that answers True has more work waiting and runs again at once (webhook
deliveries drain a backlog without sleeping a poll interval per batch).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class PeriodicJob:
    """Run ``job`` every ``interval_s`` on a thread; :meth:`start` / :meth:`stop`."""

    def __init__(self, name: str, job: Callable[[], bool | None], interval_s: float,
                 stop_timeout_s: float = 30.0) -> None:
        self.name = name
        self._job = job
        self._interval_s = interval_s
        self._stop_timeout_s = stop_timeout_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"gridwatch-{name}", daemon=True)

    def start(self) -> PeriodicJob:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self._stop_timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = False
            try:
                busy = bool(self._job())
            except Exception:
                log.exception("%s failed; running again in %.0f s", self.name, self._interval_s)
            if not busy:
                self._stop.wait(self._interval_s)
