"""Result tables from run records (Markdown now; CSV/LaTeX alongside)."""

from __future__ import annotations

import json
import pathlib
from typing import Sequence

import numpy as np

from jaxrec.eval import metrics as metrics_lib
from jaxrec.study import seeds
from jaxrec.train import loop, record


def _cell(value) -> str:
  if isinstance(value, float):
    return f'{value:.4f}'
  return str(value)


def markdown_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
  """A GitHub Markdown table of `rows` restricted to `columns`.

  Args:
    rows: one dict per line of the table; a missing key prints as '-'.
    columns: the keys to show, in order; they are the header.

  Returns:
    The table as text, one line per row plus header and rule.
  """
  lines = [
    '| ' + ' | '.join(columns) + ' |',
    '|' + '|'.join('---' for _ in columns) + '|',
  ]
  for row in rows:
    cells = (_cell(row[c]) if c in row else '-' for c in columns)
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def csv_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
  """The same table as CSV text (full precision)."""
  out = [','.join(columns)]
  for row in rows:
    out.append(','.join(str(row.get(c, '')) for c in columns))
  return '\n'.join(out) + '\n'


def tested_runs(workdir: str | pathlib.Path) -> list[dict]:
  """The tested run records under `workdir`: its own results.json, or
  those of its seed<k>/ subfolders (a seeds run, finished or not)."""
  workdir = pathlib.Path(workdir)
  own = workdir / 'results.json'
  if own.exists():
    paths = [own]
  else:
    paths = _seed_files(workdir, 'results.json')
  runs = [json.loads(p.read_text()) for p in paths]
  # A sweep point that was not chosen is never tested: not a result.
  return [r for r in runs if 'test' in r]


def run_row(
  workdir: str | pathlib.Path, metrics: Sequence[str], batch: int = 0
) -> dict:
  """One table row of a run or a seeds folder: mean +- sample std of each
  test metric over the finished seeds, and which quirk flags were on.

  Args:
    workdir: a run, a seeds folder or a sweep's chosen point.
    metrics: test metric names.
    batch: 0 = each run's metric as recorded (the mean over users); N = the
      mean of per-batch means over N consecutive users
      (`metrics.batch_mean`), from the run's per-user test values.

  Raises:
    FileNotFoundError: no finished run under `workdir`.
  """
  workdir = pathlib.Path(workdir)
  runs = tested_runs(workdir)
  if not runs:
    raise FileNotFoundError(
      f'{workdir}: no results.json (nor seed*/results.json); has a run'
      ' finished there?'
    )
  row = {
    'model': runs[0]['model'],
    'dataset': runs[0]['split']['name'],
    'seeds': ','.join(str(r['seed']) for r in runs),
  }
  quirks = runs[0].get('quirks') or {}
  on = [f'{k}={v}' for k, v in quirks.items() if v not in (False, 'key')]
  row['quirks'] = ' '.join(on) or 'none'
  sweep = workdir.parent / 'sweep.json'
  if sweep.exists() and json.loads(sweep.read_text())['chosen'] == workdir.name:
    row['tuned'] = workdir.name  # the grid point validation chose
  for name in metrics:
    values = [r['test']['metrics'].get(name) for r in runs]
    if any(v is None for v in values):
      raise KeyError(f'{workdir}: a run has no test metric {name!r}')
    if batch:
      values = [_batch_mean_of(r, name, batch, workdir) for r in runs]
    s = seeds.summarize(values)
    if s['n'] == 1:
      row[name] = f'{s["mean"]:.4f}'
    else:
      row[name] = f'{s["mean"]:.4f} +- {s["std"]:.4f}'
  return row


def run_config(workdir: str | pathlib.Path) -> dict:
  """The flattened config ('train.patience': 12, ...) of a run, or of the
  lowest-numbered seed of a seeds folder that has one, finished or not
  (its seeds differ only in 'seed')."""
  workdir = pathlib.Path(workdir)
  paths = [workdir / 'config.json', *_seed_files(workdir, 'config.json')]
  path = next((p for p in paths if p.exists()), None)
  if path is None:
    raise FileNotFoundError(
      f'{workdir}: no config.json (nor seed*/config.json)'
    )
  return loop.flatten_config(json.loads(path.read_text()))


