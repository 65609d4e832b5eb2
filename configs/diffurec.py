"""DiffuRec (TOIS 2024) with the paper's settings.

    python -m experiments.train --config=configs/diffurec.py:dataset=beauty \
      --workdir=runs/diffurec-beauty

Paper (Table 3): Beauty HR@10 7.91 %, NDCG@10 4.75 %; ML-1M HR@10 26.26 %,
NDCG@10 14.79 %. Settings from the official code: hidden 128, 4 blocks of 4
heads, dropout 0.1, embedding dropout 0.3, max length 50, T = 32
truncated-linear, lambda ~ N(0.001, 0.001), batch 512, Adam 1e-3 with x0.1
every 100 epochs, up to 500 epochs, validation every 20 epochs, patience 5
validations; every prefix of every training sequence is an example
(Beauty: 131,413 examples, 257 steps per epoch).

On ADRec's files (`dataset=adrec-*`: beauty, baby, sports, ml-100k) the
default training protocol is ADRec's trainer, which ran the ADRec
paper's DiffuRec baseline (Nemo-1024/ADRec `trainer.py`, the same
approximator): coupled weight decay 1e-5, cosine annealing over 500
epochs (per step here; per epoch there), validation every 5 epochs,
patience 4 validations; so DiffuRec and ADRec there are trained and
selected alike. `protocol=diffurec` keeps DiffuRec's own settings on any
file; `protocol=adrec` applies ADRec's on any file.

Quirk flags (defaults correct; set both to reproduce the official code):
`model.mask_axis='query'`, `model.padding_item=True`. The official
code also averages metrics per batch of 512 users and keeps the latest
validation at which any of HR/NDCG@5/10/20 improved; jaxrec averages per
user and selects on `eval.select`. `configs/diffurec.py:official_eval`
evaluates as the official code (`common.official_seq_eval`: eval.ks
(5, 10, 20), eval.batch_mean 512, eval.select_rule 'any_new_max').

Time on a 2-core CPU (tools/bench.py, 2026-12-02): train step 0.24-0.5 s
on packed rows (the machine's matmul rate varied 2x between sessions),
1-2.5 min per epoch; one validation pass through 32 reverse steps for
22,363 users about 30 s (rows trimmed to each user's history,
`ranking.length_groups`), 47-50 s where matmuls are slower (0.77 of its
floor against the faster rate around it, README: speed). 20 epochs
between validations: 25-50 min with both cores. The latest state is
also saved every `checkpoint_minutes`.
ml-1m (`dataset=ml-1m`, same settings as the official code: max length
50): 982,089 prefixes, 1,919 steps per epoch of 461 packed rows (users'
histories are long, so packing saves little): at the padded step's 1.4 s
about 45 min per epoch and 15 h between validations on 2 cores, a GPU job;
one validation pass over 6,040 users of 50 items about 50 s. A learning
curve on the CPU (2026-12-04, `--config.train.eval_every=480
--config.train.eval_every_epochs=0 --config.train.patience=400`, i.e. a
validation every quarter epoch and the paper's 100 epochs of patience;
about 6 s per step beside another run): valid HR@10 / NDCG@10 0.0195 /
0.0092 at step 480 and 0.0250 / 0.0128 at step 960; stopped at step 1,080
(README: results).

On one NVIDIA H200 (2026-12-04, jax 0.11.2, Beauty, alone on the GPU; README:
speed, on a GPU): 143 steps/s in the training loop, 1.8 s of training per
epoch of 257 steps, about 2.4 s per validation pass over 22,363 users, 30 s
from launch to the first step. The step alone takes 2.6 ms (`python -m
tools.bench --only=diffurec`); the loop's 7 ms per step was the host's batch
assembly, made cheaper since (the bench's `host batch` row).

Measured here (`runs/diffurec-beauty`, README: results; quirks off;
runs not yet finished): with the official initialisation (the default),
best of the first 100 epochs, test HR@10 7.51 %, NDCG@10 4.46 % averaged
over users, 7.74 % / 4.60 % averaged per batch of 512 as the official code
(and the paper); with Flax's, best of the first 120 epochs, 7.55 % / 4.48 %
and 7.81 % / 4.63 %.

On ADRec's files (README: results, ADRec's datasets; official
initialisation): adrec-beauty seed 0 test HR@10 0.1034, HR@20 0.1430,
NDCG@10 0.0627, NDCG@20 0.0726 (best epoch 115, stopped at epoch 135; 1.6-1.8
steps/s alone on 2 cores, about 6 min per 5 epochs and their validation;
an earlier run, folder lost, gave 0.1011 / 0.0618 at epoch 95 of 115);
seed 1 0.1007, 0.1384, 0.0617, 0.0712 (best epoch 85, stopped at epoch 105;
2.1 steps/s; run again from the start at 3.3 steps/s, 71 min: the same
validations and test figures); seed 2 0.1006, 0.1380, 0.0619, 0.0712
(best epoch 95, stopped at epoch 115; 3.4 steps/s, 74 min); seeds 0, 1,
2: HR@10 0.1016 +- 0.0016, NDCG@10 0.0621 +- 0.0005, tuned SASRec
0.1069 / 0.0600 (paired over test users: HR@10 -5.0 %, Holm 0.0032;
NDCG@10 +3.5 %, Holm 0.061; seed 0 run again from the start repeats its
figures). adrec-baby,
113 steps per epoch, 2.8 steps/s on both cores (one run) or 1.5 steps/s
each (two runs): seeds 0, 1, 2 sat on the popularity plateau and stopped
at epochs 35-45 after 50 min each, test HR@10 0.0164 +- 0.0004 (TopPop
0.0162); a run that leaves the plateau goes on past 100 epochs: with
`--config.train.patience=12` seed 0 left it near epoch 80 and its best
state (epoch 140; stopped at 200, 200 epochs in all) tests at HR@10 0.0350,
NDCG@10 0.0198. adrec-sports, 230 steps per epoch, 3.1-4.3 steps/s
alone: seeds 0 and 1 stay on the popularity plateau and stop at epochs 40
and 45 (40-50 min each), test HR@10 0.0127 +- 0.0003, NDCG@10 0.0070 +-
0.0002 (TopPop 0.0124 / 0.0068); seed 2 leaves it at epoch 35 (best
epoch 135, stopped at 155, 2.3 h) and tests at 0.0336 / 0.0189; seeds 0,
1, 2: HR@10 0.0196 +- 0.0121, NDCG@10 0.0110 +- 0.0069, tuned SASRec
0.0532 / 0.0262 (paired: HR@10 -63 %, Holm 1.8e-165).

Memory: the train step per device, as XLA accounts it (`python -m
tools.memory --config=configs/diffurec.py`): Beauty, batch 512: 534 MiB, of
which 28.4 MiB state and batch; ml-1m 1,958 MiB; adrec-beauty 486 MiB,
adrec-baby 296 MiB, adrec-sports 386 MiB (packed rows: the step is
compiled for the file's largest packed batch).
"""

