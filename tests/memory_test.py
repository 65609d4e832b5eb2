"""A train step's memory need (XLA's account) and the refusal above
`train.max_memory_bytes`: before anything runs, nothing saved is lost."""

import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import sasrec as sasrec_config
from jaxrec.train import fit_linear, loop, memory


def _config(**train):
  c = sasrec_config.get_config('dataset=synthetic-seq,tiny')
  c.train.update(train)
  return c


def _nbytes(tree) -> int:
  return sum(
    int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
    for x in jax.tree.leaves(tree)
  )


def test_the_arguments_are_the_state_batch_and_key_to_the_byte():
  config = _config()
  split = fit_linear.load_split(config)
  need = loop.train_step_memory(config, split)
  run = loop._Setup.build(config, split)
  state = _nbytes(run.abstract)
  batch = _nbytes(run.host_batch(0))
  key = 8  # a threefry key: two uint32
  assert need.arguments == state + batch + key
  # The new state is written over the donated one.
  assert need.aliased == state
  assert need.outputs >= state
  assert need.peak == (
    need.arguments + need.outputs - need.aliased + need.temporaries
  )
  # Twice the batch: the batch and the activations grow, the state not.
  config2 = _config(batch_size=2 * config.train.batch_size)
  need2 = loop.train_step_memory(config2, split)
  assert need2.arguments - need.arguments == batch
  assert need2.temporaries > need.temporaries


def test_check_names_the_need_the_limit_and_its_source():
  need = memory.StepMemory(3 * 2**30, 2**30, 2**30, 2**30, 4 * 2**30)
  memory.check(need, 4 * 2**30, 'm')  # at the limit: fits
  with pytest.raises(
    memory.MemoryLimitError,
    match=r'm would need 4\.000 GiB per device \(arguments 3\.000.*'
    r'temporaries 1\.000\), over the limit of 1\.000 GiB \(1073741824 bytes\)'
    r' set by train\.max_memory_bytes',
  ):
    memory.check(need, 2**30, 'm')
  capacity = memory.device_capacity()
  assert capacity is not None and capacity > 0
  huge = memory.StepMemory(0, 0, capacity + 1, 0, capacity + 1)
  with pytest.raises(memory.MemoryLimitError, match='set by the memory of'):
    memory.check(huge, 0, 'm')
  with pytest.raises(ValueError, match='negative'):
    memory.check(need, -1, 'm')


def test_a_step_over_the_limit_is_refused_before_it_runs(tmp_path, monkeypatch):
  # A new run: refused before any step, no checkpoint written, lock freed.
  with pytest.raises(
    memory.MemoryLimitError, match=r'sasrec train step \(batch 16\) would need'
  ):
    loop.train_and_evaluate(
      _config(steps=12, eval_every=6, max_memory_bytes=1000), tmp_path
    )
  ckpt = tmp_path / 'checkpoints'
  assert not ckpt.exists() or not any(ckpt.rglob('*.json'))
  assert not list(tmp_path.parent.glob(f'{tmp_path.name}.lock'))

  # A run stopped by SIGTERM with 6 steps saved, resumed under too low a
  # limit: refused, the saved steps and metrics untouched; the limit may
  # change on a resume.
  original = loop._Setup.host_batch

  def signal_at_step_5(self, step):
    if step == 5:
      os.kill(os.getpid(), signal.SIGTERM)
    return original(self, step)

  monkeypatch.setattr(loop._Setup, 'host_batch', signal_at_step_5)
  with pytest.raises(SystemExit):
    loop.train_and_evaluate(
      _config(steps=12, eval_every=6, log_every=3), tmp_path
    )
  monkeypatch.setattr(loop._Setup, 'host_batch', original)
  latest = tmp_path / 'checkpoints' / 'latest'
  assert [p.name for p in latest.iterdir()] == ['6']
  before = {
    p.relative_to(tmp_path): p.read_bytes()
    for p in tmp_path.rglob('*')
    if p.is_file()
  }
  with pytest.raises(memory.MemoryLimitError):
    loop.train_and_evaluate(
      _config(steps=12, eval_every=6, log_every=3, max_memory_bytes=1000),
      tmp_path,
    )
  after = {
    p.relative_to(tmp_path): p.read_bytes()
    for p in tmp_path.rglob('*')
    if p.is_file() and p.name != 'config.json'
  }
  assert after == {k: v for k, v in before.items() if k.name != 'config.json'}
  results = loop.train_and_evaluate(
    _config(steps=12, eval_every=6, log_every=3), tmp_path
  )
  need = results['memory']
  assert need['peak'] == (
    need['arguments'] + need['outputs'] - need['aliased'] + need['temporaries']
  )
  assert need['peak'] > 0


def test_the_refusal_comes_before_a_pre_training_stage(tmp_path):
  from configs import adrec as adrec_config

  config = adrec_config.get_config('dataset=synthetic-seq,tiny')
  config.train.max_memory_bytes = 1000
  with pytest.raises(memory.MemoryLimitError, match='adrec train step'):
    loop.train_and_evaluate(config, tmp_path)
  assert not (tmp_path / 'pretrain').exists()


def test_tool_prints_the_need(tmp_path):
  out = subprocess.run(
    [
      sys.executable,
      '-m',
      'tools.memory',
      '--config=configs/sasrec.py:dataset=synthetic-seq,tiny',
      '--config.train.max_memory_bytes=1000',
    ],
    capture_output=True,
    text=True,
    timeout=300,
    check=True,
    env={'PATH': '', 'JAXREC_DATA': str(tmp_path), 'HOME': str(tmp_path)},
  ).stdout
  lines = out.strip().splitlines()
  assert lines[0].startswith('| model | dataset | batch | devices |')
  cells = [c.strip() for c in lines[2].strip('|').split('|')]
  assert cells[:4] == ['sasrec', 'synthetic-seq', '16', '1']
  assert float(cells[6]) > 0  # peak MiB
  assert cells[-1] == 'no: refused'
  # A linear model has no train step: a usage error that says so.
  linear = subprocess.run(
    [sys.executable, '-m', 'tools.memory', '--config=configs/ease.py'],
    capture_output=True,
    text=True,
    timeout=300,
    env={'PATH': '', 'JAXREC_DATA': str(tmp_path), 'HOME': str(tmp_path)},
  )
  assert linear.returncode != 0
  assert 'ease is not a neural model' in linear.stderr
