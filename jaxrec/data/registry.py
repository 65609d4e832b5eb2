"""Named datasets: their files, checksums, readers and protocols.

`get_split(name)` is how every experiment obtains data. Files are looked up
under the data directory (`$JAXREC_DATA`, else the user cache
`$XDG_CACHE_HOME/jaxrec` or `~/.cache/jaxrec`), laid out as in the shared
data README (e.g. `diffurec_amazon_beauty/dataset.pkl.gz`). Every file's
sha256 is checked before it is read. A missing file is an error that names
the file, its sha256, the folders searched and its official source.

The quick-start `ml-100k` also works with neither: `fetch_ml100k` puts the
official `u.data` into the user cache, from GroupLens when reachable, else
out of the `recbole==1.2.1` wheel on PyPI (`pip download --no-deps`; only the
data file is read, recbole is never imported), checking its sha256.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import os
import pathlib
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from typing import Callable

from absl import logging

from jaxrec.data import preprocess, readers, splits, types

DataError = readers.DataError


@dataclasses.dataclass(frozen=True)
class FileSpec:
  """One file: path under the data dir, sha256 of the stored bytes."""

  path: str
  sha256: str


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """A named dataset.

  Attributes:
    name: registry name.
    files: candidate files; `build` receives the resolved paths in order.
    build: (name, paths) -> Split.
    description: source, preprocessing and protocol in one paragraph.
    source: where the files officially come from.
  """

  name: str
  files: tuple[FileSpec, ...]
  build: Callable[[str, list[pathlib.Path]], types.Split]
  description: str
  source: str


DATASETS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
  if spec.name in DATASETS:
    raise ValueError(f'dataset {spec.name!r} is registered twice')
  DATASETS[spec.name] = spec
  return spec


def data_dirs() -> list[pathlib.Path]:
  """Where files are looked for, in order: $JAXREC_DATA, the user cache."""
  dirs = []
  if os.environ.get('JAXREC_DATA'):
    dirs.append(pathlib.Path(os.environ['JAXREC_DATA']).expanduser())
  dirs.append(cache_dir())
  return dirs


def cache_dir() -> pathlib.Path:
  base = os.environ.get('XDG_CACHE_HOME') or pathlib.Path.home() / '.cache'
  return pathlib.Path(base) / 'jaxrec'


def sha256_of(path: os.PathLike) -> str:
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      h.update(block)
  return h.hexdigest()


@functools.lru_cache(maxsize=None)
def _verified(path: str, mtime_ns: int, size: int, sha256: str) -> bool:
  del mtime_ns, size  # part of the cache key: a changed file is re-hashed
  actual = sha256_of(path)
  if actual != sha256:
    raise DataError(
      f'{path}: sha256 {actual} does not match the expected {sha256}; the'
      ' file is corrupt or a different version. Replace it with the'
      ' official file.'
    )
  return True


def verify(path: pathlib.Path, sha256: str) -> pathlib.Path:
  """Checks `path` against `sha256` (once per process per file version)."""
  st = path.stat()
  _verified(str(path), st.st_mtime_ns, st.st_size, sha256)
  return path


def resolve(spec: DatasetSpec, f: FileSpec) -> pathlib.Path:
  """The verified path of `f`, or a DataError saying where to put it."""
  searched = []
  for d in data_dirs():
    path = d / f.path
    searched.append(str(path))
    if path.exists():
      return verify(path, f.sha256)
  raise DataError(
    f'dataset {spec.name!r}: file {f.path} (sha256 {f.sha256}) not found;'
    f' searched {searched}. Put the official file there (set JAXREC_DATA to'
    f' your data folder). Source: {spec.source}'
  )


def get_split(name: str) -> types.Split:
  """The Split of dataset `name`."""
  if name not in DATASETS:
    raise KeyError(f'unknown dataset {name!r}; known: {sorted(DATASETS)}')
  spec = DATASETS[name]
  if name == 'ml-100k':
    paths = [_ml100k_path(spec)]
  else:
    paths = [resolve(spec, f) for f in spec.files]
  split = spec.build(name, paths)
  logging.info('dataset %s: %s', name, split.summary())
  return split


def describe() -> str:
  """One paragraph per dataset: files, preprocessing, protocol."""
  return '\n\n'.join(
    f'{s.name}: {s.description}\n  files: {[f.path for f in s.files]}'
    f'\n  source: {s.source}'
    for s in DATASETS.values()
  )


# ---------------------------------------------------------------- ml-100k --
ML100K_INTER = FileSpec(
  'ml-100k/ml-100k.inter.gz',
  '9b437e45bc8f23e6672be54b8f4ad85856ce1667fc74f502a4296d55e40f6203',
)
# The official u.data (also the body of RecBole's ml-100k.inter).
ML100K_UDATA = FileSpec(
  'ml-100k/u.data',
  '06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490',
)
GROUPLENS_ML100K = 'https://files.grouplens.org/datasets/movielens/ml-100k.zip'
RECBOLE_WHEEL = 'recbole==1.2.1'
RECBOLE_MEMBER = 'recbole/dataset_example/ml-100k/ml-100k.inter'


def _ml100k_path(spec: DatasetSpec) -> pathlib.Path:
  """ml-100k from the data dirs, else fetched into the cache."""
  for d in data_dirs():
    for f in (ML100K_INTER, ML100K_UDATA):
      if (d / f.path).exists():
        return verify(d / f.path, f.sha256)
  return fetch_ml100k(cache_dir())


def _write_checked(data: bytes, dest: pathlib.Path, sha256: str, origin: str):
  actual = hashlib.sha256(data).hexdigest()
  if actual != sha256:
    raise DataError(
      f'{origin}: u.data has sha256 {actual}, expected {sha256}; refusing it'
    )
  dest.parent.mkdir(parents=True, exist_ok=True)
  tmp = dest.with_suffix('.tmp')
  tmp.write_bytes(data)
  os.replace(tmp, dest)
  return dest


def _from_grouplens(timeout: float) -> bytes:
  with urllib.request.urlopen(GROUPLENS_ML100K, timeout=timeout) as r:
    raw = r.read()
  with zipfile.ZipFile(io.BytesIO(raw)) as z:
    return z.read('ml-100k/u.data')


def _pip_download(dest: str) -> pathlib.Path:
  """Downloads the recbole wheel (no dependencies) into `dest`."""
  cmd = [
    sys.executable,
    '-m',
    'pip',
    'download',
    '--no-deps',
    '--only-binary=:all:',
    '--disable-pip-version-check',
    '-q',
    '-d',
    dest,
    RECBOLE_WHEEL,
  ]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
  wheels = list(pathlib.Path(dest).glob('recbole-*.whl'))
  if proc.returncode != 0 or not wheels:
    raise DataError(
      f'pip download {RECBOLE_WHEEL} failed ({proc.returncode}):'
      f' {proc.stderr.strip()[-500:]}'
    )
  return wheels[0]


def _from_wheel(wheel: pathlib.Path) -> bytes:
  """u.data = RecBole's ml-100k.inter without its header line."""
  try:
    with zipfile.ZipFile(wheel) as z:
      inter = z.read(RECBOLE_MEMBER)
  except (KeyError, zipfile.BadZipFile) as e:
    raise DataError(f'{wheel}: no {RECBOLE_MEMBER}: {e}') from e
  return inter.split(b'\n', 1)[1]


