"""Readers on small bad files written here, and on the real files."""

import gzip
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from jaxrec.data import readers


def _write(tmp_path, name, text, gz=False):
  path = tmp_path / name
  data = text.encode() if isinstance(text, str) else text
  path.write_bytes(gzip.compress(data) if gz else data)
  return path


def test_movielens_udata_and_ratings_dat(tmp_path):
  udata = _write(tmp_path, 'u.data', '196\t242\t3\t881250949\n1\t2\t5\t7\n')
  x = readers.read_movielens(udata)
  np.testing.assert_array_equal(x.user, [196, 1])
  np.testing.assert_array_equal(x.rating, [3.0, 5.0])
  np.testing.assert_array_equal(x.timestamp, [881250949, 7])
  dat = _write(tmp_path, 'ratings.dat.gz', '1::1193::5::978300760\n', gz=True)
  assert readers.read_movielens(dat).item.tolist() == [1193]


@pytest.mark.parametrize(
  'body,line,reason',
  [
    ('1\t2\t3\t4\n5\t6\t7\n', 2, 'expected 4 fields'),
    ('1\t2\t3\t4\n5\t-6\t7\t8\n', 2, 'negative id'),
    ('1\t2\t3\t4\n1\t2\t3\t4\nx\t6\t7\t8\n', 3, 'not an integer'),
    ('1\t2\tnan\t4\n', 1, 'not finite'),
    ('1\t2\t3\tinf\n', 1, 'not finite'),
  ],
)
def test_malformed_lines_name_file_and_line(tmp_path, body, line, reason):
  path = _write(tmp_path, 'u.data', body)
  with pytest.raises(readers.DataError, match=rf'u\.data:{line}: .*{reason}'):
    readers.read_movielens(path)


def test_empty_and_missing_files(tmp_path):
  with pytest.raises(readers.DataError, match='empty file'):
    readers.read_movielens(_write(tmp_path, 'u.data', '\n\n'))
  with pytest.raises(readers.DataError, match='cannot read'):
    readers.read_movielens(tmp_path / 'absent.data')
  with pytest.raises(readers.DataError, match='not a valid gzip'):
    readers.read_movielens(_write(tmp_path, 'bad.gz', 'plain text'))


def test_recbole_inter(tmp_path):
  text = (
    'user_id:token\titem_id:token\trating:float\ttimestamp:float\r\n'
    '196\t242\t3\t881250949\r\n186\t302\t3\t891717742\r\n'
  )
  x = readers.read_recbole_inter(_write(tmp_path, 'a.inter', text))
  assert x.item.tolist() == [242, 302]
  bad = text.replace('186\t302', '186\t3o2')
  with pytest.raises(readers.DataError, match=r'a\.inter:3: field 2'):
    readers.read_recbole_inter(_write(tmp_path, 'a.inter', bad))
  with pytest.raises(readers.DataError, match="no 'item_id'"):
    readers.read_recbole_inter(_write(tmp_path, 'b.inter', 'user_id:token\n1'))


def test_ml_latest_zip(tmp_path):
  path = tmp_path / 'ml.zip'
  with zipfile.ZipFile(path, 'w') as z:
    z.writestr(
      'ml-latest-small/ratings.csv',
      'userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,9\n',
    )
  x = readers.read_ml_latest(path)
  assert x.rating.tolist() == [4.0, 4.5]
  with pytest.raises(readers.DataError, match='cannot read member'):
    readers.read_ml_latest(path, 'nope.csv')


def test_iclrec_and_ticoserec(tmp_path):
  items = _write(tmp_path, 'i.txt', '1 5 6 7\n2 8 9 10 11\n')
  times = _write(tmp_path, 't.txt', '1 10 20 20\n2 1 2 3 4\n')
  seqs = readers.read_iclrec_txt(items)
  assert [s.tolist() for s in seqs] == [[5, 6, 7], [8, 9, 10, 11]]
  _, ts = readers.read_ticoserec(items, times)
  assert ts[0].tolist() == [10, 20, 20]
  short = _write(tmp_path, 't2.txt', '1 10 20\n2 1 2 3 4\n')
  with pytest.raises(readers.DataError, match=r't2\.txt:1: .*does not match'):
    readers.read_ticoserec(items, short)
  gap = _write(tmp_path, 'g.txt', '1 5 6\n3 7 8\n')
  with pytest.raises(readers.DataError, match=r'g\.txt:2: user id 3'):
    readers.read_iclrec_txt(gap)
  word = _write(tmp_path, 'w.txt', '1 5 x6\n')
  with pytest.raises(readers.DataError, match=r"w\.txt:1: 'x6'"):
    readers.read_iclrec_txt(word)


class _Evil:
  def __reduce__(self):
    return (os.system, ('echo pwned',))


def test_pickle_refuses_globals(tmp_path):
  path = _write(tmp_path, 'evil.pkl', pickle.dumps({'train': _Evil()}))
  with pytest.raises(readers.DataError, match=r'refusing to unpickle .*system'):
    readers.read_seq_pickle(path)
  arr = _write(tmp_path, 'np.pkl', pickle.dumps({'train': np.arange(3)}))
  with pytest.raises(readers.DataError, match='refusing to unpickle numpy'):
    readers.read_seq_pickle(arr)


