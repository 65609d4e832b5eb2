"""Model registries: every model by name; unknown names raise.

LINEAR_MODELS hold closed-form / neighbourhood models (`fit` + `score`);
NEURAL_MODELS map a name to a class built as `cls(config.model, n_items)`
with the surface of ARCHITECTURE.md (init, loss, score, and the host-side
train_data, train_batch, make_batch) that `jaxrec.train.loop` trains.
"""

from jaxrec.models import (
  adrec,
  cfdiff,
  ddrm,
  diffrec,
  diffurec,
  dreamrec,
  giffcf,
  ldiffrec,
  lightgcn,
  mf,
  multvae,
  sasrec,
)
from jaxrec.models.linear import (
  ease,
  gfcf,
  ials,
  itemknn,
  puresvd,
  rp3beta,
  slim,
  toppop,
  userknn,
)
from jaxrec.models.linear.base import LinearModel

NEURAL_MODELS: dict[str, type] = {
  'sasrec': sasrec.SASRec,
  'diffurec': diffurec.DiffuRec,
  'dreamrec': dreamrec.DreamRec,
  'adrec': adrec.ADRec,
  'adrec_pretrain': adrec.ADRecPretrain,
  'diffrec': diffrec.DiffRec,
  'ldiffrec': ldiffrec.LDiffRec,
  'mf': mf.MF,
  'lightgcn': lightgcn.LightGCN,
  'ddrm': ddrm.DDRM,
  'multvae': multvae.MultVAE,
  'giffcf': giffcf.GiffCF,
  'cfdiff': cfdiff.CFDiff,
}

LINEAR_MODELS: dict[str, LinearModel] = {}


def register_linear(model: LinearModel) -> LinearModel:
  if model.name in LINEAR_MODELS:
    raise ValueError(f'model {model.name!r} is registered twice')
  LINEAR_MODELS[model.name] = model
  return model


for _m in (
  toppop.MODEL,
  itemknn.MODEL,
  ease.MODEL,
  rp3beta.MODEL,
  puresvd.MODEL,
  gfcf.MODEL,
  ials.MODEL,
  userknn.MODEL,
  slim.MODEL,
):
  register_linear(_m)


def get_model(name: str) -> LinearModel:
  """The registered model `name`; raises KeyError listing the known ones."""
  try:
    return LINEAR_MODELS[name]
  except KeyError:
    raise KeyError(
      f'unknown model {name!r}; known: {sorted(LINEAR_MODELS)}'
    ) from None


def get_neural_model(name: str) -> type:
  """The neural model class `name`; raises KeyError listing the known ones."""
  try:
    return NEURAL_MODELS[name]
  except KeyError:
    raise KeyError(
      f'unknown neural model {name!r}; known: {sorted(NEURAL_MODELS)}'
    ) from None
