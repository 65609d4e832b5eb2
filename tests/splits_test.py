"""Splits on hand-made data: counts, order, disjointness, content hash."""

import dataclasses

import numpy as np
import pytest

from jaxrec.data import readers, splits, types


def _x(user, item, ts=None):
  return types.Interactions(
    np.asarray(user, np.int64),
    np.asarray(item, np.int64),
    None,
    None if ts is None else np.asarray(ts, np.int64),
    'hand',
  )


def _items(part, u):
  return part.user_items(u).tolist()


# ---------------------------------------------------------- leave-one-out --
def test_leave_one_out():
  seqs = [np.array([3, 1, 4, 1]), np.array([5, 9, 2])]
  s = splits.leave_one_out(seqs, 'toy')
  assert (s.kind, s.n_users, s.n_items) == ('sequential', 2, 10)
  assert (s.exclude_valid, s.exclude_test) == ('none', 'none')
  assert _items(s.train, 0) == [3, 1] and _items(s.train, 1) == [5]
  assert s.valid.items.tolist() == [4, 9] and s.test.items.tolist() == [1, 2]
  # The model's input at test is train then valid, chronological.
  assert _items(s.history('test'), 0) == [3, 1, 4]
  assert splits.leave_one_out(seqs, 'toy', n_items=20).n_items == 20


def test_leave_one_out_keeps_timestamps():
  seqs = [np.array([0, 1, 2, 3])]
  times = [np.array([10, 20, 30, 40])]
  s = splits.leave_one_out(seqs, 'toy', times=times)
  assert s.train.timestamps.tolist() == [10, 20]
  assert s.valid.timestamps.tolist() == [30]
  assert s.test.timestamps.tolist() == [40]


def test_leave_one_out_short_user_names_the_user():
  seqs = [np.array([0, 1, 2]), np.array([0, 1, 2, 3]), np.array([4, 5])]
  with pytest.raises(readers.DataError, match='toy: user 2 has 2 events'):
    splits.leave_one_out(seqs, 'toy')


# -------------------------------------------------------------- pre-split --
def test_from_presplit_sequences_shifts_to_zero_based():
  train = [np.array([1, 2]), np.array([3])]
  s = splits.from_presplit_sequences(
    train, np.array([3, 1]), [[2], [2]], 'toy', n_items=4
  )
  assert (s.n_users, s.n_items, s.kind) == (2, 4, 'sequential')
  assert _items(s.train, 0) == [0, 1] and _items(s.train, 1) == [2]
  assert s.valid.items.tolist() == [2, 0] and s.test.items.tolist() == [1, 1]
  with pytest.raises(readers.DataError, match='test of user 1 has 2 items'):
    splits.from_presplit_sequences(train, [[3], [1]], [[2], [2, 3]], 'toy')
  with pytest.raises(readers.DataError, match='user 1 has an empty train'):
    splits.from_presplit_sequences(
      [np.array([1]), np.array([], np.int64)], [[3], [1]], [[2], [2]], 'toy'
    )
  with pytest.raises(readers.DataError, match='item id 0; expected 1-based'):
    splits.from_presplit_sequences([np.array([0])], [[1]], [[1]], 'toy')


def test_from_presplit_pairs():
  train = np.array([[0, 2], [1, 0], [0, 1], [2, 3]])  # user 0 rows: 2 then 1
  valid = np.array([[0, 0], [1, 3]])
  test = np.array([[2, 0]])
  s = splits.from_presplit_pairs(train, valid, test, 'toy')
  assert (s.kind, s.n_users, s.n_items) == ('cf', 3, 4)
  assert (s.exclude_valid, s.exclude_test) == ('train', 'train+valid')
  assert s.test_history == 'train'
  assert _items(s.train, 0) == [2, 1]  # row order within the user kept
  assert (s.train.nnz, s.valid.nnz, s.test.nnz) == (4, 2, 1)
  with pytest.raises(readers.DataError, match=r'toy: test row 0 \[2, 4\]'):
    splits.from_presplit_pairs(train, valid, np.array([[2, 4]]), 'toy')
  with pytest.raises(readers.DataError, match=r'valid row 1 \[3, 0\]'):
    splits.from_presplit_pairs(train, np.array([[0, 0], [3, 0]]), test, 'toy')


