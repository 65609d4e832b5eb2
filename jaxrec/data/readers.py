"""One reader per on-disk format. Host-side NumPy; no JAX here.

Every reader accepts a plain or gzipped file (a path ending in .gz), and
every problem with a file is a `DataError` naming the file, the 1-based line
where there is one, and the reason: an empty file, a line with the wrong
number of fields, a non-integer or negative id, a NaN or infinite rating or
timestamp. Nothing is silently dropped.

Formats:
  DiffuRec / ADRec `dataset.pkl`  `read_seq_pickle` (no globals at all)
  DiffRec / DDRM `*_list.npy`     `read_npy_pairs` (allow_pickle=False)
  MovieLens u.data / ratings.dat  `read_movielens`
  RecBole atomic `.inter`         `read_recbole_inter`
  MovieLens latest `ratings.csv`  `read_ml_latest_csv` (plain or in the zip)
  ICLRec / S3-Rec `*.txt`         `read_iclrec_txt`
  TiCoSeRec item + time files     `read_ticoserec`

Text tables are parsed column-wise (whole text -> tokens -> NumPy), so the
1M-line ratings.dat of MovieLens-1M reads in about a second; only when that
fails is the file walked line by line to name the first bad line.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import zipfile

import numpy as np

from jaxrec.data import types


class DataError(ValueError):
  """A dataset file is missing, corrupt or malformed."""


def read_bytes(path: os.PathLike) -> bytes:
  """The file's content, gunzipped if the name ends in .gz.

  Raises:
    DataError: the file cannot be read, is not gzip, or holds only
      whitespace.
  """
  path = os.fspath(path)
  try:
    with open(path, 'rb') as f:
      raw = f.read()
  except OSError as e:
    raise DataError(f'{path}: cannot read: {e}') from e
  if path.endswith('.gz'):
    try:
      raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:
      raise DataError(f'{path}: not a valid gzip file: {e}') from e
  if not raw.strip():
    raise DataError(f'{path}: empty file')
  return raw


def _text(path, raw: bytes | None = None, encoding='utf-8') -> list[str]:
  """Lines of the (gunzipped) file; CRLF and LF both end a line."""
  raw = read_bytes(path) if raw is None else raw
  if not raw.strip():
    raise DataError(f'{path}: empty file')
  try:
    text = raw.decode(encoding)
  except UnicodeDecodeError as e:
    line = raw[: e.start].count(b'\n') + 1
    raise DataError(f'{path}:{line}: not {encoding} text') from e
  return text.replace('\r\n', '\n').split('\n')


def _check_field(field: str, kind: str) -> str | None:
  """Why `field` is not a valid `kind` ('id', 'num', 'int'), or None."""
  if kind == 'skip':
    return None
  if kind == 'id':
    try:
      value = int(field)
    except ValueError:
      return 'not an integer id'
    return 'negative id' if value < 0 else None
  try:
    value = float(field)
  except ValueError:
    return 'not a number'
  if not np.isfinite(value):
    return 'not finite'
  if kind == 'int' and value != round(value):
    return 'not a whole number'
  return None


def _bad_line(path, lines, first_line, ncols, sep, kinds) -> DataError:
  """Finds the first line that fails to parse and says why."""
  for n, line in enumerate(lines):
    where = f'{path}:{first_line + n}'
    fields = line.split(sep)
    if len(fields) != ncols:
      return DataError(
        f'{where}: expected {ncols} fields separated by {sep!r}, got'
        f' {len(fields)}: {line[:80]!r}'
      )
    for col, (field, kind) in enumerate(zip(fields, kinds, strict=True)):
      err = _check_field(field.strip(), kind)
      if err:
        return DataError(f'{where}: field {col + 1} {field!r}: {err}')
  return DataError(f'{path}: could not parse (no bad line found)')


def _parse_table(path, lines, first_line, sep, kinds) -> list[np.ndarray]:
  """Parses lines of `len(kinds)` fields separated by `sep`.

  Args:
    path: for messages.
    lines: the data lines (trailing blank lines are ignored).
    first_line: the 1-based line number of `lines[0]` in the file.
    sep: the field separator.
    kinds: per column, 'id' (int64 >= 0), 'num' (finite float64), 'int'
      (finite and whole, as int64) or 'skip' (returned as None).

  Returns:
    One array (or None for 'skip') per column.
  """
  while lines and not lines[-1].strip():
    lines = lines[:-1]
  if not lines:
    raise DataError(f'{path}: no data lines')
  ncols = len(kinds)
  tokens = '\n'.join(lines).replace(sep, '\n').split('\n')
  if len(tokens) != ncols * len(lines):
    raise _bad_line(path, lines, first_line, ncols, sep, kinds)
  table = np.array(tokens, dtype=object).reshape(len(lines), ncols)
  cols = []
  for c, kind in enumerate(kinds):
    if kind == 'skip':
      cols.append(None)
      continue
    try:
      if kind == 'id':
        col = table[:, c].astype(np.int64)
        ok = col >= 0
      else:
        col = table[:, c].astype(np.float64)
        ok = np.isfinite(col)
        if kind == 'int':
          ok &= col == np.round(col)
    except (ValueError, OverflowError):
      raise _bad_line(path, lines, first_line, ncols, sep, kinds) from None
    if not ok.all():
      raise _bad_line(path, lines, first_line, ncols, sep, kinds)
    cols.append(col.astype(np.int64) if kind == 'int' else col)
  return cols


def _interactions(path, user, item, rating, ts) -> types.Interactions:
  return types.Interactions(
    user=user,
    item=item,
    rating=rating,
    timestamp=ts,
    source=os.fspath(path),
  )


def read_movielens(
  path: os.PathLike, sep: str | None = None
) -> types.Interactions:
  """MovieLens `u.data` (tab-separated) or `ratings.dat` ('::').

  Both have four fields per line: user, item, rating, unix timestamp.

  Args:
    path: the file, optionally gzipped.
    sep: the separator; None detects it from the first line ('::' if it
      occurs there, else a tab).

  Returns:
    Interactions in file order with rating and timestamp columns.
  """
  lines = _text(path, encoding='latin-1')
  if sep is None:
    sep = '::' if '::' in lines[0] else '\t'
  user, item, rating, ts = _parse_table(
    path, lines, 1, sep, ('id', 'id', 'num', 'int')
  )
  return _interactions(path, user, item, rating, ts)


_INTER_KINDS = {
  'user_id': 'id',
  'item_id': 'id',
  'rating': 'num',
  'timestamp': 'int',
}


def read_recbole_inter(path: os.PathLike) -> types.Interactions:
  """A RecBole atomic `.inter` file: a typed header, then tab-separated rows.

  Header fields look like `user_id:token`; user_id and item_id are required
  and must be integer tokens here (RecBole allows any string; this reader
  refuses them with a DataError rather than inventing a mapping). rating and
  timestamp are optional; other columns are checked for their count only.

  Args:
    path: the file, optionally gzipped; CRLF line ends are fine.

  Returns:
    Interactions in file order.
  """
  lines = _text(path)
  header = [h.split(':')[0].strip() for h in lines[0].split('\t')]
  for need in ('user_id', 'item_id'):
    if need not in header:
      raise DataError(f'{path}:1: header {lines[0]!r} has no {need!r} field')
  if len(set(header)) != len(header):
    raise DataError(f'{path}:1: repeated field in header {lines[0]!r}')
  kinds = tuple(_INTER_KINDS.get(h, 'skip') for h in header)
  cols = dict(
    zip(header, _parse_table(path, lines[1:], 2, '\t', kinds), strict=True)
  )
  return _interactions(
    path,
    cols['user_id'],
    cols['item_id'],
    cols.get('rating'),
    cols.get('timestamp'),
  )


ML_LATEST_MEMBER = 'ml-latest-small/ratings.csv'


def read_ml_latest_csv(
  path_or_zip: os.PathLike, member: str = ML_LATEST_MEMBER
) -> types.Interactions:
  """MovieLens latest `ratings.csv` (userId,movieId,rating,timestamp).

  Args:
    path_or_zip: the release zip (the csv is read from `member`) or the csv
      itself, optionally gzipped.
    member: the csv's path inside the zip.

  Returns:
    Interactions in file order; ratings are half stars 0.5..5.
  """
  path = os.fspath(path_or_zip)
  if path.endswith('.zip'):
    try:
      with zipfile.ZipFile(path) as z:
        raw = z.read(member)
    except (OSError, KeyError, zipfile.BadZipFile) as e:
      raise DataError(f'{path}: cannot read member {member}: {e}') from e
    where = f'{path}[{member}]'
  else:
    raw, where = read_bytes(path), path
  lines = _text(where, raw)
  if not lines[0].startswith('userId,movieId,rating,timestamp'):
    raise DataError(f'{where}:1: unexpected header {lines[0]!r}')
  user, item, rating, ts = _parse_table(
    where, lines[1:], 2, ',', ('id', 'id', 'num', 'int')
  )
  return _interactions(where, user, item, rating, ts)


def _sequence_lines(path, lines) -> tuple[np.ndarray, list[np.ndarray]]:
  """'user v1 v2 ...' lines -> (user ids, value arrays); ints >= 0."""
  while lines and not lines[-1].strip():
    lines = lines[:-1]
  if not lines:
    raise DataError(f'{path}: no data lines')
  users, seqs = [], []
  for n, line in enumerate(lines, start=1):
    fields = line.split()
    try:
      values = np.array(fields, dtype=np.int64)
    except (ValueError, OverflowError):
      bad = next(f for f in fields if _check_field(f, 'id'))
      raise DataError(f'{path}:{n}: {bad!r} is not an integer') from None
    if len(values) < 2:
      raise DataError(f'{path}:{n}: a user id and no items: {line[:80]!r}')
    if (values < 0).any():
      raise DataError(f'{path}:{n}: negative value in {line[:80]!r}')
    users.append(values[0])
    seqs.append(values[1:])
  return np.array(users, np.int64), seqs


def _check_users_in_order(path, users: np.ndarray):
  expect = np.arange(1, len(users) + 1)
  if not np.array_equal(users, expect):
    n = int(np.flatnonzero(users != expect)[0])
    raise DataError(
      f'{path}:{n + 1}: user id {users[n]}, expected {n + 1} (ids 1..U in'
      ' order)'
    )


def read_iclrec_txt(path: os.PathLike) -> list[np.ndarray]:
  """ICLRec / S3-Rec text: `user item1 item2 ...`, users 1..U in order.

  Args:
    path: the file, optionally gzipped.

  Returns:
    U int64 arrays of 1-based item ids in chronological order; entry u is
    the user on line u + 1 (user id u + 1).
  """
  users, seqs = _sequence_lines(path, _text(path))
  _check_users_in_order(path, users)
  for n, s in enumerate(seqs, start=1):
    if (s == 0).any():
      raise DataError(f'{path}:{n}: item id 0 (ids are 1-based)')
  return seqs


def read_ticoserec(
  item_path: os.PathLike, time_path: os.PathLike
) -> types.Interactions:
  """TiCoSeRec's aligned `*_item_org_rank.txt` and `*_time_org_rank.txt`.

  Line k of both files is user k (`user v1 ... vn`); the time file holds the
  unix timestamp of each item of the item file, non-decreasing.

  Args:
    item_path: the item file, optionally gzipped.
    time_path: the time file, optionally gzipped.

  Returns:
    Interactions in file order (user by user, oldest first): user = the
    file's user id (1..U), item = the file's 1-based item id, timestamp.
  """
  users, seqs = _sequence_lines(item_path, _text(item_path))
  t_users, times = _sequence_lines(time_path, _text(time_path))
  _check_users_in_order(item_path, users)
  if len(users) != len(t_users):
    raise DataError(
      f'{time_path}: {len(t_users)} lines, {item_path} has {len(users)}'
    )
  for n, (u, tu, s, t) in enumerate(
    zip(users, t_users, seqs, times, strict=True), start=1
  ):
    if u != tu or len(s) != len(t):
      raise DataError(
        f'{time_path}:{n}: user {tu} with {len(t)} times does not match'
        f' {item_path}:{n} (user {u}, {len(s)} items)'
      )
    if (np.diff(t) < 0).any():
      raise DataError(f'{time_path}:{n}: timestamps decrease')
    if (s == 0).any():
      raise DataError(f'{item_path}:{n}: item id 0 (ids are 1-based)')
  lengths = np.array([len(s) for s in seqs], np.int64)
  return _interactions(
    item_path,
    np.repeat(users, lengths),
    np.concatenate(seqs),
    None,
    np.concatenate(times),
  )


class _NoGlobals(pickle.Unpickler):
  """Unpickles plain containers and numbers; refuses every global.

  dict, list, tuple, set, int, str, float and bool are pickle opcodes of
  their own and need no global lookup, so a dataset pickle of them loads;
  anything that asks for a class or function (the way a malicious pickle
  runs code, e.g. `posix.system` through REDUCE) is refused.
  """

  source = '<pickle>'

  def find_class(self, module, name):
    raise DataError(
      f'{self.source}: refusing to unpickle {module}.{name}; dataset pickles'
      ' may hold only builtin containers and numbers'
    )


def _ids(path, where: str, seq) -> np.ndarray:
  if not isinstance(seq, (list, tuple)) or not all(
    isinstance(v, int) and not isinstance(v, bool) for v in seq
  ):
    raise DataError(f'{path}: {where} is not a list of integer item ids')
  arr = np.asarray(seq, np.int64)
  if len(arr) and arr.min() < 1:
    raise DataError(f'{path}: {where} has item id {arr.min()} (ids are >= 1)')
  return arr


def _by_user(path, key: str, part) -> list:
  """A DiffuRec dict {u: seq} (u = 0..U-1) or an ADRec list -> list."""
  if isinstance(part, dict):
    if sorted(part) != list(range(len(part))):
      raise DataError(f'{path}: {key} users are not 0..{len(part) - 1}')
    part = [part[u] for u in range(len(part))]
  if not isinstance(part, list):
    raise DataError(
      f'{path}: {key} is a {type(part).__name__}, expected a dict or list'
    )
  return part


def _id_maps(path, data: dict, n_users: int) -> dict:
  """Original ids from DiffuRec's umap / smap, when present and sane."""
  out = {}
  for key, n_new, base, name in (
    ('umap', n_users, 0, 'user_ids'),
    ('smap', None, 1, 'item_ids'),
  ):
    if key not in data:
      continue
    m = data[key]
    if not isinstance(m, dict) or not all(
      isinstance(v, int) for v in m.values()
    ):
      raise DataError(f'{path}: {key} is not a dict of integer ids')
    n = len(m) if n_new is None else n_new
    new = np.fromiter(m.values(), np.int64, len(m))
    if len(m) != n or not np.array_equal(np.sort(new), np.arange(n) + base):
      raise DataError(
        f'{path}: {key} values are not {base}..{n + base - 1} one to one'
      )
    if all(isinstance(k, int) for k in m):
      orig = np.empty(n, np.int64)
      orig[new - base] = np.fromiter(m.keys(), np.int64, len(m))
      out[name] = orig
  return out