def fetch_ml100k(cache: pathlib.Path, timeout: float = 10.0) -> pathlib.Path:
  """Puts MovieLens-100K's u.data into `cache`, checked, and returns it."""
  dest = cache / ML100K_UDATA.path
  try:
    logging.info('ml-100k: downloading %s', GROUPLENS_ML100K)
    data = _from_grouplens(timeout)
    return _write_checked(data, dest, ML100K_UDATA.sha256, GROUPLENS_ML100K)
  except (OSError, zipfile.BadZipFile, KeyError) as e:
    logging.info(
      'ml-100k: GroupLens unreachable (%s); using the %s wheel',
      e,
      RECBOLE_WHEEL,
    )
  with tempfile.TemporaryDirectory() as tmp:
    wheel = _pip_download(tmp)
    data = _from_wheel(wheel)
    return _write_checked(data, dest, ML100K_UDATA.sha256, str(wheel))


# ----------------------------------------------------------------- builds --
def _build_seq_pickle(name, paths):
  return splits.from_presplit_sequences(readers.read_seq_pickle(paths[0]), name)


def _build_pairs(name, paths):
  train, valid, test = (readers.read_npy_pairs(p) for p in paths)
  return splits.from_presplit_pairs(train, valid, test, name)


def _build_iclrec(name, paths):
  seqs = readers.read_iclrec_txt(paths[0])
  return splits.leave_one_out([s - 1 for s in seqs], name)


