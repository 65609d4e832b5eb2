"""The evaluation protocol: the only way a result is measured.

Validation may run any number of times, each under a tag (a step, a grid
point). The test split is ranked exactly once per `Protocol`, and only for
the tag that is best on validation by the named `select` metric, so neither
early stopping nor tuning can see test data. `record()` is what goes into a
run's results.json.

At validation the model reads `split.history('valid')` (train) and is ranked
against `split.valid`; at test it reads `split.history('test')` (train, or
train + valid, as the dataset's protocol says) against `split.test`. Items
removed before ranking are a named setting per stage: 'none', 'train' or
'train+valid' (defaults from the dataset: the sequential papers exclude
nothing, the CF papers exclude train at valid and train + valid at test).
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any, Literal

import numpy as np

from jaxrec.data import types
from jaxrec.eval import metrics as metrics_lib
from jaxrec.eval import ranking

TIE_RULE = 'equal scores rank the lower item id first'
RECALL = {
  'recall': 'hits@K / |GT| (DiffRec, DDRM)',
  'recall_capped': 'hits@K / min(|GT|, K) (GiffCF)',
}
EXCLUDES = ('none', 'train', 'train+valid')
SELECT_RULES = ('max', 'any_new_max')


@dataclasses.dataclass(frozen=True)
class EvalResult:
  """Metrics of one evaluation.

  Attributes:
    metrics: {'ndcg@20': mean over users with a non-empty ground truth}.
    per_user: {'ndcg@20': float64[U']} in the order of `users`.
    users: int64[U'] evaluated users.
    coverage: {'coverage@20': share of all items in any user's top 20}.
  """

  metrics: dict[str, float]
  per_user: dict[str, np.ndarray]
  users: np.ndarray
  coverage: dict[str, float]


def exclusion(split: types.Split, which: types.Exclude) -> types.Part | None:
  """The part whose items are removed from ranking."""
  if which == 'none':
    return None
  if which == 'train':
    return split.train
  if which == 'train+valid':
    return types.concat_parts(split.train, split.valid)
  raise ValueError(
    f"exclude={which!r}; expected 'none', 'train' or 'train+valid'"
  )


# Evaluation settings that reproduce an official code's protocol, with
# their correct values; a run lists those it changed among its quirks.
EVAL_QUIRKS = {'select_fraction': 1.0, 'batch_mean': 0, 'select_rule': 'max'}


def eval_quirks(ev) -> dict:
  """{'eval.<key>': value} for each `EVAL_QUIRKS` key `ev` (config.eval)
  sets away from its correct value."""
  return {
    f'eval.{k}': ev.get(k, correct)
    for k, correct in EVAL_QUIRKS.items()
    if ev.get(k, correct) != correct
  }


def selection_users(
  valid: types.Part, fraction: float, seed: int
) -> np.ndarray | None:
  """The users validation ranks (`Protocol`'s `select_fraction`), int64 in
  ascending order; None = every user with a validation item."""
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f'eval.select_fraction={fraction} must be in (0, 1]')
  if fraction == 1.0:
    return None
  order = np.flatnonzero(valid.lengths > 0).tolist()
  random.Random(seed).shuffle(order)
  keep = order[: int(len(order) * fraction)]
  if not keep:
    raise ValueError(
      f'eval.select_fraction={fraction} keeps none of the {len(order)}'
      ' users with a validation item'
    )
  return np.sort(np.asarray(keep, np.int64))


def json_ready(x: Any) -> Any:
  """JSON-ready: numpy scalars to Python, non-finite floats to None."""
  if isinstance(x, dict):
    return {str(k): json_ready(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [json_ready(v) for v in x]
  if isinstance(x, np.ndarray):
    return json_ready(x.tolist())
  if isinstance(x, np.generic):
    x = x.item()
  if isinstance(x, float) and not math.isfinite(x):
    return None
  return x


class Protocol:
  """Validation any number of times; test once, on the selected tag.

  Args:
    split: the data.
    ks: cut-offs; the ranking is max(ks) long.
    metrics: registered metric names (`metrics.METRICS`).
    select: '<metric>@<k>' that picks the tag to test (higher is better).
    exclude_valid: 'none' | 'train' | 'train+valid', or None (or '') for
      the split's default.
    exclude_test: same, at test.
    chunk_size: users per jitted ranking step.
    select_fraction: the share of the validation users whose metrics
      validation computes (and so selection and early stopping read); 1.0 =
      all. Below 1: the users with a validation item in ascending id order,
      shuffled by Python's `random.Random(select_seed)`, first
      floor(n * select_fraction) of them (DDRM's official validation: 0.5,
      seed 42). Test always ranks every user.
    select_seed: the seed of that shuffle.
    batch_mean: 0 = every metric is the mean over users (correct). N = the
      mean of per-batch means over N consecutive users in ascending id
      order (`metrics.batch_mean`; DiffuRec's and ADRec's official
      evaluation: 512), at validation and test alike.
    select_rule: 'max' = the tag with the largest `select` (correct).
      'any_new_max' = the latest tag at which any HR@k or NDCG@k (every k
      in `ks`) reached a new maximum, as the DiffuRec and ADRec official
      code keep their best model and count patience; `select` is then
      only reported.
  """

  def __init__(
    self,
    split: types.Split,
    ks=(10, 20),
    metrics=('hr', 'recall', 'ndcg', 'mrr', 'precision'),
    select: str = 'ndcg@20',
    exclude_valid: types.Exclude | None = None,
    exclude_test: types.Exclude | None = None,
    chunk_size: int = ranking.DEFAULT_CHUNK,
    select_fraction: float = 1.0,
    select_seed: int = 42,
    batch_mean: int = 0,
    select_rule: str = 'max',
  ):
    self.split = split
    self.ks = tuple(int(k) for k in ks)
    self.metrics = tuple(metrics)
    for name in self.metrics:
      metrics_lib.get(name)  # raises on an unknown name
    names = [f'{m}@{k}' for m in self.metrics for k in self.ks]
    if select not in names:
      raise KeyError(f'select={select!r} is not one of the metrics {names}')
    self.select = select
    if select_rule not in SELECT_RULES:
      raise ValueError(
        f'eval.select_rule={select_rule!r}; expected one of {SELECT_RULES}'
      )
    self.select_rule = select_rule
    self._any_of = [n for n in names if n.split('@')[0] in ('hr', 'ndcg')]
    if select_rule == 'any_new_max' and not self._any_of:
      raise ValueError(
        "eval.select_rule='any_new_max' reads HR@k and NDCG@k; eval.metrics"
        f' {list(self.metrics)} has neither'
      )
    if batch_mean < 0:
      raise ValueError(f'eval.batch_mean={batch_mean} must be >= 0')
    self.batch_mean = int(batch_mean)
    self.exclude = {
      'valid': exclude_valid or split.exclude_valid,
      'test': exclude_test or split.exclude_test,
    }
    self._excluded = {s: exclusion(split, w) for s, w in self.exclude.items()}
    self.chunk_size = chunk_size
    self.select_fraction, self.select_seed = select_fraction, select_seed
    self._valid_users = selection_users(
      split.valid, select_fraction, select_seed
    )
    self.history: list[tuple[Any, dict[str, float]]] = []
    self._test: tuple[Any, EvalResult] | None = None

  def rank(self, scorer, stage: Literal['valid', 'test']) -> ranking.RankResult:
    """The top-max(ks) lists `stage` scores: its histories, exclusion and
    users. Selects and records nothing (a study of the lists)."""
    truth = self.split.valid if stage == 'valid' else self.split.test
    return ranking.rank(
      scorer,
      self.split.history(stage),
      truth,
      self._excluded[stage],
      self.split.n_items,
      k=max(self.ks),
      chunk_size=self.chunk_size,
      users=self._valid_users if stage == 'valid' else None,
    )

  def _evaluate(self, scorer, stage: Literal['valid', 'test']) -> EvalResult:
    res = self.rank(scorer, stage)
    per_user = metrics_lib.per_user(res.hits, res.n_gt, self.ks, self.metrics)
    cov = {
      f'coverage@{k}': metrics_lib.coverage(res.topk, self.split.n_items, k)
      for k in self.ks
    }
    if self.batch_mean and len(res.users):
      means = {
        k: metrics_lib.batch_mean(v, self.batch_mean)
        for k, v in per_user.items()
      }
    else:
      means = metrics_lib.means(per_user)
    return EvalResult(means, per_user, res.users, cov)

  def validate(self, scorer, tag) -> EvalResult:
    """Ranks validation; remembers `(tag, metrics)` for selection."""
    if self._test is not None:
      raise RuntimeError('validation after the final test: the run is over')
    result = self._evaluate(scorer, 'valid')
    self.history.append((tag, dict(result.metrics)))
    return result

  def best(self) -> tuple[Any, float]:
    """(tag, value of `select`) of the selected tag: under 'max' the
    largest `select`, the earliest tag winning a tie; under 'any_new_max'
    the latest tag at which any HR@k or NDCG@k exceeded all earlier
    values (the first validation always does)."""
    if not self.history:
      raise RuntimeError('no validation has run yet')
    values = np.array([m[self.select] for _, m in self.history], np.float64)
    if np.isnan(values).all():
      raise RuntimeError(
        f'{self.select} is NaN at every validation (no user with a valid'
        ' item?); nothing to select'
      )
    if self.select_rule == 'any_new_max':
      table = np.array(
        [[m[n] for n in self._any_of] for _, m in self.history], np.float64
      )
      i = 0
      for j in range(1, len(table)):
        if np.any(table[j] > np.nanmax(table[:j], axis=0)):
          i = j
    else:
      i = int(np.nanargmax(values))  # the first of equal maxima
    return self.history[i][0], float(values[i])

  def final_test(self, scorer, tag) -> EvalResult:
    """Ranks test once, for the validation-selected `tag` only."""
    if self._test is not None:
      raise RuntimeError(
        f'test was already evaluated (tag {self._test[0]!r}); it is'
        ' evaluated once per run'
      )
    best_tag, _ = self.best()
    if tag != best_tag:
      raise ValueError(
        f'test is evaluated once, on the state selected by {self.select}'
        f' on validation ({best_tag!r}); got {tag!r}'
      )
    result = self._evaluate(scorer, 'test')
    self._test = (tag, result)
    return result

  def _select_rule(self) -> str:
    if self.select_rule == 'any_new_max':
      return (
        f'the latest valid tag at which any of {self._any_of} reached a new'
        f' maximum (official DiffuRec / ADRec); {self.select} reported'
      )
    return f'max {self.select} on valid; earliest tag on a tie'

  def _users_rule(self) -> str:
    if self._valid_users is None:
      return 'every user with a validation item'
    return (
      f'{len(self._valid_users)} of the'
      f' {int((self.split.valid.lengths > 0).sum())} users with a validation'
      f' item (select_fraction {self.select_fraction}: ascending ids shuffled'
      f' by random.Random({self.select_seed}), the first ones); test ranks'
      ' every user'
    )

  def record(self) -> dict:
    """The JSON-ready record of this protocol's runs."""
    out = {
      'split': self.split.summary(),
      'protocol': {
        'ks': list(self.ks),
        'metrics': list(self.metrics),
        'select': self.select,
        'exclude_valid': self.exclude['valid'],
        'exclude_test': self.exclude['test'],
        'test_history': self.split.test_history,
        'recall': RECALL,
        'ndcg': 'binary gain 1/log2(rank + 2); ideal over min(|GT|, K)',
        'users': 'users with a non-empty ground truth; others not counted',
        'ties': TIE_RULE,
        'select_rule': self._select_rule(),
        'averaging': (
          f'mean of per-batch means over {self.batch_mean} consecutive users'
          if self.batch_mean
          else 'mean over users'
        ),
        'chunk_size': self.chunk_size,
        'valid_users': self._users_rule(),
      },
      'valid_curve': [{'tag': t, 'metrics': m} for t, m in self.history],
    }
    if self.history and not all(
      math.isnan(m[self.select]) for _, m in self.history
    ):
      tag, value = self.best()
      out['selected'] = {'tag': tag, 'metric': self.select, 'value': value}
    if self._test is not None:
      tag, res = self._test
      out['test'] = {
        'tag': tag,
        'metrics': res.metrics,
        'coverage': res.coverage,
        'users_counted': len(res.users),
        'per_user': {
          'users': res.users.tolist(),
          **{k: v.tolist() for k, v in res.per_user.items()},
        },
      }
    return json_ready(out)
