"""The training loop of every neural model: `train_and_evaluate`.

One jitted `train_step(state, batch, rng) -> (state, metrics)` (state
donated, batch sharded over the 'data' mesh axis, state replicated; static
shapes: the last batch of an epoch is padded and weighted 0), validation
through the protocol every `train.eval_every` steps (0: every epoch), early
stopping after `train.patience` validations without a new best on
`eval.select` (never before `train.min_epochs`, default 0), and one test
evaluation of the best checkpoint at the end.

Exact resume: re-running the same command on the same workdir continues
from the latest checkpoint. Everything the rest of the run depends on is a
function of what is saved: the batch of step s is drawn from (seed, s), the
dropout key is fold_in(key(seed), s), and early stopping is recomputed
from the saved validation history; so a run killed at any point and resumed
ends with the same parameters and metrics, bit for bit on CPU. A SIGTERM or
SIGINT (a scheduler's notice, Ctrl-C) is not a kill: the run finishes its
step, saves it, releases its lock and raises `signals.Interrupted` (exit
code 128 + signum), and resumes as exactly (`jaxrec/train/signals.py`).

A workdir whose saved config.json differs from the requested config is
refused with the differing keys, unless `fresh=True` (the old workdir is
then moved aside, not deleted). A NaN or inf loss stops the run with the
step, the epoch and batch index and the last finite metrics; checkpoints are
only written after every loss since the previous one was checked, so the
last checkpoint is always finite.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import pathlib
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax
from absl import logging
from jax.experimental import multihost_utils

from jaxrec import models
from jaxrec.data import batching, types
from jaxrec.eval import metrics as metrics_lib
from jaxrec.eval import protocol as protocol_lib
from jaxrec.train import (
  checkpoint,
  fit_linear,
  memory,
  optim,
  parallel,
  pcgrad,
  record,
  signals,
)
from jaxrec.train import writer as writer_lib


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


@flax.struct.dataclass
class StatefulTrainState(TrainState):
  """The state of a model that carries state between steps besides its
  parameters (`stateful`, e.g. DiffRec's loss history for importance
  sampling of timesteps). Other models keep `TrainState`, so their
  checkpoints keep their layout."""

  extra: Any


def new_state(model, params, tx) -> TrainState:
  """The state at step 0 (a `StatefulTrainState` for a stateful model)."""
  step = jnp.zeros((), jnp.int32)
  if stateful(model):
    return StatefulTrainState(step, params, tx.init(params), model.init_extra())
  return TrainState(step, params, tx.init(params))


def stateful(model) -> bool:
  """Whether `model` carries state between train steps: it then has
  `init_extra() -> pytree` and `loss(params, batch, rng, step, extra)`
  whose aux holds the next state under 'extra' (not differentiated)."""
  return hasattr(model, 'init_extra')


class ModelScorer:
  """Adapts a model and its current params to `ranking.Scorer`.

  One object serves a whole run (its `params` are swapped), so the ranking
  step compiles once. `traces` counts how often the per-user half of
  scoring was traced (`score`, or `user_vectors` on the fused path), per
  batch shape: a model that `trims_padding` is ranked in a few length
  groups (`ranking.rank`), each shape traced once.
  A model with `user_vectors` and `item_vectors` (models.dot.DotScore)
  passes them on, so ranking can fuse scoring with top-k.
  """

  def __init__(self, model):
    self.model = model
    prepare = getattr(model, 'ranking_params', None)
    self._prepare = None if prepare is None else jax.jit(prepare)
    self.params = None
    self.traces = collections.Counter()
    self.phantom_items = int(getattr(model, 'phantom_items', 0))
    if hasattr(model, 'user_vectors') and hasattr(model, 'item_vectors'):
      self.user_vectors = self._user_vectors
      self.item_vectors = model.item_vectors
    if getattr(model, 'trims_padding', False):
      self.input_lengths = model.input_lengths

  @property
  def params(self):
    return self._params

  @params.setter
  def params(self, value) -> None:
    # A model's `ranking_params` (e.g. LightGCN's propagation) runs once
    # per pass, here in the caller's thread. Run in every chunk, its SciPy
    # host callback deadlocked XLA's CPU thread pool when two ranking
    # workers waited on it at once.
    if value is not None and self._prepare is not None:
      value = self._prepare(value)
    self._params = value

  def make_batch(self, history: types.Part, users: np.ndarray, *length):
    return self.model.make_batch(history, users, *length)

  def _count(self, batch):  # runs at trace time only
    self.traces[jax.tree.leaves(batch)[0].shape] += 1

  def score(self, params, batch):
    self._count(batch)
    return self.model.score(params, batch, None)

  def _user_vectors(self, params, batch):
    self._count(batch)
    return self.model.user_vectors(params, batch)


def flatten_config(d: dict, prefix: str = '') -> dict:
  """A nested config dict as {'train.patience': 12, ...}."""
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(flatten_config(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


# Keys that say how a run reports, saves, batches its ranking and how much
# memory it may take, not what it computes: a resume may change them
# (config.json then records the new values), here or in a nested stage's
# config (`pretrain.config.`). Users per ranking chunk only move float
# summation order: noise at ranking is drawn per user
# (tests/train_loop_test.py checks every neural model).
OPERATIONAL_KEYS = (
  'train.log_every',
  'train.checkpoint_minutes',
  'train.max_memory_bytes',
  'eval.chunk_size',
)


# Keys added to the configs after runs were saved without them, each with
# the value that does what those runs did: a saved config that lacks one
# (here or in a nested stage's config) reads as holding that value.
ADDED_KEYS = {
  'eval.select_fraction': 1.0,
  'eval.select_seed': 42,
  'eval.batch_mean': 0,
  'eval.select_rule': 'max',
  # DiffuRec's and ADRec's PyTorch initialisation came later: runs before
  # it started from Flax's.
  'model.init': 'flax',
  # DreamRec's first-event examples came later: runs before it had none.
  'model.empty_history': False,
  # DreamRec's official history block came later: runs before it used
  # jaxrec's pre-LayerNorm block.
  'model.encoder': 'prenorm',
  # DreamRec's quirk flags came later: its runs before them had neither.
  'model.padding_item': False,
  'model.eval_dropout': False,
}


def _matches(key: str, names) -> str | None:
  return next((k for k in names if key == k or key.endswith(f'.{k}')), None)


def operational(key: str) -> bool:
  """Whether a flattened key is one of `OPERATIONAL_KEYS` (here or in a
  nested stage's config): it does not change what a run computes."""
  return _matches(key, OPERATIONAL_KEYS) is not None


def added_value(key: str):
  """The value a saved config that lacks `key` reads as holding: its
  `ADDED_KEYS` entry; KeyError for a key not listed there."""
  added = _matches(key, ADDED_KEYS)
  if added is None:
    raise KeyError(key)
  return ADDED_KEYS[added]


def config_diff(saved: dict, wanted: dict) -> list[str]:
  """'key: saved -> wanted' for every differing (flattened) key, except
  `OPERATIONAL_KEYS`; a key of `ADDED_KEYS` absent from `saved` reads as
  its listed value."""
  a, b = flatten_config(saved), flatten_config(wanted)
  older = set()  # keys the saved config predates
  for k in set(b) - set(a):
    added = _matches(k, ADDED_KEYS)
    if added is not None:
      a[k] = ADDED_KEYS[added]
      older.add(k)
  return [
    f'{k}: {a.get(k, "<absent>")!r} -> {b.get(k, "<absent>")!r}'
    + (
      f' (the saved config predates the key; to resume the run as it'
      f' started, pass --config.{k}={a[k]})'
      if k in older
      else ''
    )
    for k in sorted(set(a) | set(b))
    if a.get(k, '<absent>') != b.get(k, '<absent>') and not operational(k)
  ]


def _prepare_workdir(workdir: pathlib.Path, config: mlc.ConfigDict, fresh):
  """Writes config.json, or checks it against the saved one."""
  wanted = json.loads(json.dumps(protocol_lib.json_ready(config.to_dict())))
  path = workdir / 'config.json'
  if path.exists():
    diff = config_diff(json.loads(path.read_text()), wanted)
    if diff and not fresh:
      raise ValueError(
        f'{workdir} holds a run with a different config; refusing to resume'
        ' it with this one (pass --fresh to move it aside and start over).'
        ' Differing keys (saved -> requested):\n  ' + '\n  '.join(diff)
      )
    if fresh:
      aside = workdir.with_name(
        f'{workdir.name}.old-{time.strftime("%Y%m%d-%H%M%S")}'
      )
      workdir.rename(aside)
      logging.warning('--fresh: moved the old run to %s', aside)
  workdir.mkdir(parents=True, exist_ok=True)
  record.write_json(path, wanted)


def frozen_schedule(stages, params, steps_per_epoch: int):
  """`frozen(step) -> pytree of bool[]`: which params a stage freezes.

  Args:
    stages: `config.train.stages`: in order, {'epochs': n, 'frozen':
      (path prefixes, e.g. 'item_emb')}; after the last one nothing is
      frozen. (ADRec's warm-up: the pretrained embeddings stay fixed for
      its first epochs.)
    params: the params pytree (or its shapes).
    steps_per_epoch: converts stage lengths to steps.

  Returns:
    A pure function of the (traced) step, or None when there are no stages.
  """
  if not stages:
    return None
  bounds = np.cumsum([int(s['epochs']) for s in stages]) * steps_per_epoch
  paths = [
    jax.tree_util.keystr(p, simple=True, separator='/')
    for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]
  ]
  per_leaf = [[] for _ in paths]
  for i, stage in enumerate(stages):
    for prefix in stage['frozen']:
      hits = [n for n, path in enumerate(paths) if path.startswith(prefix)]
      if not hits:
        raise KeyError(
          f'train.stages[{i}].frozen: no parameter path starts with'
          f' {prefix!r}; paths: {paths[:8]}...'
        )
      for n in hits:
        per_leaf[n].append(i)
  treedef = jax.tree.structure(params)

  def frozen(step):
    stage = jnp.sum(step >= jnp.asarray(bounds))  # past the last: no stage
    flags = [jnp.isin(stage, jnp.asarray(idx, jnp.int32)) for idx in per_leaf]
    return jax.tree.unflatten(treedef, flags)

  return frozen


