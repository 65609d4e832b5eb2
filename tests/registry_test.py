"""The registry: real datasets' counts, checksums, and the ml-100k fallback."""

import hashlib
import pathlib
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from jaxrec.data import readers, registry

# name: (users, items, train, valid, test) as in the data README (ICLRec and
# TiCoSeRec: leave-one-out of the README's sequences).
EXPECTED = {
  'beauty': (22363, 12101, 153776, 22363, 22363),
  'ml-1m': (6040, 3706, 988129, 6040, 6040),
  'adrec-baby': (11761, 4731, 69301, 11761, 11761),
  'adrec-beauty': (10553, 6086, 73042, 10553, 10553),
  'adrec-sports': (22686, 12301, 140346, 22686, 22686),
  'adrec-ml-100k': (938, 1008, 52537, 938, 938),
  'diffrec-ml-1m-clean': (5949, 2810, 403277, 110722, 57532),
  'diffrec-ml-1m-noisy': (5949, 3494, 429993, 130772, 57532),
  'iclrec-beauty': (22363, 12101, 198502 - 2 * 22363, 22363, 22363),
  'iclrec-sports': (35598, 18357, 296337 - 2 * 35598, 35598, 35598),
  'iclrec-yelp': (30431, 20033, 316354 - 2 * 30431, 30431, 30431),
  'beauty-time': (22363, 12101, 198502 - 2 * 22363, 22363, 22363),
  'sports-time': (35598, 18357, 296337 - 2 * 35598, 35598, 35598),
  # The rating recipe (>= 4, 5-core, 8:1:1), computed here; ml-100k's
  # users / items / events equal ADRec's ml-100k (938 / 1008 / 54413).
  'ml-100k': (938, 1008, 44287, 5063, 5063),
  'ml-1m-raw': (6034, 3125, 464848, 54764, 54764),
  'ml-latest-small': (601, 1955, 33479, 3874, 3874),
}
SEQUENTIAL = {n for n in EXPECTED if not n.startswith(('diffrec', 'ml-'))}
SEQUENTIAL.add('ml-1m')


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
  """No test touches the real user cache or sees the caller's data dir."""
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
  monkeypatch.delenv('JAXREC_DATA', raising=False)


@pytest.fixture(scope='module')
def splits_by_name(request):
  """Every real dataset loaded once for this module (needs JAXREC_DATA)."""
  root = request.getfixturevalue('data_dir')
  return {name: registry.get_split(name, root) for name in EXPECTED}


def test_every_shared_folder_and_name_is_registered():
  assert set(registry.DATASETS) == set(EXPECTED)
  folders = {
    f.path.split('/')[0] for s in registry.DATASETS.values() for f in s.files
  }
  assert folders == {
    'diffurec_amazon_beauty',
    'diffurec_ml-1m',
    'adrec_baby',
    'adrec_beauty',
    'adrec_sports',
    'adrec_ml-100k',
    'diffrec_ml-1m_clean',
    'diffrec_ml-1m_noisy',
    'iclrec_seq',
    'ticoserec_amazon_time',
    'ml-100k',
    'ml-1m',
    'ml-latest-small',
  }
  for s in registry.DATASETS.values():
    assert s.description and s.protocol and s.paper and s.source, s.name
    for f in s.files:
      assert len(f.sha256) == 64 and int(f.sha256, 16) >= 0
  assert 'rating >= 4' in registry.DATASETS['ml-100k'].description
  assert 'ml-100k' in registry.describe()


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_real_dataset_counts(splits_by_name, name):
  s = splits_by_name[name]
  got = (s.n_users, s.n_items, s.train.nnz, s.valid.nnz, s.test.nnz)
  assert got == EXPECTED[name]
  assert s.name == name
  if name in SEQUENTIAL:
    assert (s.kind, s.exclude_valid, s.exclude_test) == (
      'sequential',
      'none',
      'none',
    )
  else:
    assert (s.kind, s.exclude_valid, s.exclude_test) == (
      'cf',
      'train',
      'train+valid',
    )


def test_real_same_data_same_hash(splits_by_name):
  # DiffuRec's Beauty is ICLRec's Beauty split the same way.
  assert (
    splits_by_name['beauty'].content_hash
    == splits_by_name['iclrec-beauty'].content_hash
  )
  assert (
    len({s.content_hash for s in splits_by_name.values()}) == len(EXPECTED) - 1
  )


