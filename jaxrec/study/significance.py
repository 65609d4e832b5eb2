"""Is model A better than model B on the same test users? Paired tests.

Every tested run keeps its per-user test metrics (results.json, `test.
per_user`). Two runs, or two seeds folders, on the same split are compared
user by user: each user's metric is averaged over a folder's seeds, and the
differences over users go through a paired two-sided test (`ttest`: paired
t-test, valid at these user counts by the central limit theorem; `wilcoxon`:
signed-rank, which drops users with no difference, most of them for
hit-based metrics). A table of many comparisons is corrected with Holm's
step-down method (family-wise error), so a reader can take each '*' at
face value.

Seed variance is folded into the per-user means, not tested: with 3 seeds a
seed-level test has no power. The seeds' spread is the table's "+-".
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np
import scipy.stats

from jaxrec.study import report

TESTS = ('ttest', 'wilcoxon')


def per_user(
  workdir: str | pathlib.Path, metric: str
) -> tuple[np.ndarray, np.ndarray, str]:
  """(users, the metric per user averaged over the folder's seeds, split
  hash).

  Raises:
    FileNotFoundError: no tested run in `workdir`.
    ValueError: the seeds ranked different users or splits, or a run kept
      no per-user values of `metric`.
  """
  runs = report.tested_runs(workdir)
  if not runs:
    raise FileNotFoundError(f'{workdir}: no tested run (results.json)')
  users = np.asarray(runs[0]['test']['per_user']['users'])
  split = runs[0]['split']['hash']
  values = []
  for r in runs:
    pu = r['test']['per_user']
    if metric not in pu:
      raise ValueError(
        f'{workdir}: seed {r["seed"]} kept no per-user {metric!r}; it has'
        f' {sorted(k for k in pu if k != "users")}'
      )
    if r['split']['hash'] != split or not np.array_equal(pu['users'], users):
      raise ValueError(
        f'{workdir}: seed {r["seed"]} was tested on other users or another'
        ' split than the first seed'
      )
    values.append(np.asarray(pu[metric], np.float64))
  return users, np.mean(values, axis=0), split


def paired(
  a: str | pathlib.Path, b: str | pathlib.Path, metric: str, test: str = 'ttest'
) -> dict:
  """A against B on their common test users.

  Returns:
    {'mean_a', 'mean_b', 'diff' (mean of a - b), 'rel' (diff / mean_b),
    'p' (two-sided), 'users'}.

  Raises:
    ValueError: another split, other users, or an unknown test.
  """
  if test not in TESTS:
    raise ValueError(f'test={test!r}; expected one of {TESTS}')
  users_a, va, split_a = per_user(a, metric)
  users_b, vb, split_b = per_user(b, metric)
  if split_a != split_b or not np.array_equal(users_a, users_b):
    raise ValueError(
      f'{a} and {b} were not tested on the same split and users; a paired'
      ' test needs both'
    )
  d = va - vb
  if not d.any():
    p = 1.0
  elif test == 'ttest':
    p = float(scipy.stats.ttest_rel(va, vb).pvalue)
  else:
    p = float(scipy.stats.wilcoxon(va, vb).pvalue)
  mean_b = float(vb.mean())
  return {
    'mean_a': float(va.mean()),
    'mean_b': mean_b,
    'diff': float(d.mean()),
    'rel': float(d.mean() / mean_b) if mean_b else float('nan'),
    'p': p,
    'users': int(len(d)),
  }


def holm(p_values: Sequence[float]) -> np.ndarray:
  """Holm's step-down adjusted p-values, in the input order.

  The i-th smallest of m p-values is multiplied by (m - i) (i from 0),
  then made non-decreasing in that order and capped at 1; rejecting where
  the adjusted value is below alpha controls the family-wise error at alpha.
  """
  p = np.asarray(p_values, np.float64)
  order = np.argsort(p, kind='stable')
  m = len(p)
  scaled = np.minimum((m - np.arange(m)) * p[order], 1.0)
  adjusted = np.empty(m)
  adjusted[order] = np.maximum.accumulate(scaled)
  return adjusted
