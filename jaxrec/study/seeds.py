"""Repeat one experiment over seeds; mean, standard deviation, 95 % CI.

Each seed is its own run (workdir `<root>/seed<k>`, resumable like any run)
with `config.seed = k`; the summary gives, per test metric, the mean over
seeds, the sample standard deviation and a Student-t 95 % confidence
interval of the mean, and keeps each seed's value. Neural configs (with a
`train` section) go through `loop.train_and_evaluate`, the others through
`fit_linear.fit_and_evaluate`.
"""

from __future__ import annotations

import functools
import pathlib
import time
from typing import Any, Callable, Sequence

import ml_collections as mlc
import numpy as np
import scipy.stats
from absl import logging

from jaxrec.train import record


def summarize(values: Sequence[float], confidence: float = 0.95) -> dict:
  """{'mean', 'std' (ddof 1), 'ci_low', 'ci_high', 'n', 'values'}."""
  x = np.asarray(values, np.float64)
  n = len(x)
  mean = float(x.mean())
  std = float(x.std(ddof=1)) if n > 1 else float('nan')
  if n > 1:
    half = scipy.stats.t.ppf(0.5 + confidence / 2, n - 1) * std / np.sqrt(n)
  else:
    half = float('nan')
  return {
    'mean': mean,
    'std': std,
    'ci_low': mean - half,
    'ci_high': mean + half,
    'n': n,
    'values': x.tolist(),
  }


# How often a process waiting on runs other processes hold looks again.
POLL_SECONDS = 30.0


def when_free(
  jobs: Sequence[tuple[Any, Callable[[], dict]]], poll_s: float | None = None
) -> dict:
  """{key: job()} for (key, job) pairs whose jobs train one workdir each.

  A job whose workdir another process is writing (`record.RunBusy`) is put
  off and tried again after the others, every `poll_s` seconds while no
  job can go on; by then the other process has finished it (the call
  returns its record) or died (the call resumes it). So several processes
  started with the same seeds or sweep command share its runs.
  """
  poll_s = POLL_SECONDS if poll_s is None else poll_s
  done, pending = {}, list(jobs)
  while pending:
    busy = []
    for key, job in pending:
      try:
        done[key] = job()
      except record.RunBusy as e:
        logging.info('%s; trying again later', e)
        busy.append((key, job))
    if len(busy) == len(pending):
      time.sleep(poll_s)
    pending = busy
  return done


def seed_config(
  config: mlc.ConfigDict,
  root: pathlib.Path,
  seed: int,
  pretrain_root: pathlib.Path | None = None,
) -> mlc.ConfigDict:
  """The config of seed `seed` of a seeds run in `root`; its pre-training
  stage, if any, in `<pretrain_root or root>/pretrain`."""
  c = mlc.ConfigDict(config.to_dict())
  c.seed = int(seed)
  if c.get('pretrain') is not None and c.pretrain.get('config'):
    # One pre-training stage for every seed (its own seed stays fixed), as
    # the official ADRec code loads one pretrained file for all runs.
    shared = pathlib.Path(pretrain_root or root) / 'pretrain'
    c.pretrain.workdir = str(shared.resolve())
  return c


def run_seeds(
  config: mlc.ConfigDict,
  root: str | pathlib.Path,
  seeds: Sequence[int],
  pretrain_root: str | pathlib.Path | None = None,
  poll_s: float | None = None,
) -> dict:
  """Runs `config` once per seed under `root`; writes and returns seeds.json.

  The seeds share one pre-training stage (a config with `pretrain`), in
  `<pretrain_root or root>/pretrain`. Several processes may run the same
  command: each trains the seeds no other is training (`when_free`).
  """
  from jaxrec.train import fit_linear, loop  # heavy imports, on demand

  root = pathlib.Path(root)
  run = (
    loop.train_and_evaluate
    if 'train' in config
    else fit_linear.fit_and_evaluate
  )
  runs = when_free(
    [
      (
        seed,
        functools.partial(
          run,
          seed_config(config, root, seed, pretrain_root),
          root / f'seed{seed}',
        ),
      )
      for seed in seeds
    ],
    poll_s,
  )
  names = sorted(runs[seeds[0]]['test']['metrics'])
  summary = {
    name: summarize([runs[s]['test']['metrics'][name] for s in seeds])
    for name in names
  }
  out = {
    'model': config.model.name,
    'dataset': config.dataset,
    'seeds': list(seeds),
    'test': summary,
    'selected': {s: runs[s].get('selected') for s in seeds},
    'workdirs': {s: str(root / f'seed{s}') for s in seeds},
  }
  record.write_json(root / 'seeds.json', out)
  return out
