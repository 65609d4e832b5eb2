"""Readers on small bad files written here, and on the real shared files.

The real-file tests need JAXREC_DATA (the `data_dir` fixture of conftest.py
skips them otherwise); the expected counts are those of the data README.
"""

import gzip
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from jaxrec.data import readers


def _write(tmp_path, name, data, gz=False):
  path = tmp_path / name
  data = data.encode() if isinstance(data, str) else data
  path.write_bytes(gzip.compress(data) if gz else data)
  return path


# ------------------------------------------------------------- MovieLens --
def test_movielens_udata_and_ratings_dat(tmp_path):
  udata = _write(tmp_path, 'u.data', '196\t242\t3\t881250949\n1\t2\t5\t7\n')
  x = readers.read_movielens(udata)
  np.testing.assert_array_equal(x.user, [196, 1])
  np.testing.assert_array_equal(x.item, [242, 2])
  np.testing.assert_array_equal(x.rating, [3.0, 5.0])
  np.testing.assert_array_equal(x.timestamp, [881250949, 7])
  assert x.user.dtype == np.int64 and x.timestamp.dtype == np.int64
  assert x.source == str(udata)
  dat = _write(tmp_path, 'ratings.dat.gz', '1::1193::5::978300760\n', gz=True)
  assert readers.read_movielens(dat).item.tolist() == [1193]
  # An explicit separator overrides detection.
  csv = _write(tmp_path, 'r.csv', '1,2,3,4\n')
  assert readers.read_movielens(csv, sep=',').timestamp.tolist() == [4]


@pytest.mark.parametrize(
  'body,line,reason',
  [
    ('1\t2\t3\t4\n5\t6\t7\n', 2, 'expected 4 fields'),
    ('1\t2\t3\t4\n\n5\t6\t7\t8\n', 2, 'expected 4 fields'),  # blank line
    ('1\t2\t3\t4\n5\t-6\t7\t8\n', 2, 'negative id'),
    ('1\t2\t3\t4\n1\t2\t3\t4\nx\t6\t7\t8\n', 3, 'not an integer'),
    ('1\t2\t3\t4\n1\t2.5\t3\t4\n', 2, 'not an integer'),
    ('1\t2\tnan\t4\n', 1, 'not finite'),
    ('1\t2\tNaN\t4\n', 1, 'not finite'),
    ('1\t2\t3\tinf\n', 1, 'not finite'),
    ('1\t2\t3\tnan\n', 1, 'not finite'),
    ('1\t2\tfive\t4\n', 1, 'not a number'),
    ('1\t2\t3\t4.5\n', 1, 'not a whole number'),
  ],
)
def test_malformed_lines_name_file_and_line(tmp_path, body, line, reason):
  path = _write(tmp_path, 'u.data', body)
  with pytest.raises(readers.DataError, match=rf'u\.data:{line}: .*{reason}'):
    readers.read_movielens(path)


def test_bad_line_found_in_gzip_too(tmp_path):
  body = '1::2::3::4\n' * 1000 + '1::2::3\n'
  path = _write(tmp_path, 'ratings.dat.gz', body, gz=True)
  with pytest.raises(readers.DataError, match=r'ratings\.dat\.gz:1001: '):
    readers.read_movielens(path)


def test_empty_missing_and_not_gzip(tmp_path):
  for body in ('', '\n\n  \n'):
    with pytest.raises(readers.DataError, match=r'u\.data: empty file'):
      readers.read_movielens(_write(tmp_path, 'u.data', body))
  with pytest.raises(readers.DataError, match=r'e\.gz: empty file'):
    readers.read_movielens(_write(tmp_path, 'e.gz', '', gz=True))
  with pytest.raises(readers.DataError, match=r'absent\.data: cannot read'):
    readers.read_movielens(tmp_path / 'absent.data')
  with pytest.raises(readers.DataError, match='not a valid gzip'):
    readers.read_movielens(_write(tmp_path, 'bad.gz', 'plain text'))