def test_pickle_structures(tmp_path):
  diffurec = {
    'train': {0: [1, 2], 1: [3]},
    'val': {0: [3], 1: [1]},
    'test': {0: [4], 1: [2]},
    'umap': {10: 0, 11: 1},
    'smap': {5: 1, 6: 2, 7: 3, 8: 4},
  }
  got = readers.read_seq_pickle(
    _write(tmp_path, 'd.pkl', pickle.dumps(diffurec))
  )
  assert got['n_items'] == 4 and got['val'].tolist() == [3, 1]
  adrec = {'train': [[1, 2], [3]], 'val': [[3], [1]], 'test': [[2], [2]]}
  got = readers.read_seq_pickle(_write(tmp_path, 'a.pkl', pickle.dumps(adrec)))
  assert got['n_items'] == 3 and got['train'][0].tolist() == [1, 2]
  two = dict(adrec, test=[[2, 3], [2]])
  with pytest.raises(readers.DataError, match=r'test\[0\] has 2 items'):
    readers.read_seq_pickle(_write(tmp_path, 't.pkl', pickle.dumps(two)))
  zero = dict(adrec, train=[[0, 2], [3]])
  with pytest.raises(readers.DataError, match=r'train\[0\] has item id 0'):
    readers.read_seq_pickle(_write(tmp_path, 'z.pkl', pickle.dumps(zero)))
  with pytest.raises(readers.DataError, match="no 'val' key"):
    readers.read_seq_pickle(
      _write(tmp_path, 'k.pkl', pickle.dumps({'train': []}))
    )
  with pytest.raises(readers.DataError, match='not a valid pickle'):
    readers.read_seq_pickle(_write(tmp_path, 'c.pkl', b'\x80\x04garbage'))


def _npy(arr):
  buf = io.BytesIO()
  np.save(buf, arr, allow_pickle=True)
  return buf.getvalue()


def test_npy_pairs(tmp_path):
  ok = _write(tmp_path, 'ok.npy.gz', _npy(np.array([[0, 1], [2, 3]])), gz=True)
  assert readers.read_npy_pairs(ok).tolist() == [[0, 1], [2, 3]]
  obj = np.array([[0, None]], dtype=object)
  with pytest.raises(readers.DataError, match='not a plain .npy'):
    readers.read_npy_pairs(_write(tmp_path, 'o.npy', _npy(obj)))
  with pytest.raises(readers.DataError, match=r'shape \(3,\)'):
    readers.read_npy_pairs(_write(tmp_path, 's.npy', _npy(np.arange(3))))
  with pytest.raises(readers.DataError, match='row 1 has a negative id'):
    readers.read_npy_pairs(
      _write(tmp_path, 'n.npy', _npy(np.array([[0, 1], [-1, 2]])))
    )
  with pytest.raises(readers.DataError, match='dtype float64'):
    readers.read_npy_pairs(_write(tmp_path, 'f.npy', _npy(np.zeros((2, 2)))))


@pytest.mark.parametrize(
  'path,reader,users,items,events',
  [
    ('ml-1m/ratings.dat.gz', readers.read_movielens, 6040, 3706, 1000209),
    ('ml-100k/ml-100k.inter.gz', readers.read_recbole_inter, 943, 1682, 100000),
    (
      'ml-latest-small/ml-latest-small.zip',
      readers.read_ml_latest,
      610,
      9724,
      100836,
    ),
  ],
)
def test_real_rating_files(data_dir, path, reader, users, items, events):
  x = reader(data_dir / path)
  assert (len(np.unique(x.user)), len(np.unique(x.item)), len(x)) == (
    users,
    items,
    events,
  )


def test_real_sequence_files(data_dir):
  seqs = readers.read_iclrec_txt(data_dir / 'iclrec_seq/Beauty.txt.gz')
  assert len(seqs) == 22363 and sum(map(len, seqs)) == 198502
  d = readers.read_seq_pickle(
    data_dir / 'diffurec_amazon_beauty/dataset.pkl.gz'
  )
  # DiffuRec's Beauty is ICLRec's Beauty (data README): same sequences.
  assert all(
    np.array_equal(np.concatenate([t, [v, s]]), q)
    for t, v, s, q in zip(d['train'], d['val'], d['test'], seqs, strict=True)
  )
  items, times = readers.read_ticoserec(
    data_dir / 'ticoserec_amazon_time/Beauty_item_org_rank.txt.gz',
    data_dir / 'ticoserec_amazon_time/Beauty_time_org_rank.txt.gz',
  )
  assert [len(s) for s in items] == [len(s) for s in seqs]
  assert min(t.min() for t in times) == 1023840000
  pairs = readers.read_npy_pairs(
    data_dir / 'diffrec_ml-1m_clean/test_list.npy.gz'
  )
  assert pairs.shape == (57532, 2)
