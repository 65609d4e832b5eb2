"""The training loop: run record, exact resume after SIGKILL, sharding,
compile-once, NaN stop, config refusal."""

import importlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import sasrec as sasrec_config
from jaxrec import models
from jaxrec.models import sasrec
from jaxrec.train import checkpoint, loop

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = 'configs/sasrec.py:dataset=synthetic-seq,tiny'


def _config(**train):
  c = sasrec_config.get_config('dataset=synthetic-seq,tiny')
  c.train.update(train)
  return c


def _train_cmd(workdir, *overrides, env=None):
  cmd = [
    sys.executable,
    '-m',
    'experiments.train',
    f'--config={TINY}',
    f'--workdir={workdir}',
    *overrides,
  ]
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', **(env or {})}
  return cmd, env


def _run(workdir, *overrides, env=None):
  cmd, env = _train_cmd(workdir, *overrides, env=env)
  done = subprocess.run(
    cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
  )
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads((pathlib.Path(workdir) / 'results.json').read_text())


def _jsonl(path):
  return [json.loads(x) for x in pathlib.Path(path).read_text().splitlines()]


def test_run_record(tmp_path):
  results = loop.train_and_evaluate(
    _config(steps=24, eval_every=6, log_every=3), tmp_path
  )
  steps = [v['tag'] for v in results['valid_curve']]
  assert steps == [6, 12, 18, 24]
  best = max(results['valid_curve'], key=lambda v: v['metrics']['ndcg@10'])
  assert results['selected_step'] == best['tag'] == results['test']['tag']
  assert set(results['test']['metrics']) >= {'hr@10', 'ndcg@10', 'ndcg@20'}
  assert len(results['test']['per_user']['users']) == 96
  # The train step and the ranking step each compiled exactly once.
  assert results['traces'] == {'train_step': 1, 'score': 1, 'score_shapes': 1}
  assert results['split']['hash'] and results['seed'] == 0
  assert results['environment']['versions']['jax']
  assert results['steps_per_s'] > 0
  rows = _jsonl(tmp_path / 'metrics.jsonl')
  losses = [r['train/loss'] for r in rows if 'train/loss' in r]
  assert len(losses) == 8 and losses[-1] < losses[0]
  assert [r['step'] for r in rows if 'valid/ndcg@10' in r] == steps
  assert list((tmp_path / 'tensorboard').glob('events.out.tfevents.*'))
  saved = json.loads((tmp_path / 'config.json').read_text())
  assert saved['train']['steps'] == 24
  # experiments/eval.py re-ranks the best checkpoint: the same test figures.
  again = loop.evaluate_best(tmp_path, batch_mean=40)
  assert again['step'] == results['selected_step']
  assert again['test'] == results['test']['metrics']
  assert again['params_sha256'] == results['params_sha256']['selected']
  # 96 users in batches of 40, 40 and 16: the official averaging.
  v = np.asarray(results['test']['per_user']['hr@10'])
  want = np.mean([v[:40].mean(), v[40:80].mean(), v[80:].mean()])
  assert again['test_batch_mean']['hr@10'] == pytest.approx(want)
  # Re-running a finished workdir returns its results without training.
  again = loop.train_and_evaluate(
    _config(steps=24, eval_every=6, log_every=3), tmp_path
  )
  assert again == json.loads((tmp_path / 'results.json').read_text())


