"""tools/bench.py runs end to end at toy sizes and prints its table."""

import os
import subprocess
import sys
import time


def test_bench_prints_a_table(tmp_path):
  out = subprocess.run(
    [
      sys.executable,
      '-m',
      'tools.bench',
      '--tiny',
      '--only=rank,sasrec,diffurec,diffurec_eval,adrec,diffrec,ease,ials,ddrm',
      '--adrec_users=64',
      '--adrec_items=100',
      '--eval_users=32',
      '--users=300',
      '--items=200',
      '--dim=16',
      '--chunk=64',
      '--repeats=1',
      '--train_steps=1',
      '--ease_items=300',
      '--diffrec_users=300',
      '--diffrec_items=120',
    ],
    capture_output=True,
    text=True,
    timeout=480,
    check=True,
    env={
      'PATH': '',
      'JAXREC_DATA': str(tmp_path),
      'HOME': str(tmp_path),
      **{k: v for k, v in os.environ.items() if k.startswith('JAX_')},
    },
  ).stdout
  assert '| task | seconds | floor_s | floor/time | note |' in out
  # The matmul rate is measured again before and after each of the nine
  # tasks.
  assert out.count('| matmul f32 2048^3 (before ') == 9
  assert out.count('| matmul f32 2048^3 (after ') == 9
  assert 'rank+top20 300x200 d=16' in out
  assert 'EASE fit, 300 items' in out
  # --tiny: the configs' tiny widths, which the task names give.
  assert 'SASRec train step B=16 L=8 d=16, 200 items' in out
  assert 'DiffuRec train step B=32 L=8 d=16, 200 items (packed)' in out
  assert 'DiffuRec train step B=32 L=8 d=16, 200 items (padded)' in out
  assert 'DiffuRec host batch (examples, packing, transfer)' in out
  assert 'DiffuRec validation, 32 synthetic users x 200 items' in out
  assert 'ADRec train step B=16 L=8 d=16, 100 items' in out
  assert 'ADRec inference with k/v reuse, 32 users' in out
  assert 'ADRec inference without k/v reuse, 32 users' in out
  assert 'DiffRec train epoch, random (300 users x 120 items)' in out
  assert 'DiffRec validation, random: 5 reverse steps, top-20' in out
  assert 'iALS fit, random (300 x 120' in out
  assert 'DDRM inference, random (300 users x 120 items), 5 steps' in out


def test_paired_time_keeps_the_run_fewest_matmul_times_long(monkeypatch):
  from tools import bench

  # Rates read before run 1, between runs 1 and 2, after run 2.
  rates = iter([100.0, 10.0, 5.0])
  monkeypatch.setattr(bench, 'matmul_flops', lambda _: {'xla': next(rates)})
  sleeps = iter([0.0, 0.02, 0.04])  # warm-up, then the two timed runs
  seconds, rate = bench.paired_time(lambda: time.sleep(next(sleeps)), 2)
  # Each run takes the faster rate around it: 0.02 s at 100 flop/s is 2
  # flop of matmul time; 0.04 s at 10 is 0.4: the slower run on the slower
  # machine is the better pair, and the 5 read after it is not used.
  assert rate == 10.0
  assert 0.04 <= seconds < 0.1
