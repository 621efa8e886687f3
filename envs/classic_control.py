"""Classic control environments in JAX, step-for-step equal to gymnasium 1.4.0's.

Five environments, each a pure :class:`~envs.core.Environment` over a frozen pytree params
dataclass (the physical constants and the time limit) and a frozen pytree state dataclass (the
physical state plus the step counter ``time``):

=========================  ===========================  ==========  =========================
``name``                   gymnasium reference          max_steps   actions
=========================  ===========================  ==========  =========================
``CartPole``               ``CartPole-v1``              500         ``Discrete(2)``
``Pendulum``               ``Pendulum-v1``              200         ``Box(-2, 2, (1,))``
``MountainCar``            ``MountainCar-v0``           200         ``Discrete(3)``
``MountainCarContinuous``  ``MountainCarContinuous-v0`` 999         ``Box(-1, 1, (1,))``
``Acrobot``                ``Acrobot-v1``               500         ``Discrete(3)``
=========================  ===========================  ==========  =========================

The dynamics, rewards, termination rules, observation/action bounds and initial-state ranges
copy gymnasium's sources, in gymnasium's order of operations, but in float32 (gymnasium uses
float64): stepping both implementations from the same state with the same action agrees within
1e-5 (typically ~1e-6) on observations and rewards, and exactly on ``terminated`` and
``truncated``. Two caveats. Long free-running rollouts drift apart the way any two
floating-point integrations of an unstable system do (CartPole, Pendulum and Acrobot after a few
dozen steps). Acrobot states near the velocity bounds are ill-conditioned: there a one-ulp
float32 change of the state moves gymnasium's own float64 step by ~5e-4, so no float32
implementation agrees to 1e-5 from them.

Time limits follow gymnasium's ``TimeLimit`` wrapper (what ``gymnasium.make(id)`` returns):
``truncated`` is ``time >= max_steps`` after the step, whether or not the step also terminated.
Stepping a state that has already terminated is undefined, as in gymnasium;
:meth:`~envs.core.Environment.step` auto-resets so it never happens there.

References:
  Barto, Sutton & Anderson (1983), "Neuronlike adaptive elements that can solve difficult
  learning control problems" (CartPole). Moore (1990), "Efficient memory-based learning for
  robot control" (MountainCar). Sutton (1996), "Generalization in reinforcement learning:
  successful examples using sparse coarse coding", and Sutton & Barto (2018), "Reinforcement
  Learning: An Introduction" (Acrobot).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from envs.core import Array, Box, Discrete, Environment, PRNGKey, pytree_dataclass, static_field

__all__ = [
    "Acrobot",
    "AcrobotParams",
    "AcrobotState",
    "CartPole",
    "CartPoleParams",
    "CartPoleState",
    "MountainCar",
    "MountainCarContinuous",
    "MountainCarContinuousParams",
    "MountainCarContinuousState",
    "MountainCarParams",
    "MountainCarState",
    "Pendulum",
    "PendulumParams",
    "PendulumState",
]

_F32 = jnp.float32


def _time_limit(time: Array, max_steps: Array) -> Array:
  """gymnasium's ``TimeLimit``: truncated once ``time`` (steps taken) reaches ``max_steps``."""
  return jnp.asarray(time >= max_steps)


def _first(action: Array) -> Array:
  """The scalar of a ``[1]`` (or ``[]``) continuous action, as float32 ``[]``."""
  return jnp.reshape(jnp.asarray(action, _F32), (-1,))[0]


def _check_choice(field: str, value: str, allowed: tuple[str, ...]) -> None:
  if value not in allowed:
    raise ValueError(f"{field} must be one of {allowed}, got {value!r}")


# ---------------------------------------------------------------------------------------------
# CartPole
# ---------------------------------------------------------------------------------------------


