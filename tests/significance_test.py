"""Paired significance over test users, Holm's correction, the table."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats

from jaxrec.eval import metrics
from jaxrec.study import report, significance

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(folder, model, seed, per_user, split='abc', users=None):
  n = len(next(iter(per_user.values())))
  users = list(range(n)) if users is None else users
  record = {
    'model': model,
    'seed': seed,
    'split': {'name': 'toy', 'hash': split},
    'quirks': {},
    'test': {
      'metrics': {k: float(np.mean(v)) for k, v in per_user.items()},
      'per_user': {'users': users, **{k: list(v) for k, v in per_user.items()}},
    },
  }
  folder.mkdir(parents=True)
  (folder / 'results.json').write_text(json.dumps(record))


def test_holm_hand_worked():
  # Sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 =
  # 0.04 -> made non-decreasing: 0.06.
  np.testing.assert_allclose(
    significance.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02]
  )
  np.testing.assert_allclose(significance.holm([0.6, 0.9]), [1.0, 1.0])


def test_paired_t_and_wilcoxon_over_seed_means(tmp_path):
  rng = np.random.default_rng(0)
  base = rng.random(40)
  # Model A: two seeds; each user's value is the mean over them.
  s0, s1 = base + rng.normal(0.05, 0.1, 40), base + rng.normal(0.05, 0.1, 40)
  _run(tmp_path / 'a' / 'seed0', 'a', 0, {'ndcg@10': s0})
  _run(tmp_path / 'a' / 'seed1', 'a', 1, {'ndcg@10': s1})
  _run(tmp_path / 'b', 'b', 0, {'ndcg@10': base})
  got = significance.paired(tmp_path / 'a', tmp_path / 'b', 'ndcg@10')
  d = (s0 + s1) / 2 - base
  t = d.mean() / (d.std(ddof=1) / np.sqrt(len(d)))
  want_p = 2 * scipy.stats.t.sf(abs(t), len(d) - 1)
  assert got['users'] == 40
  np.testing.assert_allclose(got['diff'], d.mean(), rtol=1e-12)
  np.testing.assert_allclose(got['rel'], d.mean() / base.mean(), rtol=1e-12)
  np.testing.assert_allclose(got['p'], want_p, rtol=1e-9)

  # Wilcoxon, exact for 5 users all better: p = 2 / 2^5.
  _run(tmp_path / 'c', 'c', 0, {'hr@10': [2.0, 3.0, 4.0, 5.0, 6.0]})
  _run(tmp_path / 'd', 'd', 0, {'hr@10': [1.0, 1.0, 1.0, 1.0, 1.0]})
  got = significance.paired(tmp_path / 'c', tmp_path / 'd', 'hr@10', 'wilcoxon')
  np.testing.assert_allclose(got['p'], 0.0625)
  same = significance.paired(tmp_path / 'd', tmp_path / 'd', 'hr@10')
  assert same['p'] == 1.0 and same['diff'] == 0.0


def test_paired_refuses_other_users_splits_and_metrics(tmp_path):
  _run(tmp_path / 'a', 'a', 0, {'hr@10': [1.0, 0.0]})
  _run(tmp_path / 'b', 'b', 0, {'hr@10': [0.0, 1.0]}, users=[0, 2])
  _run(tmp_path / 'c', 'c', 0, {'hr@10': [0.0, 1.0]}, split='other')
  for other in ('b', 'c'):
    with pytest.raises(ValueError, match='same split and users'):
      significance.paired(tmp_path / 'a', tmp_path / other, 'hr@10')
  with pytest.raises(ValueError, match=r"no per-user 'ndcg@10'.*\['hr@10'\]"):
    significance.paired(tmp_path / 'a', tmp_path / 'a', 'ndcg@10')
  with pytest.raises(ValueError, match='unknown|expected one of'):
    significance.paired(tmp_path / 'a', tmp_path / 'a', 'hr@10', 'sign')
  with pytest.raises(FileNotFoundError, match='no tested run'):
    significance.paired(tmp_path / 'none', tmp_path / 'a', 'hr@10')


def test_table_marks_what_differs_from_the_baseline(tmp_path):
  rng = np.random.default_rng(1)
  base = rng.random(500)
  _run(tmp_path / 'base', 'sasrec', 0, {'hr@10': base, 'ndcg@10': base})
  better = base + 0.2  # clearly better on both
  noise = base + rng.normal(0, 0.3, 500)  # no real difference
  _run(tmp_path / 'good', 'adrec', 0, {'hr@10': better, 'ndcg@10': noise})
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  cmd = [
    sys.executable,
    '-m',
    'experiments.table',
    str(tmp_path / 'good'),
    str(tmp_path / 'base'),
    '--baseline=sasrec',
    '--metrics=hr@10,ndcg@10',
  ]
  out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-2000:]
  adrec_row = next(x for x in out.stdout.splitlines() if '| adrec |' in x)
  cells = [c.strip() for c in adrec_row.strip('|').split('|')]
  assert cells[-2].endswith(' *') and not cells[-1].endswith('*')
  assert 'Holm-corrected over 2 comparisons' in out.stdout
  bad = subprocess.run(
    [*cmd[:-2], '--baseline=nobody', cmd[-1]],
    cwd=ROOT,
    env=env,
    capture_output=True,
  )
  assert bad.returncode != 0 and b'no row of that model' in bad.stderr


def test_official_batch_mean_hand_worked(tmp_path):
  # 5 users in batches of 2: means 0.5, 1.0, 0.0 -> 0.5 (per user: 0.6).
  hr = [1.0, 0.0, 1.0, 1.0, 0.0]
  assert metrics.batch_mean(hr, 2) == pytest.approx(0.5)
  assert metrics.batch_mean(hr, 5) == pytest.approx(0.6)
  assert metrics.batch_mean(hr, 1) == pytest.approx(0.6)
  with pytest.raises(ValueError, match='batch=0'):
    metrics.batch_mean(hr, 0)
  _run(tmp_path / 'a' / 'seed0', 'a', 0, {'hr@10': hr})
  _run(tmp_path / 'a' / 'seed1', 'a', 1, {'hr@10': [0.0, 0.0, 1.0, 1.0, 1.0]})
  # Seed 1: means 0.0, 1.0, 1.0 -> 2/3; over seeds 0.5 and 2/3.
  row = report.run_row(tmp_path / 'a', ['hr@10'], batch=2)
  assert row['hr@10'].startswith(f'{(0.5 + 2 / 3) / 2:.4f} +- ')
  assert report.run_row(tmp_path / 'a', ['hr@10'])['hr@10'].startswith('0.6000')
  _run(tmp_path / 'b', 'b', 0, {'hr@10': hr}, users=[0, 2, 1, 3, 4])
  with pytest.raises(ValueError, match='not in user order'):
    report.run_row(tmp_path / 'b', ['hr@10'], batch=2)


def test_table_says_how_rows_of_one_model_differ(tmp_path):
  hr = {'hr@10': [1.0, 0.0, 1.0, 0.0]}
  configs = {
    'short': {'seed': 0, 'train': {'patience': 4, 'lr': 1e-3}},
    'long': {'seed': 1, 'train': {'patience': 12, 'lr': 1e-3}},
    'base': {'seed': 0, 'train': {'patience': 4}},
  }
  for name, model in (
    ('short', 'diffurec'),
    ('long', 'diffurec'),
    ('base', 'sasrec'),
  ):
    _run(tmp_path / name, model, configs[name]['seed'], hr)
    (tmp_path / name / 'config.json').write_text(json.dumps(configs[name]))
  # Seed and equal keys aside, only the patience differs; a lone row of its
  # model says nothing; a key one config lacks reads 'unset'.
  got = report.config_differences(
    [report.run_config(tmp_path / n) for n in ('short', 'long')]
  )
  assert got == ['train.patience=4', 'train.patience=12']
  assert report.config_differences([{'a': 1}]) == ['']
  assert report.config_differences([{'a': 1}, {'a': 1, 'b': [2]}]) == [
    'b=unset',
    'b=[2]',
  ]
  # As a resume compares configs: a key added later reads as its listed
  # value where a run predates it, and operational keys do not count.
  assert report.config_differences(
    [{'model.init': 'flax', 'eval.chunk_size': 64}, {'eval.chunk_size': 8}]
  ) == ['', '']
  assert report.config_differences([{'model.init': 'official'}, {}]) == [
    'model.init="official"',
    'model.init="flax"',
  ]
  with pytest.raises(FileNotFoundError, match='no config.json'):
    report.run_config(tmp_path / 'none')
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  cmd = [sys.executable, '-m', 'experiments.table', '--metrics=hr@10']
  dirs = [str(tmp_path / n) for n in ('short', 'long', 'base')]
  out = subprocess.run(
    [*cmd, *dirs, '--baseline=sasrec'],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  lines = out.stdout.splitlines()
  assert lines[0].split('|')[5].strip() == 'differs'
  rows = [ln for ln in lines if ln.startswith('| diffurec | toy |')]
  # Main table: column 5; the comparisons with the baseline: column 3.
  assert [r.split('|')[5].strip() for r in rows[:2]] == [
    'train.patience=4',
    'train.patience=12',
  ]
  assert [r.split('|')[3].strip() for r in rows[2:]] == [
    'train.patience=4',
    'train.patience=12',
  ]
  assert '| sasrec | toy | 0 | none | - |' in out.stdout
