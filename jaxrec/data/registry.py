"""Named datasets: their files, checksums, readers and protocols.

`get_split(name)` is how every experiment obtains data. Files are looked up
under the data directory (`data_dir()`: `$JAXREC_DATA`, else the user cache
`$XDG_CACHE_HOME/jaxrec` or `~/.cache/jaxrec`), laid out as in the shared
data README (e.g. `diffurec_amazon_beauty/dataset.pkl.gz`); the user cache
is searched after `$JAXREC_DATA`. Every file's sha256 (of the stored bytes)
is checked before it is read, once per process and file version. A missing
file is an error that names the file, its sha256, the folders searched,
where to put it and its official source.

The quick-start `ml-100k` also works on a fresh machine with neither:
`fetch_ml100k` puts the official `u.data` into the user cache, from
GroupLens when reachable, else out of the `recbole==1.2.1` wheel on PyPI
(`pip download --no-deps`; only the data file is read, recbole is never
imported), checking its sha256 either way.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.client
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
    files: the files `build` reads, resolved and verified in this order.
    build: (name, paths) -> Split: reader + preprocessing + split.
    description: one line: what the data are and how they are prepared.
    protocol: the split and ranking protocol.
    paper: the paper whose numbers this dataset reproduces.
    source: where the files officially come from (for error messages).
    extras: side files a model may read (`get_extra`), e.g. the item
      embeddings L-DiffRec clusters; not read by `build`.
  """

  name: str
  files: tuple[FileSpec, ...]
  build: Callable[[str, list[pathlib.Path]], types.Split]
  description: str
  protocol: str
  paper: str
  source: str
  extras: tuple[FileSpec, ...] = ()


DATASETS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
  """Adds `spec` to DATASETS; a name may be registered once."""
  if spec.name in DATASETS:
    raise ValueError(f'dataset {spec.name!r} is registered twice')
  DATASETS[spec.name] = spec
  return spec


def cache_dir() -> pathlib.Path:
  """The user cache: $XDG_CACHE_HOME/jaxrec, else ~/.cache/jaxrec."""
  base = os.environ.get('XDG_CACHE_HOME') or pathlib.Path.home() / '.cache'
  return pathlib.Path(base).expanduser() / 'jaxrec'


def data_dir() -> pathlib.Path:
  """$JAXREC_DATA if set, else the user cache."""
  env = os.environ.get('JAXREC_DATA')
  return pathlib.Path(env).expanduser() if env else cache_dir()


def search_dirs(root: os.PathLike | None = None) -> list[pathlib.Path]:
  """Where files are looked for, in order: `root` or data_dir(), the cache."""
  first = pathlib.Path(root).expanduser() if root else data_dir()
  return list(dict.fromkeys([first, cache_dir()]))


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


def resolve(
  spec: DatasetSpec, f: FileSpec, root: os.PathLike | None = None
) -> pathlib.Path:
  """The verified path of `f`, or a DataError saying where to put it."""
  dirs = search_dirs(root)
  for d in dirs:
    path = d / f.path
    if path.exists():
      return verify(path, f.sha256)
  raise DataError(
    f'dataset {spec.name!r}: file {f.path} (sha256 {f.sha256}) not found;'
    f' searched {[str(d) for d in dirs]}. Put the official file at'
    f' {dirs[0] / f.path} (or set JAXREC_DATA to the folder that holds'
    f' {f.path}). Official source: {spec.source}'
  )


def get_split(name: str, data_dir: os.PathLike | None = None) -> types.Split:
  """The Split of dataset `name`.

  Args:
    name: a key of DATASETS.
    data_dir: the folder to look in first; default `data_dir()`.

  Returns:
    The checked Split.

  Raises:
    KeyError: unknown name (the message lists the known ones).
    DataError: a file is missing, has the wrong sha256 or is malformed.
  """
  if name not in DATASETS:
    raise KeyError(f'unknown dataset {name!r}; known: {sorted(DATASETS)}')
  spec = DATASETS[name]
  if name == 'ml-100k':
    paths = [_ml100k_path(data_dir)]
  else:
    paths = [resolve(spec, f, data_dir) for f in spec.files]
  split = spec.build(name, paths)
  logging.info('dataset %s: %s', name, split.summary())
  return split


def get_extra(name: str, filename: str, data_dir=None) -> pathlib.Path:
  """The verified path of dataset `name`'s side file `filename` (the last
  component of its path, e.g. 'item_emb.npy.gz'); KeyError if it has none."""
  if name not in DATASETS:
    raise KeyError(f'unknown dataset {name!r}; known: {sorted(DATASETS)}')
  spec = DATASETS[name]
  for f in spec.extras:
    if f.path.rsplit('/', 1)[-1] == filename:
      return resolve(spec, f, data_dir)
  known = [f.path.rsplit('/', 1)[-1] for f in spec.extras]
  raise KeyError(
    f'dataset {name!r} has no side file {filename!r}; it has {known}'
  )