@pytree_dataclass
class CartPoleParams:
  """CartPole-v1 constants (gymnasium ``CartPoleEnv``).

  ``length`` is half the pole's length. ``kinematics_integrator`` is ``"euler"`` (gymnasium's
  default) or ``"semi-implicit euler"``. With ``sutton_barto_reward`` the reward is 0 per
  step and -1 on termination instead of 1 per step (termination step included).
  """

  gravity: float = 9.8
  masscart: float = 1.0
  masspole: float = 0.1
  length: float = 0.5
  force_mag: float = 10.0
  tau: float = 0.02
  theta_threshold_radians: float = 12 * 2 * math.pi / 360
  x_threshold: float = 2.4
  sutton_barto_reward: bool = False
  max_steps: int = 500
  kinematics_integrator: str = static_field("euler")

  def __post_init__(self):
    _check_choice("kinematics_integrator", self.kinematics_integrator,
                  ("euler", "semi-implicit euler"))


@pytree_dataclass
class CartPoleState:
  """Cart position and velocity, pole angle (rad, 0 upright) and angular velocity; ``time``."""

  x: Array
  x_dot: Array
  theta: Array
  theta_dot: Array
  time: Array


class CartPole(Environment[CartPoleState, CartPoleParams]):
  """Balance a pole on a cart by pushing it left (action 0) or right (action 1).

  Observation float32 ``[4]``: ``(x, x_dot, theta, theta_dot)``. Terminates when
  ``|x| > x_threshold`` or ``|theta| > theta_threshold_radians``; the initial state is uniform
  in ``[-0.05, 0.05)^4``. Barto, Sutton & Anderson (1983); equal to gymnasium's ``CartPole-v1``.
  """

  name = "CartPole"

  @property
  def default_params(self) -> CartPoleParams:
    return CartPoleParams()

  def reset_env(self, key: PRNGKey, params: CartPoleParams) -> tuple[Array, CartPoleState]:
    """Samples ``(x, x_dot, theta, theta_dot)`` uniformly in ``[-0.05, 0.05)``.

    Returns:
      ``(obs [4], state)``.
    """
    x, x_dot, theta, theta_dot = jax.random.uniform(key, (4,), _F32, -0.05, 0.05)
    state = CartPoleState(x, x_dot, theta, theta_dot, jnp.zeros((), jnp.int32))
    return self.observation(state), state

  def step_env(self, key: PRNGKey, state: CartPoleState, action: Array, params: CartPoleParams):
    """One 0.02 s step of the Euler-integrated cart-pole.

    Args:
      key: unused (deterministic dynamics).
      state: current state.
      action: int ``[]``, 0 (push left) or 1 (push right).
      params: constants.

    Returns:
      ``(obs [4], state, reward [], terminated [], truncated [], info {})``.
    """
    del key
    x, x_dot, theta, theta_dot = state.x, state.x_dot, state.theta, state.theta_dot
    total_mass = params.masspole + params.masscart
    polemass_length = params.masspole * params.length
    force = jnp.where(action == 1, params.force_mag, -params.force_mag)
    costheta = jnp.cos(theta)
    sintheta = jnp.sin(theta)

    temp = (force + polemass_length * jnp.square(theta_dot) * sintheta) / total_mass
    thetaacc = (params.gravity * sintheta - costheta * temp) / (
        params.length * (4.0 / 3.0 - params.masspole * jnp.square(costheta) / total_mass))
    xacc = temp - polemass_length * thetaacc * costheta / total_mass

    if params.kinematics_integrator == "euler":
      x = x + params.tau * x_dot
      x_dot = x_dot + params.tau * xacc
      theta = theta + params.tau * theta_dot
      theta_dot = theta_dot + params.tau * thetaacc
    else:  # semi-implicit euler
      x_dot = x_dot + params.tau * xacc
      x = x + params.tau * x_dot
      theta_dot = theta_dot + params.tau * thetaacc
      theta = theta + params.tau * theta_dot

    time = state.time + 1
    state = CartPoleState(x, x_dot, theta, theta_dot, time)
    terminated = ((x < -params.x_threshold) | (x > params.x_threshold)
                  | (theta < -params.theta_threshold_radians)
                  | (theta > params.theta_threshold_radians))
    reward = jnp.where(params.sutton_barto_reward,
                       jnp.where(terminated, -1.0, 0.0), 1.0).astype(_F32)
    truncated = _time_limit(time, params.max_steps)
    return self.observation(state), state, reward, terminated, truncated, {}

  def observation(self, state: CartPoleState) -> Array:
    """``(x, x_dot, theta, theta_dot)``, float32 ``[4]``."""
    return jnp.stack([state.x, state.x_dot, state.theta, state.theta_dot]).astype(_F32)

  def observation_space(self, params: CartPoleParams) -> Box:
    high = np.array([params.x_threshold * 2, np.inf, params.theta_threshold_radians * 2, np.inf],
                    np.float32)
    return Box(-high, high, (4,), jnp.float32)

  def action_space(self, params: CartPoleParams) -> Discrete:
    return Discrete(2)