def test_disjointness_is_asserted():
  train = np.array([[0, 1], [1, 0]])
  with pytest.raises(ValueError, match='in both train and test.*leak'):
    splits.from_presplit_pairs(train, train[:0], np.array([[0, 1]]), 'toy')


# ---------------------------------------------------------- ratio split --
def _recbole_counts(tot, ratios):
  """RecBole 1.2 `_calcu_split_ids`, as counts."""
  cnt = [int(ratios[i] * tot) for i in range(len(ratios))]
  cnt[0] = tot - sum(cnt[1:])
  for i in range(1, len(ratios)):
    if cnt[0] <= 1:
      break
    if 0 < ratios[-i] * tot < 1:
      cnt[-i] += 1
      cnt[0] -= 1
  return cnt


@pytest.mark.parametrize('ratios', [(0.8, 0.1, 0.1), (0.7, 0.1, 0.2)])
def test_ratio_counts_match_recbole(ratios):
  n = np.arange(1, 80)
  got = splits.ratio_counts(n, ratios)
  assert got.tolist() == [_recbole_counts(int(k), ratios) for k in n]
  assert (got.sum(axis=1) == n).all()


def test_ratio_counts_hand_values():
  got = splits.ratio_counts([1, 2, 3, 5, 10, 11, 20], (0.8, 0.1, 0.1))
  assert got.tolist() == [
    [1, 0, 0],
    [1, 0, 1],
    [1, 1, 1],
    [3, 1, 1],
    [8, 1, 1],
    [9, 1, 1],
    [16, 2, 2],
  ]
  assert splits.ratio_counts([5, 10], (0.7, 0.1, 0.2)).tolist() == [
    [3, 1, 1],
    [7, 1, 2],
  ]
  with pytest.raises(ValueError, match='shares of 1'):
    splits.ratio_counts([5], (0.8, 0.1))


def test_per_user_ratio_is_chronological_per_user():
  rng = np.random.default_rng(0)
  # user 0: 10 events, user 1: 5, user 2: 2; rows shuffled.
  user = np.repeat([0, 1, 2], [10, 5, 2])
  item = np.concatenate([np.arange(10), np.arange(5), [3, 7]])
  ts = np.concatenate([np.arange(10) * 10, [5, 4, 3, 2, 1], [1, 1]])
  perm = rng.permutation(len(user))
  s = splits.per_user_ratio(_x(user[perm], item[perm], ts[perm]), name='toy')
  assert (s.kind, s.n_users, s.n_items) == ('cf', 3, 10)
  assert (s.exclude_valid, s.exclude_test) == ('train', 'train+valid')
  assert s.train.lengths.tolist() == [8, 3, 1]
  assert s.valid.lengths.tolist() == [1, 1, 0]
  assert s.test.lengths.tolist() == [1, 1, 1]
  assert _items(s.train, 0) == list(range(8))
  assert _items(s.valid, 0) == [8] and _items(s.test, 0) == [9]
  # User 1's timestamps run backwards: item 4 is oldest, item 0 newest.
  assert _items(s.train, 1) == [4, 3, 2]
  assert _items(s.valid, 1) == [1] and _items(s.test, 1) == [0]
  # User 2's tie (t=1, 1): the first row in input order is the older.
  first = item[perm][user[perm] == 2][0]
  assert _items(s.train, 2) == [first]
  for p in (s.train, s.valid, s.test):
    for u in range(3):
      t = p.timestamps[p.indptr[u] : p.indptr[u + 1]]
      assert (np.diff(t) >= 0).all()
  s72 = splits.per_user_ratio(_x(user, item, ts), (0.7, 0.1, 0.2), 'toy')
  assert s72.train.lengths.tolist() == [7, 3, 1]
  assert s72.test.lengths.tolist() == [2, 1, 1]


