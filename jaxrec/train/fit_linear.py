"""Fit, select on validation and test once: closed-form and kNN models.

`fit_and_evaluate(config, workdir)` is the whole run for a linear model:
every point of `config.grid` (a Cartesian product over fields of
`config.model`) is fitted on train and validated; the best point by
`config.eval.select` is then tested once through the protocol. The workdir
gets config.json, metrics.jsonl (one line per grid point) and results.json.
"""

from __future__ import annotations

import itertools
import json
import pathlib
import time

import ml_collections as mlc
from absl import logging

from jaxrec import models
from jaxrec.data import registry, synthetic, types
from jaxrec.eval import protocol as protocol_lib
from jaxrec.models.linear import base
from jaxrec.train import record


def load_split(config: mlc.ConfigDict) -> types.Split:
  """The dataset named by `config.dataset`, cut to `config.max_users`."""
  if config.dataset == 'synthetic':
    split = synthetic.clustered_split(seed=config.seed)
  elif config.dataset == 'synthetic-seq':
    split = synthetic.clustered_split(kind='sequential', seed=config.seed)
  else:
    split = registry.get_split(config.dataset)
  if config.max_users:
    split = types.head_users(split, config.max_users)
  return split


def make_protocol(split: types.Split, ev: mlc.ConfigDict):
  return protocol_lib.Protocol(
    split,
    ks=tuple(ev.ks),
    metrics=tuple(ev.metrics),
    select=ev.select,
    exclude_valid=ev.exclude_valid or None,
    exclude_test=ev.exclude_test or None,
    chunk_size=ev.chunk_size,
    select_fraction=float(ev.get('select_fraction', 1.0)),
    select_seed=int(ev.get('select_seed', 42)),
    batch_mean=int(ev.get('batch_mean', 0)),
    select_rule=str(ev.get('select_rule', 'max')),
  )


def grid_points(config: mlc.ConfigDict) -> list[mlc.ConfigDict]:
  """`config.model` once per point of the grid (itself if the grid is empty)."""
  grid = config.grid.to_dict()
  for key in grid:
    if key not in config.model:
      raise KeyError(
        f'grid key {key!r} is not a field of config.model'
        f' ({sorted(config.model)})'
      )
  points = []
  for values in itertools.product(*grid.values()):
    point = mlc.ConfigDict(config.model.to_dict())
    for key, value in zip(grid, values, strict=True):
      point[key] = type(config.model[key])(value)
    points.append(point)
  return points


def _tag(point: mlc.ConfigDict, grid: dict) -> str:
  return ','.join(f'{k}={point[k]}' for k in grid) or 'default'


def fit_and_evaluate(
  config: mlc.ConfigDict,
  workdir: str | pathlib.Path,
  split: types.Split | None = None,
) -> dict:
  """Runs one linear model end to end; returns the results.json dict."""
  start = time.time()
  environment = record.environment()  # the code of the start of the run
  workdir = pathlib.Path(workdir)
  with record.run_lock(workdir):  # one process writes a workdir
    return _fit_and_evaluate(config, workdir, split, start, environment)


def _fit_and_evaluate(config, workdir, split, start, environment) -> dict:
  workdir.mkdir(parents=True, exist_ok=True)
  record.write_json(workdir / 'config.json', config.to_dict())
  metrics_path = workdir / 'metrics.jsonl'
  metrics_path.unlink(missing_ok=True)

  model = models.get_model(config.model.name)
  split = split if split is not None else load_split(config)
  logging.info('split: %s', split.summary())
  protocol = make_protocol(split, config.eval)
  train = split.train.to_csr(split.n_items)
  grid = config.grid.to_dict()

  best_state, best_point, fits = None, None, []
  for point in grid_points(config):
    tag = _tag(point, grid)
    t0 = time.perf_counter()
    state = model.fit(train, point)
    fit_s = time.perf_counter() - t0
    scorer = base.LinearScorer(model, state, split.n_items)
    result = protocol.validate(scorer, tag)
    eval_s = time.perf_counter() - t0 - fit_s
    fits.append({'tag': tag, 'fit_s': fit_s, 'valid_eval_s': eval_s})
    record.append_jsonl(
      metrics_path,
      {
        'tag': tag,
        'fit_s': fit_s,
        'eval_s': eval_s,
        **{f'valid/{k}': v for k, v in result.metrics.items()},
      },
    )
    logging.info(
      '%s %s: valid %s=%.5f (fit %.2fs, eval %.2fs)',
      model.name,
      tag,
      config.eval.select,
      result.metrics[config.eval.select],
      fit_s,
      eval_s,
    )
    if protocol.best()[0] == tag:
      best_state, best_point = state, point
    del state, scorer

  tag, value = protocol.best()
  scorer = base.LinearScorer(model, best_state, split.n_items)
  test = protocol.final_test(scorer, tag)
  results = protocol.record()
  results.update(
    model=model.name,
    selected_hyperparameters=best_point.to_dict(),
    fits=fits,
    wall_s=time.time() - start,
    seed=config.seed,
    quirks=protocol_lib.eval_quirks(config.eval),
    environment=environment,
  )
  record.write_json(workdir / 'results.json', results)
  logging.info(
    '%s test (selected %s, valid %s=%.5f): %s',
    model.name,
    tag,
    config.eval.select,
    value,
    json.dumps(test.metrics),
  )
  return results