# ---------------------------------------------------------------------------------------------
# Pendulum
# ---------------------------------------------------------------------------------------------


@pytree_dataclass
class PendulumParams:
  """Pendulum-v1 constants (gymnasium ``PendulumEnv``)."""

  max_speed: float = 8.0
  max_torque: float = 2.0
  dt: float = 0.05
  g: float = 10.0
  m: float = 1.0
  l: float = 1.0
  max_steps: int = 200


@pytree_dataclass
class PendulumState:
  """Angle ``theta`` (rad, 0 upright), angular velocity ``theta_dot``; ``time``.

  ``theta`` is kept in ``[-pi, pi)``. gymnasium lets it grow without bound as the pendulum
  spins; every observation and reward is periodic in it, so the two agree, and wrapping keeps
  float32 accurate (an unwrapped angle of 80 rad carries a float32 rounding error of ~4e-6).
  """

  theta: Array
  theta_dot: Array
  time: Array


def _angle_normalize(x: Array) -> Array:
  """Wraps an angle to ``[-pi, pi)`` exactly as gymnasium's ``angle_normalize``."""
  return ((x + jnp.pi) % (2 * jnp.pi)) - jnp.pi


class Pendulum(Environment[PendulumState, PendulumParams]):
  """Swing a torque-limited pendulum up and hold it upright.

  Observation float32 ``[3]``: ``(cos theta, sin theta, theta_dot)``; action float32 ``[1]``,
  the torque (clipped to ``[-max_torque, max_torque]``). Reward
  ``-(normalize(theta)^2 + 0.1 theta_dot^2 + 0.001 u^2)``; never terminates. The initial state
  is uniform in ``[-pi, pi) x [-1, 1)``. Equal to gymnasium's ``Pendulum-v1``.
  """

  name = "Pendulum"

  @property
  def default_params(self) -> PendulumParams:
    return PendulumParams()

  def reset_env(self, key: PRNGKey, params: PendulumParams) -> tuple[Array, PendulumState]:
    """Samples ``theta`` in ``[-pi, pi)`` and ``theta_dot`` in ``[-1, 1)``.

    Returns:
      ``(obs [3], state)``.
    """
    key_theta, key_theta_dot = jax.random.split(key)
    theta = jax.random.uniform(key_theta, (), _F32, -jnp.pi, jnp.pi)
    theta_dot = jax.random.uniform(key_theta_dot, (), _F32, -1.0, 1.0)
    state = PendulumState(theta, theta_dot, jnp.zeros((), jnp.int32))
    return self.observation(state), state

  def step_env(self, key: PRNGKey, state: PendulumState, action: Array, params: PendulumParams):
    """One ``dt`` step of the semi-implicit Euler pendulum.

    Args:
      key: unused (deterministic dynamics).
      state: current state.
      action: float ``[1]``, the torque.
      params: constants.

    Returns:
      ``(obs [3], state, reward [], terminated [], truncated [], info {})``.
    """
    del key
    th, thdot = state.theta, state.theta_dot
    g, m, l, dt = params.g, params.m, params.l, params.dt

    u = jnp.clip(_first(action), -params.max_torque, params.max_torque)
    costs = _angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * (u**2)

    newthdot = thdot + (3 * g / (2 * l) * jnp.sin(th) + 3.0 / (m * l**2) * u) * dt
    newthdot = jnp.clip(newthdot, -params.max_speed, params.max_speed)
    newth = _angle_normalize(th + newthdot * dt)

    time = state.time + 1
    state = PendulumState(newth, newthdot, time)
    reward = (-costs).astype(_F32)
    terminated = jnp.asarray(False)
    truncated = _time_limit(time, params.max_steps)
    return self.observation(state), state, reward, terminated, truncated, {}

  def observation(self, state: PendulumState) -> Array:
    """``(cos theta, sin theta, theta_dot)``, float32 ``[3]``."""
    return jnp.stack([jnp.cos(state.theta), jnp.sin(state.theta), state.theta_dot]).astype(_F32)

  def observation_space(self, params: PendulumParams) -> Box:
    high = np.array([1.0, 1.0, params.max_speed], np.float32)
    return Box(-high, high, (3,), jnp.float32)

  def action_space(self, params: PendulumParams) -> Box:
    return Box(np.float32(-params.max_torque), np.float32(params.max_torque), (1,), jnp.float32)