def _build_ticoserec(name, paths):
  seqs, times = readers.read_ticoserec(paths[0], paths[1])
  return splits.leave_one_out([s - 1 for s in seqs], name, times=times)


def ratings_recipe(x: types.Interactions, name: str) -> types.Split:
  """Raw ratings -> rating >= 4, dedupe, 5-core, remap, chronological 8:1:1."""
  x = preprocess.sort_chronological(x)
  x = preprocess.filter_rating(x, 4.0)
  x = preprocess.dedupe(x, keep='first')
  x = preprocess.kcore(x, 5, 5)
  x, user_ids, item_ids = preprocess.remap_ids(x)
  split = splits.per_user_ratio(x, name, (0.8, 0.1, 0.1))
  return dataclasses.replace(split, user_ids=user_ids, item_ids=item_ids)


def _read_ratings(path: pathlib.Path) -> types.Interactions:
  if path.name.endswith('.inter.gz') or path.name.endswith('.inter'):
    return readers.read_recbole_inter(path)
  if path.suffix == '.zip':
    return readers.read_ml_latest(path)
  return readers.read_movielens(path)


def _build_ratings(name, paths):
  return ratings_recipe(_read_ratings(paths[0]), name)


_LOO = 'leave-one-out as released (valid = 2nd-to-last, test = last item);'
_SEQ_PROTOCOL = ' the model reads train (+ valid at test); nothing excluded.'
_CF_PROTOCOL = (
  ' CF protocol: train excluded at valid, train + valid at test; the model'
  ' reads train at both.'
)
_RATINGS = (
  ' Recipe: rating >= 4, dedupe (first), 5-core users and items, ids'
  ' remapped in original order, per-user chronological 8:1:1 (RecBole'
  ' rounding).' + _CF_PROTOCOL
)

for _name, _folder, _sha, _what in (
  (
    'beauty',
    'diffurec_amazon_beauty',
    '21a320605dff9389ef54805eb3dcb8f96139adb61e84847823e8f1bae2fd6879',
    "DiffuRec's Amazon Beauty (= ICLRec Beauty)",
  ),
  (
    'ml-1m',
    'diffurec_ml-1m',
    '53116823b18df71882a4508e146fef1386d281f0f803e6618658602ef4860713',
    "DiffuRec's full MovieLens-1M",
  ),
):
  register(
    DatasetSpec(
      _name,
      (FileSpec(f'{_folder}/dataset.pkl.gz', _sha),),
      _build_seq_pickle,
      f'{_what}; {_LOO}{_SEQ_PROTOCOL}',
      'github.com/WHUIR/DiffuRec datasets/data/*/dataset.pkl',
    )
  )

for _name, _sha in (
  ('baby', 'c72675fc43deb3f1800810d03fbfaa4ac7c657879697619cfb859483d875d5cc'),
  (
    'beauty',
    '54336e1b4c098598a749cdbfeb0a5de8d92db8a507ac92492af7b02793df2609',
  ),
  (
    'sports',
    '73d2461bb0f58c87e16c7014d864dd6399fc40848c105f29b227e563d13ed5da',
  ),
  (
    'ml-100k',
    '1da6143f80a33c79880fe58d52ac0684357898bd09c57cf3b8e84f6a9fcfc776',
  ),
):
  register(
    DatasetSpec(
      f'adrec-{_name}',
      (FileSpec(f'adrec_{_name}/dataset.pkl.gz', _sha),),
      _build_seq_pickle,
      f"ADRec's {_name} (rating > 3, 5-core); {_LOO}{_SEQ_PROTOCOL}",
      'github.com/Nemo-1024/ADRec datasets/data/*/dataset.pkl',
    )
  )

