"""The registry: real datasets' counts, checksums, and the ml-100k fallback."""

import hashlib
import zipfile

import numpy as np
import pytest

from jaxrec.data import readers, registry

# name: (users, items, train, valid, test) as in the data README.
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
}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))


def test_every_shared_folder_is_registered():
  folders = {
    f.path.split('/')[0] for s in registry.DATASETS.values() for f in s.files
  }
  assert folders >= {
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


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_real_dataset_counts(data_dir, monkeypatch, name):
  monkeypatch.setenv('JAXREC_DATA', str(data_dir))
  s = registry.get_split(name)
  got = (s.n_users, s.n_items, s.train.nnz, s.valid.nnz, s.test.nnz)
  assert got == EXPECTED[name]


@pytest.mark.parametrize('name', ['ml-100k', 'ml-1m-raw', 'ml-latest-small'])
def test_rating_recipes(data_dir, monkeypatch, name):
  monkeypatch.setenv('JAXREC_DATA', str(data_dir))
  s = registry.get_split(name)
  assert s.kind == 'cf' and s.exclude_test == 'train+valid'
  counts = np.bincount(s.train.items, minlength=s.n_items)
  counts += np.bincount(s.valid.items, minlength=s.n_items)
  counts += np.bincount(s.test.items, minlength=s.n_items)
  assert counts.min() >= 5  # 5-core on items
  lengths = s.train.lengths + s.valid.lengths + s.test.lengths
  assert lengths.min() >= 5
  assert len(s.item_ids) == s.n_items and len(s.user_ids) == s.n_users


def test_unknown_name_and_missing_file(monkeypatch, tmp_path):
  with pytest.raises(KeyError, match="unknown dataset 'beuty'"):
    registry.get_split('beuty')
  monkeypatch.setenv('JAXREC_DATA', str(tmp_path / 'empty'))
  with pytest.raises(readers.DataError) as e:
    registry.get_split('beauty')
  msg = str(e.value)
  assert 'diffurec_amazon_beauty/dataset.pkl.gz' in msg
  assert '21a320605dff9389' in msg and 'WHUIR/DiffuRec' in msg


def test_corrupt_file_is_refused(monkeypatch, tmp_path):
  bad = tmp_path / 'data' / 'adrec_ml-100k' / 'dataset.pkl.gz'
  bad.parent.mkdir(parents=True)
  bad.write_bytes(b'not the real file')
  monkeypatch.setenv('JAXREC_DATA', str(tmp_path / 'data'))
  with pytest.raises(readers.DataError, match=r'sha256 [0-9a-f]+ does not'):
    registry.get_split('adrec-ml-100k')


def _fake_wheel(path, body: bytes):
  with zipfile.ZipFile(path, 'w') as z:
    z.writestr(
      registry.RECBOLE_MEMBER, b'user_id:token\titem_id:token\n' + body
    )
  return path


def test_ml100k_falls_back_to_the_wheel(monkeypatch, tmp_path):
  body = b'1\t2\t5\t881250949\n'

  def offline(timeout):
    raise OSError('network unreachable')

  monkeypatch.setattr(registry, '_from_grouplens', offline)
  monkeypatch.setattr(
    registry, '_pip_download', lambda d: _fake_wheel(tmp_path / 'r.whl', body)
  )
  monkeypatch.setattr(
    registry,
    'ML100K_UDATA',
    registry.FileSpec('ml-100k/u.data', hashlib.sha256(body).hexdigest()),
  )
  path = registry.fetch_ml100k(tmp_path / 'cache')
  assert path.read_bytes() == body
  # A wheel whose data differ from the official file is refused.
  monkeypatch.setattr(
    registry,
    '_pip_download',
    lambda d: _fake_wheel(tmp_path / 'x.whl', b'1\t2\t4\t1\n'),
  )
  with pytest.raises(readers.DataError, match='refusing it'):
    registry.fetch_ml100k(tmp_path / 'cache2')