# ---------------------------------------------------------------------------------------------
# MountainCar (discrete)
# ---------------------------------------------------------------------------------------------


@pytree_dataclass
class MountainCarParams:
  """MountainCar-v0 constants (gymnasium ``MountainCarEnv``)."""

  min_position: float = -1.2
  max_position: float = 0.6
  max_speed: float = 0.07
  goal_position: float = 0.5
  goal_velocity: float = 0.0
  force: float = 0.001
  gravity: float = 0.0025
  max_steps: int = 200


@pytree_dataclass
class MountainCarState:
  """Car ``position`` and ``velocity``; ``time``."""

  position: Array
  velocity: Array
  time: Array


def _mountain_car_reset(key: PRNGKey) -> tuple[Array, Array]:
  """Position uniform in ``[-0.6, -0.4)``, velocity 0 (both mountain cars)."""
  position = jax.random.uniform(key, (), _F32, -0.6, -0.4)
  return position, jnp.zeros((), _F32)


def _mountain_car_observation(position: Array, velocity: Array) -> Array:
  return jnp.stack([position, velocity]).astype(_F32)


def _mountain_car_observation_space(params) -> Box:
  low = np.array([params.min_position, -params.max_speed], np.float32)
  high = np.array([params.max_position, params.max_speed], np.float32)
  return Box(low, high, (2,), jnp.float32)


class MountainCar(Environment[MountainCarState, MountainCarParams]):
  """Drive an underpowered car up a hill by rocking it: push left (0), none (1), right (2).

  Observation float32 ``[2]``: ``(position, velocity)``. Reward -1 per step; terminates when
  ``position >= goal_position`` and ``velocity >= goal_velocity``. Hitting the left wall
  zeroes a negative velocity. The initial position is uniform in ``[-0.6, -0.4)`` at rest.
  Moore (1990); equal to gymnasium's ``MountainCar-v0``.
  """

  name = "MountainCar"

  @property
  def default_params(self) -> MountainCarParams:
    return MountainCarParams()

  def reset_env(self, key: PRNGKey, params: MountainCarParams) -> tuple[Array, MountainCarState]:
    """Samples the position in ``[-0.6, -0.4)`` with zero velocity.

    Returns:
      ``(obs [2], state)``.
    """
    position, velocity = _mountain_car_reset(key)
    state = MountainCarState(position, velocity, jnp.zeros((), jnp.int32))
    return _mountain_car_observation(position, velocity), state

  def step_env(self, key: PRNGKey, state: MountainCarState, action: Array,
               params: MountainCarParams):
    """One step of the mountain-car dynamics.

    Args:
      key: unused (deterministic dynamics).
      state: current state.
      action: int ``[]`` in ``{0, 1, 2}``.
      params: constants.

    Returns:
      ``(obs [2], state, reward [], terminated [], truncated [], info {})``.
    """
    del key
    position, velocity = state.position, state.velocity
    push = (jnp.asarray(action, _F32) - 1) * params.force
    velocity = velocity + (push + jnp.cos(3 * position) * (-params.gravity))
    velocity = jnp.clip(velocity, -params.max_speed, params.max_speed)
    position = position + velocity
    position = jnp.clip(position, params.min_position, params.max_position)
    velocity = jnp.where((position == params.min_position) & (velocity < 0), 0.0, velocity)

    time = state.time + 1
    state = MountainCarState(position, velocity, time)
    terminated = (position >= params.goal_position) & (velocity >= params.goal_velocity)
    reward = jnp.asarray(-1.0, _F32)
    truncated = _time_limit(time, params.max_steps)
    return (_mountain_car_observation(position, velocity), state, reward, terminated, truncated,
            {})

  def observation_space(self, params: MountainCarParams) -> Box:
    return _mountain_car_observation_space(params)

  def action_space(self, params: MountainCarParams) -> Discrete:
    return Discrete(3)


