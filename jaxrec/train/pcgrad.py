"""PCGrad (Yu et al., NeurIPS 2020): gradient surgery for multi-task losses.

ADRec trains CE and MSE together through PCGrad: each task's gradient is
projected off every other task's gradient it conflicts with (negative inner
product), in a random order of the others, and the projected gradients are
summed. Pure and jittable: gradients are pytrees stacked on a leading task
axis ([n_tasks, ...] leaves, as `jax.vmap` of a vjp gives them).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def combine(task_grads, rng: jax.Array):
  """Sum of PCGrad-projected task gradients.

  Args:
    task_grads: pytree with leaves [n_tasks, ...].
    rng: key for the order in which each task visits the others.

  Returns:
    A pytree like one task's gradient.
  """
  leaves, treedef = jax.tree.flatten(task_grads)
  n = leaves[0].shape[0]
  flat = jnp.concatenate([x.reshape(n, -1) for x in leaves], axis=1)
  keys = jax.random.split(rng, n)

  def project(i, key):
    g = flat[i]
    for j in jax.random.permutation(key, n):  # n is static and small
      other = flat[j]
      dot = g @ other
      conflict = (j != i) & (dot < 0)
      g = jnp.where(conflict, g - dot / (other @ other) * other, g)
    return g

  projected = jnp.stack([project(i, keys[i]) for i in range(n)])
  total = projected.sum(0)
  out, offset = [], 0
  for x in leaves:
    size = x[0].size
    out.append(total[offset : offset + size].reshape(x.shape[1:]))
    offset += size
  return jax.tree.unflatten(treedef, out)
