"""Stopping a run cleanly on SIGTERM or SIGINT (preemption, scancel, Ctrl-C).

Batch schedulers send SIGTERM some seconds before they kill a job (SLURM's
KillWait, a preemptible VM's notice). Inside `stop_requests()` the first
SIGTERM or SIGINT is only recorded; the training loop finishes the step it is
in (and a validation in progress), saves the latest state at that step,
releases the run lock and raises `Interrupted`. The same command resumes the
run, with the numbers of an uninterrupted one. The first signal restores the
handlers that were there before, so a second one acts as it always did
(SIGTERM kills at once, SIGINT raises KeyboardInterrupt), losing only the
work since the last save.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

from absl import logging

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(SystemExit):
  """The run stopped on a signal after saving its state.

  A SystemExit with code 128 + signum, like a process the signal killed, so
  a command line exits with it and no traceback, and no `except Exception`
  between the loop and the command line swallows it.
  """

  def __init__(self, signum: int, step: int):
    super().__init__(128 + signum)
    self.signum = signum
    self.step = step

  def __str__(self) -> str:
    return (
      f'stopped by {signal.Signals(self.signum).name} after saving step'
      f' {self.step}; run the same command to resume'
    )


@contextlib.contextmanager
def stop_requests(
  signals: tuple[int, ...] = STOP_SIGNALS,
) -> Iterator[Callable[[], int]]:
  """Yields `requested()`: the first stop signal received (0: none yet).

  Outside the main thread (where Python cannot install handlers) nothing is
  installed and `requested()` stays 0: signals act as they always do.
  """
  if threading.current_thread() is not threading.main_thread():
    yield lambda: 0
    return
  received: list[int] = []
  previous = {s: signal.getsignal(s) for s in signals}

  def restore() -> None:
    for s, handler in previous.items():
      # None: a handler not installed from Python; the default is closest.
      signal.signal(s, signal.SIG_DFL if handler is None else handler)

  def record(signum, frame) -> None:
    del frame
    received.append(signum)
    restore()
    logging.warning(
      '%s received: stopping after this step, once its state is saved'
      ' (send it again to stop at once)',
      signal.Signals(signum).name,
    )

  for s in signals:
    signal.signal(s, record)
  try:
    yield lambda: received[0] if received else 0
  finally:
    restore()