def _task_gradients(model, params, batch, rng, step):
  """PCGrad over `model.task_losses`: (mean loss, aux, mean of the
  projected task gradients), as the official PCGrad merges them."""
  fn = lambda p: model.task_losses(p, batch, rng, step)
  losses, vjp, aux = jax.vjp(fn, params, has_aux=True)
  n = losses.shape[0]
  (stacked,) = jax.vmap(vjp)(jnp.eye(n, dtype=losses.dtype))
  grads = pcgrad.combine(stacked, jax.random.fold_in(rng, 0x9C))
  grads = jax.tree.map(lambda g: g / n, grads)
  total = jnp.mean(losses)
  return total, {'loss_sum': total * aux['count'], 'count': aux['count']}, grads


def _make_train_step(model, tx, frozen=None, use_pcgrad=False, leaky=False):
  """The pure train step.

  Args:
    model: the model surface; with `use_pcgrad`, it needs `task_losses`.
    tx: the optimizer.
    frozen: `frozen(step)` (see `frozen_schedule`): zeroes the gradients
      and updates of the parameters a stage freezes.
    use_pcgrad: combine the task gradients with PCGrad (`jaxrec.train.
      pcgrad`) instead of differentiating `model.loss`.
    leaky: the official-ADRec quirk: frozen parameters get zero gradients
      but their updates are not masked, so coupled weight decay moves them.
  """

  carries = stateful(model)
  if carries and use_pcgrad:
    raise ValueError('train.pcgrad is not supported for a stateful model')

  def train_step(state: TrainState, batch, rng):
    extra = {}
    if carries:
      loss = functools.partial(model.loss, extra=state.extra)
      (_, aux), grads = jax.value_and_grad(loss, has_aux=True)(
        state.params, batch, rng, state.step
      )
      extra = {'extra': jax.lax.stop_gradient(aux['extra'])}
    elif use_pcgrad:
      _, aux, grads = _task_gradients(
        model, state.params, batch, rng, state.step
      )
    else:
      grad_fn = jax.value_and_grad(model.loss, has_aux=True)
      (_, aux), grads = grad_fn(state.params, batch, rng, state.step)
    if frozen is not None:
      mask = frozen(state.step)
      grads = jax.tree.map(lambda g, f: jnp.where(f, 0, g), grads, mask)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    if frozen is not None and not leaky:
      updates = jax.tree.map(lambda u, f: jnp.where(f, 0, u), updates, mask)
    params = optax.apply_updates(state.params, updates)
    metrics = {
      'loss_sum': aux['loss_sum'],
      'count': aux['count'],
      'grad_norm': optax.tree.norm(grads),
    }
    new = state.replace(
      step=state.step + 1, params=params, opt_state=opt_state, **extra
    )
    return new, metrics

  return train_step


