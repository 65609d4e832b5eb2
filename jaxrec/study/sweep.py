"""Tune a neural config on validation over a grid, then test the choice.

Every point of the grid (the product of `key=v1,v2,...` specs over dotted
config keys) trains once, at the first seed, in `<root>/<tag>/seed<k>`, and
is selected on validation like any run; test is never ranked for a point
that is not chosen. The point with the best selected validation value (the
first in grid order on a tie) is then run over all seeds by
`seeds.run_seeds` in its own folder, so its first seed's run is reused and
only tested. `<root>/sweep.json` records the grid, each point's validation
and the choice; `<root>/<tag>/seeds.json` the chosen point's test figures.
A pre-training stage (ADRec's `config.pretrain`) is trained once for the
whole sweep, in `<root>/pretrain`, unless the grid sets `pretrain.*` keys.

Linear models search their own grid inside one fit (`config.grid`,
`jaxrec.train.fit_linear`); this is the neural models' counterpart.
"""

from __future__ import annotations

import ast
import functools
import itertools
import pathlib
from typing import Any, Sequence

import ml_collections as mlc
from absl import logging

from jaxrec.study import seeds as seeds_lib
from jaxrec.train import record

Grid = dict[str, tuple[Any, ...]]


def parse_grid(specs: Sequence[str]) -> Grid:
  """{'model.dropout': (0.2, 0.5), ...} from ['model.dropout=0.2,0.5', ...].

  Values are Python literals (numbers, strings in quotes, True/False);
  an unquoted word is taken as a string.

  Raises:
    ValueError: a spec without '=' or without values, or a key twice.
  """
  grid: Grid = {}
  for spec in specs:
    key, eq, values = spec.partition('=')
    key = key.strip()
    if not eq or not key or not values.strip():
      raise ValueError(
        f'grid spec {spec!r}: expected key=value[,value...], e.g.'
        ' model.dropout=0.2,0.5'
      )
    if key in grid:
      raise ValueError(f'grid key {key!r} is given twice')
    grid[key] = tuple(_literal(v.strip()) for v in values.split(','))
  return grid


def _literal(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def points(grid: Grid) -> list[dict[str, Any]]:
  """Every combination, the last key varying fastest."""
  keys = list(grid)
  return [
    dict(zip(keys, vs, strict=True)) for vs in itertools.product(*grid.values())
  ]


def tag(point: dict[str, Any]) -> str:
  """The folder name of a point: 'model.dim=64,model.dropout=0.2'."""
  return ','.join(f'{k}={v}' for k, v in point.items())


def apply_point(config: mlc.ConfigDict, point: dict[str, Any]):
  """A copy of `config` with the point's keys set.

  Raises:
    KeyError: a key the config does not have, named with its neighbours.
  """
  c = mlc.ConfigDict(config.to_dict())
  # Not `update_from_flattened_dict`: on an unlocked config it adds a
  # misspelt leaf silently, and its errors do not say what the section has.
  for key, value in point.items():
    *parents, leaf = key.split('.')
    node = c
    for i, part in enumerate(parents):
      if part not in node or not isinstance(node[part], mlc.ConfigDict):
        where = '.'.join(parents[:i]) or 'the config'
        raise KeyError(
          f'grid key {key!r}: {where} has no section {part!r}'
          f' (it has: {", ".join(sorted(node.keys()))})'
        )
      node = node[part]
    if leaf not in node:
      raise KeyError(
        f'grid key {key!r}: no such key (its section has:'
        f' {", ".join(sorted(node.keys()))})'
      )
    node[leaf] = value
  return c


def at_edge(grid: Grid, point: dict[str, Any]) -> list[str]:
  """'key=value (the largest|smallest tried)' for each numeric axis of
  `grid` on which `point` sits at an end: the optimum may lie beyond the
  grid, and a tuned baseline should say so."""
  out = []
  for key, values in grid.items():
    numeric = [
      v
      for v in values
      if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    if len(numeric) < 2 or len(numeric) != len(values):
      continue
    if point[key] == max(numeric):
      out.append(f'{key}={point[key]} (the largest tried)')
    elif point[key] == min(numeric):
      out.append(f'{key}={point[key]} (the smallest tried)')
  return out


def run_sweep(
  config: mlc.ConfigDict,
  root: str | pathlib.Path,
  grid: Grid,
  seeds: Sequence[int] = (0,),
  poll_s: float | None = None,
) -> dict:
  """Trains every point at `seeds[0]`, picks one on validation, runs it
  over `seeds`; writes and returns sweep.json (with the seeds summary).
  Several processes may run the same sweep (`seeds.when_free`)."""
  from jaxrec.train import loop  # heavy import, on demand

  if 'train' not in config:
    raise ValueError(
      f'{config.model.name} is fitted in closed form and searches its own'
      ' grid (config.grid, experiments.fit_linear); sweep is for neural'
      ' configs'
    )
  if not grid:
    raise ValueError('empty grid: pass at least one key=values spec')
  root = pathlib.Path(root)
  first = int(seeds[0])
  # A pre-training stage the grid does not touch is trained once for all
  # points (in <root>/pretrain), else once per point.
  shared = not any(k.startswith('pretrain.') for k in grid)
  pretrain_root = lambda name: root if shared else root / name
  jobs = []
  for point in points(grid):
    name = tag(point)
    # The config that seed's run of `run_seeds` will have, so that the
    # chosen point's run is resumed (and only tested) there.
    c = seeds_lib.seed_config(
      apply_point(config, point), root / name, first, pretrain_root(name)
    )
    workdir = root / name / f'seed{first}'
    jobs.append(
      (name, functools.partial(loop.train_and_evaluate, c, workdir, test=False))
    )
  # Processes started with the same command share the points.
  done = seeds_lib.when_free(jobs, poll_s)
  rows = [
    {
      'tag': tag(point),
      'point': point,
      'valid': done[tag(point)]['selected']['value'],
      'selected_epoch': done[tag(point)]['selected_epoch'],
    }
    for point in points(grid)
  ]
  select = config.eval.select
  best = max(range(len(rows)), key=lambda i: (rows[i]['valid'], -i))
  chosen = rows[best]
  out = {
    'model': config.model.name,
    'dataset': config.dataset,
    'select': select,
    'grid': {k: list(v) for k, v in grid.items()},
    'points': rows,
    'chosen': chosen['tag'],
    'at_edge': at_edge(grid, chosen['point']),
  }
  if out['at_edge']:
    logging.warning(
      'sweep %s chose a point at the edge of its grid: %s; the optimum may'
      ' lie beyond it',
      root,
      ', '.join(out['at_edge']),
    )
  # Written before the seeds run, so the choice is on record while they do.
  record.write_json(root / 'sweep.json', out)
  chosen_config = apply_point(config, chosen['point'])
  out['seeds'] = seeds_lib.run_seeds(
    chosen_config,
    root / chosen['tag'],
    seeds,
    pretrain_root(chosen['tag']),
    poll_s,
  )
  record.write_json(root / 'sweep.json', out)
  return out
