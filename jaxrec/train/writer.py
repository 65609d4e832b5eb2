"""Run metrics: metrics.jsonl and TensorBoard event files, and a progress bar.

`MetricWriter.write_scalars(step, {...})` appends one JSON line and one
TensorBoard scalar per key (tensorboardX, no TensorFlow). On resume from a
checkpoint at step S, lines after S are dropped from metrics.jsonl and
TensorBoard is told to purge events after S, so a resumed run's record is
the same as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import pathlib

import tensorboardX
import tqdm

from jaxrec.train import record


def _finite_or_none(v):
  v = float(v)
  return v if math.isfinite(v) else None


class MetricWriter:
  """metrics.jsonl + TensorBoard events under `workdir`.

  Args:
    workdir: run directory.
    resume_step: the step the run (re)starts from; records after it are
      dropped (0 for a new run: everything is dropped).
  """

  def __init__(self, workdir: pathlib.Path, resume_step: int):
    self.path = pathlib.Path(workdir) / 'metrics.jsonl'
    if self.path.exists():
      keep = [
        json.dumps(row, allow_nan=False)  # as `record.append_jsonl` wrote it
        for row in record.read_jsonl(self.path)
        if row['step'] <= resume_step
      ]
      record.write_text(self.path, ''.join(x + '\n' for x in keep))
    self._tb = tensorboardX.SummaryWriter(
      str(pathlib.Path(workdir) / 'tensorboard'),
      purge_step=resume_step or None,
    )

  def write_scalars(self, step: int, scalars: dict) -> None:
    row = {
      'step': int(step),
      **{k: _finite_or_none(v) for k, v in scalars.items()},
    }
    record.append_jsonl(self.path, row)
    for key, value in scalars.items():
      # TensorBoard tag names allow no '@': ndcg@10 -> ndcg_10.
      self._tb.add_scalar(key.replace('@', '_'), float(value), int(step))

  def flush(self) -> None:
    self._tb.flush()

  def close(self) -> None:
    self._tb.close()


def progress(total: int, initial: int, desc: str) -> tqdm.tqdm:
  """A progress bar with steps/s and ETA (silent when not on a terminal)."""
  return tqdm.tqdm(
    total=total, initial=initial, desc=desc, unit='step', disable=None
  )


def _not_orbax_info(rec: logging.LogRecord) -> bool:
  return rec.levelno >= logging.WARNING or '/orbax/' not in rec.pathname


def quiet_orbax() -> None:
  """Drops Orbax's INFO lines (dozens per save) from the absl log."""
  logger = logging.getLogger('absl')
  if _not_orbax_info not in logger.filters:
    logger.addFilter(_not_orbax_info)