class _Window:
  """Per-step metrics since the last flush, checked for NaN on the host."""

  def __init__(self):
    self.pending: list[tuple[int, dict]] = []
    self.last_finite: tuple[int, dict] | None = None

  def add(self, step: int, metrics) -> None:
    self.pending.append((step, metrics))

  def check(self, steps_per_epoch: int) -> list[tuple[int, dict]]:
    """The pending metrics on the host; FloatingPointError on a non-finite
    loss."""
    host = jax.device_get([m for _, m in self.pending])
    checked = []
    for (step, _), m in zip(self.pending, host, strict=True):
      m = {k: float(v) for k, v in m.items()}
      loss = m['loss_sum'] / max(m['count'], 1.0)
      if not (np.isfinite(loss) and np.isfinite(m['grad_norm'])):
        epoch, b = divmod(step, steps_per_epoch)
        last = self.last_finite
        raise FloatingPointError(
          f'non-finite loss {loss} (grad norm {m["grad_norm"]}) at step'
          f' {step} (epoch {epoch}, batch {b} of {steps_per_epoch}); last'
          f' finite: {"none" if last is None else f"step {last[0]} {last[1]}"}.'
          ' The last checkpoint is intact (saved before this step).'
        )
      self.last_finite = (step, {'loss': loss})
      checked.append((step, m))
    self.pending = list(checked)
    return checked

  def flush(self, steps_per_epoch: int) -> dict | None:
    """Mean loss over the window; FloatingPointError on a non-finite loss."""
    if not self.pending:
      return None
    host = self.check(steps_per_epoch)
    self.pending = []
    total = sum(m['loss_sum'] for _, m in host)
    count = sum(m['count'] for _, m in host)
    return {
      'train/loss': total / max(count, 1.0),
      'train/grad_norm': host[-1][1]['grad_norm'],
    }


