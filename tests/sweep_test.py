"""Grid sweep of a neural config: parsing, config errors, a tiny sweep."""

import json

import numpy as np
import pytest

from configs import ease as ease_config
from configs import sasrec as sasrec_config
from jaxrec.study import report, sweep
from jaxrec.train import loop


def _tiny():
  c = sasrec_config.get_config('dataset=synthetic-seq,tiny')
  c.train.update(steps=6, eval_every=3)
  return c


def test_grid_specs_parse_to_literals_in_product_order():
  grid = sweep.parse_grid(
    ['model.dropout=0.2,0.5', 'model.dim = 16, 32', 'model.mask_axis=key']
  )
  assert grid == {
    'model.dropout': (0.2, 0.5),
    'model.dim': (16, 32),
    'model.mask_axis': ('key',),
  }
  pts = sweep.points(grid)
  assert len(pts) == 4 and pts[1] == {
    'model.dropout': 0.2,
    'model.dim': 32,
    'model.mask_axis': 'key',
  }
  assert (
    sweep.tag(pts[1]) == 'model.dropout=0.2,model.dim=32,model.mask_axis=key'
  )
  for bad in ('model.dropout', 'model.dropout=', '=1,2'):
    with pytest.raises(ValueError, match='key=value'):
      sweep.parse_grid([bad])
  with pytest.raises(ValueError, match='twice'):
    sweep.parse_grid(['a.b=1', 'a.b=2'])


def test_a_choice_at_the_edge_of_a_numeric_axis_is_named():
  grid = sweep.parse_grid(
    [
      'model.dropout=0.1,0.3,0.5',
      'model.dim=16,32,64',
      'model.mask_axis=key,query',
      'model.pack=True,False',
      'optim.lr=0.001',
    ]
  )
  point = {
    'model.dropout': 0.5,
    'model.dim': 32,
    'model.mask_axis': 'query',
    'model.pack': True,
    'optim.lr': 0.001,
  }
  assert sweep.at_edge(grid, point) == ['model.dropout=0.5 (the largest tried)']
  point.update({'model.dropout': 0.3, 'model.dim': 16})
  assert sweep.at_edge(grid, point) == ['model.dim=16 (the smallest tried)']
  point['model.dim'] = 32
  assert sweep.at_edge(grid, point) == []


def test_a_point_sets_its_keys_and_names_a_wrong_one():
  c = _tiny()
  d = sweep.apply_point(c, {'model.dropout': 0.25, 'optim.lr': 3e-4})
  assert d.model.dropout == 0.25 and d.optim.lr == 3e-4
  assert c.model.dropout != 0.25  # the original is untouched
  with pytest.raises(KeyError, match="'model.dropuot'.*dropout"):
    sweep.apply_point(c, {'model.dropuot': 0.1})
  with pytest.raises(KeyError, match="'modle.dim'.*no section 'modle'"):
    sweep.apply_point(c, {'modle.dim': 8})


def test_a_run_selected_without_test_is_tested_later_unchanged(tmp_path):
  c = _tiny()
  first = loop.train_and_evaluate(c, tmp_path / 'a', test=False)
  assert 'test' not in first and 'selected' in first
  # Asked again without test: returned as it is, nothing re-run.
  assert loop.train_and_evaluate(c, tmp_path / 'a', test=False) == first
  later = loop.train_and_evaluate(c, tmp_path / 'a')
  assert later['train_s_this_process'] == 0.0  # only tested
  assert later['selected'] == first['selected']
  assert later['params_sha256'] == first['params_sha256']
  straight = loop.train_and_evaluate(c, tmp_path / 'b')
  assert later['test']['metrics'] == straight['test']['metrics']


def test_a_tiny_sweep_tests_only_the_chosen_point(tmp_path):
  grid = sweep.parse_grid(['model.dropout=0.0,0.5', 'optim.lr=1e-2'])
  out = sweep.run_sweep(_tiny(), tmp_path, grid, seeds=[0, 1])
  valid = [p['valid'] for p in out['points']]
  assert out['chosen'] == out['points'][int(np.argmax(valid))]['tag']
  for p in out['points']:
    run = json.loads(
      (tmp_path / p['tag'] / 'seed0' / 'results.json').read_text()
    )
    assert run['selected']['value'] == p['valid']
    assert ('test' in run) == (p['tag'] == out['chosen'])
    saved = json.loads(
      (tmp_path / p['tag'] / 'seed0' / 'config.json').read_text()
    )
    assert saved['model']['dropout'] == p['point']['model.dropout']
  assert out['seeds']['seeds'] == [0, 1]
  saved = json.loads((tmp_path / 'sweep.json').read_text())
  assert saved['chosen'] == out['chosen'] and len(saved['points']) == 2
  # Two values: the choice is at an end of the dropout axis, and said so.
  dropout = next(
    p['point']['model.dropout']
    for p in out['points']
    if p['tag'] == out['chosen']
  )
  end = 'largest' if dropout == 0.5 else 'smallest'
  assert saved['at_edge'] == [f'model.dropout={dropout} (the {end} tried)']
  row = report.run_row(tmp_path / out['chosen'], ['ndcg@10'])
  assert row['seeds'] == '0,1' and row['tuned'] == out['chosen']
  other = next(p['tag'] for p in out['points'] if p['tag'] != out['chosen'])
  with pytest.raises(FileNotFoundError):
    report.run_row(tmp_path / other, ['ndcg@10'])


def test_linear_configs_are_refused():
  with pytest.raises(ValueError, match='own grid'):
    sweep.run_sweep(
      ease_config.get_config('dataset=synthetic,tiny'), '/nonexistent', {}
    )


def test_points_share_a_pretraining_stage_the_grid_leaves_alone(tmp_path):
  from configs import adrec as adrec_config

  c = adrec_config.get_config('dataset=synthetic-seq,tiny')
  c.train.update(steps=2, eval_every=2)
  c.pretrain.config.train.update(steps=2, eval_every=2)
  grid = sweep.parse_grid(['model.dropout=0.0,0.1'])
  out = sweep.run_sweep(c, tmp_path, grid, seeds=[0])
  assert (tmp_path / 'pretrain' / 'results.json').exists()
  for p in out['points']:
    assert not (tmp_path / p['tag'] / 'pretrain').exists()
    saved = json.loads(
      (tmp_path / p['tag'] / 'seed0' / 'config.json').read_text()
    )
    assert saved['pretrain']['workdir'] == str(
      (tmp_path / 'pretrain').resolve()
    )