def read_seq_pickle(path: os.PathLike) -> dict:
  """DiffuRec or ADRec `dataset.pkl`, with an unpickler that runs no code.

  DiffuRec: {'train': {u: [items]}, 'val': {u: [item]}, 'test': {u: [item]},
  'umap', 'smap'}; ADRec: {'train': [[items]], 'val': [[item]], 'test':
  [[item]]}, the list index being the user. Items are 1-based.

  Args:
    path: the pickle, optionally gzipped.

  Returns:
    {'train': [int64 array per user], 'val': int64[U], 'test': int64[U],
     'n_items': len(smap) if present else the largest id}, all items
    1-based as in the file; plus 'user_ids' [U] and 'item_ids' [I] (the
    original id of user u / of 1-based item i + 1) when umap / smap are
    there.
  """
  unpickler = _NoGlobals(io.BytesIO(read_bytes(path)))
  unpickler.source = os.fspath(path)
  try:
    data = unpickler.load()
  except DataError:
    raise
  except Exception as e:  # noqa: BLE001 - any unpickling failure is corrupt
    raise DataError(f'{path}: not a valid pickle: {e!r}') from e
  if not isinstance(data, dict):
    raise DataError(f'{path}: expected a dict, got {type(data).__name__}')
  for key in ('train', 'val', 'test'):
    if key not in data:
      raise DataError(
        f'{path}: no {key!r} key (keys: {sorted(map(str, data))})'
      )
  parts = {}
  for key in ('train', 'val', 'test'):
    part = _by_user(path, key, data[key])
    parts[key] = [_ids(path, f'{key}[{u}]', s) for u, s in enumerate(part)]
  n = len(parts['train'])
  if n == 0:
    raise DataError(f'{path}: no users')
  for key in ('val', 'test'):
    if len(parts[key]) != n:
      raise DataError(f'{path}: {key} has {len(parts[key])} users, train {n}')
    lengths = np.array([len(s) for s in parts[key]])
    if (lengths != 1).any():
      u = int(np.flatnonzero(lengths != 1)[0])
      raise DataError(
        f'{path}: {key}[{u}] has {lengths[u]} items; leave-one-out needs 1'
      )
  biggest = max(int(s.max()) for key in parts for s in parts[key] if len(s))
  n_items = len(data['smap']) if 'smap' in data else biggest
  if biggest > n_items:
    raise DataError(f'{path}: item id {biggest} > len(smap) = {n_items}')
  return {
    'train': parts['train'],
    'val': np.concatenate(parts['val']),
    'test': np.concatenate(parts['test']),
    'n_items': n_items,
    **_id_maps(path, data, n),
  }