def config_differences(configs: Sequence[dict]) -> list[str]:
  """For each flattened config, 'key=value' of the keys whose values are not
  the same in all of `configs`, as a resume compares configs: the seed and
  `loop.OPERATIONAL_KEYS` aside, a key of `loop.ADDED_KEYS` that a config
  lacks read as its listed value; any other key it lacks as 'unset'.
  Empty strings when fewer than two configs."""
  if len(configs) < 2:
    return [''] * len(configs)
  keys = sorted(set().union(*configs) - {'seed'})
  keys = [k for k in keys if not loop.operational(k)]

  def value(c, k):
    if k in c:
      return json.dumps(c[k], default=str)
    try:
      return json.dumps(loop.added_value(k), default=str)
    except KeyError:
      return 'unset'

  varying = [k for k in keys if len({value(c, k) for c in configs}) > 1]
  return [' '.join(f'{k}={value(c, k)}' for k in varying) for c in configs]


def _seed_files(workdir: pathlib.Path, name: str) -> list[pathlib.Path]:
  """workdir/seed<k>/name for every k, in ascending k."""
  return sorted(
    workdir.glob(f'seed*/{name}'),
    key=lambda p: int(p.parent.name[len('seed') :]),
  )


def _batch_mean_of(run: dict, name: str, batch: int, workdir) -> float:
  per_user = run['test'].get('per_user') or {}
  if name not in per_user:
    raise KeyError(f'{workdir}: no per-user test values of {name!r}')
  users = np.asarray(per_user['users'])
  if np.any(np.diff(users) <= 0):
    raise ValueError(f'{workdir}: per-user test values not in user order')
  return metrics_lib.batch_mean(per_user[name], batch)


def learning_curve(
  workdir: str | pathlib.Path, metrics: Sequence[str] = ()
) -> tuple[list[dict], str, dict | None]:
  """The validation curve of one run, finished or still training.

  Read from the workdir's metrics.jsonl (what a resumed run kept), so it
  can be reported while a long run is under way or between its sessions.
  Test is not in it: a run ranks test once, on its selected step.

  Args:
    workdir: a run's directory (config.json, metrics.jsonl).
    metrics: the validation metrics shown (default: the selection metric).

  Returns:
    (rows, select): one row per validation, {'step', 'epoch', 'train/loss'
    (the window logged at that step), 'valid/<metric>' ..., 'best' ('*'
    where the selection metric set a new best; the first of equal values
    wins, as in selection)}; the selection metric's name; and the last
    logged training row ({'step', 'epoch', 'train/loss', ...}; None before
    the first), which shows progress before the first validation.

  Raises:
    FileNotFoundError: no config.json or metrics.jsonl in `workdir`.
  """
  workdir = pathlib.Path(workdir)
  for name in ('config.json', 'metrics.jsonl'):
    if not (workdir / name).exists():
      raise FileNotFoundError(f'{workdir}: no {name}; is it a run folder?')
  select = json.loads((workdir / 'config.json').read_text())['eval']['select']
  shown = [m.removeprefix('valid/') for m in metrics] or [select]
  train, valid = {}, []
  for row in record.read_jsonl(workdir / 'metrics.jsonl'):
    if 'train/loss' in row:
      train[row['step']] = row
    if f'valid/{select}' in row:
      valid.append(row)
  logged = {k[len('valid/') :] for k in valid[0] if k.startswith('valid/')}
  unknown = [m for m in shown if valid and m not in logged]
  if unknown:
    raise KeyError(
      f'{workdir}: no validation metric {unknown}; logged: {sorted(logged)}'
    )
  rows, best = [], -float('inf')
  last = train[max(train)] if train else None
  for v in valid:
    t = train.get(v['step'], {})
    value = v[f'valid/{select}']
    new_best = value is not None and value > best
    best = value if new_best else best
    rows.append(
      {
        'step': v['step'],
        'epoch': t.get('epoch', '-'),
        'train/loss': t.get('train/loss', '-'),
        **{f'valid/{m}': v.get(f'valid/{m}', '-') for m in shown},
        'best': '*' if new_best else '',
      }
    )
  return rows, select, last