_DIFFREC = {
  'clean': (
    'c71d38bb35e7e4040c58e10bbaa61c351e016bf7c7592d82278ad31a1c4362ee',
    '51986c35ee5d6dc3e0abcb5e5fc33ac812f287e11c0ea46873815029ac42f482',
    'c8c0e7284aff1be8baebca0f1b1394f299788c353bc5b11bdc3299f7bb108d78',
  ),
  'noisy': (
    '438ebbd3e64561696c12c4a4cc170944c14aefbe362ff6472f79fc448f088199',
    '3b5366b07aebbddacf6cc74d735cd2e3e4e49d8132ebe2394df63ee2a64c5483',
    '23da84f20cc1a5f6d2c401733437a22675bb22fbd1ffcac3488e0db45c01ce01',
  ),
}
for _name, _shas in _DIFFREC.items():
  register(
    DatasetSpec(
      f'diffrec-ml-1m-{_name}',
      tuple(
        FileSpec(f'diffrec_ml-1m_{_name}/{part}_list.npy.gz', sha)
        for part, sha in zip(('train', 'valid', 'test'), _shas, strict=True)
      ),
      _build_pairs,
      f"DiffRec's ML-1M {_name} setting (also DDRM's ML-1M), pre-split by time"
      ' as released; n_items = largest train id + 1.'
      + _CF_PROTOCOL
      + ' Recall = hits/|GT| (DiffRec).',
      'github.com/YiyanXu/DiffRec datasets/ml-1m_*.rar',
    )
  )

for _name, _file, _sha in (
  (
    'beauty',
    'Beauty',
    'd90327e98288647f5bae59c0dba82e153af2d940eafb7540f4b05185e108d0fe',
  ),
  (
    'sports',
    'Sports_and_Outdoors',
    'e7c618d95a4d2975ac546950a87a5906efc9956df722be01a2af724638faf527',
  ),
  (
    'yelp',
    'Yelp',
    'a81963e5a94fd772d64b1d240154674fc64ebbc4c46cfd2d85cd80b90d44cf10',
  ),
):
  register(
    DatasetSpec(
      f'iclrec-{_name}',
      (FileSpec(f'iclrec_seq/{_file}.txt.gz', _sha),),
      _build_iclrec,
      f'ICLRec/S3-Rec {_file} (5-core); leave-one-out.' + _SEQ_PROTOCOL,
      'github.com/salesforce/ICLRec data/*.txt',
    )
  )

for _name, _file, _shas in (
  (
    'beauty',
    'Beauty',
    (
      '94e4a045a4b535c0b650d68b88fc9e9e57d72fc76dd8cb2647d9e979b6667992',
      '8e26b8b6a3067bf5dca0568a79547a127dab723c24ee845acb68d5d3373e8f61',
    ),
  ),
  (
    'sports',
    'Sports',
    (
      'b48b372262499d7a98d4c17c212bcfc371533fc1fb1beb877a9241f21d6ba195',
      '5078a0920c96f6f8c41fe8d4cc6d8c824efc16e5f868732f60434f6c780918b6',
    ),
  ),
):
  register(
    DatasetSpec(
      f'{_name}-time',
      (
        FileSpec(
          f'ticoserec_amazon_time/{_file}_item_org_rank.txt.gz', _shas[0]
        ),
        FileSpec(
          f'ticoserec_amazon_time/{_file}_time_org_rank.txt.gz', _shas[1]
        ),
      ),
      _build_ticoserec,
      f'TiCoSeRec Amazon {_file} with timestamps (same users as ICLRec, other'
      ' item ids); leave-one-out, timestamps kept.' + _SEQ_PROTOCOL,
      'github.com/KingGugu/TiCoSeRec data/*/*_org_rank.txt',
    )
  )

register(
  DatasetSpec(
    'ml-100k',
    (ML100K_INTER, ML100K_UDATA),
    _build_ratings,
    'MovieLens-100K ratings (quick-start; fetched if absent).' + _RATINGS,
    f'{GROUPLENS_ML100K}, or {RECBOLE_MEMBER} in the {RECBOLE_WHEEL} wheel',
  )
)
register(
  DatasetSpec(
    'ml-1m-raw',
    (
      FileSpec(
        'ml-1m/ratings.dat.gz',
        '8480a661c948a691129ebacc1768da0ba68e1a8500a8b69251e29f21d246e1a7',
      ),
    ),
    _build_ratings,
    'MovieLens-1M ratings.dat.' + _RATINGS,
    'https://files.grouplens.org/datasets/movielens/ml-1m.zip',
  )
)
register(
  DatasetSpec(
    'ml-latest-small',
    (
      FileSpec(
        'ml-latest-small/ml-latest-small.zip',
        '696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436',
      ),
    ),
    _build_ratings,
    'MovieLens latest-small (2018-09) ratings.csv.' + _RATINGS,
    'https://files.grouplens.org/datasets/movielens/ml-latest-small.zip',
  )
)
