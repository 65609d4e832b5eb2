r"""Speed of jaxrec's hot paths against this machine's own matmul throughput.

  python -m tools.bench [--only=rank,ease] [--users=22363 --items=12101]

(`--tiny` runs the neural rows at their configs' tiny sizes: the script end
to end in about a minute, as tests/bench_test.py does; no figure to quote.)

Before each task, measures dense float32 matmul throughput (JAX/XLA, which
runs the scoring, and NumPy's BLAS, which runs the LAPACK fits; a `matmul`
row), then times the task and prints it beside its floor: the time its
unavoidable matmul work would take at that throughput. `floor/time` is the
fraction of the floor reached (1.0 = as fast as a pure matmul; 0.5 = within
2x). Figures survive a noisy machine because the floor is measured in the
same run, next to the task. The rate is measured once more after the task
(`matmul (after ...)` row): where the two differ, the machine's speed
drifted while the task ran, and its ratio is uncertain by about as much.

Rows:
  rank    full ranking + top-20 over all items for every user with a
          dot-product scorer (d=128): floor = 2 U I d flops at the XLA rate.
          The first row is the fused native score+top-k (what `rank` runs
          on CPU for inner-product scorers), the `unfused` row XLA's
          scoring matmul then the top-k, as for any other scorer.
  sasrec  one SASRec train step (forward, backward, Adam) at the Beauty
          shapes of configs/sasrec.py: B=128, L=50, d=64, 2 blocks, CE over
          12,101 items at the packed targets: floor = the step's flops (XLA's
          cost analysis of the compiled step) at the XLA matmul rate.
  diffurec one DiffuRec train step at the paper's Beauty sizes (B=512,
          L=50, d=128, 4 blocks, T=32, CE over 12,101 items): floor = the
          step's flops at the XLA matmul rate. The official PyTorch code
          takes about 4.5 s per step on a 2-core CPU (REFERENCE.md). A
          `host batch` row times the loop's host work per packed step
          (drawing the examples, packing, the transfer): on an accelerator,
          where the step takes milliseconds, it can be the bound.
  diffurec_eval  DiffuRec validation ranking (32 reverse steps through the
          4-block approximator, then top-20 over 12,101 items) for
          --eval_users users (default all of Beauty's 22,363, at the
          config's `eval.chunk_size`; a seeded sample of its users when
          fewer, else random histories), projected to 22,363. Ranking
          trims each user's rows to the length its history needs
          (`ranking.length_groups`) and the final block computes the
          last query only. floor = the flops of that work (32 x each
          group's approximator call, from XLA's cost analysis, which counts
          a scan body once, plus the scoring matmul); the note also gives
          the floor of full 50-item rows through every block (the official
          code's computation). A pass takes tens of seconds, over which a
          shared machine's speed drifts: each timed pass is paired with the
          faster of the matmul rates measured just before and just after it
          (`paired_time`, the rate in the note), and the best pair is kept.
  diffrec DiffRec at its ML-1M clean settings (diffrec-ml-1m-clean when
          its files are found, else random rows of its shape): one training
          epoch (15 steps of 400 users; floor = the step's flops x 15) and
          one validation pass (every user through the 40 reverse steps of
          the 2,810-wide MLP, then top-20; floor = 40 x the flops of a
          chunk's denoiser call x the chunks).
  ease    EASE fit (Gram + Cholesky inverse) on `ml-1m-raw`'s train items:
          floor = one n x n x n matmul (n^3 multiply-adds) at the BLAS rate.
          The inverse itself is n^3 flops (n^3/2 multiply-adds), so its
          flop-count efficiency is half the printed fraction.
  ials, ddrm  see their functions' docstrings.
  cfdiff  (not run by default: minutes per row on a 2-core CPU) one CF-Diff
          train step (128 users of ML-1M clean, CAM-AE's four attention
          maps of 522 x 522 tokens per head) and one ranking chunk (128
          users, 20 reverse steps); the notes project an epoch and a
          validation pass. Its `host batch` row times the multi-hop rows
          of a batch, the host's work per step.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
from absl import app, flags, logging

from jaxrec import models, native
from jaxrec.data import batching, registry, synthetic, types
from jaxrec.eval import ranking
from jaxrec.models.linear import ease
from jaxrec.nn import transformer
from jaxrec.train import loop, optim, parallel
from jaxrec.study import report

_ONLY = flags.DEFINE_list(
  'only',
  [
    'rank',
    'sasrec',
    'diffurec',
    'diffurec_eval',
    'adrec',
    'diffrec',
    'ease',
    'ials',
    'ddrm',
  ],
  'Rows to run.',
)
_USERS = flags.DEFINE_integer('users', 22363, 'Users ranked (Beauty: 22,363).')
_ITEMS = flags.DEFINE_integer('items', 12101, 'Items ranked (Beauty: 12,101).')
_DIM = flags.DEFINE_integer('dim', 128, 'Embedding width of the scorer.')
_CHUNK = flags.DEFINE_integer(
  'chunk', ranking.DEFAULT_CHUNK, 'Users per ranking step.'
)
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed repeats; best is kept.')
_TRAIN_STEPS = flags.DEFINE_integer(
  'train_steps', 5, 'Train steps per timed repeat of a train-step row.', 1
)
_EVAL_USERS = flags.DEFINE_integer(
  'eval_users', 22363, 'Users ranked by the diffurec_eval row.'
)
# ADRec's Beauty file (adrec-beauty): 10,553 users, 6,086 items.
_ADREC_USERS = flags.DEFINE_integer('adrec_users', 10553, 'ADRec rows: users.')
_ADREC_ITEMS = flags.DEFINE_integer('adrec_items', 6086, 'ADRec rows: items.')
_DIFFREC_USERS = flags.DEFINE_integer(
  'diffrec_users', 5949, 'DiffRec rows without ML-1M clean: users.'
)
_DIFFREC_ITEMS = flags.DEFINE_integer(
  'diffrec_items', 2810, 'DiffRec rows without ML-1M clean: items.'
)
_EASE_ITEMS = flags.DEFINE_integer(
  'ease_items', 0, 'Fit EASE on this many random items instead of ml-1m-raw.'
)
_TINY = flags.DEFINE_bool(
  'tiny',
  False,
  "Neural rows at their configs' `tiny` sizes (the task names say which):"
  ' the whole script in well under a minute, for tests; timings of no use.',
)


def _get_config(module, arg: str = ''):
  """`module.get_config(arg)`, with `tiny` added under --tiny."""
  if _TINY.value:
    arg = f'{arg},tiny' if arg else 'tiny'
  return module.get_config(arg or None)


def _shape(config) -> str:
  """'B=512 L=50 d=128' of a sequential model's train step."""
  m = config.model
  return f'B={config.train.batch_size} L={m.max_len} d={m.dim}'


