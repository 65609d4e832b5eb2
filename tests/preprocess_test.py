"""Preprocessing on hand-made interactions."""

import logging

import numpy as np
import pytest

from jaxrec.data import preprocess, readers, types


def _x(user, item, ts=None, rating=None):
  arr = lambda v, t: None if v is None else np.asarray(v, t)
  return types.Interactions(
    np.asarray(user, np.int64),
    np.asarray(item, np.int64),
    arr(rating, np.float64),
    arr(ts, np.int64),
    'hand',
  )


def test_sort_is_by_user_then_time_and_stable_on_ties():
  x = _x([1, 0, 1, 1, 1], [10, 11, 12, 13, 14], ts=[5, 9, 3, 5, 5])
  got = preprocess.sort_chronological(x)
  assert got.user.tolist() == [0, 1, 1, 1, 1]
  # 10, 13, 14 share ts 5: they keep their row order.
  assert got.item.tolist() == [11, 12, 10, 13, 14]
  assert got.timestamp.tolist() == [9, 3, 5, 5, 5]


def test_sort_without_timestamps_keeps_row_order_per_user():
  got = preprocess.sort_chronological(_x([2, 0, 2, 0], [1, 2, 3, 4]))
  assert got.user.tolist() == [0, 0, 2, 2]
  assert got.item.tolist() == [2, 4, 1, 3]


def test_filter_rating(caplog):
  caplog.set_level(logging.INFO)
  x = _x([0, 0, 1, 2], [5, 6, 5, 7], rating=[4, 3.5, 5, 1])
  got = preprocess.filter_rating(x, 4)
  assert got.item.tolist() == [5, 5] and got.rating.tolist() == [4, 5]
  assert 'removed 2 of 4 rows, 1 of 3 users, 2 of 3 items' in caplog.text
  with pytest.raises(readers.DataError, match='hand: no rating column'):
    preprocess.filter_rating(_x([0], [1]), 4)


def test_dedupe_keeps_earliest_or_latest_after_sorting(caplog):
  caplog.set_level(logging.INFO)
  # Rows are not chronological: (0, 5) happens at t=1 (row 1) and t=7 (0).
  x = _x(
    [0, 0, 0, 1, 1],
    [5, 5, 6, 5, 5],
    ts=[7, 1, 3, 2, 2],
    rating=[1, 2, 3, 4, 5],
  )
  first = preprocess.dedupe(x)
  assert first.user.tolist() == [0, 0, 1]
  assert first.item.tolist() == [5, 6, 5]
  assert first.timestamp.tolist() == [1, 3, 2]
  assert first.rating.tolist() == [2, 3, 4]  # tie at t=2: the first row
  last = preprocess.dedupe(x, keep='last')
  assert last.item.tolist() == [6, 5, 5]
  assert last.timestamp.tolist() == [3, 7, 2]
  assert last.rating.tolist() == [3, 1, 5]  # tie at t=2: the last row
  assert 'removed 2 of 5 rows, 0 of 2 users, 0 of 2 items' in caplog.text
  with pytest.raises(ValueError, match='keep'):
    preprocess.dedupe(x, keep='middle')


def test_kcore_hand_example_cascades():
  # 2-core. Item 7 has one event -> user 1 falls to 1 event and goes ->
  # item 6 falls to 1 event and goes -> user 2 falls to 1 event and goes.
  # Users 0 and 3 with items 5 and 8 remain (each has 2 of each).
  x = _x(
    [0, 0, 1, 1, 2, 2, 3, 3],
    [5, 8, 6, 7, 6, 5, 5, 8],
  )
  got = preprocess.kcore(x, 2, 2)
  assert got.user.tolist() == [0, 0, 3, 3]
  assert got.item.tolist() == [5, 8, 5, 8]
  # The result is a fixed point.
  again = preprocess.kcore(got, 2, 2)
  np.testing.assert_array_equal(again.user, got.user)


def _naive_kcore(user, item, uk, ik):
  keep = np.ones(len(user), bool)
  changed = True
  while changed:
    changed = False
    for u in np.unique(user[keep]):
      m = keep & (user == u)
      if m.sum() < uk:
        keep &= ~m
        changed = True
    for i in np.unique(item[keep]):
      m = keep & (item == i)
      if m.sum() < ik:
        keep &= ~m
        changed = True
  return keep


@pytest.mark.parametrize('seed,uk,ik', [(0, 3, 3), (1, 5, 2), (2, 2, 6)])
def test_kcore_matches_a_naive_fixed_point(seed, uk, ik):
  rng = np.random.default_rng(seed)
  user = rng.integers(0, 40, 500)
  item = (rng.zipf(1.6, 500) % 90).astype(np.int64)
  got = preprocess.kcore(_x(user, item), uk, ik)
  keep = _naive_kcore(user, item, uk, ik)
  np.testing.assert_array_equal(got.user, user[keep])
  np.testing.assert_array_equal(got.item, item[keep])
  if len(got):
    assert np.bincount(got.user)[np.unique(got.user)].min() >= uk
    assert np.bincount(got.item)[np.unique(got.item)].min() >= ik


def test_kcore_can_empty_everything():
  got = preprocess.kcore(_x([0, 1], [0, 1]), 2, 2)
  assert len(got) == 0


def test_remap_ids_by_sorted_original_id():
  x = _x([7, 3, 7, 9], [40, 10, 10, 25], ts=[1, 2, 3, 4])
  got, uids, iids = preprocess.remap_ids(x)
  assert got.user.tolist() == [1, 0, 1, 2]
  assert got.item.tolist() == [2, 0, 0, 1]
  assert got.timestamp.tolist() == [1, 2, 3, 4]
  assert uids.tolist() == [3, 7, 9] and iids.tolist() == [10, 25, 40]
  np.testing.assert_array_equal(uids[got.user], x.user)
  np.testing.assert_array_equal(iids[got.item], x.item)


def test_to_sequences_groups_in_row_order():
  x = _x([2, 1, 2, 1], [5, 6, 7, 8], ts=[1, 2, 3, 4])
  users, seqs, times = preprocess.to_sequences(x)
  assert users.tolist() == [1, 2]
  assert [s.tolist() for s in seqs] == [[6, 8], [5, 7]]
  assert [t.tolist() for t in times] == [[2, 4], [1, 3]]
  assert preprocess.to_sequences(_x([0], [1]))[2] is None