# ---------------------------------------------------------------- RecBole --
def test_recbole_inter_crlf_and_errors(tmp_path):
  text = (
    'user_id:token\titem_id:token\trating:float\ttimestamp:float\r\n'
    '196\t242\t3\t881250949\r\n186\t302\t3\t891717742\r\n'
  )
  x = readers.read_recbole_inter(_write(tmp_path, 'a.inter', text))
  assert x.item.tolist() == [242, 302]
  assert x.timestamp.tolist() == [881250949, 891717742]
  bad = text.replace('186\t302', '186\t3o2')
  with pytest.raises(readers.DataError, match=r'a\.inter:3: field 2'):
    readers.read_recbole_inter(_write(tmp_path, 'a.inter', bad))
  # RecBole tokens may be any string; here only integer tokens are accepted.
  ml1m = text.replace('196\t', '1m_196\t')
  with pytest.raises(readers.DataError, match=r'b\.inter:2: .*not an integer'):
    readers.read_recbole_inter(_write(tmp_path, 'b.inter', ml1m))
  with pytest.raises(readers.DataError, match=r"c\.inter:1: .*no 'item_id'"):
    readers.read_recbole_inter(_write(tmp_path, 'c.inter', 'user_id:token\n1'))
  with pytest.raises(readers.DataError, match=r'd\.inter: no data lines'):
    readers.read_recbole_inter(_write(tmp_path, 'd.inter', text.split('\n')[0]))


def test_recbole_inter_without_rating_and_extra_columns(tmp_path):
  text = 'user_id:token\titem_id:token\tlabel:token\n1\t2\tabc\n3\t4\txyz\n'
  x = readers.read_recbole_inter(_write(tmp_path, 'a.inter', text))
  assert x.user.tolist() == [1, 3] and x.rating is None and x.timestamp is None


# --------------------------------------------------------- ml-latest csv --
def test_ml_latest_zip_and_csv(tmp_path):
  csv = 'userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,9\n'
  path = tmp_path / 'ml.zip'
  with zipfile.ZipFile(path, 'w') as z:
    z.writestr('ml-latest-small/ratings.csv', csv)
  x = readers.read_ml_latest_csv(path)
  assert x.rating.tolist() == [4.0, 4.5] and x.timestamp.tolist() == [
    964982703,
    9,
  ]
  y = readers.read_ml_latest_csv(_write(tmp_path, 'ratings.csv', csv))
  np.testing.assert_array_equal(x.item, y.item)
  with pytest.raises(readers.DataError, match='cannot read member nope.csv'):
    readers.read_ml_latest_csv(path, 'nope.csv')
  bad = csv + '2,5,nan,1\n'
  with pytest.raises(readers.DataError, match=r'r2\.csv:4: field 3.*finite'):
    readers.read_ml_latest_csv(_write(tmp_path, 'r2.csv', bad))
  with pytest.raises(readers.DataError, match=r'r3\.csv:1: unexpected header'):
    readers.read_ml_latest_csv(_write(tmp_path, 'r3.csv', '1,1,4.0,9\n'))


# ---------------------------------------------------- ICLRec / TiCoSeRec --
def test_iclrec_and_ticoserec(tmp_path):
  items = _write(tmp_path, 'i.txt', '1 5 6 7\n2 8 9 5 6\n')
  times = _write(tmp_path, 't.txt.gz', '1 10 20 20\n2 1 2 3 4\n', gz=True)
  seqs = readers.read_iclrec_txt(items)
  assert [s.tolist() for s in seqs] == [[5, 6, 7], [8, 9, 5, 6]]
  x = readers.read_ticoserec(items, times)
  assert x.user.tolist() == [1, 1, 1, 2, 2, 2, 2]
  assert x.item.tolist() == [5, 6, 7, 8, 9, 5, 6]
  assert x.timestamp.tolist() == [10, 20, 20, 1, 2, 3, 4]
  assert x.rating is None


