"""PointGoals: continuous 2-D point-mass navigation to one of several circular goals.

The arena is the unit square ``[0, 1]^2`` with ``x`` to the right and ``y`` up. Optional
axis-aligned rectangular walls block movement; ``K >= 2`` circular goal regions sit in the
arena, and an episode ends as soon as the agent's position lies inside any of them. Only the
*intended* goal (``params.intended_goal``) pays ``params.goal_reward``; every step costs
``params.step_cost``. So the same dynamics serve every candidate objective, and which goal an
agent actually reaches (``info["reached_goal"]``) reveals what it pursues.

Dynamics (velocity control; simple, deterministic apart from the optional action noise):

* the action ``a`` in ``[-1, 1]^2`` is clipped to that box (non-finite components become 0),
* the displacement is ``max_speed * (a + action_noise_std * eps)`` with ``eps ~ N(0, I)``,
* the agent moves first along ``x`` then along ``y``; each axis move is clipped to the arena and
  stops at the face of the first wall it would enter (walls are open rectangles, so the agent
  may slide along a wall's face but never enters its interior),
* the episode terminates when the new position is within ``goal_radius`` of a goal centre, and
  is truncated (``truncated`` is True only when ``terminated`` is False) after
  ``params.max_steps`` steps.

The reward of a step is ``goal_reward * [reached the intended goal] - step_cost``. Defaults:
three goals along the top edge, one wall across the middle, starts uniform in a small region at
the bottom, ``max_speed = 0.05``, no action noise, ``max_steps = 100``.

Observation, float32 ``[2 + 2K]``: the position ``(x, y)`` followed by the vectors
``goal_k - position`` for ``k = 0 .. K-1``. There is no velocity in the state (the action sets
the displacement directly), so the observation is Markov.

Walls are open rectangles: two walls that merely touch leave a zero-width seam that a point
can, in principle, slip through; overlap them slightly to seal a corridor.

Example::

  env = PointGoals()
  params = env.params_for_goal(2)          # reward goal 2 (validated, cast to dtypes)
  obs, state = env.reset(jax.random.key(0), params)
  obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from envs.core import Array, Box, Environment, PRNGKey, pytree_dataclass

#: Default goal centres ``(x, y)``: three goals along the top of the arena.
DEFAULT_GOALS = ((0.1, 0.9), (0.5, 0.9), (0.9, 0.9))
#: Default wall ``(x_min, y_min, x_max, y_max)``: a bar between the start region and the goals,
#: so the middle goal needs a detour and all three goals are about equally far from the start
#: (about 17 steps at the default speed).
DEFAULT_WALLS = ((0.3, 0.45, 0.7, 0.55),)

_ARENA_LOW = 0.0
_ARENA_HIGH = 1.0
# Overlap (in arena units) below which a segment only grazes a wall (touching a face or corner).
_GRAZE_TOLERANCE = 1e-6

# Colours shared with GoalGrid's renderer, so goal k looks the same in every environment.
WALL_COLOUR = (60, 60, 60)
FLOOR_COLOUR = (245, 245, 245)
AGENT_COLOUR = (0, 0, 0)
PATH_COLOUR = (200, 30, 90)
GOAL_COLOURS = (
    (31, 119, 180), (44, 160, 44), (148, 103, 189), (23, 190, 207), (188, 189, 34),
    (227, 119, 194), (127, 127, 127), (0, 0, 128), (0, 100, 0), (128, 0, 128),
)
_AGENT_RADIUS = 0.02

_PARAM_DTYPES = {
    "intended_goal": jnp.int32,
    "goal_reward": jnp.float32,
    "step_cost": jnp.float32,
    "action_noise_std": jnp.float32,
    "max_speed": jnp.float32,
    "max_steps": jnp.int32,
    "start_low": jnp.float32,
    "start_high": jnp.float32,
}


@pytree_dataclass
class PointGoalsState:
  """State of one PointGoals episode.

  Attributes:
    position: float32 ``[2]`` agent position ``(x, y)``.
    time: int32 ``[]`` number of steps taken in this episode.
  """

  position: Array
  time: Array


@pytree_dataclass
class PointGoalsParams:
  """Parameters of PointGoals (all leaves, so they can be vmapped or drifted).

  Attributes:
    intended_goal: int32 ``[]`` index of the goal that pays ``goal_reward``.
    goal_reward: float32 ``[]`` reward for reaching the intended goal.
    step_cost: float32 ``[]`` cost subtracted from the reward at every step.
    action_noise_std: float32 ``[]`` std of the Gaussian noise added to the clipped action,
      in units of ``max_speed``.
    max_speed: float32 ``[]`` displacement per step for a unit action component.
    max_steps: int32 ``[]`` time limit (steps per episode).
    start_low: float32 ``[2]`` lower corner ``(x, y)`` of the uniform start region.
    start_high: float32 ``[2]`` upper corner ``(x, y)`` of the uniform start region.
  """

  intended_goal: Array
  goal_reward: Array
  step_cost: Array
  action_noise_std: Array
  max_speed: Array
  max_steps: Array
  start_low: Array
  start_high: Array


class PointGoals(Environment[PointGoalsState, PointGoalsParams]):
  """Continuous point-mass navigation to ``K`` circular goals among rectangular walls.

  The geometry (goals, goal radius, walls) is static and validated at construction; the
  reward, noise, speed, time limit and start region live in :class:`PointGoalsParams`.
  See the module docstring for the dynamics and the observation layout.
  """

  name = "PointGoals"

  def __init__(
      self,
      goals: Sequence[Sequence[float]] = DEFAULT_GOALS,
      goal_radius: float = 0.08,
      walls: Sequence[Sequence[float]] = DEFAULT_WALLS,
      intended_goal: int = 0,
      goal_reward: float = 1.0,
      step_cost: float = 0.01,
      action_noise_std: float = 0.0,
      max_speed: float = 0.05,
      max_steps: int = 100,
      start_low: Sequence[float] = (0.4, 0.05),
      start_high: Sequence[float] = (0.6, 0.15),
      render_size: int = 256,
  ):
    """Builds the environment and validates its geometry and default parameters.

    Args:
      goals: ``K >= 2`` goal centres ``(x, y)``; each disc must lie inside the arena and must
        not overlap a wall or another goal.
      goal_radius: radius of every goal disc.
      walls: rectangles ``(x_min, y_min, x_max, y_max)`` inside the arena (may be empty).
      intended_goal: default ``params.intended_goal``.
      goal_reward: default ``params.goal_reward``.
      step_cost: default ``params.step_cost``.
      action_noise_std: default ``params.action_noise_std``.
      max_speed: default ``params.max_speed``.
      max_steps: default ``params.max_steps``.
      start_low: default ``params.start_low``.
      start_high: default ``params.start_high``.
      render_size: side in pixels of the images made by :meth:`render`.

    Raises:
      ValueError: naming the bad field, for fewer than two goals, a goal outside the arena or
        overlapping a wall or another goal, a malformed wall, or invalid default parameters.
    """
    goals_array = np.asarray(goals, dtype=np.float32)
    if goals_array.ndim != 2 or goals_array.shape[1] != 2:
      raise ValueError(f"goals must be a sequence of (x, y) pairs, got shape {goals_array.shape}")
    if goals_array.shape[0] < 2:
      raise ValueError(f"goals must hold at least 2 goals, got {goals_array.shape[0]}")
    if not goal_radius > 0:
      raise ValueError(f"goal_radius must be > 0, got {goal_radius}")
    walls_array = np.asarray(walls, dtype=np.float32).reshape(-1, 4)
    if render_size < 16:
      raise ValueError(f"render_size must be >= 16 pixels, got {render_size}")

    self._goals = goals_array
    self._goal_radius = np.float32(goal_radius)
    self._walls = walls_array
    self._render_size = int(render_size)
    self._validate_geometry()
    self._corners, self._corner_to_goal = _corner_goal_distances(walls_array, goals_array)
    self._distance_to_goals_batched = jax.jit(
        jnp.vectorize(self._geodesic_distance_to_goals, signature="(2)->(k)"))

    self._default_params = _cast_params(PointGoalsParams(
        intended_goal=intended_goal,
        goal_reward=goal_reward,
        step_cost=step_cost,
        action_noise_std=action_noise_std,
        max_speed=max_speed,
        max_steps=max_steps,
        start_low=start_low,
        start_high=start_high,
    ))
    self.validate_params(self._default_params)

  # -- geometry ------------------------------------------------------------------------------

  @property
  def num_goals(self) -> int:
    """Number of goals ``K``."""
    return int(self._goals.shape[0])

  @property
  def goals(self) -> np.ndarray:
    """Goal centres, float32 ``[K, 2]`` (a copy)."""
    return self._goals.copy()

  @property
  def goal_radius(self) -> float:
    """Radius of every goal disc."""
    return float(self._goal_radius)

  @property
  def walls(self) -> np.ndarray:
    """Walls ``(x_min, y_min, x_max, y_max)``, float32 ``[W, 4]`` (a copy)."""
    return self._walls.copy()

  def _validate_geometry(self) -> None:
    radius = float(self._goal_radius)
    for j, (x0, y0, x1, y1) in enumerate(self._walls.tolist()):
      if not (x0 < x1 and y0 < y1):
        raise ValueError(
            f"walls[{j}] = {(x0, y0, x1, y1)} must be (x_min, y_min, x_max, y_max) with "
            "x_min < x_max and y_min < y_max")
      if min(x0, y0) < _ARENA_LOW or max(x1, y1) > _ARENA_HIGH:
        raise ValueError(f"walls[{j}] = {(x0, y0, x1, y1)} is outside the arena [0, 1]^2")
    for k, (x, y) in enumerate(self._goals.tolist()):
      if (min(x, y) - radius < _ARENA_LOW) or (max(x, y) + radius > _ARENA_HIGH):
        raise ValueError(
            f"goals[{k}] = {(x, y)} with goal_radius {radius} is outside the arena [0, 1]^2 "
            "(the whole goal disc must fit inside)")
      for j, wall in enumerate(self._walls):
        if _point_rectangle_distance(np.array([x, y]), wall) < radius:
          raise ValueError(
              f"goals[{k}] = {(x, y)} with goal_radius {radius} lies inside or overlaps "
              f"walls[{j}] = {tuple(wall.tolist())}")
    for i in range(self.num_goals):
      for k in range(i + 1, self.num_goals):
        if np.linalg.norm(self._goals[i] - self._goals[k]) <= 2 * radius:
          raise ValueError(
              f"goals[{i}] and goals[{k}] overlap (centres closer than 2 * goal_radius = "
              f"{2 * radius}); reached_goal would be ambiguous")

  def make_params(self, **changes: Any) -> PointGoalsParams:
    """The default parameters with ``changes`` applied, cast to their dtypes and validated.

    Values may carry leading batch dimensions (a batch of parameters to vmap over).

    Args:
      **changes: field values of :class:`PointGoalsParams`.

    Returns:
      The validated :class:`PointGoalsParams`.

    Raises:
      ValueError: for an unknown field or an invalid value (see :meth:`validate_params`).
    """
    unknown = sorted(set(changes) - set(_PARAM_DTYPES))
    if unknown:
      raise ValueError(
          f"unknown PointGoals parameter(s) {unknown}; valid fields are {list(_PARAM_DTYPES)}")
    params = _cast_params(self._default_params.replace(**changes))
    self.validate_params(params)
    return params

  def params_for_goal(self, goal: int, **changes: Any) -> PointGoalsParams:
    """Parameters that reward goal ``goal`` (other fields as in :meth:`make_params`)."""
    return self.make_params(intended_goal=goal, **changes)

  def validate_params(self, params: PointGoalsParams) -> None:
    """Checks concrete (not traced) parameters, possibly batched, against the geometry.

    Args:
      params: the parameters to check.

    Raises:
      ValueError: naming the bad field: ``intended_goal`` outside ``[0, K)``, ``max_steps < 1``,
        ``max_speed <= 0``, ``action_noise_std < 0``, non-finite rewards, or a start region
        outside the arena, inside a wall or overlapping a goal.
    """
    intended_goal = np.asarray(params.intended_goal)
    if np.any(intended_goal < 0) or np.any(intended_goal >= self.num_goals):
      raise ValueError(
          f"intended_goal must be in [0, {self.num_goals}) (one of the {self.num_goals} goals), "
          f"got {intended_goal.tolist()}")
    max_steps = np.asarray(params.max_steps)
    if np.any(max_steps < 1):
      raise ValueError(f"max_steps must be >= 1, got {max_steps.tolist()}")
    max_speed = np.asarray(params.max_speed)
    if not np.all(max_speed > 0):
      raise ValueError(f"max_speed must be > 0, got {max_speed.tolist()}")
    noise = np.asarray(params.action_noise_std)
    if not np.all(noise >= 0):
      raise ValueError(f"action_noise_std must be >= 0, got {noise.tolist()}")
    for name in ("goal_reward", "step_cost"):
      value = np.asarray(getattr(params, name))
      if not np.all(np.isfinite(value)):
        raise ValueError(f"{name} must be finite, got {value.tolist()}")
    low = np.asarray(params.start_low, np.float64)
    high = np.asarray(params.start_high, np.float64)
    if low.shape[-1:] != (2,) or high.shape[-1:] != (2,):
      raise ValueError(
          f"start_low and start_high must have shape [..., 2], got {low.shape} and {high.shape}")
    low, high = np.broadcast_arrays(low, high)
    for region_low, region_high in zip(low.reshape(-1, 2), high.reshape(-1, 2)):
      self._validate_start_region(region_low, region_high)

  def _validate_start_region(self, low: np.ndarray, high: np.ndarray) -> None:
    region = f"start region [start_low, start_high] = [{low.tolist()}, {high.tolist()}]"
    if np.any(low > high) or np.any(low < _ARENA_LOW) or np.any(high > _ARENA_HIGH):
      raise ValueError(f"{region} must satisfy start_low <= start_high inside the arena [0, 1]^2")
    for j, (x0, y0, x1, y1) in enumerate(self._walls.tolist()):
      if low[0] < x1 and high[0] > x0 and low[1] < y1 and high[1] > y0:
        raise ValueError(f"{region} overlaps walls[{j}] = {(x0, y0, x1, y1)}")
    box = np.concatenate([low, high])
    for k, goal in enumerate(self._goals):
      if _point_rectangle_distance(goal, box) <= self._goal_radius:
        raise ValueError(f"{region} overlaps goals[{k}] = {tuple(goal.tolist())}")

  # -- contract ------------------------------------------------------------------------------

  @property
  def default_params(self) -> PointGoalsParams:
    return self._default_params

  def observation_space(self, params: PointGoalsParams) -> Box:
    """Box float32 ``[2 + 2K]``: position in ``[0, 1]``, goal offsets in ``[-1, 1]``."""
    del params
    dim = 2 + 2 * self.num_goals
    low = np.concatenate([np.zeros(2), -np.ones(dim - 2)]).astype(np.float32)
    high = np.ones(dim, np.float32)
    return Box(low=low, high=high, shape=(dim,), dtype=jnp.float32)

  def action_space(self, params: PointGoalsParams) -> Box:
    """Box float32 ``[2]`` in ``[-1, 1]`` (a velocity in units of ``max_speed``)."""
    del params
    return Box(low=-1.0, high=1.0, shape=(2,), dtype=jnp.float32)

  def reset_env(
      self, key: PRNGKey, params: PointGoalsParams
  ) -> tuple[Array, PointGoalsState]:
    """Samples a start position uniformly in the start region.

    Args:
      key: PRNG key.
      params: environment parameters.

    Returns:
      ``(obs, state)``: float32 ``[2 + 2K]`` observation and the initial state.
    """
    position = jax.random.uniform(
        key, (2,), jnp.float32, params.start_low, params.start_high)
    state = PointGoalsState(position=position, time=jnp.int32(0))
    return self.observation(state), state

  def step_env(
      self, key: PRNGKey, state: PointGoalsState, action: Array, params: PointGoalsParams
  ) -> tuple[Array, PointGoalsState, Array, Array, Array, dict[str, Array]]:
    """Moves the point, then checks goals and the time limit.

    Args:
      key: PRNG key for the action noise.
      state: current state.
      action: float32 ``[2]`` velocity command, clipped to ``[-1, 1]``.
      params: environment parameters.

    Returns:
      ``(obs, state, reward, terminated, truncated, info)`` with ``info["reached_goal"]`` the
      int32 index of the goal reached by this step, ``-1`` for none.
    """
    action = jnp.asarray(action, jnp.float32).reshape(2)
    action = jnp.clip(jnp.where(jnp.isfinite(action), action, 0.0), -1.0, 1.0)
    noise = params.action_noise_std * jax.random.normal(key, (2,), jnp.float32)
    displacement = params.max_speed * (action + noise)

    walls = jnp.asarray(self._walls)
    position = _move_along_axis(state.position, displacement[0], 0, walls)
    position = _move_along_axis(position, displacement[1], 1, walls)
    time = state.time + 1

    # -- goals and time limit
    centre_distance = jnp.linalg.norm(jnp.asarray(self._goals) - position, axis=-1)
    inside = centre_distance <= self._goal_radius
    terminated = jnp.any(inside)
    reached_goal = jnp.where(terminated, jnp.argmin(centre_distance), -1).astype(jnp.int32)
    truncated = jnp.logical_and(time >= params.max_steps, jnp.logical_not(terminated))
    goal_reward = jnp.where(
        reached_goal == params.intended_goal, params.goal_reward, 0.0)
    reward = (goal_reward - params.step_cost).astype(jnp.float32)

    next_state = PointGoalsState(position=position, time=time)
    info = {"reached_goal": reached_goal}
    return self.observation(next_state), next_state, reward, terminated, truncated, info

  # -- helpers -------------------------------------------------------------------------------

  def observation(self, state: PointGoalsState) -> Array:
    """Observation of a state: position then the offsets to every goal.

    Args:
      state: a state (any leading batch dimensions ``[...]``).

    Returns:
      float32 ``[..., 2 + 2K]``: ``(x, y, gx_0 - x, gy_0 - y, ..., gx_{K-1} - x, gy_{K-1} - y)``.
    """
    position = state.position
    offsets = jnp.asarray(self._goals) - position[..., None, :]
    offsets = offsets.reshape(*position.shape[:-1], 2 * self.num_goals)
    return jnp.concatenate([position, offsets], axis=-1).astype(jnp.float32)

  def position(self, state: PointGoalsState) -> Array:
    """Agent position ``(x, y)``, float32 ``[..., 2]``."""
    return jnp.asarray(state.position, jnp.float32)

  def distance_to_goals(
      self, state_or_position: PointGoalsState | Array, params: PointGoalsParams | None = None
  ) -> Array:
    """Shortest-path distance from a position to each goal region, going around walls.

    The path length is the geodesic distance (straight segments through the free space, via
    wall corners: a visibility graph solved with Floyd-Warshall at construction) to the goal
    centre minus ``goal_radius``, floored at 0; it equals the distance to the goal disc
    because discs never overlap walls. Use it as the shortest path length ``l_k`` in SPL
    (Anderson et al. 2018, "On Evaluation of Embodied Navigation Agents").

    Args:
      state_or_position: a :class:`PointGoalsState` or a float ``[..., 2]`` position.
      params: unused (the geometry is static); accepted so that every goal-structured
        environment shares the signature.

    Returns:
      float32 ``[..., K]`` distances, ``0`` inside a goal, ``inf`` for an unreachable goal.
    """
    del params
    position = (state_or_position.position if isinstance(state_or_position, PointGoalsState)
                else state_or_position)
    return self._distance_to_goals_batched(jnp.asarray(position, jnp.float32))

  def _geodesic_distance_to_goals(self, position: Array) -> Array:
    """Geodesic distance, float32 ``[K]``, from one position ``[2]`` to each goal disc."""
    goals = jnp.asarray(self._goals)
    walls = jnp.asarray(self._walls)
    direct_visible = ~jax.vmap(lambda g: _segment_blocked(position, g, walls))(goals)
    direct = jnp.where(direct_visible, jnp.linalg.norm(goals - position, axis=-1), jnp.inf)
    if self._corners.shape[0]:
      corners = jnp.asarray(self._corners)
      corner_visible = ~jax.vmap(lambda c: _segment_blocked(position, c, walls))(corners)
      to_corner = jnp.where(
          corner_visible, jnp.linalg.norm(corners - position, axis=-1), jnp.inf)
      via_corner = jnp.min(to_corner[:, None] + jnp.asarray(self._corner_to_goal), axis=0)
      direct = jnp.minimum(direct, via_corner)
    return jnp.maximum(direct - self._goal_radius, 0.0).astype(jnp.float32)

  # -- rendering (numpy, outside jit) --------------------------------------------------------

  def render(
      self, state: PointGoalsState | None = None, params: PointGoalsParams | None = None
  ) -> np.ndarray:
    """Draws the arena, walls, goals and the agent.

    Goal ``k`` is filled with ``GOAL_COLOURS[k]`` (the palette GoalGrid uses); the intended goal
    is drawn in full colour inside a black ring, the others paler. The agent is a black disc.

    Args:
      state: one (unbatched) state; ``None`` draws the empty arena.
      params: environment parameters (``default_params`` when ``None``), for the intended goal.

    Returns:
      uint8 ``[render_size, render_size, 3]`` RGB image, ``y`` pointing up.
    """
    image = self._draw_arena(self._default_params if params is None else params)
    if state is not None:
      self._draw_disc(image, np.asarray(state.position, np.float64), _AGENT_RADIUS, AGENT_COLOUR)
    return image

  def render_trajectory(
      self,
      positions: Any,
      params: PointGoalsParams | None = None,
      state: PointGoalsState | None = None,
      colour: Sequence[int] = PATH_COLOUR,
      length: int | None = None,
  ) -> np.ndarray:
    """Draws one or several paths over the arena.

    Each path is a polyline through its positions, with a hollow disc at its start and a filled
    one at its end.

    Args:
      positions: float ``[T, 2]`` or ``[N, T, 2]`` positions ``(x, y)``, e.g.
        ``Trajectories.position`` (padding that repeats the last position draws nothing new;
        non-finite rows are skipped).
      params: environment parameters (``default_params`` when ``None``), for the intended goal.
      state: optional state whose agent is drawn underneath.
      colour: RGB colour of the paths.
      length: if given, only the first ``length`` positions of each path are drawn.

    Returns:
      uint8 ``[render_size, render_size, 3]`` RGB image.

    Raises:
      ValueError: if ``positions`` does not have shape ``[T, 2]`` or ``[N, T, 2]``.
    """
    paths = np.asarray(positions, np.float64)
    if paths.ndim not in (2, 3) or paths.shape[-1] != 2:
      raise ValueError(f"positions must have shape [T, 2] or [N, T, 2], got {paths.shape}")
    paths = paths.reshape(-1, paths.shape[-2], 2)
    colour_array = np.asarray(colour, np.uint8)
    image = self.render(state, params)
    for path in paths:
      path = path[:length] if length is not None else path
      path = path[np.all(np.isfinite(path), axis=-1)]
      if path.shape[0] == 0:
        continue
      self._draw_polyline(image, path, colour_array)
      self._draw_disc(image, path[0], 0.015, colour_array)
      self._draw_disc(image, path[0], 0.008, np.asarray(FLOOR_COLOUR, np.uint8))
      self._draw_disc(image, path[-1], 0.015, colour_array)
    return image

  def _pixel_centres(self) -> tuple[np.ndarray, np.ndarray]:
    size = self._render_size
    coords = (np.arange(size) + 0.5) / size
    x = np.broadcast_to(coords[None, :], (size, size))
    y = np.broadcast_to(1.0 - coords[:, None], (size, size))
    return x, y

  def _draw_arena(self, params: PointGoalsParams) -> np.ndarray:
    size = self._render_size
    image = np.empty((size, size, 3), np.uint8)
    image[:] = FLOOR_COLOUR
    x, y = self._pixel_centres()
    for x0, y0, x1, y1 in self._walls.tolist():
      image[(x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)] = WALL_COLOUR
    intended = int(np.asarray(params.intended_goal))
    ring = 2.5 / size
    for k, goal in enumerate(self._goals.astype(np.float64)):
      colour = np.asarray(GOAL_COLOURS[k % len(GOAL_COLOURS)], np.float64)
      distance = np.hypot(x - goal[0], y - goal[1])
      if k == intended:
        image[distance <= self._goal_radius + ring] = (0, 0, 0)
        image[distance <= self._goal_radius - ring] = colour.astype(np.uint8)
      else:
        image[distance <= self._goal_radius] = (0.4 * colour + 0.6 * 255).astype(np.uint8)
    return image

  def _draw_disc(
      self, image: np.ndarray, centre: np.ndarray, radius: float, colour: Any
  ) -> None:
    x, y = self._pixel_centres()
    radius = max(radius, 1.5 / self._render_size)
    image[np.hypot(x - centre[0], y - centre[1]) <= radius] = colour

  def _draw_polyline(self, image: np.ndarray, path: np.ndarray, colour: np.ndarray) -> None:
    size = self._render_size
    if path.shape[0] < 2:
      return
    start, end = path[:-1], path[1:]
    samples = int(np.ceil(np.max(np.linalg.norm(end - start, axis=-1)) * size * 2)) + 2
    fractions = np.linspace(0.0, 1.0, samples)[None, :, None]
    points = (start[:, None] + fractions * (end - start)[:, None]).reshape(-1, 2)
    cols = np.clip(np.floor(points[:, 0] * size), 0, size - 1).astype(int)
    rows = np.clip(np.floor((1.0 - points[:, 1]) * size), 0, size - 1).astype(int)
    for d_row in (0, 1):
      for d_col in (0, 1):
        image[np.clip(rows + d_row, 0, size - 1), np.clip(cols + d_col, 0, size - 1)] = colour

  def __repr__(self) -> str:
    return f"PointGoals(num_goals={self.num_goals}, num_walls={self._walls.shape[0]})"


# ---------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------


def _move_along_axis(position: Array, delta: Array, axis: int, walls: Array) -> Array:
  """Moves ``position`` by ``delta`` along ``axis``, stopping at the arena and wall faces.

  Args:
    position: float32 ``[2]``.
    delta: float32 ``[]`` signed displacement along ``axis``.
    axis: 0 for ``x``, 1 for ``y``.
    walls: float32 ``[W, 4]`` rectangles ``(x_min, y_min, x_max, y_max)``.

  Returns:
    float32 ``[2]`` new position (never inside a wall's open interior if it started outside).
  """
  other = 1 - axis
  start = position[axis]
  target = jnp.clip(start + delta, _ARENA_LOW, _ARENA_HIGH)
  low, high = walls[:, axis], walls[:, axis + 2]
  in_band = (position[other] > walls[:, other]) & (position[other] < walls[:, other + 2])
  # Moving up the axis, the first face met is the smallest wall low side in [start, target).
  hit_forward = in_band & (low >= start) & (low < target)
  forward = jnp.minimum(target, jnp.min(jnp.where(hit_forward, low, jnp.inf), initial=jnp.inf))
  # Moving down, the first face met is the largest wall high side in (target, start].
  hit_backward = in_band & (high <= start) & (high > target)
  backward = jnp.maximum(
      target, jnp.max(jnp.where(hit_backward, high, -jnp.inf), initial=-jnp.inf))
  return position.at[axis].set(jnp.where(delta >= 0, forward, backward))


def _segment_blocked(start: Array, end: Array, walls: Array) -> Array:
  """Whether the segment ``start -> end`` passes through the open interior of any wall.

  Liang-Barsky clipping of the segment against each open rectangle; an overlap shorter than
  ``_GRAZE_TOLERANCE`` (touching a face or a corner) does not block.

  Args:
    start: float ``[2]``.
    end: float ``[2]``.
    walls: float ``[W, 4]``.

  Returns:
    bool ``[]``.
  """
  if walls.shape[0] == 0:
    return jnp.bool_(False)
  xnp = jnp if isinstance(start, jax.Array) or isinstance(walls, jax.Array) else np
  direction = end - start
  low, high = walls[:, :2], walls[:, 2:]
  parallel = direction == 0
  safe = xnp.where(parallel, 1.0, direction)
  t_low, t_high = (low - start) / safe, (high - start) / safe
  t_near = xnp.where(parallel, -np.inf, xnp.minimum(t_low, t_high))
  t_far = xnp.where(parallel, np.inf, xnp.maximum(t_low, t_high))
  outside_slab = parallel & ~((start > low) & (start < high))
  t_enter = xnp.maximum(xnp.max(t_near, axis=-1), 0.0)
  t_exit = xnp.minimum(xnp.min(t_far, axis=-1), 1.0)
  overlap = (t_exit - t_enter) * xnp.linalg.norm(direction)
  return xnp.any((overlap > _GRAZE_TOLERANCE) & ~xnp.any(outside_slab, axis=-1))


def _cast_params(params: PointGoalsParams) -> PointGoalsParams:
  """Casts every field to its dtype (as a JAX array)."""
  return PointGoalsParams(**{
      name: jnp.asarray(getattr(params, name), dtype) for name, dtype in _PARAM_DTYPES.items()})


def _point_rectangle_distance(point: np.ndarray, rectangle: np.ndarray) -> float:
  """Euclidean distance from a point ``[2]`` to a closed rectangle ``(x0, y0, x1, y1)``."""
  rectangle = np.asarray(rectangle, np.float64)
  closest = np.clip(np.asarray(point, np.float64), rectangle[:2], rectangle[2:])
  return float(np.linalg.norm(np.asarray(point, np.float64) - closest))


def _corner_goal_distances(
    walls: np.ndarray, goals: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
  """Shortest free-space distances from every wall corner to every goal centre.

  Nodes are the wall corners and the goal centres; an edge joins two nodes that see each other
  (:func:`_segment_blocked`); Floyd-Warshall gives all shortest paths.

  Args:
    walls: float32 ``[W, 4]``.
    goals: float32 ``[K, 2]``.

  Returns:
    ``(corners, corner_to_goal)``: float32 ``[4W, 2]`` corners and float32 ``[4W, K]`` distances
    (``inf`` where a goal cannot be reached from a corner).
  """
  walls64 = walls.astype(np.float64)
  corners = np.stack([
      walls64[:, [0, 1]], walls64[:, [2, 1]], walls64[:, [0, 3]], walls64[:, [2, 3]]
  ], axis=1).reshape(-1, 2)
  nodes = np.concatenate([corners, goals.astype(np.float64)], axis=0)
  num_nodes = nodes.shape[0]
  distance = np.full((num_nodes, num_nodes), np.inf)
  for i in range(num_nodes):
    distance[i, i] = 0.0
    for j in range(i + 1, num_nodes):
      if not _segment_blocked(nodes[i], nodes[j], walls64):
        distance[i, j] = distance[j, i] = float(np.linalg.norm(nodes[i] - nodes[j]))
  for via in range(num_nodes):
    distance = np.minimum(distance, distance[:, via:via + 1] + distance[via:via + 1, :])
  num_corners = corners.shape[0]
  return corners.astype(np.float32), distance[:num_corners, num_corners:].astype(np.float32)