def _duration(seconds: float) -> str:
  """`seconds` as '12.3 s' below 90 s, else as '4.5 min' (an epoch on a
  GPU takes seconds, on a 2-core CPU minutes)."""
  return f'{seconds:.1f} s' if seconds < 90 else f'{seconds / 60:.1f} min'


def best_time(fn, repeats: int) -> float:
  """Best wall time of `fn()` over `repeats` runs after one warm-up."""
  fn()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return min(times)


def paired_time(fn, repeats: int) -> tuple[float, float]:
  """(seconds, XLA flop/s) of the best of `repeats` runs of `fn()`, each
  bracketed by matmul rates measured just before and just after it and
  paired with the faster of the two (a dip while the rate is read would
  otherwise flatter the run): the pair whose time is the fewest
  matmul-times. A shared machine's speed drifts (the 2048^3 rate read 104
  then 182 GFLOP/s around one 50 s task), so a rate measured once before a
  long task can put its ratio off by 2x either way."""
  fn()
  rates = [matmul_flops(3)['xla']]
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
    rates.append(matmul_flops(3)['xla'])
  pairs = [(t, max(rates[i], rates[i + 1])) for i, t in enumerate(times)]
  return min(pairs, key=lambda p: p[0] * p[1])


def matmul_flops(repeats: int, n: int = 2048) -> dict:
  """Dense f32 n x n matmul throughput, flop/s, for XLA and NumPy BLAS."""
  a = np.random.default_rng(0).standard_normal((n, n), np.float32)
  x = jnp.asarray(a)
  mm = jax.jit(lambda x: x @ x)
  t_xla = best_time(lambda: mm(x).block_until_ready(), repeats)
  t_blas = best_time(lambda: a @ a, repeats)
  return {'xla': 2 * n**3 / t_xla, 'blas': 2 * n**3 / t_blas}


class _DotScorer:
  """score(users) = U[users] @ V^T, the last layer of every embedding model."""

  def __init__(self, users: np.ndarray, items: np.ndarray):
    self.params = {'users': jnp.asarray(users), 'items': jnp.asarray(items)}

  def make_batch(self, history, users):
    del history
    return {'users': np.asarray(users, np.int32)}

  def score(self, params, batch):
    return self.user_vectors(params, batch) @ self.item_vectors(params).T

  def user_vectors(self, params, batch):
    return params['users'][batch['users']]

  def item_vectors(self, params):
    return params['items']


