r"""Item-embedding collapse of a run's best checkpoint.

  python -m experiments.collapse --workdir=runs/dreamrec-adrec-baby

For an inner-product model (one with `item_vectors`: SASRec, DiffuRec,
ADRec, DreamRec, MF, ...), groups the items by how often they are a
training target and prints, per group, the median norm of the item
vectors and the share of the test top-K slots the group holds. A model
whose loss shrinks the embeddings it is trained on (DreamRec's MSE-only
x0 target) leaves the rows it never trains at their initial norm, and
those rows then take the inner-product ranking; this table shows it. Also
printed: the item table's effective rank (exp of the entropy of its
normalised singular values; d when every direction carries equal weight,
1 when all items lie on one line) and the number of distinct items in the
top-K lists.

A training target: in a sequential split every train event after a user's
first (what a next-item model is trained to predict), and the first too
when the model trains on it (`model.empty_history`, DreamRec); in a top-n
split every train interaction. Writes collapse.json beside results.json. The
test lists are the protocol's (test histories, its exclusion); nothing is
selected.
"""

import json
import pathlib

import jax
import numpy as np
from absl import app, flags

from jaxrec.data import types
from jaxrec.study import report
from jaxrec.train import fit_linear, loop, record, writer

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory.', required=True)
_K = flags.DEFINE_integer('k', 10, 'Top-K lists studied.', lower_bound=1)

# Groups of items by training-target count: [low, high] inclusive.
BUCKETS = ((0, 0), (1, 1), (2, 5), (6, 20), (21, 100), (101, None))


def target_counts(split: types.Split, first_events: bool = False) -> np.ndarray:
  """int64[n_items]: how often each item is a training target (with
  `first_events`, a user's first train event is one too)."""
  train = split.train
  keep = np.ones(len(train.items), bool)
  if split.kind == 'sequential' and not first_events:
    starts = train.indptr[:-1][train.lengths > 0]
    keep[starts] = False  # a user's first event is never predicted
  return np.bincount(train.items[keep], minlength=split.n_items)


def effective_rank(table: np.ndarray) -> float:
  """exp(entropy of the singular values normalised to sum 1)."""
  s = np.linalg.svd(np.asarray(table, np.float64), compute_uv=False)
  p = s / s.sum()
  p = p[p > 0]
  return float(np.exp(-np.sum(p * np.log(p))))


def study(items: np.ndarray, counts: np.ndarray, topk: np.ndarray) -> dict:
  """The collapse record of item vectors `items` [n_items, d], target
  `counts` [n_items] and top-K lists `topk` [U, K] (-1: no item)."""
  norms = np.linalg.norm(np.asarray(items, np.float64), axis=1)
  ranked = topk[topk >= 0]
  slots = max(topk.size, 1)
  rows = []
  for low, high in BUCKETS:
    member = (counts >= low) & (counts <= (np.inf if high is None else high))
    n = int(member.sum())
    rows.append(
      {
        'targets': str(low)
        if high == low
        else f'{low}-{high}'
        if high is not None
        else f'>{low - 1}',
        'items': n,
        'median_norm': float(np.median(norms[member])) if n else float('nan'),
        'topk_share': float(member[ranked].sum() / slots),
      }
    )
  return {
    'groups': rows,
    'effective_rank': effective_rank(items),
    'dim': int(items.shape[1]),
    'distinct_topk_items': int(len(np.unique(ranked))),
    'users': int(topk.shape[0]),
  }


def collapse(workdir: str | pathlib.Path, k: int = 10) -> dict:
  """The collapse record of `workdir`'s best checkpoint; also written to
  its collapse.json."""
  workdir = pathlib.Path(workdir)
  best = loop.restore_best(workdir)
  longest = max(best.config.eval.ks)
  if k > longest:
    raise ValueError(
      f"k={k} is over the run's longest list (eval.ks: {longest})"
    )
  model = best.model
  if not hasattr(model, 'item_vectors'):
    raise ValueError(
      f'{best.config.model.name} has no item vectors (item_vectors): not an'
      ' inner-product model, no embedding table to study'
    )
  params = jax.device_put(best.state.params, jax.local_devices()[0])
  items = np.asarray(jax.jit(model.item_vectors)(params))
  items = items[: best.split.n_items]  # no phantom (padding) rows
  protocol = fit_linear.make_protocol(best.split, best.config.eval)
  scorer = loop.ModelScorer(model)
  scorer.params = params
  topk = protocol.rank(scorer, 'test').topk[:, :k]
  first = bool(best.config.model.get('empty_history', False))
  out = {
    'step': int(best.state.step),
    'k': k,
    **study(items, target_counts(best.split, first), topk),
    'environment': record.environment(),
  }
  record.write_json(workdir / 'collapse.json', out)
  return out


def main(argv):
  del argv
  writer.quiet_orbax()
  try:
    out = collapse(_WORKDIR.value, _K.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  print(
    report.markdown_table(
      out['groups'], ('targets', 'items', 'median_norm', 'topk_share')
    ).replace('topk_share', f'share of top-{out["k"]} slots')
  )
  keys = ('step', 'effective_rank', 'dim', 'distinct_topk_items')
  print(json.dumps({key: out[key] for key in keys}))


if __name__ == '__main__':
  app.run(main)
