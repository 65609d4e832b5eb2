"""Pieces every config shares: the base fields and the `arg` parser.

A config file's `get_config(arg)` takes a string such as
'dataset=beauty,tiny' (comma-separated; `key=value` or a bare flag) and returns
an `ml_collections.ConfigDict`. Unknown keys in `arg` are an error.
"""

import ml_collections as mlc

# Full ranking metrics reported for every model; `select` picks the state /
# hyperparameters on validation.
METRICS = ('hr', 'recall', 'ndcg', 'mrr', 'precision')
KS = (10, 20)


def parse_arg(arg: str | None, **defaults) -> mlc.ConfigDict:
  """'dataset=beauty,tiny' -> ConfigDict(dataset='beauty', tiny=True, ...).

  Args:
    arg: the text after ':' in --config=path:arg, or None.
    **defaults: the accepted keys and their defaults; a value's type decides
      how its text is parsed (bool flags may be given bare).

  Returns:
    A ConfigDict with every key of `defaults`.
  """
  out = mlc.ConfigDict(defaults)
  for item in filter(None, (arg or '').split(',')):
    key, eq, value = item.partition('=')
    key = key.strip()
    if key not in defaults:
      raise KeyError(
        f'unknown config arg {key!r} in {arg!r}; known: {sorted(defaults)}'
      )
    default = defaults[key]
    if isinstance(default, bool):
      out[key] = (not eq) or value.strip().lower() in ('1', 'true', 'yes')
    elif not eq:
      raise ValueError(f'config arg {key!r} needs a value: {key}=...')
    else:
      out[key] = type(default)(value.strip())
  return out


def official_seq_eval(c: mlc.ConfigDict) -> None:
  """DiffuRec's and ADRec's official evaluation: HR and NDCG at 5, 10 and
  20, each the mean of per-batch means over 512 users in ascending id
  order, and the latest validation at which any of them improved is the
  one kept (and resets patience)."""
  c.eval.update(ks=(5, 10, 20), batch_mean=512, select_rule='any_new_max')


def base_config(dataset: str) -> mlc.ConfigDict:
  """Fields shared by every experiment."""
  c = mlc.ConfigDict()
  c.dataset = dataset
  # Keep only the first N users (0 = all); tiny configs use it.
  c.max_users = 0
  c.seed = 0
  c.eval = mlc.ConfigDict()
  c.eval.ks = KS
  c.eval.metrics = METRICS
  c.eval.select = 'ndcg@20'
  # '' = the dataset's documented default ('none', 'train', 'train+valid').
  c.eval.exclude_valid = ''
  c.eval.exclude_test = ''
  # Users per jitted ranking step: 512 is fastest on a 2-core CPU
  # (tools/bench.py); use 1024+ on accelerators.
  c.eval.chunk_size = 512
  # Validation (selection, early stopping) reads this share of the users
  # with a validation item, drawn by `select_seed`; test ranks every user.
  # 1.0 = all (correct); DDRM's official code validates on 0.5 (seed 42).
  c.eval.select_fraction = 1.0
  c.eval.select_seed = 42
  # 0 = metrics are means over users; 512 = means of per-batch means over
  # 512 consecutive users, and 'any_new_max' = keep the latest validation at
  # which any HR@k / NDCG@k improved, as DiffuRec's and ADRec's official
  # evaluation (`jaxrec.eval.protocol.Protocol`).
  c.eval.batch_mean = 0
  c.eval.select_rule = 'max'
  return c
