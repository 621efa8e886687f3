"""Small MLP building blocks shared by every component."""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
  """``num_layers`` Dense + LayerNorm + ELU blocks, then a Dense head of ``out_dim`` units.

  The head is zero-initialised when ``zero_head`` is set, so freshly initialised reward, value and
  termination heads start from a neutral prediction (Hansen et al. 2024, TD-MPC2).
  """

  hidden_dim: int
  num_layers: int
  out_dim: int
  zero_head: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for _ in range(self.num_layers):
      x = nn.Dense(self.hidden_dim)(x)
      x = nn.LayerNorm()(x)
      x = nn.elu(x)
    head_init = nn.initializers.zeros if self.zero_head else nn.initializers.lecun_normal()
    return nn.Dense(self.out_dim, kernel_init=head_init)(x)


def mlp_pair(
    hidden_dim: int, num_layers: int, in_dim: int, out_dim: int, zero_head: bool = False,
    output_transform: Callable[[jax.Array], jax.Array] = lambda y: y,
) -> tuple[Callable[[jax.Array], dict], Callable[[dict, jax.Array], jax.Array]]:
  """An ``(init, apply)`` pair for an MLP from ``[..., in_dim]`` to ``[..., out_dim]``.

  Args:
    hidden_dim: width of the hidden layers.
    num_layers: number of hidden layers.
    in_dim: input size.
    out_dim: output size.
    zero_head: zero-initialise the output layer.
    output_transform: applied to the head's output (e.g. ``jnp.tanh`` for bounded latents).

  Returns:
    ``init(key) -> params`` and ``apply(params, x [..., in_dim]) -> [..., out_dim]``.
  """
  module = MLP(hidden_dim=hidden_dim, num_layers=num_layers, out_dim=out_dim, zero_head=zero_head)

  def init(key: jax.Array) -> dict:
    return module.init(key, jnp.zeros((in_dim,), jnp.float32))["params"]

  def apply(params: dict, x: jax.Array) -> jax.Array:
    return output_transform(module.apply({"params": params}, x))

  return init, apply
