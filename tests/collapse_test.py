"""experiments/collapse.py: target counts, norms and top-K shares on
hand-worked examples, and end to end on a tiny run."""

import json

import numpy as np
import pytest

from configs import sasrec as sasrec_config
from experiments import collapse
from jaxrec.data import types
from jaxrec.train import loop


def _split(kind, users, items, n_users, n_items):
  part = types.Part.from_events(np.array(users), np.array(items), n_users)
  empty = types.Part.from_events(np.zeros(0, int), np.zeros(0, int), n_users)
  return types.Split(
    name='hand',
    kind=kind,
    n_users=n_users,
    n_items=n_items,
    train=part,
    valid=empty,
    test=empty,
  )


def test_target_counts_skip_each_users_first_event_in_sequences():
  # user 0: 2, 0, 1; user 1: 1; user 2: nothing; user 3: 0, 0.
  users, items = [0, 0, 0, 1, 3, 3], [2, 0, 1, 1, 0, 0]
  seq = _split('sequential', users, items, 4, 3)
  np.testing.assert_array_equal(collapse.target_counts(seq), [2, 1, 0])
  # A model that trains on first events (DreamRec) predicts those too.
  np.testing.assert_array_equal(collapse.target_counts(seq, True), [3, 2, 1])
  cf = _split('cf', users, items, 4, 3)
  np.testing.assert_array_equal(collapse.target_counts(cf), [3, 2, 1])


def test_effective_rank_by_hand():
  assert collapse.effective_rank(np.eye(3)) == pytest.approx(3.0)
  assert collapse.effective_rank(np.outer([1, 2, 3], [4, 5])) == pytest.approx(
    1.0
  )
  # singular values 3, 1: p = (.75, .25).
  p = np.array([0.75, 0.25])
  want = np.exp(-np.sum(p * np.log(p)))
  got = collapse.effective_rank(np.diag([3.0, 1.0]))
  assert got == pytest.approx(want)


def test_groups_by_hand():
  items = np.array([[3.0, 4.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.5]])
  counts = np.array([0, 1, 3, 200])
  topk = np.array([[0, 1], [0, -1]])  # -1: an empty slot still counts
  out = collapse.study(items, counts, topk)
  groups = {g['targets']: g for g in out['groups']}
  assert list(groups) == ['0', '1', '2-5', '6-20', '21-100', '>100']
  assert [g['items'] for g in out['groups']] == [1, 1, 1, 0, 0, 1]
  assert groups['0']['median_norm'] == 5.0
  assert groups['>100']['median_norm'] == 0.5
  assert np.isnan(groups['6-20']['median_norm'])
  assert groups['0']['topk_share'] == 0.5  # 2 of 4 slots
  assert groups['1']['topk_share'] == 0.25
  assert groups['2-5']['topk_share'] == 0.0
  assert out['distinct_topk_items'] == 2 and out['users'] == 2
  assert out['dim'] == 2


def test_a_tiny_run_end_to_end(tmp_path):
  c = sasrec_config.get_config('dataset=synthetic-seq,tiny')
  c.train.update(steps=6, eval_every=6)
  results = loop.train_and_evaluate(c, tmp_path)
  out = collapse.collapse(tmp_path, k=10)
  assert out['step'] == results['selected_step']
  assert out['users'] == len(results['test']['per_user']['users'])
  best = loop.restore_best(tmp_path)
  table = np.asarray(best.model.item_vectors(best.state.params))
  n_items = best.split.n_items
  norms = np.linalg.norm(table[:n_items].astype(np.float64), axis=1)
  counts = collapse.target_counts(best.split)
  groups = out['groups']
  assert sum(g['items'] for g in groups) == n_items
  assert sum(g['topk_share'] for g in groups) == pytest.approx(1.0)
  checked = 0
  for g, (low, high) in zip(groups, collapse.BUCKETS, strict=True):
    member = (counts >= low) & (
      counts <= (counts.max() if high is None else high)
    )
    assert g['items'] == member.sum()
    if member.any():
      assert g['median_norm'] == pytest.approx(np.median(norms[member]))
      checked += 1
  assert checked >= 2
  assert 1.0 <= out['effective_rank'] <= table.shape[1]
  saved = json.loads((tmp_path / 'collapse.json').read_text())
  for key in ('targets', 'items', 'topk_share'):
    assert [g[key] for g in saved['groups']] == [g[key] for g in groups]
  with pytest.raises(ValueError, match='k=50 is over'):
    collapse.collapse(tmp_path, k=50)