@pytest.mark.parametrize(
  'body,pattern',
  [
    ('1 5 6\n3 7 8\n', r'g\.txt:2: user id 3, expected 2'),
    ('1 5 x6\n', r"g\.txt:1: 'x6' is not an integer"),
    ('1 5 6\n2 -7\n', r'g\.txt:2: negative value'),
    ('1 5 6\n2\n', r'g\.txt:2: a user id and no items'),
    ('1 5 0\n', r'g\.txt:1: item id 0'),
    ('\n\n', r'g\.txt: empty file'),
  ],
)
def test_iclrec_errors(tmp_path, body, pattern):
  with pytest.raises(readers.DataError, match=pattern):
    readers.read_iclrec_txt(_write(tmp_path, 'g.txt', body))


def test_ticoserec_misaligned(tmp_path):
  items = _write(tmp_path, 'i.txt', '1 5 6 7\n2 8 9\n')
  short = _write(tmp_path, 't1.txt', '1 10 20\n2 1 2\n')
  with pytest.raises(readers.DataError, match=r't1\.txt:1: .*does not match'):
    readers.read_ticoserec(items, short)
  other_user = _write(tmp_path, 't2.txt', '1 10 20 30\n3 1 2\n')
  with pytest.raises(readers.DataError, match=r't2\.txt:2: user 3'):
    readers.read_ticoserec(items, other_user)
  fewer = _write(tmp_path, 't3.txt', '1 10 20 30\n')
  with pytest.raises(readers.DataError, match=r't3\.txt: 1 lines'):
    readers.read_ticoserec(items, fewer)
  back = _write(tmp_path, 't4.txt', '1 10 20 30\n2 5 4\n')
  with pytest.raises(readers.DataError, match=r't4\.txt:2: timestamps decr'):
    readers.read_ticoserec(items, back)


