"""ADRec's stage 1 alone: the SASRec-style embedding model (no positions).

    python -m experiments.train \
      --config=configs/adrec_pretrain.py:dataset=adrec-beauty \
      --workdir=runs/adrec-pretrain-adrec-beauty

`configs/adrec.py` runs this stage itself in `<workdir>/pretrain`; this
config exists to train or inspect it on its own.

Memory: the train step per device, as XLA accounts it (`python -m
tools.memory --config=configs/adrec_pretrain.py`): adrec-beauty, batch 512:
320 MiB, of which 13.5 MiB state and batch.
"""

import ml_collections as mlc

from configs import adrec, common


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  a = common.parse_arg(
    arg, dataset='adrec-beauty', tiny=False, official_eval=False
  )
  c = adrec.pretrain_config(a)
  if a.official_eval:  # as configs/adrec.py:official_eval
    common.official_seq_eval(c)
  return c
