"""Model registry: every model by name; unknown names raise."""

from jaxrec.models.linear import ease, itemknn, toppop
from jaxrec.models.linear.base import LinearModel

LINEAR_MODELS: dict[str, LinearModel] = {}


def register_linear(model: LinearModel) -> LinearModel:
  if model.name in LINEAR_MODELS:
    raise ValueError(f'model {model.name!r} is registered twice')
  LINEAR_MODELS[model.name] = model
  return model


for _m in (toppop.MODEL, itemknn.MODEL, ease.MODEL):
  register_linear(_m)


def get_model(name: str) -> LinearModel:
  """The registered model `name`; raises KeyError listing the known ones."""
  try:
    return LINEAR_MODELS[name]
  except KeyError:
    raise KeyError(
      f'unknown model {name!r}; known: {sorted(LINEAR_MODELS)}'
    ) from None