# ---------------------------------------------------------------- pickles --
class _Evil:
  """Unpickling this would run a shell command (touches a marker file)."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f'touch {self.marker}',))


def test_malicious_pickle_is_refused(tmp_path):
  marker = tmp_path / 'pwned'
  evil = {'train': _Evil(marker), 'val': [], 'test': []}
  path = _write(tmp_path, 'evil.pkl', pickle.dumps(evil))
  with pytest.raises(
    readers.DataError, match=r'evil\.pkl: refusing .*(posix|nt)\.system'
  ):
    readers.read_seq_pickle(path)
  assert not marker.exists()
  arr = _write(tmp_path, 'arr.pkl.gz', pickle.dumps(np.arange(3)), gz=True)
  with pytest.raises(readers.DataError, match=r'arr\.pkl\.gz: refusing .*'):
    readers.read_seq_pickle(arr)


def test_diffurec_and_adrec_pickles(tmp_path):
  diffurec = {
    'train': {0: [1, 2], 1: [3]},
    'val': {0: [3], 1: [1]},
    'test': {0: [2], 1: [2]},
    'umap': {10: 0, 20: 1},
    'smap': {100: 1, 300: 2, 200: 3},
  }
  got = readers.read_seq_pickle(
    _write(tmp_path, 'd.pkl.gz', pickle.dumps(diffurec, protocol=4), gz=True)
  )
  assert [s.tolist() for s in got['train']] == [[1, 2], [3]]
  assert got['val'].tolist() == [3, 1] and got['test'].tolist() == [2, 2]
  assert got['n_items'] == 3
  assert got['user_ids'].tolist() == [10, 20]
  assert got['item_ids'].tolist() == [100, 300, 200]
  adrec = {'train': [[1, 2], [3]], 'val': [[3], [1]], 'test': [[2], [2]]}
  got = readers.read_seq_pickle(_write(tmp_path, 'a.pkl', pickle.dumps(adrec)))
  assert got['n_items'] == 3 and 'user_ids' not in got


@pytest.mark.parametrize(
  'data,pattern',
  [
    ({'train': [[1]], 'val': [[2, 3]], 'test': [[2]]}, r'val\[0\] has 2'),
    ({'train': [[1]], 'val': [[2]], 'test': [[]]}, r'test\[0\] has 0'),
    ({'train': [[0, 1]], 'val': [[2]], 'test': [[2]]}, r'train\[0\].*id 0'),
    ({'train': [[1.5]], 'val': [[2]], 'test': [[2]]}, r'train\[0\] is not'),
    ({'train': [['a']], 'val': [[2]], 'test': [[2]]}, r'train\[0\] is not'),
    ({'train': [[1]], 'test': [[2]]}, "no 'val' key"),
    ({'train': {1: [1]}, 'val': [[2]], 'test': [[2]]}, r'train users are'),
    ({'train': [[1], [2]], 'val': [[2]], 'test': [[2]]}, r'val has 1 users'),
    ({'train': 5, 'val': [[2]], 'test': [[2]]}, r'train is a int'),
    ([[1], [2]], 'expected a dict, got list'),
    (
      {'train': [[1]], 'val': [[2]], 'test': [[5]], 'smap': {1: 1, 2: 2}},
      r'item id 5 > len\(smap\) = 2',
    ),
    (
      {'train': [[1]], 'val': [[2]], 'test': [[2]], 'smap': {1: 1, 2: 1}},
      'smap values are not 1..2',
    ),
  ],
)
def test_pickle_structure_errors(tmp_path, data, pattern):
  path = _write(tmp_path, 'p.pkl', pickle.dumps(data))
  with pytest.raises(readers.DataError, match=rf'p\.pkl: .*{pattern}'):
    readers.read_seq_pickle(path)


def test_corrupt_pickle(tmp_path):
  with pytest.raises(readers.DataError, match=r'c\.pkl: not a valid pickle'):
    readers.read_seq_pickle(_write(tmp_path, 'c.pkl', b'\x80\x04garbage'))


# -------------------------------------------------------------------- npy --
def _npy(tmp_path, name, arr, gz=False, allow_pickle=False):
  buf = io.BytesIO()
  np.save(buf, arr, allow_pickle=allow_pickle)
  return _write(tmp_path, name, buf.getvalue(), gz=gz)


def test_npy_pairs(tmp_path):
  arr = np.array([[0, 1], [0, 2], [1, 0]], np.int64)
  got = readers.read_npy_pairs(_npy(tmp_path, 'a.npy.gz', arr, gz=True))
  np.testing.assert_array_equal(got, arr)
  assert got.dtype == np.int64
  i32 = readers.read_npy_pairs(_npy(tmp_path, 'b.npy', arr.astype(np.int32)))
  assert i32.dtype == np.int64


@pytest.mark.parametrize(
  'arr,pattern',
  [
    (np.array([[0, 1], [2, 3]], dtype=object), 'not a plain .npy array'),
    (np.arange(3), r'shape \(3,\)'),
    (np.zeros((2, 3), np.int64), r'shape \(2, 3\)'),
    (np.array([[0, 1], [-1, 2]]), 'row 1 has a negative id'),
    (np.array([[0.0, 1.0]]), 'dtype float64'),
    (np.zeros((0, 2), np.int64), 'no rows'),
  ],
)
def test_npy_pairs_refused(tmp_path, arr, pattern):
  path = _npy(tmp_path, 'x.npy', arr, allow_pickle=arr.dtype == object)
  with pytest.raises(readers.DataError, match=rf'x\.npy: {pattern}'):
    readers.read_npy_pairs(path)


# ------------------------------------------------------------ real files --
def _stats(user, item):
  return len(np.unique(user)), len(np.unique(item)), len(user)


@pytest.mark.parametrize(
  'path,reader,expected,ts_range',
  [
    (
      'ml-1m/ratings.dat.gz',
      readers.read_movielens,
      (6040, 3706, 1000209),
      (956703932, 1046454590),
    ),
    (
      'ml-100k/ml-100k.inter.gz',
      readers.read_recbole_inter,
      (943, 1682, 100000),
      (874724710, 893286638),
    ),
    (
      'ml-latest-small/ml-latest-small.zip',
      readers.read_ml_latest_csv,
      (610, 9724, 100836),
      (828124615, 1537799250),
    ),
  ],
)
def test_real_ratings(data_dir, path, reader, expected, ts_range):
  x = reader(data_dir / path)
  assert _stats(x.user, x.item) == expected
  assert (x.timestamp.min(), x.timestamp.max()) == ts_range
  assert np.isfinite(x.rating).all() and x.rating.min() > 0


def test_real_ml1m_rating_histogram(data_dir):
  x = readers.read_movielens(data_dir / 'ml-1m/ratings.dat.gz')
  hist = np.bincount(x.rating.astype(np.int64), minlength=6)[1:]
  assert hist.tolist() == [56174, 107557, 261197, 348971, 226310]
  assert (x.user[0], x.item[0], x.timestamp[0]) == (1, 1193, 978300760)


@pytest.mark.parametrize(
  'name,expected,lengths',
  [
    ('Beauty', (22363, 12101, 198502), (5, 204)),
    ('Sports_and_Outdoors', (35598, 18357, 296337), (5, 296)),
    ('Yelp', (30431, 20033, 316354), (5, 350)),
  ],
)
def test_real_iclrec(data_dir, name, expected, lengths):
  seqs = readers.read_iclrec_txt(data_dir / f'iclrec_seq/{name}.txt.gz')
  items = np.concatenate(seqs)
  assert (len(seqs), len(np.unique(items)), len(items)) == expected
  assert items.min() == 1 and items.max() == expected[1]
  n = [len(s) for s in seqs]
  assert (min(n), max(n)) == lengths


@pytest.mark.parametrize(
  'name,expected,ts_range',
  [
    ('Beauty', (22363, 12101, 198502), (1023840000, 1406073600)),
    ('Sports', (35598, 18357, 296337), (1015459200, 1406073600)),
  ],
)
def test_real_ticoserec(data_dir, name, expected, ts_range):
  d = data_dir / 'ticoserec_amazon_time'
  x = readers.read_ticoserec(
    d / f'{name}_item_org_rank.txt.gz', d / f'{name}_time_org_rank.txt.gz'
  )
  assert _stats(x.user, x.item) == expected
  assert (x.timestamp.min(), x.timestamp.max()) == ts_range


@pytest.mark.parametrize(
  'path,users,items,train',
  [
    ('diffurec_amazon_beauty', 22363, 12101, 153776),
    ('diffurec_ml-1m', 6040, 3706, 988129),
    ('adrec_baby', 11761, 4731, 69301),
    ('adrec_beauty', 10553, 6086, 73042),
    ('adrec_sports', 22686, 12301, 140346),
    ('adrec_ml-100k', 938, 1008, 52537),
  ],
)
def test_real_seq_pickles(data_dir, path, users, items, train):
  d = readers.read_seq_pickle(data_dir / path / 'dataset.pkl.gz')
  all_items = np.concatenate(d['train'] + [d['val'], d['test']])
  assert len(d['train']) == len(d['val']) == len(d['test']) == users
  assert sum(len(s) for s in d['train']) == train
  assert d['n_items'] == items == len(np.unique(all_items))


def test_real_diffurec_beauty_is_iclrec_beauty(data_dir):
  d = readers.read_seq_pickle(
    data_dir / 'diffurec_amazon_beauty/dataset.pkl.gz'
  )
  seqs = readers.read_iclrec_txt(data_dir / 'iclrec_seq/Beauty.txt.gz')
  # umap: ICLRec user u (1-based) -> DiffuRec user u - 1.
  np.testing.assert_array_equal(d['user_ids'], np.arange(1, len(seqs) + 1))
  for u in (0, 1, 5000, len(seqs) - 1):
    full = np.concatenate(
      [d['train'][u], d['val'][u : u + 1], d['test'][u : u + 1]]
    )
    np.testing.assert_array_equal(d['item_ids'][full - 1], seqs[u])


@pytest.mark.parametrize(
  'setting,rows',
  [
    ('clean', (403277, 110722, 57532)),
    ('noisy', (429993, 130772, 57532)),
  ],
)
def test_real_npy_pairs(data_dir, setting, rows):
  got = tuple(
    len(
      readers.read_npy_pairs(data_dir / f'diffrec_ml-1m_{setting}/{p}.npy.gz')
    )
    for p in ('train_list', 'valid_list', 'test_list')
  )
  assert got == rows
