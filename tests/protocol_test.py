"""The protocol: right parts at valid and test, test once on the best tag."""

import json

import numpy as np
import pytest

from jaxrec.data import synthetic, types
from jaxrec.eval import protocol


def _part(rows):
  users = [u for u, r in enumerate(rows) for _ in r]
  items = [i for r in rows for i in r]
  return types.Part.from_events(
    np.array(users, np.int64), np.array(items, np.int64), len(rows)
  )


def _split(kind):
  # 3 users, 6 items, disjoint (user, item) pairs.
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


class TableScorer:
  """Scores a fixed table; records the history it was given per user."""

  def __init__(self, table):
    self.params = {'table': np.asarray(table, np.float32)}
    self.seen = {}

  def make_batch(self, history, users):
    self.seen.update({int(u): history.user_items(u).tolist() for u in users})
    return {'users': np.asarray(users, np.int32)}

  def score(self, params, batch):
    return params['table'][batch['users']]


def test_cf_inputs_truth_and_exclusions():
  split = _split('cf')
  # Scores put each user's train items first, then valid, then test.
  table = np.zeros((3, 6))
  for part, value in ((split.train, 3.0), (split.valid, 2.0)):
    for u in range(3):
      table[u, part.user_items(u)] = value
  table[[0, 1, 2], [5, 0, 1]] = 1.0
  scorer = TableScorer(table)
  p = protocol.Protocol(
    split, ks=(1, 3), metrics=('hr', 'recall'), select='hr@1'
  )
  v = p.validate(scorer, 'a')
  assert v.users.tolist() == [0, 1]  # user 2 has no valid item
  assert scorer.seen == {0: [0, 1], 1: [2]}  # input: train
  # Train excluded at valid: the valid item is top-1 for both users.
  assert v.per_user['hr@1'].tolist() == [1.0, 1.0]
  scorer.seen.clear()
  t = p.final_test(scorer, 'a')
  assert t.users.tolist() == [0, 1, 2]
  assert scorer.seen == {0: [0, 1], 1: [2], 2: [3, 4]}  # CF: train
  # Train + valid excluded at test: the test item is top-1.
  assert t.per_user['hr@1'].tolist() == [1.0, 1.0, 1.0]

  # Same scores without exclusion: train items take the top places.
  p = protocol.Protocol(
    split, ks=(1, 3), metrics=('hr',), select='hr@1', exclude_valid='none'
  )
  assert p.validate(scorer, 'b').per_user['hr@1'].tolist() == [0.0, 0.0]
  p = protocol.Protocol(split, ks=(1,), metrics=('hr',), select='hr@1')
  p.validate(scorer, 'c')
  assert p.exclude == {'valid': 'train', 'test': 'train+valid'}
  p = protocol.Protocol(
    split, ks=(3,), metrics=('hr',), select='hr@3', exclude_test='train'
  )
  p.validate(scorer, 'd')
  # Only train excluded: user 0 ranks valid 2, then 5 (hit) and 3 at test.
  assert p.final_test(scorer, 'd').per_user['hr@3'].tolist() == [1.0] * 3


def test_sequential_reads_train_plus_valid_at_test():
  split = _split('sequential')
  scorer = TableScorer(np.zeros((3, 6)))
  p = protocol.Protocol(split, ks=(2,), metrics=('hr',), select='hr@2')
  p.validate(scorer, 0)
  assert scorer.seen == {0: [0, 1], 1: [2]}
  p.final_test(scorer, 0)
  assert scorer.seen == {0: [0, 1, 2], 1: [2, 3], 2: [3, 4]}
  # Nothing excluded (the sequential default): all-equal scores rank the
  # lowest ids, 0 and 1; test items 0 (user 1) and 1 (user 2) are hits.
  assert p.record()['test']['per_user']['hr@2'] == [0.0, 1.0, 1.0]


def test_test_runs_once_and_only_on_the_best_tag():
  split = synthetic.clustered_split(n_users=40, n_items=20)
  rng = np.random.default_rng(0)
  good = TableScorer(rng.random((40, 20)))
  p = protocol.Protocol(split, ks=(5,), metrics=('ndcg',), select='ndcg@5')
  with pytest.raises(RuntimeError, match='no validation'):
    p.final_test(good, 'x')
  scores = [p.validate(TableScorer(rng.random((40, 20))), t) for t in 'xyz']
  values = [r.metrics['ndcg@5'] for r in scores]
  best_tag = 'xyz'[int(np.argmax(values))]
  assert p.best() == (best_tag, max(values))
  other = next(t for t in 'xyz' if t != best_tag)
  with pytest.raises(ValueError, match='selected by ndcg@5 on validation'):
    p.final_test(good, other)
  p.final_test(good, best_tag)
  with pytest.raises(RuntimeError, match='evaluated once'):
    p.final_test(good, best_tag)
  with pytest.raises(RuntimeError, match='after the final test'):
    p.validate(good, 'w')