# ---------------------------------------------------------------------------------------------
# MountainCarContinuous
# ---------------------------------------------------------------------------------------------


@pytree_dataclass
class MountainCarContinuousParams:
  """MountainCarContinuous-v0 constants (gymnasium ``Continuous_MountainCarEnv``)."""

  min_action: float = -1.0
  max_action: float = 1.0
  min_position: float = -1.2
  max_position: float = 0.6
  max_speed: float = 0.07
  goal_position: float = 0.45
  goal_velocity: float = 0.0
  power: float = 0.0015
  gravity: float = 0.0025
  max_steps: int = 999


@pytree_dataclass
class MountainCarContinuousState:
  """Car ``position`` and ``velocity``; ``time``."""

  position: Array
  velocity: Array
  time: Array


class MountainCarContinuous(
    Environment[MountainCarContinuousState, MountainCarContinuousParams]):
  """The mountain car with a continuous force in ``[-1, 1]``.

  Observation float32 ``[2]``: ``(position, velocity)``; action float32 ``[1]``. Reward
  ``-0.1 a^2`` per step (``a`` unclipped, as in gymnasium) plus 100 on reaching
  ``position >= goal_position`` with ``velocity >= goal_velocity``, which terminates.
  Equal to gymnasium's ``MountainCarContinuous-v0``.
  """

  name = "MountainCarContinuous"

  @property
  def default_params(self) -> MountainCarContinuousParams:
    return MountainCarContinuousParams()

  def reset_env(self, key: PRNGKey, params: MountainCarContinuousParams
                ) -> tuple[Array, MountainCarContinuousState]:
    """Samples the position in ``[-0.6, -0.4)`` with zero velocity.

    Returns:
      ``(obs [2], state)``.
    """
    position, velocity = _mountain_car_reset(key)
    state = MountainCarContinuousState(position, velocity, jnp.zeros((), jnp.int32))
    return _mountain_car_observation(position, velocity), state

  def step_env(self, key: PRNGKey, state: MountainCarContinuousState, action: Array,
               params: MountainCarContinuousParams):
    """One step of the continuous mountain-car dynamics.

    Args:
      key: unused (deterministic dynamics).
      state: current state.
      action: float ``[1]``, the force (clipped to ``[min_action, max_action]``).
      params: constants.

    Returns:
      ``(obs [2], state, reward [], terminated [], truncated [], info {})``.
    """
    del key
    position, velocity = state.position, state.velocity
    a = _first(action)
    force = jnp.minimum(jnp.maximum(a, params.min_action), params.max_action)

    velocity = velocity + (force * params.power - params.gravity * jnp.cos(3 * position))
    velocity = jnp.clip(velocity, -params.max_speed, params.max_speed)
    position = position + velocity
    position = jnp.clip(position, params.min_position, params.max_position)
    velocity = jnp.where((position == params.min_position) & (velocity < 0), 0.0, velocity)

    time = state.time + 1
    state = MountainCarContinuousState(position, velocity, time)
    terminated = (position >= params.goal_position) & (velocity >= params.goal_velocity)
    reward = (jnp.where(terminated, 100.0, 0.0) - a**2 * 0.1).astype(_F32)
    truncated = _time_limit(time, params.max_steps)
    return (_mountain_car_observation(position, velocity), state, reward, terminated, truncated,
            {})

  def observation_space(self, params: MountainCarContinuousParams) -> Box:
    return _mountain_car_observation_space(params)

  def action_space(self, params: MountainCarContinuousParams) -> Box:
    return Box(np.float32(params.min_action), np.float32(params.max_action), (1,), jnp.float32)