@dataclasses.dataclass(frozen=True)
class _Setup:
  """What a run and a re-evaluation share: model, data, mesh, state shape."""

  config: mlc.ConfigDict
  model: Any
  data: Any
  per_epoch: int
  total_steps: int
  mesh: jax.sharding.Mesh
  repl: jax.sharding.NamedSharding
  tx: optax.GradientTransformation
  init_key: jax.Array
  train_key: jax.Array
  rows: slice

  @classmethod
  def build(cls, config: mlc.ConfigDict, split: types.Split) -> _Setup:
    tc = config.train
    model = models.get_neural_model(config.model.name)(
      config.model, split.n_items
    )
    if hasattr(model, 'bind'):  # models that read the train graph / users
      model = model.bind(split)
    batch_size = int(tc.batch_size)
    per_epoch = batching.steps_per_epoch(model.train_size(split), batch_size)
    total_steps = int(tc.steps) or int(tc.epochs) * per_epoch
    plan = batching.BatchPlan(
      batch_size,
      config.seed,
      epochs=-(-total_steps // per_epoch),
      groups=jax.device_count(),
      hosts=jax.process_count(),
    )
    parallel.check_batch_size(batch_size)
    mesh = parallel.make_mesh()
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    return cls(
      config,
      model,
      model.train_data(split, plan),
      per_epoch,
      total_steps,
      mesh,
      parallel.replicated(mesh),
      optim.make(config.optim, total_steps, per_epoch),
      init_key,
      train_key,
      batching.host_slice(batch_size, jax.process_index(), jax.process_count()),
    )

  def host_batch(self, step: int):
    """This host's rows of the batch of global step `step`."""
    index, weights = batching.batch_indices(
      len(self.data), int(self.config.train.batch_size), self.config.seed, step
    )
    args = (self.data, index[self.rows], weights[self.rows])
    if getattr(self.model, 'host_rng', False):  # samples on the host
      seed = (self.config.seed, step, jax.process_index())
      args += (np.random.default_rng(seed),)
    return self.model.train_batch(*args)

  def init_state(self) -> TrainState:
    params = self.model.init(self.init_key, self.host_batch(0))
    return new_state(self.model, params, self.tx)

  def train_step(self, traces: dict) -> Any:
    """The jitted train step (state donated); counts its traces in
    `traces['train_step']` and fails on a second one."""
    tc, model = self.config.train, self.model
    frozen = frozen_schedule(
      tuple(tc.get('stages', ())), self.abstract.params, self.per_epoch
    )
    use_pcgrad = bool(tc.get('pcgrad', False))
    if use_pcgrad and not hasattr(model, 'task_losses'):
      raise ValueError(
        f'train.pcgrad=True, but model {self.config.model.name!r} has no'
        ' task losses'
      )
    leaky = bool(self.config.model.get('leaky_freeze', False))
    step_fn = _make_train_step(model, self.tx, frozen, use_pcgrad, leaky)

    def counted_step(*args):
      # Runs at trace time only. Shapes are static, so a second trace is a
      # bug (a recompile per batch); the same check as chex.assert_max_traces,
      # but per run rather than per function name in the process.
      traces['train_step'] += 1
      if traces['train_step'] > 1:
        raise AssertionError('the train step was traced twice (shape change?)')
      return step_fn(*args)

    return jax.jit(
      counted_step,
      donate_argnums=0,
      in_shardings=(self.repl, parallel.batch_sharding(self.mesh), self.repl),
      out_shardings=(self.repl, self.repl),
    )

  def step_memory(self, train_step) -> memory.StepMemory:
    """`train_step`'s memory per device, compiled on abstract inputs of the
    run's shapes and shardings (the run's first call reuses the compile)."""
    batch_sharding = parallel.batch_sharding(self.mesh)
    batch = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(
        (x.shape[0] * jax.process_count(), *x.shape[1:]),
        x.dtype,
        sharding=batch_sharding,
      ),
      self.host_batch(0),
    )
    # Unplaced, as the loop's `fold_in` keys are: placed, the call retraces.
    key = jax.eval_shape(lambda: self.train_key)
    lowered = train_step.lower(self.abstract, batch, key)
    return memory.StepMemory.of(lowered.compile())

  @property
  def abstract(self):
    """The state's shapes and (replicated) shardings, for restoring."""
    shapes = jax.eval_shape(self.init_state)
    return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=self.repl),
      shapes,
    )