def test_ties_in_validation_keep_the_earliest_tag():
  split = synthetic.clustered_split(n_users=20, n_items=20)
  p = protocol.Protocol(split, ks=(5,), metrics=('hr',), select='hr@5')
  same = TableScorer(np.zeros((20, 20)))
  for tag in (3, 1, 2):
    p.validate(same, tag)
  assert p.best()[0] == 3


def test_select_fraction_validates_a_fixed_share_and_tests_everyone():
  split = synthetic.clustered_split(n_users=60, n_items=20)
  rng = np.random.default_rng(2)
  scorer = TableScorer(rng.random((60, 20)))
  full = protocol.Protocol(split, ks=(5,), metrics=('ndcg',), select='ndcg@5')
  half = protocol.Protocol(
    split, ks=(5,), metrics=('ndcg',), select='ndcg@5', select_fraction=0.5
  )
  everyone = full.validate(scorer, 0)
  some = half.validate(scorer, 0)
  with_valid = np.flatnonzero(split.valid.lengths > 0)
  assert len(some.users) == len(with_valid) // 2
  assert set(some.users) < set(with_valid)
  # The same users at every validation, and what they score is what they
  # score among all users: only who is averaged changes.
  assert half.validate(scorer, 1).users.tolist() == some.users.tolist()
  at = np.searchsorted(everyone.users, some.users)
  np.testing.assert_array_equal(
    some.per_user['ndcg@5'], everyone.per_user['ndcg@5'][at]
  )
  assert some.metrics['ndcg@5'] == pytest.approx(
    everyone.per_user['ndcg@5'][at].mean()
  )
  # DDRM's draw: the ascending ids shuffled by Python's random.Random(42).
  order = [int(u) for u in with_valid]
  __import__('random').Random(42).shuffle(order)
  assert some.users.tolist() == sorted(order[: len(order) // 2])
  other = protocol.Protocol(
    split,
    ks=(5,),
    metrics=('ndcg',),
    select='ndcg@5',
    select_fraction=0.5,
    select_seed=7,
  )
  assert other.validate(scorer, 0).users.tolist() != some.users.tolist()
  # Test ranks every user, and the record says who validated.
  assert half.final_test(scorer, 0).users.tolist() == (
    full.final_test(scorer, 0).users.tolist()
  )
  assert half.record()['protocol']['valid_users'].startswith(
    f'{len(some.users)} of the {len(with_valid)} users'
  )
  assert full.record()['protocol']['valid_users'] == (
    'every user with a validation item'
  )
  for bad in (0.0, 1.5):
    with pytest.raises(ValueError, match='select_fraction'):
      protocol.Protocol(split, select='ndcg@20', select_fraction=bad)
  with pytest.raises(ValueError, match='keeps none'):
    protocol.Protocol(split, select='ndcg@20', select_fraction=0.001)


def _with_history(rule, rows):
  """A protocol whose validation history is `rows` of metric dicts."""
  split = synthetic.clustered_split(n_users=20, n_items=20)
  p = protocol.Protocol(
    split,
    ks=(5, 10),
    metrics=('hr', 'ndcg'),
    select='ndcg@10',
    select_rule=rule,
  )
  p.history = [(tag, m) for tag, m in rows]
  return p


def test_any_new_max_keeps_the_latest_tag_that_improved_anything():
  m = lambda hr5, hr10, nd5, nd10: {
    'hr@5': hr5,
    'hr@10': hr10,
    'ndcg@5': nd5,
    'ndcg@10': nd10,
  }
  rows = [
    (10, m(0.1, 0.2, 0.05, 0.08)),
    (20, m(0.2, 0.3, 0.07, 0.10)),  # everything up
    (30, m(0.1, 0.2, 0.06, 0.09)),  # nothing up
    (40, m(0.1, 0.31, 0.06, 0.09)),  # only hr@10 up: kept, ndcg@10 lower
    (50, m(0.2, 0.31, 0.07, 0.10)),  # ties only: not a new maximum
  ]
  assert _with_history('any_new_max', rows).best() == (40, 0.09)
  assert _with_history('max', rows).best() == (20, 0.10)
  assert _with_history('any_new_max', rows[:1]).best() == (10, 0.08)
  p = _with_history('any_new_max', rows)
  assert 'latest valid tag' in p.record()['protocol']['select_rule']
  with pytest.raises(ValueError, match='select_rule'):
    _with_history('best', rows)
  split = synthetic.clustered_split(n_users=20, n_items=20)
  with pytest.raises(ValueError, match='has neither'):
    protocol.Protocol(
      split,
      ks=(5,),
      metrics=('mrr',),
      select='mrr@5',
      select_rule='any_new_max',
    )


def test_batch_mean_averages_per_batch_at_valid_and_test():
  split = synthetic.clustered_split(n_users=50, n_items=20)
  scorer = TableScorer(np.random.default_rng(3).random((50, 20)))
  kw = dict(ks=(5,), metrics=('hr', 'ndcg'), select='ndcg@5')
  plain = protocol.Protocol(split, **kw)
  batched = protocol.Protocol(split, batch_mean=8, **kw)
  for p in (plain, batched):
    p.validate(scorer, 0)
  a, b = plain.final_test(scorer, 0), batched.final_test(scorer, 0)
  np.testing.assert_array_equal(a.per_user['hr@5'], b.per_user['hr@5'])
  for name in ('hr@5', 'ndcg@5'):
    v = a.per_user[name]
    want = np.mean([v[i : i + 8].mean() for i in range(0, len(v), 8)])
    assert b.metrics[name] == pytest.approx(want, rel=1e-12)
    assert a.metrics[name] == pytest.approx(v.mean(), rel=1e-12)
  assert batched.history[0][1]['hr@5'] != plain.history[0][1]['hr@5']
  assert batched.record()['protocol']['averaging'] == (
    'mean of per-batch means over 8 consecutive users'
  )
  assert plain.record()['protocol']['averaging'] == 'mean over users'
  with pytest.raises(ValueError, match='batch_mean=-1'):
    protocol.Protocol(split, batch_mean=-1, **kw)


def test_eval_quirks_lists_only_settings_changed_from_correct():
  import ml_collections as mlc

  ev = mlc.ConfigDict({'select_fraction': 1.0, 'batch_mean': 0})
  assert protocol.eval_quirks(ev) == {}
  ev.update(batch_mean=512, select_fraction=0.5)
  assert protocol.eval_quirks(ev) == {
    'eval.select_fraction': 0.5,
    'eval.batch_mean': 512,
  }


def test_record_round_trips_through_json():
  split = synthetic.clustered_split(n_users=30, n_items=20)
  rng = np.random.default_rng(1)
  p = protocol.Protocol(split, ks=(10, 20))
  for step in range(3):
    p.validate(TableScorer(rng.random((30, 20))), np.int64(step))
  tag, value = p.best()
  test = p.final_test(TableScorer(rng.random((30, 20))), tag)
  rec = p.record()
  back = json.loads(json.dumps(rec, allow_nan=False))
  assert back == rec
  assert back['split']['hash'] == split.content_hash
  assert back['protocol']['ks'] == [10, 20]
  assert back['protocol']['exclude_valid'] == split.exclude_valid
  assert back['protocol']['exclude_test'] == split.exclude_test
  assert set(back['protocol']['recall']) == {'recall', 'recall_capped'}
  assert 'lower item id' in back['protocol']['ties']
  assert [c['tag'] for c in back['valid_curve']] == [0, 1, 2]
  assert back['selected'] == {'tag': tag, 'metric': 'ndcg@20', 'value': value}
  assert back['test']['metrics'] == pytest.approx(test.metrics)
  assert back['test']['per_user']['users'] == test.users.tolist()
  assert back['test']['per_user']['ndcg@20'] == pytest.approx(
    test.per_user['ndcg@20'].tolist()
  )
  # Means are sums over counted users / their count.
  assert test.metrics['recall@10'] == pytest.approx(
    np.nanmean(test.per_user['recall@10'])
  )


def test_bad_settings_are_named():
  split = _split('cf')
  with pytest.raises(KeyError, match="unknown metric 'auc'"):
    protocol.Protocol(split, metrics=('auc',))
  with pytest.raises(KeyError, match="select='ndcg@50'"):
    protocol.Protocol(split, select='ndcg@50')
  with pytest.raises(ValueError, match='train\\+test'):
    protocol.Protocol(split, exclude_test='train+test')


def test_most_popular_is_a_sane_baseline():
  """Evaluator sanity check: on Zipf-popular items, popularity wins big."""
  rng = np.random.default_rng(0)
  n_users, n_items = 400, 60
  prob = 1.0 / np.arange(1, n_items + 1)
  rows = [
    rng.choice(n_items, 8, replace=False, p=prob / prob.sum()).tolist()
    for _ in range(n_users)
  ]
  split = types.Split(
    'zipf',
    'cf',
    n_users,
    n_items,
    train=_part([r[:6] for r in rows]),
    valid=_part([r[6:7] for r in rows]),
    test=_part([r[7:] for r in rows]),
    exclude_valid='train',
    exclude_test='train+valid',
  )
  pop = np.bincount(split.train.items, minlength=n_items).astype(np.float32)
  p = protocol.Protocol(
    split, ks=(10,), metrics=('recall', 'ndcg'), select='recall@10'
  )
  pop_r = p.validate(TableScorer(np.tile(pop, (n_users, 1))), 'pop')
  rnd_r = p.validate(TableScorer(rng.random((n_users, n_items))), 'random')
  # Random over the 54 candidates left: recall@10 about 10/54.
  assert 0.1 < rnd_r.metrics['recall@10'] < 0.28
  assert pop_r.metrics['recall@10'] > 2 * rnd_r.metrics['recall@10']
  assert p.best()[0] == 'pop'
  test = p.final_test(TableScorer(np.tile(pop, (n_users, 1))), 'pop')
  assert test.metrics['recall@10'] > 0.4
  assert test.coverage['coverage@10'] < 0.4  # everyone gets the same head