# ---------------------------------------------------------------------------------------------
# Acrobot
# ---------------------------------------------------------------------------------------------


@pytree_dataclass
class AcrobotParams:
  """Acrobot-v1 constants (gymnasium ``AcrobotEnv``).

  ``book_or_nips`` selects the book dynamics (Sutton & Barto, gymnasium's default) or the
  NeurIPS-paper equations that miss a term (Sutton 1996). ``torque_noise_max`` adds uniform
  noise in ``[-torque_noise_max, torque_noise_max]`` to the torque (0 in Acrobot-v1).
  """

  dt: float = 0.2
  link_length_1: float = 1.0
  link_length_2: float = 1.0
  link_mass_1: float = 1.0
  link_mass_2: float = 1.0
  link_com_pos_1: float = 0.5
  link_com_pos_2: float = 0.5
  link_moi: float = 1.0
  gravity: float = 9.8
  max_vel_1: float = 4 * math.pi
  max_vel_2: float = 9 * math.pi
  torque_noise_max: float = 0.0
  max_steps: int = 500
  book_or_nips: str = static_field("book")

  def __post_init__(self):
    _check_choice("book_or_nips", self.book_or_nips, ("book", "nips"))


@pytree_dataclass
class AcrobotState:
  """Joint angles ``theta1``, ``theta2`` (rad, wrapped to [-pi, pi]), their velocities; ``time``."""

  theta1: Array
  theta2: Array
  dtheta1: Array
  dtheta2: Array
  time: Array


def _acrobot_dsdt(s: Array, torque: Array, params: AcrobotParams) -> Array:
  """Time derivative of ``s = (theta1, theta2, dtheta1, dtheta2)`` [4] under ``torque``."""
  m1, m2 = params.link_mass_1, params.link_mass_2
  l1 = params.link_length_1
  lc1, lc2 = params.link_com_pos_1, params.link_com_pos_2
  i1 = i2 = params.link_moi
  g = params.gravity
  a = torque
  theta1, theta2, dtheta1, dtheta2 = s[0], s[1], s[2], s[3]
  d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * jnp.cos(theta2)) + i1 + i2
  d2 = m2 * (lc2**2 + l1 * lc2 * jnp.cos(theta2)) + i2
  phi2 = m2 * lc2 * g * jnp.cos(theta1 + theta2 - jnp.pi / 2.0)
  phi1 = (-m2 * l1 * lc2 * dtheta2**2 * jnp.sin(theta2)
          - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * jnp.sin(theta2)
          + (m1 * lc1 + m2 * l1) * g * jnp.cos(theta1 - jnp.pi / 2)
          + phi2)
  if params.book_or_nips == "nips":
    ddtheta2 = (a + d2 / d1 * phi1 - phi2) / (m2 * lc2**2 + i2 - d2**2 / d1)
  else:
    ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * jnp.sin(theta2) - phi2) / (
        m2 * lc2**2 + i2 - d2**2 / d1)
  ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
  return jnp.stack([dtheta1, dtheta2, ddtheta1, ddtheta2])


def _rk4_step(derivs, y0: Array, dt: Array) -> Array:
  """One classic Runge-Kutta step, gymnasium's ``rk4`` over ``t = [0, dt]``."""
  dt2 = dt / 2.0
  k1 = derivs(y0)
  k2 = derivs(y0 + dt2 * k1)
  k3 = derivs(y0 + dt2 * k2)
  k4 = derivs(y0 + dt * k3)
  return y0 + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


