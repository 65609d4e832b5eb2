"""iALS with frequency-scaled regularisation (Rendle et al., RecSys 2022).

    python -m experiments.fit_linear \
      --config=configs/ials.py:dataset=diffrec-ml-1m-clean \
      --workdir=runs/ials-diffrec-ml-1m-clean

The grid (reg x alpha0, 12 points at 64 factors, 16 sweeps) is searched
on validation. Memory: the factors, (users + items) x factors floats, plus
per solve chunk `budget` gathered floats (16 MB) and its [B, d, d]
systems; a sweep costs about 2 x nnz x d^2 multiply-adds.
"""

import ml_collections as mlc

from configs import common


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  a = common.parse_arg(arg, dataset='ml-100k', tiny=False)
  c = common.base_config(a.dataset)
  c.model = mlc.ConfigDict(
    {
      'name': 'ials',
      'factors': 64,
      'reg': 3e-3,
      'alpha0': 0.1,  # weight of every unobserved pair
      'nu': 1.0,  # regularisation frequency scaling
      'epochs': 16,
      'init_std': 0.1,
      'budget': 1 << 22,  # gathered factor floats per solve chunk
      'seed': 0,
    }
  )
  c.grid = mlc.ConfigDict(
    {'reg': (1e-3, 3e-3, 1e-2, 3e-2), 'alpha0': (0.02, 0.1, 0.5)}
  )
  if a.tiny:
    c.max_users = 200
    c.model.update(factors=8, epochs=4, budget=4096)
    c.grid = mlc.ConfigDict({'reg': (3e-3,), 'alpha0': (0.1, 0.5)})
  return c