def train_step_memory(
  config: mlc.ConfigDict, split: types.Split
) -> memory.StepMemory:
  """What the train step of `config` on `split` needs per device, from
  compiling it on abstract inputs: nothing is initialised or trained."""
  run = _Setup.build(config, split)
  return run.step_memory(run.train_step({'train_step': 0}))


def _pretrained_params(config, workdir: pathlib.Path, split) -> dict | None:
  """The parameters `config.pretrain` copies from its pre-training run.

  `config.pretrain` = {'config': a full experiment config, 'params': top-
  level parameter names, 'workdir': where that run lives (relative to
  `workdir`; default 'pretrain')}. It is trained there, or resumed, or read
  back when complete; its selected (best) checkpoint provides the
  parameters.
  """
  pc = config.get('pretrain')
  if pc is None or not pc.get('config'):
    return None
  sub = workdir / pc.get('workdir', 'pretrain')  # an absolute path wins
  logging.info('stage pretrain: %s in %s', pc.config.model.name, sub)
  train_and_evaluate(pc.config, sub, split=split)
  sub_run = _Setup.build(pc.config, split)
  ckpts = checkpoint.Checkpoints(sub / 'checkpoints')
  try:
    state, _ = ckpts.restore_best(sub_run.abstract)
  finally:
    ckpts.close()
  out = {}
  for name in pc.params:
    if name not in state.params:
      raise KeyError(
        f'pretrain.params: {name!r} is not a parameter of the pre-training'
        f' model {pc.config.model.name!r} (it has {sorted(state.params)})'
      )
    out[name] = state.params[name]
  return out


def _with_params(state: TrainState, new: dict, tx, sharding) -> TrainState:
  """`state` with top-level parameters replaced and the optimizer re-
  initialised; shapes must match."""
  for name, tree in new.items():
    if name not in state.params:
      raise KeyError(f'pretrain.params: the model has no parameter {name!r}')
    want = jax.tree.map(jnp.shape, state.params[name])
    got = jax.tree.map(jnp.shape, tree)
    if want != got:
      raise ValueError(
        f'pretrain.params: {name!r} has shapes {got}; the model needs {want}'
      )
  params = {**state.params, **new}
  fresh = state.replace(params=params, opt_state=tx.init(params))
  return jax.device_put(fresh, sharding)


