"""Seeds runner: summary statistics by hand, and a tiny two-seed run."""

import json
import math

import numpy as np
import pytest

from configs import ease as ease_config
from configs import sasrec as sasrec_config
from jaxrec.study import report, seeds


def test_summary_statistics_by_hand():
  s = seeds.summarize([1.0, 2.0, 4.0])
  assert s['mean'] == pytest.approx(7 / 3)
  std = math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
  assert s['std'] == pytest.approx(std)
  half = 4.302652729911275 * std / math.sqrt(3)  # t(0.975, df=2)
  assert s['ci_low'] == pytest.approx(7 / 3 - half)
  assert s['ci_high'] == pytest.approx(7 / 3 + half)
  one = seeds.summarize([0.5])
  assert one['mean'] == 0.5 and math.isnan(one['std'])


def test_two_seeds_of_a_neural_and_a_linear_config(tmp_path):
  c = sasrec_config.get_config('dataset=synthetic-seq,tiny')
  c.train.update(steps=6, eval_every=3)
  out = seeds.run_seeds(c, tmp_path / 'sasrec', [0, 1])
  assert out['seeds'] == [0, 1]
  per_seed = [
    json.loads((tmp_path / 'sasrec' / f'seed{s}' / 'results.json').read_text())
    for s in (0, 1)
  ]
  assert [r['seed'] for r in per_seed] == [0, 1]
  values = [r['test']['metrics']['ndcg@10'] for r in per_seed]
  assert out['test']['ndcg@10']['values'] == values
  np.testing.assert_allclose(out['test']['ndcg@10']['mean'], np.mean(values))
  saved = json.loads((tmp_path / 'sasrec' / 'seeds.json').read_text())
  assert saved['test']['ndcg@10']['n'] == 2
  # The table row of the seeds folder, and of one seed's run.
  row = report.run_row(tmp_path / 'sasrec', ['ndcg@10'])
  assert row['model'] == 'sasrec' and row['dataset'] == 'synthetic[:96]'
  assert row['seeds'] == '0,1' and row['quirks'] == 'none'
  want = f'{np.mean(values):.4f} +- {np.std(values, ddof=1):.4f}'
  assert row['ndcg@10'] == want
  one = report.run_row(tmp_path / 'sasrec' / 'seed1', ['ndcg@10'])
  assert one['seeds'] == '1' and one['ndcg@10'] == f'{values[1]:.4f}'

  e = ease_config.get_config('dataset=synthetic,tiny')
  out = seeds.run_seeds(e, tmp_path / 'ease', [3, 4])
  assert out['test']['recall@20']['n'] == 2


def test_seeds_share_one_pretraining_stage(tmp_path):
  from configs import adrec as adrec_config

  c = adrec_config.get_config('dataset=synthetic-seq,tiny')
  c.train.update(steps=4, eval_every=2)
  c.pretrain.config.train.update(steps=4, eval_every=2)
  seeds.run_seeds(c, tmp_path, [0, 1])
  shared = tmp_path / 'pretrain' / 'results.json'
  assert shared.exists()
  assert not (tmp_path / 'seed0' / 'pretrain').exists()
  assert not (tmp_path / 'seed1' / 'pretrain').exists()
  # Both seeds started from the one pre-training run, trained once.
  pre = json.loads(shared.read_text())
  assert pre['seed'] == 0 and pre['model'] == 'adrec_pretrain'
  for s in (0, 1):
    saved = json.loads((tmp_path / f'seed{s}' / 'config.json').read_text())
    assert saved['pretrain']['workdir'] == str(
      (tmp_path / 'pretrain').resolve()
    )


def _record(path, seed, hr, quirks):
  path.mkdir(parents=True)
  record = {
    'model': 'm',
    'split': {'name': 'd'},
    'seed': seed,
    'quirks': quirks,
    'test': {'metrics': {'hr@10': hr}},
  }
  (path / 'results.json').write_text(json.dumps(record))


def test_table_rows_of_finished_seeds_with_quirks_named(tmp_path):
  quirks = {'mask_axis': 'query', 'padding_item': True, 'leaky': False}
  for seed, hr in ((10, 0.3), (2, 0.1), (0, 0.2)):
    _record(tmp_path / 'a' / f'seed{seed}', seed, hr, quirks)
  (tmp_path / 'a' / 'seed11').mkdir()  # still running: no results yet
  row = report.run_row(tmp_path / 'a', ['hr@10'])
  assert row['seeds'] == '0,2,10'  # numeric order
  assert row['hr@10'] == '0.2000 +- 0.1000'
  assert row['quirks'] == 'mask_axis=query padding_item=True'
  with pytest.raises(FileNotFoundError, match='no results.json'):
    report.run_row(tmp_path / 'b', ['hr@10'])
  with pytest.raises(KeyError, match="no test metric 'ndcg@10'"):
    report.run_row(tmp_path / 'a', ['ndcg@10'])
  table = report.markdown_table([row], ('model', 'hr@10'))
  assert table.splitlines()[-1] == '| m | 0.2000 +- 0.1000 |'
