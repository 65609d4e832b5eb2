"""Seeds runner: summary statistics by hand, and a tiny two-seed run."""

import json
import math

import numpy as np
import pytest

from configs import ease as ease_config
from configs import sasrec as sasrec_config
from jaxrec.study import seeds


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

  e = ease_config.get_config('dataset=synthetic,tiny')
  out = seeds.run_seeds(e, tmp_path / 'ease', [3, 4])
  assert out['test']['recall@20']['n'] == 2
