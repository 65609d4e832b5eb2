"""End to end: every linear config, tiny, through selection and one test."""

import json
import subprocess
import sys

import pytest

from configs import (
  baselines,
  ease,
  gfcf,
  ials,
  itemknn,
  puresvd,
  rp3beta,
  slim,
  toppop,
  userknn,
)
from jaxrec.data import synthetic
from jaxrec.train import fit_linear


@pytest.fixture(scope='module')
def split():
  return synthetic.clustered_split(n_users=300, n_items=80, per_user=15)


@pytest.mark.parametrize(
  'module',
  [toppop, itemknn, userknn, ease, rp3beta, puresvd, gfcf, ials, slim],
)
def test_tiny_config_runs_and_records(module, split, tmp_path):
  config = module.get_config('tiny')
  res = fit_linear.fit_and_evaluate(config, tmp_path, split)
  written = json.loads((tmp_path / 'results.json').read_text())
  assert written['selected'] == res['selected']
  lines = (tmp_path / 'metrics.jsonl').read_text().splitlines()
  assert len(lines) == len(fit_linear.grid_points(config))
  valid = [json.loads(line)[f'valid/{config.eval.select}'] for line in lines]
  assert res['selected']['value'] == pytest.approx(max(valid))
  assert (
    json.loads((tmp_path / 'config.json').read_text())['model']['name']
    == config.model.name
  )
  assert written['split']['hash'] == split.content_hash
  assert 0.0 <= written['test']['metrics']['ndcg@20'] <= 1.0


def test_personalised_models_beat_popularity_on_planted_clusters(
  split, tmp_path
):
  ndcg = {}
  # The newer baselines at one grid point each (their full grids are
  # exercised by the tiny-config test above), to keep this test short.
  one_point = {
    rp3beta: {'alpha': (1.0,), 'beta': (0.3,), 'k': (50,)},
    puresvd: {'factors': (8,)},
    gfcf: {'alpha': (0.3,), 'factors': (16,)},
    ials: {'reg': (3e-3,), 'alpha0': (0.1,)},
    userknn: {'k': (50,), 'shrink': (10.0,)},
    slim: {'alpha': (1e-3,), 'l1_ratio': (0.1,)},
  }
  for module in (
    toppop,
    itemknn,
    userknn,
    ease,
    rp3beta,
    puresvd,
    gfcf,
    ials,
    slim,
  ):
    config = module.get_config()
    if module in one_point:
      config.grid = one_point[module]
    res = fit_linear.fit_and_evaluate(config, tmp_path / module.__name__, split)
    ndcg[module.__name__] = res['test']['metrics']['ndcg@20']
  for name in (
    'itemknn',
    'userknn',
    'ease',
    'rp3beta',
    'puresvd',
    'gfcf',
    'ials',
    'slim',
  ):
    assert ndcg[f'configs.{name}'] > 1.5 * ndcg['configs.toppop'], name


def test_grid_keys_must_be_model_fields():
  config = ease.get_config('tiny')
  with config.unlocked():
    config.grid.lam = [1.0]
  with pytest.raises(KeyError, match="grid key 'lam'"):
    fit_linear.grid_points(config)


def test_config_args_are_checked():
  with pytest.raises(KeyError, match="unknown config arg 'datset'"):
    ease.get_config('datset=beauty')
  with pytest.raises(KeyError, match="unknown model 'foo'"):
    baselines.get_config('models=ease+foo')


def test_baselines_command_prints_table(tmp_path):
  out = subprocess.run(
    [
      sys.executable,
      '-m',
      'experiments.baselines',
      '--config=configs/baselines.py:dataset=synthetic,tiny',
      f'--workdir={tmp_path}',
    ],
    capture_output=True,
    text=True,
    timeout=300,
    check=True,
  ).stdout
  assert '| model | selected | HR@10 |' in out
  for name in ('toppop', 'itemknn', 'ease'):
    assert f'| {name} |' in out
    assert (tmp_path / name / 'results.json').exists()
  assert (tmp_path / 'results.md').exists()


def test_override_typo_is_an_error(tmp_path):
  proc = subprocess.run(
    [
      sys.executable,
      '-m',
      'experiments.fit_linear',
      '--config=configs/ease.py:dataset=synthetic,tiny',
      '--config.model.lamda=3',
      f'--workdir={tmp_path}',
    ],
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  assert proc.returncode != 0
  assert 'lamda' in proc.stderr


def test_grid_override_from_the_command_line(tmp_path):
  subprocess.run(
    [
      sys.executable,
      '-m',
      'experiments.fit_linear',
      '--config=configs/ease.py:dataset=synthetic,tiny',
      '--config.grid.l2=(3.0, 30.0)',
      f'--workdir={tmp_path}',
    ],
    capture_output=True,
    text=True,
    timeout=300,
    check=True,
  )
  lines = (tmp_path / 'metrics.jsonl').read_text().splitlines()
  assert [json.loads(line)['tag'] for line in lines] == ['l2=3.0', 'l2=30.0']