def bench_rank(flops: dict, repeats: int) -> dict:
  n_users, n_items, dim = _USERS.value, _ITEMS.value, _DIM.value
  rng = np.random.default_rng(0)
  scorer = _DotScorer(
    rng.standard_normal((n_users, dim), np.float32),
    rng.standard_normal((n_items, dim), np.float32),
  )
  truth = types.Part.from_events(
    np.arange(n_users), rng.integers(0, n_items, n_users), n_users
  )
  runs = {
    fused: lambda fused=fused: ranking.rank(
      scorer,
      truth,
      truth,
      None,
      n_items,
      k=20,
      chunk_size=_CHUNK.value,
      fused=fused,
    )
    for fused in (True, False)
  }
  floor = 2 * n_users * n_items * dim / flops['xla']
  # The same scoring matmuls alone (no top-k), chunk by chunk: what the
  # skinny [B, d] x [d, I] products reach on this machine.
  params = jax.device_put(scorer.params)
  chunk = _CHUNK.value
  score = jax.jit(scorer.score)  # full [B, I] output, so nothing is pruned
  batches = [
    {'users': np.arange(i, i + chunk, dtype=np.int32) % n_users}
    for i in range(0, n_users, chunk)
  ]

  def matmuls():
    for b in batches:
      score(params, b).block_until_ready()

  matmul_s = best_time(matmuls, repeats)
  topk = 'native' if native.top_k_kernel() else 'XLA'
  rows = []
  for fused, run in runs.items():
    if fused and not ranking.can_fuse(scorer):
      continue  # no native kernels here: only the unfused row
    seconds = best_time(run, repeats)
    how = 'fused native score+top-k' if fused else f'matmul + {topk} top-k'
    rows.append(
      {
        'task': f'rank+top20 {n_users}x{n_items} d={dim}'
        + ('' if fused else ' unfused'),
        'seconds': seconds,
        'floor_s': floor,
        'floor/time': floor / seconds,
        'note': f'chunk {chunk}, {how}'
        + ('' if fused else f'; scoring matmuls alone {matmul_s:.3f} s'),
      }
    )
  return rows


def _seq_split(n_items: int, n_users: int, mean_len: float) -> types.Split:
  """A random sequential split with geometric lengths (Beauty-like)."""
  rng = np.random.default_rng(0)
  lengths = np.minimum(rng.geometric(1 / mean_len, n_users) + 1, 200)
  users = np.repeat(np.arange(n_users), lengths)
  part = types.Part.from_events(
    users, rng.integers(0, n_items, len(users)), n_users
  )
  return types.Split(
    name='bench',
    kind='sequential',
    n_users=n_users,
    n_items=n_items,
    train=part,
    valid=part,
    test=part,
  )


def _train_inputs(name: str, config, n_items: int, n_users: int, mean_len):
  """A model and its first train batch on a random Beauty-like split."""
  model = models.get_neural_model(name)(config.model, n_items)
  split = _seq_split(n_items, n_users, mean_len)
  batch_size = int(config.train.batch_size)
  plan = batching.BatchPlan(batch_size, seed=0, epochs=20)
  data = model.train_data(split, plan)
  index, weights = batching.batch_indices(len(data), batch_size, 0, 0)
  return model, model.train_batch(data, index, weights), data


def _sasrec_inputs(n_items: int, batch_size: int):
  """A SASRec model and one Beauty-like batch (mean ~6 targets per user)."""
  from configs import sasrec as sasrec_config

  config = _get_config(sasrec_config, 'dataset=beauty')
  if not _TINY.value:
    config.train.batch_size = batch_size
  model, batch, data = _train_inputs('sasrec', config, n_items, 4096, 6.8)
  return config, model, batch, data.budget


def bench_sasrec(flops: dict, repeats: int) -> list[dict]:
  n_items, batch_size = _ITEMS.value, 128
  config, model, batch, budget = _sasrec_inputs(n_items, batch_size)
  batch_size = config.train.batch_size
  seconds, step_flops = _time_train_step(model, config, batch, repeats)
  floor = step_flops / flops['xla']
  return [
    {
      'task': f'SASRec train step {_shape(config)}, {n_items} items',
      'seconds': seconds,
      'floor_s': floor,
      'floor/time': floor / seconds,
      'note': (
        f'{1 / seconds:.1f} steps/s; {step_flops / 1e9:.1f} GFLOP/step;'
        f' {budget} packed targets of {batch_size * config.model.max_len}'
      ),
    }
  ]


def _train_step(model, config, batch, steps_per_epoch=1):
  """(jitted train step, initial state, rng) of `model` on `batch`."""
  tx = optim.make(config.optim, 1000, steps_per_epoch)
  params = jax.jit(model.init)(jax.random.key(0), batch)
  state = loop.new_state(model, params, tx)
  step = jax.jit(loop._make_train_step(model, tx), donate_argnums=0)
  return step, state, jax.random.key(1)


