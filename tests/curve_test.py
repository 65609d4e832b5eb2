"""experiments.curve: a run's validation curve, finished or not."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from configs import sasrec as sasrec_config
from jaxrec.study import report
from jaxrec.train import loop

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_curve_of_a_finished_and_an_unfinished_run(tmp_path):
  c = sasrec_config.get_config('dataset=synthetic-seq,tiny')
  c.train.update(steps=15, eval_every=3, log_every=3)
  results = loop.train_and_evaluate(c, tmp_path)
  rows, select, last = report.learning_curve(tmp_path, ['hr@10', 'ndcg@10'])
  assert select == 'ndcg@10' and last['step'] == 15
  curve = results['valid_curve']
  assert [r['step'] for r in rows] == [v['tag'] for v in curve]
  for row, v in zip(rows, curve, strict=True):
    assert row['valid/hr@10'] == v['metrics']['hr@10']
    assert row['epoch'] == v['tag'] / results['steps_per_epoch']
    assert np.isfinite(row['train/loss'])
  # '*' where the selection metric set a new best; the last '*' is the
  # selected step.
  values = [v['metrics']['ndcg@10'] for v in curve]
  stars = [r['step'] for r in rows if r['best'] == '*']
  assert stars == [
    v['tag'] for i, v in enumerate(curve) if values[i] > max(values[:i] or [-1])
  ]
  assert stars[-1] == results['selected_step']
  # Names as logged ('valid/hr@10') read the same; unknown ones are named.
  assert report.learning_curve(tmp_path, ['valid/hr@10'])[0] == [
    {k: r[k] for k in ('step', 'epoch', 'train/loss', 'valid/hr@10', 'best')}
    for r in rows
  ]
  with pytest.raises(KeyError, match=r"no validation metric \['hr@100'\]"):
    report.learning_curve(tmp_path, ['hr@100'])

  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  cmd = [sys.executable, '-m', 'experiments.curve', str(tmp_path)]
  out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-2000:]
  assert f'finished: selected step {results["selected_step"]}' in out.stdout

  # Under way: no results.json, a line cut off by a kill.
  (tmp_path / 'results.json').unlink()
  with open(tmp_path / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 18, "valid/nd')
  assert report.learning_curve(tmp_path)[0] == [
    {k: r[k] for k in ('step', 'epoch', 'train/loss', 'valid/ndcg@10', 'best')}
    for r in rows
  ]
  out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
  assert 'not finished; latest checkpoint step 15; last logged step 15' in (
    out.stdout
  )