import ml_collections as mlc

from configs import adrec, common
from jaxrec.train import optim


# Training protocols: DiffuRec's own trainer (its paper), or ADRec's (its
# paper's DiffuRec baseline; the default on ADRec's files).
PROTOCOLS = ('diffurec', 'adrec')


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  a = common.parse_arg(
    arg, dataset='beauty', tiny=False, official_eval=False, protocol=''
  )
  protocol = a.protocol or (
    'adrec' if a.dataset.startswith('adrec-') else 'diffurec'
  )
  if protocol not in PROTOCOLS:
    raise ValueError(
      f'config arg protocol={a.protocol!r}; expected one of {PROTOCOLS}'
    )
  c = common.base_config(a.dataset)
  c.eval.select = 'ndcg@10'
  c.model = mlc.ConfigDict(
    {
      'name': 'diffurec',
      'max_len': 50,
      'dim': 128,
      'heads': 4,
      'blocks': 4,
      'dropout': 0.1,
      'emb_dropout': 0.3,
      'lambda_uncertainty': 0.001,
      'steps': 32,
      'schedule': 'trunc_lin',
      'mask_axis': 'key',  # official: 'query'
      'padding_item': False,  # official: True
      # Train on packed rows (same numbers, ~5x fewer positions on Beauty);
      # applies with mask_axis='key' only.
      'pack': True,
      'eval_seed': 0,  # the reverse process's noise at ranking
      # PyTorch's initialisation as the official code ('flax': Flax's).
      'init': 'official',
    }
  )
  c.optim = optim.default_config()
  c.optim.update(b2=0.999, schedule='step', decay_epochs=100, decay_rate=0.1)
  c.train = mlc.ConfigDict(
    {
      'batch_size': 512,
      'epochs': 500,
      'steps': 0,
      'eval_every': 0,  # steps; 0 = every `eval_every_epochs` epochs
      'eval_every_epochs': 20,
      'patience': 5,
      'log_every': 50,
      'checkpoint_minutes': 10.0,  # latest state also saved this often
      'max_memory_bytes': 0,  # per device; 0: the device's memory
      'distributed': False,
    }
  )
  if protocol == 'adrec':
    # ADRec's trainer, which ran its paper's DiffuRec baseline: coupled
    # weight decay 1e-5, cosine annealing over the 500 epochs, validation
    # every 5 epochs, patience 4 validations.
    c.optim = adrec.optim_config()
    c.train.update(adrec.SELECTION)
  # Users per ranking chunk at the longest history (shorter ones get up to
  # 8x more, `ranking.length_groups`). Small chunks keep the approximator's
  # [rows, 4d] activations in cache: a full Beauty validation pass took 27 s
  # at 64 against 40 s at 512 (2 cores; tools/bench.py diffurec_eval).
  c.eval.chunk_size = 64
  if a.official_eval:
    common.official_seq_eval(c)
  if a.tiny:
    c.max_users = 96
    c.model.update(max_len=8, dim=16, blocks=1, heads=2, steps=4)
    c.train.update(batch_size=32, epochs=2, eval_every=3, log_every=2)
    c.eval.chunk_size = 32
  return c
