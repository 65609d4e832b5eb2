"""The protocol: test once, on the validation-selected tag, right inputs."""

import json
import re

import numpy as np
import pytest

from jaxrec.data import synthetic, types
from jaxrec.eval import protocol


def _part(rows, n_users=3):
  users = [u for u, items in enumerate(rows) for _ in items]
  items = [i for r in rows for i in r]
  return types.Part.from_events(
    np.array(users, int), np.array(items, int), n_users
  )


def _split(kind='cf'):
  # 3 users, 6 items.
  return types.Split(
    'hand',
    kind,
    3,
    6,
    train=_part([[0, 1], [2], [3, 4]]),
    valid=_part([[2], [3], []]),
    test=_part([[5], [0], [1]]),
    exclude_valid='train' if kind == 'cf' else 'none',
    exclude_test='train+valid' if kind == 'cf' else 'none',
  )


class RecordingScorer:
  """Scores a fixed table; records the histories it was asked about."""

  def __init__(self, table):
    self.params = {'table': np.asarray(table, np.float32)}
    self.seen = []

  def make_batch(self, history, users):
    self.seen.append({int(u): history.user_items(u).tolist() for u in users})
    return {'users': np.asarray(users, np.int32)}

  def score(self, params, batch):
    return params['table'][batch['users']]


def test_inputs_exclusions_and_truth():
  split = _split('cf')
  # Everyone prefers higher item ids.
  scorer = RecordingScorer(np.tile(np.arange(6.0), (3, 1)))
  p = protocol.Protocol(
    split, ks=(1, 2), metrics=('hr', 'recall'), select='hr@1'
  )
  v = p.validate(scorer, 'a')
  # User 2 has no valid item: not evaluated.
  assert v.users.tolist() == [0, 1]
  assert scorer.seen[-1] == {0: [0, 1], 1: [2]}
  # Valid excludes train: user 0 ranks 5, 4; user 1 ranks 5, 4.
  assert v.per_user['hr@2'].tolist() == [0.0, 0.0]
  t = p.final_test(scorer, 'a')
  # CF reads train at test; excludes train+valid.
  assert scorer.seen[-1] == {0: [0, 1], 1: [2], 2: [3, 4]}
  # user 0 top-1 = 5 (hit), user 1: 5 (GT 0: miss), user 2: 5 (GT 1: miss).
  assert t.per_user['hr@1'].tolist() == [1.0, 0.0, 0.0]
  rec = json.loads(json.dumps(p.record()))
  assert rec['selected'] == {'tag': 'a', 'metric': 'hr@1', 'value': 0.0}
  assert rec['test']['per_user']['users'] == [0, 1, 2]
  assert rec['protocol']['exclude_test'] == 'train+valid'
  assert rec['split']['hash'] == split.content_hash


def test_sequential_reads_train_plus_valid_at_test():
  split = _split('sequential')
  scorer = RecordingScorer(np.zeros((3, 6)))
  p = protocol.Protocol(split, ks=(2,), metrics=('hr',), select='hr@2')
  p.validate(scorer, 0)
  p.final_test(scorer, 0)
  assert scorer.seen[-1] == {0: [0, 1, 2], 1: [2, 3], 2: [3, 4]}


def test_test_runs_once_on_the_best_tag_only():
  split = synthetic.clustered_split(n_users=40, n_items=20)
  good = RecordingScorer(np.random.default_rng(0).random((40, 20)))
  p = protocol.Protocol(split, ks=(5,), metrics=('ndcg',), select='ndcg@5')
  with pytest.raises(RuntimeError, match='no validation'):
    p.final_test(good, 0)
  first = p.validate(good, 'x').metrics['ndcg@5']
  p.validate(RecordingScorer(np.zeros((40, 20))), 'y')
  best_tag, best = p.best()
  assert (best_tag, best) == (
    ('x', first)
    if first >= p.history[1][1]['ndcg@5']
    else ('y', p.history[1][1]['ndcg@5'])
  )
  other = 'y' if best_tag == 'x' else 'x'
  with pytest.raises(ValueError, match='selected by ndcg@5'):
    p.final_test(good, other)
  p.final_test(good, best_tag)
  with pytest.raises(RuntimeError, match='evaluated once'):
    p.final_test(good, best_tag)
  with pytest.raises(RuntimeError, match='after the final test'):
    p.validate(good, 'z')


def test_ties_in_validation_keep_the_earliest_tag():
  split = synthetic.clustered_split(n_users=20, n_items=20, per_user=10)
  p = protocol.Protocol(split, ks=(5,), metrics=('hr',), select='hr@5')
  same = RecordingScorer(np.zeros((20, 20)))
  for tag in (3, 1, 2):
    p.validate(same, tag)
  assert p.best()[0] == 3


def test_bad_settings_are_named():
  split = _split()
  with pytest.raises(KeyError, match="unknown metric 'auc'"):
    protocol.Protocol(split, metrics=('auc',))
  with pytest.raises(KeyError, match="select='ndcg@50'"):
    protocol.Protocol(split, select='ndcg@50')
  with pytest.raises(ValueError, match=re.escape("exclude='train+test'")):
    protocol.Protocol(split, exclude_test='train+test')


def test_popularity_beats_random_on_skewed_items():
  """The evaluator's sanity check: on Zipf-popular items, TopPop wins."""
  rng = np.random.default_rng(0)
  n_users, n_items = 400, 60
  prob = 1.0 / np.arange(1, n_items + 1)
  rows = [
    rng.choice(n_items, 8, replace=False, p=prob / prob.sum())
    for _ in range(n_users)
  ]
  part = lambda sl: types.Part.from_events(
    np.repeat(np.arange(n_users), len(range(8)[sl])),
    np.concatenate([r[sl] for r in rows]),
    n_users,
  )
  split = types.Split(
    'zipf',
    'cf',
    n_users,
    n_items,
    part(slice(0, 6)),
    part(slice(6, 7)),
    part(slice(7, 8)),
    'train',
    'train+valid',
  )
  pop = np.bincount(split.train.items, minlength=n_items).astype(np.float32)
  p = protocol.Protocol(
    split, ks=(10,), metrics=('recall',), select='recall@10'
  )
  pop_r = p.validate(RecordingScorer(np.tile(pop, (n_users, 1))), 'pop')
  rnd = rng.random((n_users, n_items))
  rnd_r = p.validate(RecordingScorer(rnd), 'random')
  # Random over the 54 candidates left: recall@10 about 10/54.
  assert 0.1 < rnd_r.metrics['recall@10'] < 0.28
  assert pop_r.metrics['recall@10'] > 2 * rnd_r.metrics['recall@10']