def _time_train_step(model, config, batch, repeats: int, steps_per_epoch=1):
  """(seconds per step, flops per step) of the jitted train step."""
  step, state, rng = _train_step(model, config, batch, steps_per_epoch)
  # Timed as compiled here (a call through `step` would compile it again).
  step = step.lower(state, batch, rng).compile()
  flops = step.cost_analysis()['flops']
  holder = {'state': state}

  n = _TRAIN_STEPS.value

  def run():
    for _ in range(n):
      holder['state'], m = step(holder['state'], batch, rng)
    jax.block_until_ready(m)

  return best_time(run, repeats) / n, flops


def bench_diffurec(flops: dict, repeats: int) -> list[dict]:
  """DiffuRec's train step on Beauty-like prefixes, packed and padded."""
  from configs import diffurec as diffurec_config

  n_items = _ITEMS.value
  rows = []
  for pack in (True, False):
    config = _get_config(diffurec_config, 'dataset=beauty')
    config.model.pack = pack
    batch_size, length = config.train.batch_size, config.model.max_len
    model, batch, data = _train_inputs(
      'diffurec', config, n_items, _USERS.value, 6.9
    )
    per_epoch = -(-len(data) // batch_size)
    seconds, step_flops = _time_train_step(
      model, config, batch, repeats, per_epoch
    )
    floor = step_flops / flops['xla']
    layout = (
      f'{data.rows} packed rows' if pack else f'{batch_size} padded rows'
    ) + f' of {length}'
    rows.append(
      {
        'task': (
          f'DiffuRec train step {_shape(config)}, {n_items} items'
          f' ({"packed" if pack else "padded"})'
        ),
        'seconds': seconds,
        'floor_s': floor,
        'floor/time': floor / seconds,
        'note': (
          f'{layout}; {step_flops / 1e9:.0f} GFLOP/step; epoch of the random'
          f' split ({per_epoch} steps) {_duration(seconds * per_epoch)};'
          ' official code ~4.5 s/step'
        ),
      }
    )
    if pack:
      rows.append(
        _host_batch_row('DiffuRec', 'packing', model, data, batch_size, seconds)
      )
  return rows


def _host_batch_row(
  name: str, what: str, model, data, batch_size: int, step_s: float
):
  """The training loop's host work per step: the step's examples
  (`batch_indices`), the model's `train_batch` (`what`) and the transfer
  (`shard_batch`). The loop overlaps it with the device's step; where it is
  the longer of the two (an accelerator), it bounds steps/s."""
  mesh = parallel.make_mesh()
  n = 50

  def run():
    for step in range(n):
      index, weights = batching.batch_indices(len(data), batch_size, 0, step)
      batch = parallel.shard_batch(
        model.train_batch(data, index, weights), mesh
      )
    jax.block_until_ready(batch)

  seconds = best_time(run, 3) / n
  return {
    'task': f'{name} host batch (examples, {what}, transfer)',
    'seconds': seconds,
    'floor_s': float('nan'),
    'floor/time': float('nan'),
    'note': (
      f'bounds the loop at {1 / seconds:.0f} steps/s;'
      f' {seconds / step_s:.3g} of the device step above'
    ),
  }


def _eval_histories(n_items: int, n_users: int):
  """`n_users` validation histories: a seeded sample of Beauty's users when
  its file is at hand (their real lengths: median 4 of at most 50), else
  random ones of geometric lengths (mean 9). Returns (history, truth,
  source)."""
  rng = np.random.default_rng(0)
  try:
    split = registry.get_split('beauty')
  except registry.DataError as e:  # no data here: synthetic lengths
    logging.info('diffurec_eval: beauty unavailable (%s); synthetic', e)
    split = None
  if split is not None and split.n_items == n_items:
    users = np.sort(rng.choice(split.n_users, n_users, replace=False))
    part = split.train
    lengths = part.lengths[users]
    items = np.concatenate(
      [part.items[part.indptr[u] : part.indptr[u + 1]] for u in users]
    )
    source = 'beauty users'
  else:
    lengths = np.minimum(rng.geometric(1 / 8, n_users) + 1, 60)
    items = rng.integers(0, n_items, lengths.sum())
    source = 'synthetic users'
  history = types.Part.from_events(
    np.repeat(np.arange(n_users), lengths), items, n_users
  )
  truth = types.Part.from_events(
    np.arange(n_users), rng.integers(0, n_items, n_users), n_users
  )
  return history, truth, source


def bench_diffurec_eval(flops: dict, repeats: int) -> list[dict]:
  del flops  # a rate of its own next to each timed pass (`paired_time`)
  from flax import linen as nn

  from configs import diffurec as diffurec_config

  n_items, n_users = _ITEMS.value, _EVAL_USERS.value
  config = _get_config(diffurec_config, 'dataset=beauty')
  chunk = min(config.eval.chunk_size, n_users)  # what validation runs
  model = models.get_neural_model('diffurec')(config.model, n_items)
  history, truth, source = _eval_histories(n_items, n_users)
  scorer = loop.ModelScorer(model)
  scorer.params = jax.jit(model.init)(
    jax.random.key(0), model.make_batch(history, np.arange(chunk))
  )
  run = lambda: ranking.rank(
    scorer, history, truth, None, n_items, k=20, chunk_size=chunk
  )
  seconds, rate = paired_time(run, max(1, repeats // 2))
  dim, steps = config.model.dim, config.model.steps

  def call_flops(b: int, length: int, last_only: bool) -> float:
    """Flops of one approximator call on [b, length] rows."""

    def one_call(params, seq):
      def fn(net):
        hist = net.encode(seq, False)
        lam = jnp.zeros(hist.shape)
        cond = jnp.zeros((b, 1, dim))
        mask = transformer.attention_mask(seq > 0, False)
        return net.approximate(hist, cond, lam, mask, False, last_only)

      return nn.apply(fn, model.net)({'params': params})

    seq = jax.ShapeDtypeStruct((b, length), jnp.int32)
    # The lowered (not compiled) module's count: the same dots, no compile.
    lowered = jax.jit(one_call).lower(scorer.params, seq)
    return lowered.cost_analysis()['flops']

  # The work done: the chunks `rank` ran, 32 calls each, last query only
  # in the final block; plus the scoring products.
  chunks, _ = ranking.chunk_plan(
    scorer, history, np.arange(n_users), chunk, ranking.can_fuse(scorer)
  )
  per_shape = {}
  work = 0.0
  for length, ids, _ in chunks:
    shape = (len(ids), length)
    if shape not in per_shape:
      per_shape[shape] = steps * call_flops(*shape, True)
    work += per_shape[shape] + 2 * len(ids) * dim * n_items
  # The official computation: every user on 50-item rows, every position
  # through every block.
  n_chunks = -(-n_users // chunk)
  full = n_chunks * (
    steps * call_flops(chunk, config.model.max_len, False)
    + 2 * chunk * dim * n_items
  )
  floor, full_floor = work / rate, full / rate
  scale = 22363 / n_users  # to all of Beauty's users
  return [
    {
      'task': f'DiffuRec validation, {n_users} {source} x {n_items} items',
      'seconds': seconds,
      'floor_s': floor,
      'floor/time': floor / seconds,
      'note': (
        f'22,363 users: {seconds * scale:.0f} s; floor of the work done'
        f' (trimmed rows, last query) {floor * scale:.0f} s; of full'
        f' {config.model.max_len}-item rows {full_floor * scale:.0f} s'
        f' ({full_floor / seconds:.2f} of it); official code: > 7 min;'
        f' matmul around the timed pass {rate / 1e9:.0f} GFLOP/s'
      ),
    }
  ]


def bench_adrec(flops: dict, repeats: int) -> list[dict]:
  """ADRec train step (B=512) and inference with / without k/v reuse."""
  from configs import adrec as adrec_config

  n_users, n_items, mean_len = _ADREC_USERS.value, _ADREC_ITEMS.value, 8.9
  config = _get_config(adrec_config, 'dataset=adrec-beauty')
  model, batch, data = _train_inputs(
    'adrec', config, n_items, n_users, mean_len
  )
  per_epoch = -(-len(data) // config.train.batch_size)
  seconds, step_flops = _time_train_step(
    model, config, batch, repeats, per_epoch
  )
  rows = [
    {
      'task': f'ADRec train step {_shape(config)}, {n_items} items',
      'seconds': seconds,
      'floor_s': step_flops / flops['xla'],
      'floor/time': step_flops / flops['xla'] / seconds,
      'note': (
        f'{step_flops / 1e9:.0f} GFLOP/step; epoch of the random split'
        f' ({per_epoch} steps)'
        f' {seconds * per_epoch:.1f} s'
      ),
    }
  ]
  # Inference: the reverse process + scores + top-20 for `eval_users`.
  users = min(_EVAL_USERS.value, n_users)
  chunk = min(256, users)
  split = _seq_split(n_items, users, mean_len)
  truth = types.Part.from_events(
    np.arange(users), np.zeros(users, np.int64), users
  )
  probe = model.make_batch(split.train, np.arange(chunk))
  params = jax.jit(model.init)(jax.random.key(0), probe)
  times, x0 = {}, {}
  for reuse in (True, False):
    m = models.get_neural_model('adrec')(
      mlc.ConfigDict({**config.model.to_dict(), 'kv_reuse': reuse}), n_items
    )
    scorer = loop.ModelScorer(m)
    scorer.params = params
    run = lambda scorer=scorer: ranking.rank(
      scorer, split.train, truth, None, n_items, k=20, chunk_size=chunk
    )
    times[reuse] = best_time(run, max(1, repeats // 2))
    x0[reuse] = jax.jit(m.reverse)(params, probe['inputs'], probe['users'])
  diff = float(jnp.max(jnp.abs(x0[True] - x0[False])))
  scale = n_users / users
  for reuse in (True, False):
    rows.append(
      {
        'task': (
          f'ADRec inference {"with" if reuse else "without"} k/v reuse,'
          f' {users} users'
        ),
        'seconds': times[reuse],
        'floor_s': float('nan'),
        'floor/time': float('nan'),
        'note': (
          f'{n_users} users: {times[reuse] * scale:.1f} s'
          + (
            f'; {times[False] / times[True]:.1f}x faster, max |dx0| {diff:.1e}'
            if reuse
            else f'; recomputes all {config.model.max_len} positions at'
            f' each of {config.model.steps} steps'
          )
        ),
      }
    )
  return rows


def _diffrec_split(
  name: str = 'diffrec-ml-1m-clean',
) -> tuple[types.Split, str]:
  """`name` (an ML-1M split of DiffRec) when its files are here, else a
  random split of --diffrec_users x --diffrec_items (default the clean
  shape, 5,949 x 2,810) with ML-1M's 68 train items per user."""
  try:
    return registry.get_split(name), name.removeprefix('diffrec-')
  except registry.DataError as e:
    logging.info('%s unavailable (%s); random', name, e)
  split = synthetic.clustered_split(
    _DIFFREC_USERS.value, _DIFFREC_ITEMS.value, per_user=85, kind='cf'
  )
  return split, 'random'


def _time_user_rows_step(config, split: types.Split, repeats: int):
  """(model, first batch, steps per epoch, seconds per step, flops per
  step) of a one-example-per-user model (DiffRec, CF-Diff) on `split`."""
  model = models.get_neural_model(config.model.name)(
    config.model, split.n_items
  )
  if hasattr(model, 'bind'):
    model = model.bind(split)
  batch_size = int(config.train.batch_size)
  plan = batching.BatchPlan(batch_size, seed=0, epochs=1)
  data = model.train_data(split, plan)
  index, weights = batching.batch_indices(len(data), batch_size, 0, 0)
  batch = model.train_batch(data, index, weights)
  per_epoch = batching.steps_per_epoch(len(data), batch_size)
  seconds, step_flops = _time_train_step(
    model, config, batch, repeats, per_epoch
  )
  return model, batch, per_epoch, seconds, step_flops


def _time_validation(scorer, split: types.Split, chunk: int, repeats: int):
  """Best seconds of one validation pass (train history, top-20)."""
  run = lambda: ranking.rank(
    scorer,
    split.train,
    split.valid,
    split.train,
    split.n_items,
    k=20,
    chunk_size=chunk,
  )
  return best_time(run, max(1, repeats // 2))


def bench_diffrec(flops: dict, repeats: int) -> list[dict]:
  """DiffRec at its ML-1M clean settings: a training epoch (15 steps of 400
  users) and a validation pass (every user through 40 reverse steps)."""
  from configs import diffrec as diffrec_config

  config = _get_config(diffrec_config)
  split, source = _diffrec_split()
  model, batch, per_epoch, seconds, step_flops = _time_user_rows_step(
    config, split, repeats
  )
  batch_size = int(config.train.batch_size)
  epoch, epoch_floor = seconds * per_epoch, step_flops * per_epoch
  scorer = loop.ModelScorer(model)
  scorer.params = jax.jit(model.init)(jax.random.key(0), batch)
  users = np.arange(split.n_users)
  chunk = int(config.eval.chunk_size)
  rank_s = _time_validation(scorer, split, chunk, repeats)
  one = model.make_batch(split.train, users[:chunk])
  score_flops = (
    jax.jit(model.score).lower(scorer.params, one).cost_analysis()['flops']
  )
  # The lowered module counts the scan body once: x T steps.
  rank_floor = score_flops * config.model.steps * -(-split.n_users // chunk)
  return [
    {
      'task': f'DiffRec train epoch, {source} ({split.n_users} users x'
      f' {split.n_items} items)',
      'seconds': epoch,
      'floor_s': epoch_floor / flops['xla'],
      'floor/time': epoch_floor / flops['xla'] / epoch,
      'note': (
        f'{per_epoch} steps of {batch_size}; {step_flops / 1e9:.1f}'
        ' GFLOP/step; official code ~4 s/epoch (REFERENCE.md)'
      ),
    },
    {
      'task': f'DiffRec validation, {source}: {config.model.steps} reverse'
      ' steps, top-20',
      'seconds': rank_s,
      'floor_s': rank_floor / flops['xla'],
      'floor/time': rank_floor / flops['xla'] / rank_s,
      'note': 'official code ~75 s per validation + test (REFERENCE.md)',
    },
  ]


def bench_ials(flops: dict, repeats: int) -> list[dict]:
  """iALS at its config's defaults (64 factors, 16 sweeps) on ML-1M clean.

  Floor per sweep: the Gram sums over every interaction on both sides
  (2 x 2 nnz d^2), the alpha0 Gram matrices (2 (U + I) d^2) and one
  Cholesky-sized solve per row ((U + I) 2 d^3 / 3).
  """
  from configs import ials as ials_config

  from jaxrec.models.linear import ials

  split, source = _diffrec_split()
  train = split.train.to_csr(split.n_items)
  config = ials_config.get_config().model
  seconds = best_time(lambda: ials.fit(train, config), repeats)
  d, rows = int(config.factors), sum(train.shape)
  sweep = 4 * train.nnz * d**2 + 2 * rows * d**2 + rows * 2 * d**3 / 3
  floor = int(config.epochs) * sweep / flops['xla']
  return [
    {
      'task': f'iALS fit, {source} ({train.shape[0]} x {train.shape[1]},'
      f' nnz {train.nnz})',
      'seconds': seconds,
      'floor_s': floor,
      'floor/time': floor / seconds,
      'note': f'{config.epochs} sweeps at {d} factors',
    }
  ]


def bench_ddrm(flops: dict, repeats: int) -> list[dict]:
  """DDRM inference (MF settings) over every user of ML-1M noisy: 20
  reverse steps of the item denoiser, then scores over all items, top-20."""
  from configs import ddrm as ddrm_config

  config = _get_config(ddrm_config)
  split, source = _diffrec_split('diffrec-ml-1m-noisy')
  model = models.get_neural_model('ddrm')(config.model, split.n_items)
  model = model.bind(split)
  scorer = loop.ModelScorer(model)
  scorer.params = jax.jit(model.init)(jax.random.key(0), None)
  chunk = int(config.eval.chunk_size)
  seconds = _time_validation(scorer, split, chunk, repeats)
  one = model.make_batch(split.train, np.arange(min(chunk, split.n_users)))
  lowered = jax.jit(model.user_vectors).lower(scorer.params, one)
  # The scan body is counted once: x S steps; plus the item scores.
  c = config.model
  per_chunk = lowered.cost_analysis()['flops'] * c.sampling_steps
  chunks = -(-split.n_users // chunk)
  floor_flops = per_chunk * chunks + 2 * split.n_users * split.n_items * c.dim
  floor = floor_flops / flops['xla']
  return [
    {
      'task': f'DDRM inference, {source} ({split.n_users} users x'
      f' {split.n_items} items), {c.sampling_steps} steps, top-20',
      'seconds': seconds,
      'floor_s': floor,
      'floor/time': floor / seconds,
      'note': 'official code: part of a ~1.5 min epoch (REFERENCE.md)',
    }
  ]


def bench_cfdiff(flops: dict, repeats: int) -> list[dict]:
  """CF-Diff at its ML-1M settings: one training step (128 users) and one
  ranking chunk (128 users through 20 reverse steps); an epoch and a
  validation pass are these times the number of batches. Not in the
  default list: on a 2-core CPU one chunk takes minutes."""
  from configs import cfdiff as cfdiff_config

  config = _get_config(cfdiff_config)
  split, source = _diffrec_split()
  model, batch, per_epoch, seconds, _ = _time_user_rows_step(
    config, split, repeats
  )
  batch_size = int(config.train.batch_size)
  params = jax.jit(model.init)(jax.random.key(0), batch)
  chunk = int(config.eval.chunk_size)
  one = model.make_batch(split.train, np.arange(min(chunk, split.n_users)))
  score = jax.jit(model.score)
  jax.block_until_ready(score(params, one))
  rank_s = best_time(
    lambda: jax.block_until_ready(score(params, one)), max(1, repeats // 2)
  )
  # XLA's cost analysis counts a loop body once: the flops come from the
  # same model with one attention block per batch (x T reverse steps).
  whole = config.model.copy_and_resolve_references()
  whole.attn_block = max(batch_size, chunk)
  whole = dataclasses.replace(model, config=whole)
  step, state, rng = _train_step(whole, config, batch)
  step_flops = step.lower(state, batch, rng).cost_analysis()['flops']
  score_flops = jax.jit(whole.score).lower(params, one).cost_analysis()
  score_flops = score_flops['flops'] * config.model.steps
  chunks = -(-split.n_users // chunk)
  data = model.train_data(split, batching.BatchPlan(batch_size, 0, epochs=1))
  return [
    {
      'task': f'CF-Diff train step, {source} ({batch_size} users)',
      'seconds': seconds,
      'floor_s': step_flops / flops['xla'],
      'floor/time': step_flops / flops['xla'] / seconds,
      'note': (
        f'{step_flops / 1e9:.1f} GFLOP/step; x {per_epoch} steps per epoch ='
        f' {_duration(seconds * per_epoch)}'
      ),
    },
    {
      'task': f'CF-Diff ranking chunk, {source} ({chunk} users,'
      f' {config.model.steps} reverse steps)',
      'seconds': rank_s,
      'floor_s': score_flops / flops['xla'],
      'floor/time': score_flops / flops['xla'] / rank_s,
      'note': (
        f'x {chunks} chunks per validation = {_duration(rank_s * chunks)}'
      ),
    },
    _host_batch_row(
      'CF-Diff', 'multi-hop rows', model, data, batch_size, seconds
    ),
  ]


def _random_train(n_users: int, n_items: int):
  dense = np.random.default_rng(0).random((n_users, n_items)) < 0.03
  return types.Part.from_events(*np.nonzero(dense), n_users).to_csr(n_items)


def bench_ease(flops: dict, repeats: int) -> dict:
  if _EASE_ITEMS.value:
    train = _random_train(2 * _EASE_ITEMS.value, _EASE_ITEMS.value)
    source = 'random items (--ease_items)'
  else:
    try:
      split = registry.get_split('ml-1m-raw')
      train = split.train.to_csr(split.n_items)
      source = 'ml-1m-raw train'
    except registry.DataError as e:
      logging.warning('ml-1m-raw not available (%s); random data instead', e)
      train = _random_train(6040, 3706)
      source = 'random 6040x3706 (ml-1m-raw absent)'
  n = train.shape[1]
  config = mlc.ConfigDict(
    {'l2': 500.0, 'dtype': 'float32', 'max_dense_bytes': 8 * 2**30}
  )
  seconds = best_time(lambda: ease.fit(train, config), repeats)
  floor = 2 * n**3 / flops['blas']
  return [
    {
      'task': f'EASE fit, {n} items',
      'seconds': seconds,
      'floor_s': floor,
      'floor/time': floor / seconds,
      'note': source,
    }
  ]


def _matmul_row(flops: dict, when: str) -> dict:
  return {
    'task': f'matmul f32 2048^3 ({when})',
    'seconds': 2 * 2048**3 / flops['xla'],
    'floor_s': 2 * 2048**3 / flops['xla'],
    'floor/time': 1.0,
    'note': (
      f'XLA {flops["xla"] / 1e9:.0f} GFLOP/s,'
      f' BLAS {flops["blas"] / 1e9:.0f} GFLOP/s'
    ),
  }


def main(argv):
  del argv
  repeats = _REPEATS.value
  benches = {
    'rank': bench_rank,
    'sasrec': bench_sasrec,
    'diffurec': bench_diffurec,
    'diffurec_eval': bench_diffurec_eval,
    'adrec': bench_adrec,
    'diffrec': bench_diffrec,
    'ease': bench_ease,
    'ials': bench_ials,
    'ddrm': bench_ddrm,
    'cfdiff': bench_cfdiff,
  }
  columns = ('task', 'seconds', 'floor_s', 'floor/time', 'note')
  rows = []
  for name in _ONLY.value:
    if name not in benches:
      raise KeyError(f'unknown bench {name!r}; known: {sorted(benches)}')
    # The rate is measured again right before each task, so that a machine
    # whose speed drifts (a shared VM) is compared with itself at the time.
    t0 = time.perf_counter()
    flops = matmul_flops(repeats)
    task_rows = [_matmul_row(flops, f'before {name}')]
    task_rows.extend(benches[name](flops, repeats))
    # And again after it: a rate far from the one before says the machine
    # drifted during the task, and by how much its ratios may be off.
    task_rows.append(_matmul_row(matmul_flops(repeats), f'after {name}'))
    # Each task's rows as soon as they exist: a run stopped by a time limit
    # keeps the tasks it finished.
    logging.info(
      '%s: %.1f s with compiles\n%s',
      name,
      time.perf_counter() - t0,
      report.markdown_table(task_rows, columns),
    )
    rows.extend(task_rows)
  print(f'\njax {jax.__version__} on {jax.devices()}\n')
  print(report.markdown_table(rows, columns))


if __name__ == '__main__':
  app.run(main)