def test_exact_resume_after_sigkill(tmp_path):
  args = ('--config.train.steps=60', '--config.train.eval_every=6')
  full = _run(tmp_path / 'full', *args)
  # The killed run also saves between validations (every ~6 ms of wall
  # time): an operational key, so the resume may drop it.
  timed = '--config.train.checkpoint_minutes=0.0001'

  cmd, env = _train_cmd(tmp_path / 'killed', *args, timed)
  proc = subprocess.Popen(
    cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
  )
  latest = tmp_path / 'killed' / 'checkpoints' / 'latest'
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if latest.exists() and any(
      p.name.isdigit() and int(p.name) % 6 for p in latest.iterdir()
    ):
      break
    time.sleep(0.01)
  assert proc.poll() is None, 'the run ended before it could be killed'
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  # A record line cut off by the kill is dropped on resume, not fatal.
  with open(tmp_path / 'killed' / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 99, "train/lo')
  killed_at = max(int(p.name) for p in latest.iterdir() if p.name.isdigit())
  assert killed_at < 60

  resumed = _run(tmp_path / 'killed', *args)
  assert resumed['params_sha256'] == full['params_sha256']
  assert resumed['test'] == full['test']
  assert resumed['valid_curve'] == full['valid_curve']
  assert _jsonl(tmp_path / 'killed' / 'metrics.jsonl') == _jsonl(
    tmp_path / 'full' / 'metrics.jsonl'
  )


def test_four_devices_give_the_same_loss_curve(tmp_path):
  args = ('--config.train.steps=8', '--config.train.log_every=1')
  one = _run(tmp_path / 'one', *args)
  four = _run(
    tmp_path / 'four',
    *args,
    env={'XLA_FLAGS': '--xla_force_host_platform_device_count=4'},
  )
  assert len(one['devices']) == 1 and len(four['devices']) == 4
  # Memory per device: the state whole on each, the batch split four ways.
  assert four['memory']['aliased'] == one['memory']['aliased']
  assert four['memory']['arguments'] < one['memory']['arguments']
  loss = lambda d: [
    r['train/loss'] for r in _jsonl(d / 'metrics.jsonl') if 'train/loss' in r
  ]
  assert len(loss(tmp_path / 'one')) == 8
  np.testing.assert_allclose(
    loss(tmp_path / 'four'), loss(tmp_path / 'one'), rtol=1e-5, atol=1e-5
  )


def test_nan_loss_stops_naming_the_step(tmp_path, monkeypatch):
  original = sasrec.SASRec.loss

  def nan_from_step_8(self, params, batch, rng, step):
    loss, aux = original(self, params, batch, rng, step)
    bad = step >= 8
    aux = {**aux, 'loss_sum': jnp.where(bad, jnp.nan, aux['loss_sum'])}
    return jnp.where(bad, jnp.nan, loss), aux

  monkeypatch.setattr(sasrec.SASRec, 'loss', nan_from_step_8)
  with pytest.raises(FloatingPointError, match=r'at step 8 \(epoch 1, batch 2'):
    loop.train_and_evaluate(
      _config(steps=20, eval_every=6, log_every=4), tmp_path
    )
  # The checkpoint of step 6 is intact and finite.
  monkeypatch.setattr(sasrec.SASRec, 'loss', original)
  assert sorted(
    int(p.name) for p in (tmp_path / 'checkpoints' / 'latest').iterdir()
  ) == [6]
  results = loop.train_and_evaluate(
    _config(steps=20, eval_every=6, log_every=4), tmp_path
  )
  assert [v['tag'] for v in results['valid_curve']] == [6, 12, 18, 20]


def test_config_change_is_refused_with_a_diff_unless_fresh(tmp_path):
  loop.train_and_evaluate(_config(steps=6, eval_every=6), tmp_path)
  changed = _config(steps=6, eval_every=6)
  changed.optim.lr = 0.5
  with pytest.raises(ValueError, match=r'optim\.lr: 0\.001 -> 0\.5'):
    loop.train_and_evaluate(changed, tmp_path)
  results = loop.train_and_evaluate(changed, tmp_path, fresh=True)
  assert 'test' in results
  assert list(tmp_path.parent.glob(f'{tmp_path.name}.old-*'))
  # How often it logs and saves, and how many users a ranking chunk holds,
  # may change (and are recorded).
  changed.train.update(log_every=5, checkpoint_minutes=1.0)
  changed.eval.chunk_size = 7
  assert loop.train_and_evaluate(changed, tmp_path)['test'] == results['test']
  saved = json.loads((tmp_path / 'config.json').read_text())
  assert saved['train']['log_every'] == 5
  assert saved['eval']['chunk_size'] == 7
  # So in a nested stage's config, and only as the key's last part.
  nested = lambda chunk, every: {
    'pretrain': {'config': {'eval': {'chunk_size': chunk}}},
    'train': {'eval_every': every},
  }
  assert loop.config_diff(nested(512, 3), nested(64, 3)) == []
  assert loop.config_diff(nested(512, 3), nested(512, 4)) == [
    'train.eval_every: 3 -> 4'
  ]
  # A key added to the configs later reads, when a saved config lacks it,
  # as the value that does what the saved run did; any other value differs.
  before = {'eval': {'select': 'ndcg@20'}}
  after = lambda fraction: {
    'eval': {'select': 'ndcg@20', 'select_fraction': fraction}
  }
  assert loop.config_diff(before, after(1.0)) == []
  assert loop.config_diff(before, after(0.5)) == [
    'eval.select_fraction: 1.0 -> 0.5 (the saved config predates the key;'
    ' to resume the run as it started, pass --config.eval.select_fraction=1.0)'
  ]
  assert loop.config_diff(after(0.5), before) == [
    "eval.select_fraction: 0.5 -> '<absent>'"
  ]


def test_unreadable_latest_checkpoint_falls_back(tmp_path):
  ckpts = checkpoint.Checkpoints(tmp_path)
  state = {'w': np.arange(4.0, dtype=np.float32)}
  for step in (1, 2):
    ckpts.save(step, {'w': state['w'] * step}, {'step': step}, best=False)
  ckpts.wait()
  for f in (tmp_path / 'latest' / '2').rglob('*'):
    if f.is_file() and 'state' in str(f):
      f.write_bytes(b'garbage')
  abstract = {'w': jnp.zeros(4, jnp.float32)}
  restored, meta = ckpts.restore_latest(abstract)
  assert meta == {'step': 1}
  np.testing.assert_array_equal(restored['w'], state['w'])
  assert (tmp_path / 'latest.corrupt-2').is_dir()

  for f in (tmp_path / 'latest' / '1').rglob('*'):
    if f.is_file() and 'state' in str(f):
      f.write_bytes(b'garbage')
  with pytest.raises(checkpoint.CheckpointError, match='step 1'):
    ckpts.restore_latest(abstract)
  ckpts.close()


def test_half_written_step_from_a_killed_save_is_cleaned(tmp_path):
  ckpts = checkpoint.Checkpoints(tmp_path)
  ckpts.save(1, {'w': np.ones(3, np.float32)}, {'step': 1}, best=False)
  ckpts.close()
  tmp = tmp_path / 'latest' / '2.orbax-checkpoint-tmp'
  tmp.mkdir()
  (tmp / 'partial').write_bytes(b'x')
  ckpts = checkpoint.Checkpoints(tmp_path)
  _, meta = ckpts.restore_latest({'w': jnp.zeros(3, jnp.float32)})
  assert meta == {'step': 1} and not tmp.exists()
  ckpts.save(2, {'w': np.ones(3, np.float32)}, {'step': 2}, best=False)
  ckpts.close()
  assert sorted(p.name for p in (tmp_path / 'latest').iterdir()) == ['1', '2']


@pytest.mark.parametrize('name', sorted(models.NEURAL_MODELS))
def test_every_neural_config_runs_its_tiny_variant(name, tmp_path):
  module = importlib.import_module(f'configs.{name}')
  config = module.get_config('dataset=synthetic-seq,tiny')
  config.train.update(steps=6, eval_every=3)
  results = loop.train_and_evaluate(config, tmp_path)
  assert results['model'] == name
  assert [v['tag'] for v in results['valid_curve']] == [3, 6]
  # Once per batch shape: full rows, or a few trimmed lengths (DiffuRec).
  traces = results['traces']
  assert traces['train_step'] == 1 and traces['score'] == 1
  trims = getattr(
    models.get_neural_model(name)(config.model, 8), 'trims_padding', False
  )
  assert traces['score_shapes'] == 1 or trims
  assert np.isfinite(results['test']['metrics']['ndcg@10'])


@pytest.mark.parametrize('name', sorted(models.NEURAL_MODELS))
def test_a_users_ranking_does_not_depend_on_the_chunk(name):
  # Why `eval.chunk_size` may change on resume: reverse-process noise is
  # drawn per user, never per batch, so only float summation order moves.
  from jaxrec.eval import ranking
  from jaxrec.train import fit_linear

  config = importlib.import_module(f'configs.{name}').get_config(
    'dataset=synthetic-seq,tiny'
  )
  split = fit_linear.load_split(config)
  setup = loop._Setup.build(config, split)
  scorer = loop.ModelScorer(setup.model)
  scorer.params = jax.jit(setup.init_state)().params
  rank = lambda chunk: ranking.rank(
    scorer, split.train, split.valid, split.train, split.n_items, 20, chunk
  )
  small, large = rank(5), rank(64)
  np.testing.assert_array_equal(small.users, large.users)
  np.testing.assert_array_equal(small.topk, large.topk)


def test_resume_repairs_a_best_save_cut_off_by_a_kill(tmp_path):
  config = lambda: _config(steps=6, eval_every=3)
  first = loop.train_and_evaluate(config(), tmp_path)
  best = first['selected_step']
  (tmp_path / 'results.json').unlink()
  ckpt = tmp_path / 'checkpoints'
  if best == 3:  # make step 3 the latest, as if killed right after it
    shutil.rmtree(ckpt / 'latest' / '6')
  shutil.rmtree(ckpt / 'best' / str(best))  # its best save never landed
  again = loop.train_and_evaluate(config(), tmp_path)
  assert again['test'] == first['test']
  assert again['params_sha256'] == first['params_sha256']


def test_stages_freeze_named_parameters_for_their_epochs(tmp_path):
  from jaxrec.data import synthetic

  split = synthetic.clustered_split(kind='sequential')
  stages = ({'epochs': 1, 'frozen': ('item_emb',)},)

  def run(epochs, workdir):
    c = _config()
    c.train.stages = stages
    setup = loop._Setup.build(c, split)
    c.train.update(steps=epochs * setup.per_epoch, eval_every=setup.per_epoch)
    loop.train_and_evaluate(c, workdir, split=split)
    ckpts = checkpoint.Checkpoints(workdir / 'checkpoints')
    state, _ = ckpts.restore_latest(setup.abstract)
    ckpts.close()
    return jax.jit(setup.init_state)().params, state.params

  init, after = run(1, tmp_path / 'one')
  np.testing.assert_array_equal(
    after['item_emb']['embedding'], init['item_emb']['embedding']
  )
  assert not np.allclose(after['pos_emb'], init['pos_emb'])
  init, after = run(2, tmp_path / 'two')
  assert not np.allclose(
    after['item_emb']['embedding'], init['item_emb']['embedding']
  )
  with pytest.raises(KeyError, match="no parameter path starts with 'itm'"):
    loop.frozen_schedule(({'epochs': 1, 'frozen': ('itm',)},), init, 6)


def test_early_stop_waits_for_min_epochs(tmp_path):
  # lr 0: validation never improves after the first, so patience 1 stops at
  # the second validation, unless train.min_epochs holds the run longer.
  c = _config(steps=60, eval_every=3, patience=1)
  c.optim.lr = 0.0
  first = loop.train_and_evaluate(c, tmp_path / 'a')
  assert first['stopped_early'] and first['train_steps_total'] == 6
  per_epoch = first['steps_per_epoch']
  c.train.min_epochs = -(-10 // per_epoch)  # at least 10 steps
  floor = c.train.min_epochs * per_epoch
  held = loop.train_and_evaluate(c, tmp_path / 'b')
  assert held['stopped_early']
  assert held['train_steps_total'] == -(-floor // 3) * 3  # next validation
  assert held['selected_step'] == 3


def test_sigterm_saves_the_step_and_resumes_exactly(tmp_path, monkeypatch):
  # The signal arrives while step 10 is being prepared, between log steps
  # (log_every 4): the run must finish step 10, save it with the two losses
  # of the open window, release its lock and exit 128 + 15.
  config = lambda: _config(steps=24, eval_every=6, log_every=4)
  full = loop.train_and_evaluate(config(), tmp_path / 'full')

  original = loop._Setup.host_batch

  def signal_at_step_9(self, step):
    if step == 9:
      os.kill(os.getpid(), signal.SIGTERM)
    return original(self, step)

  monkeypatch.setattr(loop._Setup, 'host_batch', signal_at_step_9)
  before = signal.getsignal(signal.SIGTERM)
  stopped = tmp_path / 'stopped'
  with pytest.raises(SystemExit) as info:
    loop.train_and_evaluate(config(), stopped)
  assert info.value.code == 128 + signal.SIGTERM
  assert 'stopped by SIGTERM after saving step 10' in str(info.value)
  assert signal.getsignal(signal.SIGTERM) == before  # handlers restored
  assert not (tmp_path / 'stopped.lock').exists()  # lock released
  assert not (stopped / 'results.json').exists()
  latest = stopped / 'checkpoints' / 'latest'
  assert max(int(p.name) for p in latest.iterdir()) == 10

  monkeypatch.setattr(loop._Setup, 'host_batch', original)
  resumed = loop.train_and_evaluate(config(), stopped)
  assert resumed['params_sha256'] == full['params_sha256']
  assert resumed['test'] == full['test']
  assert resumed['valid_curve'] == full['valid_curve']
  # The loss of steps 9-12 is logged once, over all four steps.
  assert _jsonl(stopped / 'metrics.jsonl') == _jsonl(
    tmp_path / 'full' / 'metrics.jsonl'
  )


def test_second_stop_signal_acts_as_before():
  from jaxrec.train import signals

  # Python's own SIGINT handler before the context, whatever this worker
  # process inherited.
  inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    with signals.stop_requests() as requested:
      assert requested() == 0
      # The kernel may hand a process signal to any thread (XLA keeps
      # several); Python then runs the handler at the main thread's next
      # check, which one long sleep would postpone: wait in short ones.
      os.kill(os.getpid(), signal.SIGINT)
      for _ in range(100):
        if requested():
          break
        time.sleep(0.05)
      assert requested() == signal.SIGINT
      # The first one restored Python's own handler: the second interrupts.
      with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100):
          time.sleep(0.05)
  finally:
    signal.signal(signal.SIGINT, inherited)


def test_official_eval_is_recorded_and_selects_on_any_new_max(tmp_path):
  config = importlib.import_module('configs.diffurec').get_config(
    'dataset=synthetic-seq,tiny,official_eval'
  )
  config.train.update(steps=8, eval_every=2, patience=10)
  results = loop.train_and_evaluate(config, tmp_path)
  assert results['quirks'] == {
    'mask_axis': 'key',
    'padding_item': False,
    'eval.batch_mean': 512,
    'eval.select_rule': 'any_new_max',
  }
  assert results['protocol']['averaging'].startswith('mean of per-batch')
  assert results['protocol']['ks'] == [5, 10, 20]
  # The selected step is the latest at which any HR@k / NDCG@k rose.
  curve = [(v['tag'], v['metrics']) for v in results['valid_curve']]
  names = [f'{m}@{k}' for m in ('hr', 'ndcg') for k in (5, 10, 20)]
  want, best = curve[0][0], {n: curve[0][1][n] for n in names}
  for tag, m in curve[1:]:
    if any(m[n] > best[n] for n in names):
      want = tag
    best = {n: max(best[n], m[n]) for n in names}
  assert results['selected_step'] == want
  # Few users: one batch, so the per-batch mean is the mean over users.
  per_user = results['test']['per_user']['hr@10']
  assert results['test']['metrics']['hr@10'] == pytest.approx(np.mean(per_user))