@dataclasses.dataclass(frozen=True)
class BestRun:
  """A workdir's best checkpoint with what it was trained on."""

  config: mlc.ConfigDict
  split: types.Split
  model: Any
  state: TrainState


def restore_best(workdir: str | pathlib.Path) -> BestRun:
  """The best checkpoint of a finished or running workdir, its saved config
  and its split (checkpoint.CheckpointError when it cannot be read)."""
  workdir = pathlib.Path(workdir)
  config = mlc.ConfigDict(json.loads((workdir / 'config.json').read_text()))
  split = fit_linear.load_split(config)
  run = _Setup.build(config, split)
  ckpts = checkpoint.Checkpoints(workdir / 'checkpoints')
  try:
    state, _ = ckpts.restore_best(run.abstract)
  finally:
    ckpts.close()
  return BestRun(config, split, run.model, state)


def evaluate_best(workdir: str | pathlib.Path, batch_mean: int = 0) -> dict:
  """Re-ranks valid and test with a finished or running workdir's best
  checkpoint (experiments/eval.py); writes and returns eval.json's dict.

  This re-measures the state validation already selected; it selects
  nothing, so it cannot leak test data into a choice. `batch_mean` N > 0
  adds 'test_batch_mean': the test metrics averaged as the DiffuRec /
  ADRec official code does (`metrics.batch_mean` over N users).
  """
  workdir = pathlib.Path(workdir)
  best = restore_best(workdir)
  config, split, state = best.config, best.split, best.state
  protocol = fit_linear.make_protocol(split, config.eval)
  scorer = ModelScorer(best.model)
  scorer.params = jax.device_put(state.params, jax.local_devices()[0])
  step = int(state.step)
  valid = protocol.validate(scorer, step)
  test = protocol.final_test(scorer, step)
  out = {
    'step': step,
    'valid': valid.metrics,
    'test': test.metrics,
    'test_coverage': test.coverage,
    **(
      {
        'test_batch_mean': {
          k: metrics_lib.batch_mean(v, batch_mean)
          for k, v in test.per_user.items()
        },
        'batch_mean': batch_mean,
      }
      if batch_mean
      else {}
    ),
    'params_sha256': record.tree_sha256(state.params),
    'environment': record.environment(),
  }
  record.write_json(workdir / 'eval.json', out)
  return out


def train_and_evaluate(
  config: mlc.ConfigDict,
  workdir: str | pathlib.Path,
  fresh: bool = False,
  split: types.Split | None = None,
  test: bool = True,
) -> dict:
  """Trains `config.model` on `config.dataset`; returns results.json's dict.

  Args:
    config: the experiment config (see configs/sasrec.py).
    workdir: run directory: config.json, metrics.jsonl, tensorboard/,
      checkpoints/, results.json.
    fresh: move an existing run with a different config aside.
    split: use this split instead of loading `config.dataset` (tests).
    test: rank test on the selected state. False stops after selection (a
      sweep point that may never be chosen): results.json then has no
      'test', and a later call with `test=True` only runs the test.
  """
  start = time.time()
  # Taken now: the code that runs is the code of the start, not of the end.
  environment = record.environment()
  workdir = pathlib.Path(workdir)
  parallel.initialize(config.train)
  # One process writes a workdir (record.RunBusy otherwise); in a multi-host
  # run, process 0 holds the lock for all.
  with record.run_lock(workdir, owner=jax.process_index() == 0):
    return _train_and_evaluate(
      config, workdir, fresh, split, test, start, environment
    )