def describe() -> str:
  """One paragraph per dataset: files, preprocessing, protocol."""
  return '\n\n'.join(
    f'{s.name}: {s.description}\n  protocol: {s.protocol}'
    f'\n  paper: {s.paper}\n  files: {[f.path for f in s.files]}'
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


def _ml100k_path(root: os.PathLike | None = None) -> pathlib.Path:
  """ml-100k: the .inter.gz or u.data in the search dirs, else fetched."""
  for d in search_dirs(root):
    for f in (ML100K_INTER, ML100K_UDATA):
      if (d / f.path).exists():
        logging.info('ml-100k: using %s', d / f.path)
        return verify(d / f.path, f.sha256)
  return fetch_ml100k(cache_dir())


def _write_checked(data: bytes, dest: pathlib.Path, sha256: str, origin: str):
  actual = hashlib.sha256(data).hexdigest()
  if actual != sha256:
    raise DataError(
      f'{origin}: u.data has sha256 {actual}, expected {sha256}; refusing it'
    )
  dest.parent.mkdir(parents=True, exist_ok=True)
  tmp = dest.with_name(f'{dest.name}.{os.getpid()}.tmp')
  tmp.write_bytes(data)
  os.replace(tmp, dest)  # atomic: a concurrent reader sees all or nothing
  logging.info('ml-100k: wrote %s (sha256 verified)', dest)
  return dest


def _from_grouplens(timeout: float) -> bytes:
  """u.data out of the official zip (raises OSError when offline)."""
  with urllib.request.urlopen(GROUPLENS_ML100K, timeout=timeout) as r:
    raw = r.read()
  with zipfile.ZipFile(io.BytesIO(raw)) as z:
    return z.read('ml-100k/u.data')


def _pip_download(dest: str, timeout: float = 300.0) -> pathlib.Path:
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
  logging.info('ml-100k: running %s', ' '.join(cmd))
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
  except (OSError, subprocess.TimeoutExpired) as e:
    raise DataError(f'pip download {RECBOLE_WHEEL} failed: {e}') from e
  wheels = sorted(pathlib.Path(dest).glob('recbole-*.whl'))
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
  except (OSError, KeyError, zipfile.BadZipFile) as e:
    raise DataError(f'{wheel}: no {RECBOLE_MEMBER}: {e}') from e
  header, sep, body = inter.partition(b'\n')
  if not sep or not header.startswith(b'user_id'):
    raise DataError(f'{wheel}[{RECBOLE_MEMBER}]: no RecBole header line')
  return body


def fetch_ml100k(cache: pathlib.Path, timeout: float = 10.0) -> pathlib.Path:
  """Puts MovieLens-100K's u.data into `cache`, checked, and returns it.

  Tries GroupLens (urllib, `timeout` seconds), then the recbole wheel from
  PyPI; both must give the official u.data (sha256 ML100K_UDATA.sha256).

  Args:
    cache: the user cache folder (u.data goes to cache/ml-100k/u.data).
    timeout: seconds for the GroupLens request.

  Returns:
    The path of the verified u.data.
  """
  dest = cache / ML100K_UDATA.path
  try:
    logging.info('ml-100k: downloading %s', GROUPLENS_ML100K)
    data = _from_grouplens(timeout)
    return _write_checked(data, dest, ML100K_UDATA.sha256, GROUPLENS_ML100K)
  except (
    OSError,
    http.client.HTTPException,
    zipfile.BadZipFile,
    KeyError,
    DataError,
  ) as e:
    logging.warning(
      'ml-100k: GroupLens failed (%s); trying the %s wheel from PyPI',
      e,
      RECBOLE_WHEEL,
    )
  with tempfile.TemporaryDirectory() as tmp:
    wheel = _pip_download(tmp)
    logging.info('ml-100k: extracting %s from %s', RECBOLE_MEMBER, wheel)
    data = _from_wheel(wheel)
    return _write_checked(data, dest, ML100K_UDATA.sha256, str(wheel))


# ----------------------------------------------------------------- builds --
def _build_seq_pickle(name, paths):
  d = readers.read_seq_pickle(paths[0])
  return splits.from_presplit_sequences(
    d['train'],
    d['val'],
    d['test'],
    name,
    n_items=d['n_items'],
    user_ids=d.get('user_ids'),
    item_ids=d.get('item_ids'),
  )


def _build_pairs(name, paths):
  train, valid, test = (readers.read_npy_pairs(p) for p in paths)
  return splits.from_presplit_pairs(train, valid, test, name)


def _build_iclrec(name, paths):
  seqs = readers.read_iclrec_txt(paths[0])
  return splits.leave_one_out([s - 1 for s in seqs], name)


def _build_ticoserec(name, paths):
  x = readers.read_ticoserec(paths[0], paths[1])
  _, seqs, times = preprocess.to_sequences(x)  # users 1..U, in file order
  return splits.leave_one_out([s - 1 for s in seqs], name, times=times)


def ratings_recipe(x: types.Interactions, name: str) -> types.Split:
  """Raw ratings -> rating >= 4, dedupe, 5-core, remap, chronological 8:1:1."""
  x = preprocess.filter_rating(x, 4.0)
  x = preprocess.dedupe(x, keep='first')
  x = preprocess.kcore(x, 5, 5)
  x, user_ids, item_ids = preprocess.remap_ids(x)
  split = splits.per_user_ratio(x, (0.8, 0.1, 0.1), name)
  return dataclasses.replace(split, user_ids=user_ids, item_ids=item_ids)


def _read_ratings(path: pathlib.Path) -> types.Interactions:
  if path.name.endswith(('.inter', '.inter.gz')):
    return readers.read_recbole_inter(path)
  if path.suffix == '.zip':
    return readers.read_ml_latest_csv(path)
  return readers.read_movielens(path)


def _build_ratings(name, paths):
  return ratings_recipe(_read_ratings(paths[0]), name)


_SEQ_PROTOCOL = (
  'sequential leave-one-out: valid = second-to-last, test = last item; the'
  ' model reads train at valid and train + valid at test; nothing excluded'
  ' from the ranking'
)
_CF_PROTOCOL = (
  'CF: the model reads train at valid and test; train excluded from the'
  ' ranking at valid, train + valid at test'
)
_RECIPE = (
  'recipe: keep rating >= 4; dedupe (user, item) keeping the earliest;'
  ' iterative 5-core on users and items; ids renumbered in increasing'
  ' original id; per user chronological 8:1:1 with RecBole rounding'
  ' (n = 5 -> 3/1/1)'
)
_DIFFUREC = (
  'Li, Sun, Li. DiffuRec: A Diffusion Model for Sequential Recommendation.'
  ' ACM TOIS 2024 (arXiv 2304.00686)'
)
_ADREC = (
  'Chen, Xu, Jiang. Unlocking the Power of Diffusion Models in Sequential'
  ' Recommendation (ADRec). KDD 2025 (arXiv 2505.19544)'
)
_DIFFREC = (
  'Wang et al. Diffusion Recommender Model (DiffRec). SIGIR 2023 (arXiv'
  ' 2304.04971); also DDRM (SIGIR 2024) ml-1m'
)
_ICLREC = (
  'Chen et al. Intent Contrastive Learning for Sequential Recommendation'
  ' (ICLRec). WWW 2022; same files as S3-Rec / CoSeRec'
)
_TICOSEREC = (
  'Dang et al. Uniform Sequence Better: Time Interval Aware Data'
  ' Augmentation for Sequential Recommendation (TiCoSeRec). AAAI 2023'
)
_MOVIELENS = (
  'Harper, Konstan. The MovieLens Datasets: History and Context. ACM TiiS 2015'
)

for _name, _folder, _sha, _what in (
  (
    'beauty',
    'diffurec_amazon_beauty',
    '21a320605dff9389ef54805eb3dcb8f96139adb61e84847823e8f1bae2fd6879',
    "DiffuRec's Amazon Beauty (= ICLRec Beauty), pre-split as released",
  ),
  (
    'ml-1m',
    'diffurec_ml-1m',
    '53116823b18df71882a4508e146fef1386d281f0f803e6618658602ef4860713',
    "DiffuRec's full MovieLens-1M (no filtering), pre-split as released",
  ),
):
  register(
    DatasetSpec(
      name=_name,
      files=(FileSpec(f'{_folder}/dataset.pkl.gz', _sha),),
      build=_build_seq_pickle,
      description=_what,
      protocol=_SEQ_PROTOCOL,
      paper=_DIFFUREC,
      source='https://github.com/WHUIR/DiffuRec datasets/data/'
      f'{_folder.removeprefix("diffurec_")}/dataset.pkl',
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
      name=f'adrec-{_name}',
      files=(FileSpec(f'adrec_{_name}/dataset.pkl.gz', _sha),),
      build=_build_seq_pickle,
      description=f"ADRec's {_name} (rating > 3, 5-core), pre-split as"
      ' released',
      protocol=_SEQ_PROTOCOL,
      paper=_ADREC,
      source=f'https://github.com/Nemo-1024/ADRec datasets/data/{_name}/'
      'dataset.pkl',
    )
  )

for _name, _shas in {
  'clean': (
    'c71d38bb35e7e4040c58e10bbaa61c351e016bf7c7592d82278ad31a1c4362ee',
    '51986c35ee5d6dc3e0abcb5e5fc33ac812f287e11c0ea46873815029ac42f482',
    'c8c0e7284aff1be8baebca0f1b1394f299788c353bc5b11bdc3299f7bb108d78',
    'b43a8d1bd6a99e123d04612d81ab705ff6736f1f6a4b9e0ab7be33ded16a95a6',
  ),
  'noisy': (
    '438ebbd3e64561696c12c4a4cc170944c14aefbe362ff6472f79fc448f088199',
    '3b5366b07aebbddacf6cc74d735cd2e3e4e49d8132ebe2394df63ee2a64c5483',
    '23da84f20cc1a5f6d2c401733437a22675bb22fbd1ffcac3488e0db45c01ce01',
    '1f163d036848224bc4d22af0f0298fe62f8397313b32d2a98172e61ab66dc3bc',
  ),
}.items():
  register(
    DatasetSpec(
      name=f'diffrec-ml-1m-{_name}',
      files=tuple(
        FileSpec(f'diffrec_ml-1m_{_name}/{part}_list.npy.gz', sha)
        for part, sha in zip(('train', 'valid', 'test'), _shas[:3], strict=True)
      ),
      extras=(FileSpec(f'diffrec_ml-1m_{_name}/item_emb.npy.gz', _shas[3]),),
      build=_build_pairs,
      description=f"DiffRec's ML-1M {_name} setting (also DDRM's ML-1M),"
      ' pre-split by time as released; n_users / n_items = largest train'
      ' id + 1',
      protocol=_CF_PROTOCOL + '; DiffRec reports Recall = hits / |GT|',
      paper=_DIFFREC,
      source=f'https://github.com/YiyanXu/DiffRec datasets/ml-1m_{_name}.rar',
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
      name=f'iclrec-{_name}',
      files=(FileSpec(f'iclrec_seq/{_file}.txt.gz', _sha),),
      build=_build_iclrec,
      description=f'ICLRec/S3-Rec {_file} sequences (5-core), split by'
      ' leave-one-out here',
      protocol=_SEQ_PROTOCOL,
      paper=_ICLREC,
      source=f'https://github.com/salesforce/ICLRec data/{_file}.txt',
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
      name=f'{_name}-time',
      files=tuple(
        FileSpec(f'ticoserec_amazon_time/{_file}_{kind}_org_rank.txt.gz', sha)
        for kind, sha in zip(('item', 'time'), _shas, strict=True)
      ),
      build=_build_ticoserec,
      description=f'TiCoSeRec Amazon {_file} with timestamps (same users as'
      ' ICLRec, other item ids); leave-one-out, timestamps kept in the parts',
      protocol=_SEQ_PROTOCOL,
      paper=_TICOSEREC,
      source='https://github.com/KingGugu/TiCoSeRec data/'
      f'{_file}/{_file}_{{item,time}}_org_rank.txt',
    )
  )

register(
  DatasetSpec(
    name='ml-100k',
    files=(ML100K_INTER, ML100K_UDATA),
    build=_build_ratings,
    description='MovieLens-100K ratings, the quick-start (fetched into the'
    ' user cache if absent); ' + _RECIPE,
    protocol=_CF_PROTOCOL,
    paper=_MOVIELENS,
    source=f'{GROUPLENS_ML100K}, or {RECBOLE_MEMBER} in the PyPI wheel'
    f' {RECBOLE_WHEEL}',
  )
)
register(
  DatasetSpec(
    name='ml-1m-raw',
    files=(
      FileSpec(
        'ml-1m/ratings.dat.gz',
        '8480a661c948a691129ebacc1768da0ba68e1a8500a8b69251e29f21d246e1a7',
      ),
    ),
    build=_build_ratings,
    description='MovieLens-1M ratings.dat; ' + _RECIPE,
    protocol=_CF_PROTOCOL,
    paper=_MOVIELENS,
    source='https://files.grouplens.org/datasets/movielens/ml-1m.zip',
  )
)
register(
  DatasetSpec(
    name='ml-latest-small',
    files=(
      FileSpec(
        'ml-latest-small/ml-latest-small.zip',
        '696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436',
      ),
    ),
    build=_build_ratings,
    description='MovieLens latest-small (2018-09) ratings.csv; ' + _RECIPE,
    protocol=_CF_PROTOCOL,
    paper=_MOVIELENS,
    source='https://files.grouplens.org/datasets/movielens/ml-latest-small.zip',
  )
)