def read_npy_pairs(path: os.PathLike) -> np.ndarray:
  """DiffRec/DDRM `*_list.npy`: rows of (user, item), 0-based.

  Args:
    path: the .npy file, optionally gzipped. Loaded with allow_pickle=False,
      so an object array is refused.

  Returns:
    int64[n, 2].
  """
  try:
    arr = np.load(io.BytesIO(read_bytes(path)), allow_pickle=False)
  except (ValueError, OSError, EOFError) as e:
    raise DataError(f'{path}: not a plain .npy array ({e})') from e
  if not isinstance(arr, np.ndarray):
    raise DataError(f'{path}: not a single .npy array')
  if arr.ndim != 2 or arr.shape[1] != 2:
    raise DataError(f'{path}: shape {arr.shape}, expected (n, 2)')
  if arr.dtype.kind not in 'iu':
    raise DataError(f'{path}: dtype {arr.dtype}, expected integers')
  if len(arr) == 0:
    raise DataError(f'{path}: no rows')
  if arr.min() < 0:
    row = int(np.flatnonzero((arr < 0).any(axis=1))[0])
    raise DataError(f'{path}: row {row} has a negative id: {arr[row]}')
  return arr.astype(np.int64)


def read_npy_matrix(path: os.PathLike) -> np.ndarray:
  """A float `.npy` matrix (optionally gzipped), e.g. DiffRec's item_emb.npy
  (item x dim LightGCN embeddings), loaded with allow_pickle=False.

  Returns:
    float32[n, d].
  """
  try:
    arr = np.load(io.BytesIO(read_bytes(path)), allow_pickle=False)
  except (ValueError, OSError, EOFError) as e:
    raise DataError(f'{path}: not a plain .npy array ({e})') from e
  if not isinstance(arr, np.ndarray) or arr.ndim != 2:
    raise DataError(
      f'{path}: expected a 2-d array, got {getattr(arr, "shape", arr)}'
    )
  if arr.dtype.kind != 'f':
    raise DataError(f'{path}: dtype {arr.dtype}, expected floats')
  if not np.all(np.isfinite(arr)):
    row = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
    raise DataError(f'{path}: row {row} is not finite')
  return arr.astype(np.float32)