def test_per_user_ratio_needs_unique_pairs():
  x = _x([0, 0, 0, 1], [1, 2, 1, 0], ts=[1, 2, 3, 4])
  with pytest.raises(
    readers.DataError, match='toy: 1 repeated .*user 0 item 1'
  ):
    splits.per_user_ratio(x, name='toy')


def test_per_user_ratio_empty_train_is_an_error():
  x = _x([0, 0, 1, 1], [0, 1, 0, 2], ts=[1, 2, 3, 4])
  with pytest.raises(readers.DataError, match='toy: user 0 has 2 events'):
    splits.per_user_ratio(x, (0.0, 0.5, 0.5), 'toy')


# --------------------------------------------------------- global temporal --
def test_global_temporal_cuts_and_drops_unseen():
  # 10 events at t = 0..9; cut points at the 0.6 and 0.8 quantiles
  # (t = 5.4 and 7.2): t <= 5 train, 6..7 valid, 8..9 test.
  user = [0, 1, 0, 1, 2, 0, 1, 0, 3, 1]
  item = [0, 1, 1, 0, 2, 3, 2, 4, 0, 3]
  s = splits.global_temporal(_x(user, item, np.arange(10)), 0.2, 0.2, 'toy')
  assert (s.kind, s.n_users, s.n_items) == ('cf', 4, 5)
  assert s.train.timestamps.tolist() == [0, 2, 5, 1, 3, 4]
  # valid: (1, 2) at t=6 kept; (0, 4) at t=7 dropped: item 4 unseen.
  assert s.valid.items.tolist() == [2] and s.valid.lengths.tolist()[1] == 1
  # test: (3, 0) at t=8 dropped: user 3 unseen; (1, 3) at t=9 kept.
  assert s.test.items.tolist() == [3] and s.test.lengths.tolist()[1] == 1
  with pytest.raises(readers.DataError, match='needs timestamps'):
    splits.global_temporal(_x(user, item), 0.1, 0.1, 'toy')


# ------------------------------------------------------------ content hash --
def test_content_hash_is_stable_and_sensitive():
  seqs = [np.array([3, 1, 4, 1]), np.array([5, 9, 2])]
  a = splits.leave_one_out(seqs, 'toy')
  b = splits.leave_one_out([s.copy() for s in seqs], 'toy')
  assert a.content_hash == b.content_hash
  changed = [np.array([3, 1, 4, 1]), np.array([5, 9, 3])]
  assert splits.leave_one_out(changed, 'toy').content_hash != a.content_hash
  swapped = [np.array([1, 3, 4, 1]), np.array([5, 9, 2])]
  assert splits.leave_one_out(swapped, 'toy').content_hash != a.content_hash
  bigger = splits.leave_one_out(seqs, 'toy', n_items=11)
  assert bigger.content_hash != a.content_hash
  # The name is not content; and the value must not drift across versions
  # (run records compare it).
  assert a.content_hash == dataclasses.replace(a, name='other').content_hash
  assert a.content_hash == (
    '66c354cb8701b61cdd602d41804f4f5321449ad4d88980c8a37cdd5f760d2a00'
  )


def test_to_csr_leaves_the_sequences_in_order():
  # A sequence out of item order with a repeat: the matrix is binary and
  # sorted, and the Part (hence every model reading it next, and the split's
  # hash) keeps its order. SciPy sorts an int32 index array in place.
  split = splits.leave_one_out([np.array([7, 2, 9, 2, 5, 1])], 'toy')
  before = split.train.items.copy(), split.content_hash
  m = split.train.to_csr(split.n_items)
  assert m.indices.tolist() == sorted(set(before[0].tolist()))
  assert m.data.tolist() == [1.0] * m.nnz
  np.testing.assert_array_equal(split.train.items, before[0])
  assert split.content_hash == before[1]