def _train_and_evaluate(
  config, workdir, fresh, split, test, start, environment
) -> dict:
  tc = config.train

  # Setup --------------------------------------------------------------------
  _prepare_workdir(workdir, config, fresh)
  results_path = workdir / 'results.json'
  if results_path.exists():
    done = json.loads(results_path.read_text())
    if 'test' in done or not test:
      logging.info('%s is complete; returning its results', workdir)
      return done

  # Data, mesh, state ---------------------------------------------------------
  split = split if split is not None else fit_linear.load_split(config)
  logging.info('split: %s', split.summary())
  protocol = fit_linear.make_protocol(split, config.eval)
  run = _Setup.build(config, split)
  model, mesh, repl, abstract = run.model, run.mesh, run.repl, run.abstract
  per_epoch, total_steps = run.per_epoch, run.total_steps
  host_batch = run.host_batch
  eval_every = int(tc.eval_every) or per_epoch * int(
    tc.get('eval_every_epochs', 1)
  )
  train_key = run.train_key

  # Memory -------------------------------------------------------------------
  # The train step is compiled now, on abstract inputs (the loop's first call
  # reuses it), so that a step that would not fit is refused before anything
  # runs: before a pre-training stage too, and before a restore.
  traces = {'train_step': 0}
  train_step = run.train_step(traces)
  memory_need = run.step_memory(train_step)
  logging.info('train step: %s', memory_need.describe())
  memory.check(
    memory_need,
    int(tc.get('max_memory_bytes', 0)),
    f'{config.model.name} train step (batch {tc.batch_size})',
  )

  # Restore ------------------------------------------------------------------
  ckpts = checkpoint.Checkpoints(workdir / 'checkpoints')
  restored = ckpts.restore_latest(abstract)
  stopped = False
  resumed_window = []
  if restored is None:
    state = jax.jit(run.init_state, out_shardings=repl)()
    pre = _pretrained_params(config, workdir, split)
    if pre is not None:
      if hasattr(model, 'from_pretrained'):  # e.g. DDRM propagates once
        pre = model.from_pretrained(pre)
      state = _with_params(state, pre, run.tx, repl)
    logging.info('new run: %d steps (%d per epoch)', total_steps, per_epoch)
  else:
    state, meta = restored
    del restored  # `state` is donated to the train step
    protocol.history = [
      (int(t), {k: np.nan if v is None else v for k, v in m.items()})
      for t, m in meta['history']
    ]
    stopped = bool(meta['stopped'])
    # Losses since the last log step, when a stop signal saved mid-window.
    resumed_window = [(int(t), m) for t, m in meta.get('window', [])]
    logging.info('resumed from step %d', int(state.step))
    if (
      protocol.history
      and protocol.best()[0] == int(state.step) != ckpts.best_step()
    ):
      # Killed between the latest and the best save of this step.
      logging.warning('re-saving step %d as the best checkpoint', state.step)
      ckpts.save_best(int(state.step), state, meta)
  step = start_step = int(state.step)

  scorer = ModelScorer(model)
  eval_device = jax.local_devices()[0]

  def validate(step: int) -> dict:
    # Ranking runs on one device; its thread pool and sharded params do not
    # mix (XLA CPU collectives deadlock across threads).
    scorer.params = jax.device_put(state.params, eval_device)
    return protocol.validate(scorer, step).metrics

  # Loop ---------------------------------------------------------------------
  writer = writer_lib.MetricWriter(workdir, step)
  window = _Window()
  window.pending = resumed_window
  bar = writer_lib.progress(total_steps, step, config.model.name)
  train_time = 0.0
  t0 = time.perf_counter()
  # Besides every validation, the latest state is saved every
  # `checkpoint_minutes` of wall time (0 = only at validations; at a logging
  # step, so that a resume's loss windows are the uninterrupted run's), so a
  # long interval between validations is not lost to a kill.
  save_every = 60.0 * float(tc.get('checkpoint_minutes', 0.0))
  last_save = t0
  saved_step = start_step

  def save(best: bool) -> None:
    nonlocal last_save, saved_step
    meta = {
      'history': protocol.history,
      'stopped': stopped,
      'seed': config.seed,
      # Empty but after a stop signal: then the losses since the last log
      # step, already checked finite, so the resumed run logs them.
      'window': window.check(per_epoch),
    }
    ckpts.save(step, state, protocol_lib.json_ready(meta), best)
    last_save = time.perf_counter()
    saved_step = step

  interrupted = None
  try:
    with signals.stop_requests() as requested:
      while step < total_steps and not stopped:
        batch = parallel.shard_batch(host_batch(step), mesh)
        rng = jax.random.fold_in(train_key, step)
        state, metrics = train_step(state, batch, rng)
        window.add(step, metrics)
        step += 1
        bar.update(1)
        at_eval = step % eval_every == 0 or step == total_steps
        if step % int(tc.log_every) == 0 or at_eval:
          scalars = window.flush(per_epoch)
          writer.write_scalars(step, {**scalars, 'epoch': step / per_epoch})
          bar.set_postfix(loss=f'{scalars["train/loss"]:.4f}')
        if at_eval:
          jax.block_until_ready(state)
          train_time += time.perf_counter() - t0
          valid = validate(step)
          best_tag, best_value = protocol.best()
          since_best = (
            len(protocol.history)
            - 1
            - [t for t, _ in protocol.history].index(best_tag)
          )
          stopped = (
            since_best >= int(tc.patience)
            and step < total_steps
            and step >= int(tc.get('min_epochs', 0)) * per_epoch
          )
          writer.write_scalars(
            step, {f'valid/{k}': v for k, v in valid.items()}
          )
          writer.flush()
          rate = (step - start_step) / max(train_time, 1e-9)
          logging.info(
            'step %d/%d: valid %s=%.5f (best %.5f at step %s); %.1f steps/s,'
            ' ETA %.0f min%s',
            step,
            total_steps,
            config.eval.select,
            valid[config.eval.select],
            best_value,
            best_tag,
            rate,
            (total_steps - step) / max(rate, 1e-9) / 60,
            '; early stop' if stopped else '',
          )
          save(best_tag == step)
          t0 = time.perf_counter()
        elif (
          save_every
          and step % int(tc.log_every) == 0  # the loss window was just flushed
          and time.perf_counter() - last_save >= save_every
        ):
          save(False)
        if jax.process_count() == 1:
          signum = requested()
        else:  # hosts may see a signal at different steps: all stop at
          # the first log step after any of them has (one collective each)
          signum = 0
          if step % int(tc.log_every) == 0:
            signum = int(
              np.max(multihost_utils.process_allgather(np.int32(requested())))
            )
        if signum:
          if saved_step != step:
            save(False)
          interrupted = signals.Interrupted(signum, step)
          break
  finally:
    # A failing run (NaN loss, interrupt) still completes the checkpoint
    # being written in the background, so the last good one is kept.
    bar.close()
    writer.close()
    ckpts.wait()
  if interrupted is not None:
    logging.warning('%s: %s', workdir, interrupted)
    raise interrupted
  train_steps = step - start_step

  # Final test ---------------------------------------------------------------
  best_tag, _ = protocol.best()
  best_state, _ = ckpts.restore_best(abstract)
  if int(best_state.step) != best_tag:
    raise checkpoint.CheckpointError(
      f'best checkpoint holds step {int(best_state.step)}, but validation'
      f' selected step {best_tag}'
    )
  tested = None
  if test:
    scorer.params = jax.device_put(best_state.params, eval_device)
    tested = protocol.final_test(scorer, best_tag)
  ckpts.close()
  results = protocol.record()
  results.update(
    model=config.model.name,
    selected_step=best_tag,
    selected_epoch=best_tag / per_epoch,
    train_steps_total=step,
    steps_per_epoch=per_epoch,
    stopped_early=stopped,
    seed=config.seed,
    quirks={
      **{k: config.model[k] for k in getattr(model, 'QUIRKS', ())},
      **protocol_lib.eval_quirks(config.eval),
    },
    devices=[str(d) for d in jax.devices()],
    # The train step's memory per device, from this process's compile.
    memory=memory_need.as_dict(),
    # 'score': the most traces of any one batch shape (1 = none retraced);
    # 'score_shapes': how many shapes were ranked (trimmed length groups).
    traces={
      **traces,
      'score': max(scorer.traces.values(), default=0),
      'score_shapes': len(scorer.traces),
    },
    params_sha256={
      'selected': record.tree_sha256(best_state.params),
      'last': record.tree_sha256(state.params),
    },
    wall_s=time.time() - start,
    train_s_this_process=train_time,
    steps_per_s=train_steps / train_time if train_time else None,
    environment=environment,
  )
  record.write_json(results_path, results)
  if tested is None:
    logging.info('selected step %d; test not run', best_tag)
  else:
    logging.info(
      'test at step %d: %s',
      best_tag,
      json.dumps(tested.metrics, sort_keys=True),
    )
  return results