@pytest.mark.parametrize('name', ['ml-100k', 'ml-1m-raw', 'ml-latest-small'])
def test_real_rating_recipes(splits_by_name, name):
  s = splits_by_name[name]
  counts = sum(
    np.bincount(p.items, minlength=s.n_items)
    for p in (s.train, s.valid, s.test)
  )
  assert counts.min() >= 5  # 5-core on items
  lengths = s.train.lengths + s.valid.lengths + s.test.lengths
  assert lengths.min() >= 5  # and on users
  assert len(s.item_ids) == s.n_items and len(s.user_ids) == s.n_users
  assert (s.train.lengths >= 3).all() and (s.test.lengths >= 1).all()
  for p in (s.train, s.valid, s.test):  # chronological within each user
    d = np.diff(p.timestamps)
    same_user = np.diff(p.users) == 0
    assert (d[same_user] >= 0).all()


def test_real_timestamps_kept_in_time_splits(splits_by_name):
  s = splits_by_name['beauty-time']
  assert s.test.timestamps.min() >= s.train.timestamps.min()
  assert s.train.timestamps is not None and len(s.test.timestamps) == 22363


def test_unknown_name_lists_known_names():
  with pytest.raises(KeyError, match="unknown dataset 'beuty'.*'beauty'"):
    registry.get_split('beuty')


def test_data_dir_resolution(monkeypatch, tmp_path):
  assert registry.data_dir() == tmp_path / 'cache' / 'jaxrec'
  monkeypatch.setenv('JAXREC_DATA', str(tmp_path / 'd'))
  assert registry.data_dir() == tmp_path / 'd'
  assert registry.search_dirs() == [tmp_path / 'd', tmp_path / 'cache/jaxrec']
  assert registry.search_dirs(tmp_path / 'x')[0] == tmp_path / 'x'
  monkeypatch.delenv('JAXREC_DATA')
  monkeypatch.delenv('XDG_CACHE_HOME')
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  assert registry.data_dir() == tmp_path / 'home/.cache/jaxrec'


def test_missing_file_says_where_to_put_it(monkeypatch, tmp_path):
  monkeypatch.setenv('JAXREC_DATA', str(tmp_path / 'empty'))
  with pytest.raises(readers.DataError) as e:
    registry.get_split('beauty')
  msg = str(e.value)
  assert 'diffurec_amazon_beauty/dataset.pkl.gz' in msg
  assert (
    '21a320605dff9389ef54805eb3dcb8f96139adb61e84847823e8f1bae2fd6879' in msg
  )
  assert str(tmp_path / 'empty') in msg and str(tmp_path / 'cache') in msg
  assert f'at {tmp_path}/empty/diffurec_amazon_beauty/dataset.pkl.gz' in msg
  assert 'https://github.com/WHUIR/DiffuRec' in msg


def _place(root: pathlib.Path, rel: str, data: bytes) -> pathlib.Path:
  path = root / rel
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(data)
  return path


def test_corrupt_file_is_refused(tmp_path):
  bad = _place(tmp_path / 'data', 'adrec_ml-100k/dataset.pkl.gz', b'wrong')
  actual = hashlib.sha256(b'wrong').hexdigest()
  with pytest.raises(readers.DataError) as e:
    registry.get_split('adrec-ml-100k', tmp_path / 'data')
  msg = str(e.value)
  assert str(bad) in msg and f'sha256 {actual} does not match' in msg
  assert (
    '1da6143f80a33c79880fe58d52ac0684357898bd09c57cf3b8e84f6a9fcfc776' in msg
  )


def test_verification_is_cached_per_file_version(monkeypatch, tmp_path):
  calls = []
  real = registry.sha256_of
  monkeypatch.setattr(
    registry, 'sha256_of', lambda p: calls.append(p) or real(p)
  )
  path = _place(tmp_path, 'f.bin', b'abc')
  sha = hashlib.sha256(b'abc').hexdigest()
  registry.verify(path, sha)
  registry.verify(path, sha)
  assert len(calls) == 1
  path.write_bytes(b'abcd')  # a new version is hashed again, and refused
  with pytest.raises(readers.DataError, match='does not match'):
    registry.verify(path, sha)
  assert len(calls) == 2


