"""One process writes a run's workdir: the lock, its takeover after a kill,
and seeds runs that share their seeds between processes."""

import json
import os
import platform
import subprocess
import sys
import threading

import pytest

from configs import ease as ease_config
from configs import sasrec as sasrec_config
from jaxrec.study import seeds
from jaxrec.train import loop, record


def _hold(workdir, pid, host=None):
  lock = workdir.with_name(workdir.name + '.lock')
  lock.write_text(json.dumps({'pid': pid, 'host': host or platform.node()}))
  return lock


def test_a_live_holder_is_named_and_a_dead_ones_lock_is_taken(tmp_path):
  work = tmp_path / 'run'
  _hold(work, os.getppid())  # a live process that is not this one
  with pytest.raises(record.RunBusy, match=f'process {os.getppid()}'):
    with record.run_lock(work):
      pass
  _hold(work, 1, host='another-host')  # cannot tell: busy
  with pytest.raises(record.RunBusy, match='another-host'):
    with record.run_lock(work):
      pass
  dead = subprocess.Popen([sys.executable, '-c', 'pass'])
  dead.wait()
  lock = _hold(work, dead.pid)
  with record.run_lock(work):
    assert json.loads(lock.read_text())['pid'] == os.getpid()
  assert not lock.exists()


def test_an_empty_lock_left_by_a_kill_is_taken(tmp_path, monkeypatch):
  monkeypatch.setattr(record, 'UNREADABLE_LOCK_S', 0.2)
  work = tmp_path / 'run'
  lock = work.with_name('run.lock')
  lock.write_text('')  # killed between creating and writing it
  with record.run_lock(work):
    assert json.loads(lock.read_text())['pid'] == os.getpid()


def test_a_busy_workdir_is_refused_before_anything_is_written(tmp_path):
  work = tmp_path / 'run'
  _hold(work, os.getppid())
  c = sasrec_config.get_config('dataset=synthetic-seq,tiny')
  with pytest.raises(record.RunBusy):
    loop.train_and_evaluate(c, work)
  assert not work.exists()


def test_busy_jobs_are_put_off_until_free():
  calls = []

  def job(key, busy_times):
    def run():
      calls.append(key)
      if calls.count(key) <= busy_times:
        raise record.RunBusy(key)
      return {'key': key}

    return run

  done = seeds.when_free([('a', job('a', 0)), ('b', job('b', 2))], poll_s=0)
  assert done == {'a': {'key': 'a'}, 'b': {'key': 'b'}}
  assert calls == ['a', 'b', 'b', 'b']


def test_a_seed_another_process_holds_is_run_when_it_lets_go(tmp_path, caplog):
  c = ease_config.get_config('dataset=synthetic,tiny')
  lock = _hold(tmp_path / 'seed1', os.getppid())
  threading.Timer(1.0, lock.unlink).start()  # the other process ends
  caplog.set_level('INFO')
  out = seeds.run_seeds(c, tmp_path, [1, 0], poll_s=0.2)  # 1 is tried first
  assert 'trying again later' in caplog.text
  assert out['test']['recall@20']['n'] == 2
  assert (tmp_path / 'seed1' / 'results.json').exists()
