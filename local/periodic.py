"""The background loop shared by the local stack's emulations (schedules, TTL, SES feedback)."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod


class PeriodicWorker(ABC):
    """Runs `work()` every `interval` seconds in a daemon thread until `stop()`.

    A failing pass is logged once (not every interval) and its recovery once; the loop never dies.
    Subclasses set `name`, implement `work()` and may override `wait_seconds()`.
    """

    name = "worker"

    def __init__(self, interval_seconds: float, logger: logging.Logger) -> None:
        self._interval = interval_seconds
        self._log = logger
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    @abstractmethod
    def work(self) -> object:
        """One pass of the emulation."""

    def wait_seconds(self) -> float:
        return self._interval

    def start_thread(self) -> bool:
        """Start the loop; False when it was already running."""
        if self._thread is not None:
            return False
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"local-{self.name}", daemon=True)
        self._thread.start()
        return True

    def stop_thread(self, timeout: float) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._log.warning("%s: thread still busy after %.0fs", self.name, timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.work()
                if self._failing:
                    self._log.info("%s: working again", self.name)
                    self._failing = False
            except Exception as error:
                if not self._failing:
                    self._log.warning("%s: pass failed (%s); retrying", self.name, error)
                    self._failing = True
            self._stop.wait(self.wait_seconds())