# ------------------------------------------------------- ml-100k fallback --
def _fake_wheel(path, inter: bytes):
  with zipfile.ZipFile(path, 'w') as z:
    z.writestr('recbole/__init__.py', 'raise ImportError("never import")\n')
    z.writestr(registry.RECBOLE_MEMBER, inter)
  return path


_HEADER = b'user_id:token\titem_id:token\trating:float\ttimestamp:float\n'


def _offline(timeout):
  raise OSError(f'network unreachable (timeout {timeout})')


def test_ml100k_falls_back_to_the_wheel(monkeypatch, tmp_path):
  body = b'1\t2\t5\t881250949\n3\t4\t1\t881250950\n'
  wheel = _fake_wheel(
    tmp_path / 'recbole-1.2.1-py3-none-any.whl', _HEADER + body
  )
  monkeypatch.setattr(registry, '_from_grouplens', _offline)
  monkeypatch.setattr(registry, '_pip_download', lambda d: wheel)
  monkeypatch.setattr(
    registry,
    'ML100K_UDATA',
    registry.FileSpec('ml-100k/u.data', hashlib.sha256(body).hexdigest()),
  )
  path = registry.fetch_ml100k(tmp_path / 'c')
  assert path == tmp_path / 'c/ml-100k/u.data'
  assert path.read_bytes() == body
  assert readers.read_movielens(path).item.tolist() == [2, 4]
  assert 'recbole' not in sys.modules


def test_ml100k_wheel_with_other_data_is_refused(monkeypatch, tmp_path):
  wheel = _fake_wheel(tmp_path / 'x.whl', _HEADER + b'1\t2\t4\t1\n')
  monkeypatch.setattr(registry, '_from_grouplens', _offline)
  monkeypatch.setattr(registry, '_pip_download', lambda d: wheel)
  with pytest.raises(readers.DataError, match='x.whl: u.data has sha256 .*ref'):
    registry.fetch_ml100k(tmp_path / 'c')
  assert not (tmp_path / 'c/ml-100k/u.data').exists()
  no_member = tmp_path / 'y.whl'
  with zipfile.ZipFile(no_member, 'w') as z:
    z.writestr('recbole/__init__.py', '')
  monkeypatch.setattr(registry, '_pip_download', lambda d: no_member)
  with pytest.raises(readers.DataError, match=r'y\.whl: no recbole/dataset_'):
    registry.fetch_ml100k(tmp_path / 'c')


def test_ml100k_pip_failure_is_a_data_error(monkeypatch, tmp_path):
  def fail(cmd, **kw):
    assert cmd[1:4] == ['-m', 'pip', 'download'] and 'recbole==1.2.1' in cmd
    assert '--no-deps' in cmd and '--only-binary=:all:' in cmd
    return subprocess.CompletedProcess(cmd, 1, '', 'ERROR: no network')

  monkeypatch.setattr(registry, '_from_grouplens', _offline)
  monkeypatch.setattr(subprocess, 'run', fail)
  with pytest.raises(readers.DataError, match='pip download .*no network'):
    registry.fetch_ml100k(tmp_path / 'c')


def test_ml100k_lookup_order(monkeypatch, tmp_path):
  fetched = []

  def fake_fetch(cache, timeout=10.0):
    fetched.append(cache)
    return _place(cache, 'ml-100k/u.data', b'x')

  monkeypatch.setattr(registry, 'fetch_ml100k', fake_fetch)
  monkeypatch.setattr(
    registry,
    'ML100K_UDATA',
    registry.FileSpec('ml-100k/u.data', hashlib.sha256(b'x').hexdigest()),
  )
  # Nothing anywhere: fetched into the user cache.
  path = registry._ml100k_path()
  assert fetched == [tmp_path / 'cache/jaxrec']
  assert path == tmp_path / 'cache/jaxrec/ml-100k/u.data'
  # Then found in the cache without fetching again.
  assert registry._ml100k_path() == path and len(fetched) == 1
  # The .inter.gz in the data dir comes first (and is verified).
  inter = _place(tmp_path / 'data', registry.ML100K_INTER.path, b'y')
  monkeypatch.setenv('JAXREC_DATA', str(tmp_path / 'data'))
  with pytest.raises(readers.DataError, match=f'{inter}: sha256'):
    registry._ml100k_path()