def _wrap(x: Array, low: float, high: float) -> Array:
  """gymnasium's ``wrap``: adds or subtracts ``high - low`` until ``low <= x <= high``."""
  diff = high - low
  x = jax.lax.while_loop(lambda v: v > high, lambda v: v - diff, x)
  return jax.lax.while_loop(lambda v: v < low, lambda v: v + diff, x)


class Acrobot(Environment[AcrobotState, AcrobotParams]):
  """Swing the tip of a two-link pendulum, actuated at the middle joint, above a line.

  Actions 0, 1, 2 apply torque -1, 0, +1. Observation float32 ``[6]``:
  ``(cos theta1, sin theta1, cos theta2, sin theta2, dtheta1, dtheta2)``. Reward -1 per step
  and 0 on the step that terminates, when ``-cos(theta1) - cos(theta1 + theta2) > 1``. One
  step is a single RK4 step of ``dt``; angles are then wrapped to ``[-pi, pi]`` and velocities
  clipped to ``max_vel_1`` / ``max_vel_2``. The initial state is uniform in
  ``[-0.1, 0.1)^4``. Sutton (1996); Sutton & Barto (2018); equal to gymnasium's ``Acrobot-v1``.
  """

  name = "Acrobot"

  @property
  def default_params(self) -> AcrobotParams:
    return AcrobotParams()

  def reset_env(self, key: PRNGKey, params: AcrobotParams) -> tuple[Array, AcrobotState]:
    """Samples the four state variables uniformly in ``[-0.1, 0.1)``.

    Returns:
      ``(obs [6], state)``.
    """
    theta1, theta2, dtheta1, dtheta2 = jax.random.uniform(key, (4,), _F32, -0.1, 0.1)
    state = AcrobotState(theta1, theta2, dtheta1, dtheta2, jnp.zeros((), jnp.int32))
    return self.observation(state), state

  def step_env(self, key: PRNGKey, state: AcrobotState, action: Array, params: AcrobotParams):
    """One RK4 step of the acrobot dynamics.

    Args:
      key: PRNG key for the torque noise (drawn always; zero noise by default).
      state: current state.
      action: int ``[]`` in ``{0, 1, 2}`` (torque ``action - 1``).
      params: constants.

    Returns:
      ``(obs [6], state, reward [], terminated [], truncated [], info {})``.
    """
    torque = jnp.asarray(action, _F32) - 1.0
    torque = torque + jax.random.uniform(
        key, (), _F32, -params.torque_noise_max, params.torque_noise_max)

    s = jnp.stack([state.theta1, state.theta2, state.dtheta1, state.dtheta2])
    ns = _rk4_step(lambda y: _acrobot_dsdt(y, torque, params), s, params.dt)

    theta1 = _wrap(ns[0], -jnp.pi, jnp.pi)
    theta2 = _wrap(ns[1], -jnp.pi, jnp.pi)
    dtheta1 = jnp.clip(ns[2], -params.max_vel_1, params.max_vel_1)
    dtheta2 = jnp.clip(ns[3], -params.max_vel_2, params.max_vel_2)

    time = state.time + 1
    state = AcrobotState(theta1, theta2, dtheta1, dtheta2, time)
    terminated = -jnp.cos(theta1) - jnp.cos(theta2 + theta1) > 1.0
    reward = jnp.where(terminated, 0.0, -1.0).astype(_F32)
    truncated = _time_limit(time, params.max_steps)
    return self.observation(state), state, reward, terminated, truncated, {}

  def observation(self, state: AcrobotState) -> Array:
    """``(cos theta1, sin theta1, cos theta2, sin theta2, dtheta1, dtheta2)``, float32 ``[6]``."""
    return jnp.stack([jnp.cos(state.theta1), jnp.sin(state.theta1), jnp.cos(state.theta2),
                      jnp.sin(state.theta2), state.dtheta1, state.dtheta2]).astype(_F32)

  def observation_space(self, params: AcrobotParams) -> Box:
    high = np.array([1.0, 1.0, 1.0, 1.0, params.max_vel_1, params.max_vel_2], np.float32)
    return Box(-high, high, (6,), jnp.float32)

  def action_space(self, params: AcrobotParams) -> Discrete:
    return Discrete(3)
