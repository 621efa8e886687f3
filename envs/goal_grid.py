"""GoalGrid: a multi-goal grid world with an exact tabular export.

The agent walks on an ASCII layout (see :mod:`envs.layouts`) with four actions (0 up, 1 right,
2 down, 3 left; moving into a wall stays put). Reaching any goal ends the episode, but only the
*intended* goal (``params.intended_goal``) pays ``goal_reward``; every step costs ``step_cost``.
Because all goals are reachable and terminal, an agent that competently pursues the wrong goal
is easy to tell apart from an aimless one.

Optional cells give a proxy-objective hook: a vase ``V`` breaks the first time the agent enters
it (``side_effect_penalty``, 0 by default, so the intended task ignores it), and lava ``~`` ends
the episode with ``hazard_penalty``.

Observation (float32 vector of length ``num_states + 2 + num_vases``)::

  [0 : S)          one-hot of the agent's tabular state index (non-wall cells, row-major)
  [S : S + 2)      (row / (H - 1), col / (W - 1)), the agent's normalised position in [0, 1]
  [S + 2 : end)    1.0 for each vase still intact (vases in row-major order)

Example::

  env = GoalGrid("four_rooms")
  params = env.params_for_goal(1)          # reward goal "B"
  obs, state = env.reset(jax.random.key(0), params)
  obs, state, reward, terminated, truncated, info = env.step(key, state, 2, params)
  mdp = env.tabular(params)                # exact oracles: envs.oracles
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from envs import layouts as layouts_lib
from envs.core import Box, Discrete, Environment, pytree_dataclass
from envs.oracles import TabularMDP, slip_transitions

Array = jax.Array
PRNGKey = jax.Array

NUM_ACTIONS = 4
ACTION_NAMES = ("up", "right", "down", "left")

WALL_COLOUR = (60, 60, 60)
FLOOR_COLOUR = (245, 245, 245)
GRID_LINE_COLOUR = (215, 215, 215)
HAZARD_COLOUR = (235, 90, 30)
VASE_COLOUR = (140, 90, 40)
BROKEN_VASE_COLOUR = (170, 170, 170)
AGENT_COLOUR = (0, 0, 0)
PATH_COLOUR = (200, 30, 90)
# Distinct goal colours (matplotlib's tab10 without orange/red/brown, which mark hazards/vases).
GOAL_COLOURS = (
    (31, 119, 180), (44, 160, 44), (148, 103, 189), (23, 190, 207), (188, 189, 34),
    (227, 119, 194), (127, 127, 127), (0, 0, 128), (0, 100, 0), (128, 0, 128),
)

_REGISTRY_NAMES = {
    "open_room": "GoalGrid-OpenRoom",
    "four_rooms": "GoalGrid-FourRooms",
    "fork_maze": "GoalGrid-ForkMaze",
}


@pytree_dataclass
class EnvParams:
  """Parameters of :class:`GoalGrid`; every field is an array leaf, so params vmap and drift.

  Build them with :meth:`GoalGrid.make_params` (which validates and casts) rather than directly.

  Attributes:
    intended_goal: ``[]`` int32 index of the rewarded goal (0 is ``"A"``).
    goal_reward: ``[]`` float32 reward for entering the intended goal.
    step_cost: ``[]`` float32 cost subtracted from the reward of every step.
    slip_prob: ``[]`` float32 probability that the action is replaced by a uniform random one.
    max_steps: ``[]`` int32 time limit (the episode is truncated after this many steps).
    random_start: ``[]`` bool; True starts uniformly over free cells that are not goals,
      hazards or vases, False uniformly over the layout's ``S`` cells.
    side_effect_penalty: ``[]`` float32 cost of breaking a vase.
    hazard_penalty: ``[]`` float32 cost of entering a hazard (which also ends the episode).
  """

  intended_goal: Any = np.int32(0)
  goal_reward: Any = np.float32(1.0)
  step_cost: Any = np.float32(0.01)
  slip_prob: Any = np.float32(0.0)
  max_steps: Any = np.int32(50)
  random_start: Any = np.bool_(False)
  side_effect_penalty: Any = np.float32(0.0)
  hazard_penalty: Any = np.float32(1.0)


_PARAM_DTYPES = {
    "intended_goal": np.int32,
    "goal_reward": np.float32,
    "step_cost": np.float32,
    "slip_prob": np.float32,
    "max_steps": np.int32,
    "random_start": np.bool_,
    "side_effect_penalty": np.float32,
    "hazard_penalty": np.float32,
}


@pytree_dataclass
class EnvState:
  """State of one :class:`GoalGrid` episode.

  Attributes:
    agent_cell: ``[2]`` int32 ``(row, col)`` of the agent.
    time: ``[]`` int32 steps taken in this episode.
    vases_intact: ``[num_vases]`` bool, True for each vase not yet broken.
  """

  agent_cell: Array
  time: Array
  vases_intact: Array


class GoalGrid(Environment[EnvState, EnvParams]):
  """Multi-goal grid world built from an ASCII layout (see the module docstring).

  Args:
    layout: a built-in layout name (``"open_room"``, ``"four_rooms"``, ``"fork_maze"``), a
      layout string (any string that is not made of letters, digits and underscores only,
      e.g. one containing ``#`` or a newline), or a :class:`~envs.layouts.ParsedLayout`.
    max_steps: default time limit; ``None`` uses twice the longest shortest path from any
      possible start cell to any goal, rounded up to a multiple of 10 (at least 20).
    intended_goal: default rewarded goal index.
    goal_reward: default reward for the intended goal.
    step_cost: default per-step cost.
    slip_prob: default slip probability.
    random_start: default start mode; ``None`` means False when the layout has ``S`` cells
      and True otherwise.
    side_effect_penalty: default cost of breaking a vase.
    hazard_penalty: default cost of entering a hazard.

  Raises:
    ValueError: for an unknown layout name, an invalid layout (see
      :func:`envs.layouts.parse_layout`) or invalid default parameters.
  """

  def __init__(
      self,
      layout: str | layouts_lib.ParsedLayout = "four_rooms",
      max_steps: int | None = None,
      intended_goal: int = 0,
      goal_reward: float = 1.0,
      step_cost: float = 0.01,
      slip_prob: float = 0.0,
      random_start: bool | None = None,
      side_effect_penalty: float = 0.0,
      hazard_penalty: float = 1.0,
  ):
    if isinstance(layout, layouts_lib.ParsedLayout):
      parsed, self.name = layout, "GoalGrid-Custom"
    elif isinstance(layout, str) and layout in layouts_lib.LAYOUTS:
      parsed = layouts_lib.parse_layout(layouts_lib.LAYOUTS[layout])
      self.name = _REGISTRY_NAMES[layout]
    elif isinstance(layout, str) and not layout.replace("_", "a").isalnum():
      parsed, self.name = layouts_lib.parse_layout(layout), "GoalGrid-Custom"
    else:
      raise ValueError(
          f"unknown layout {layout!r}; use one of {sorted(layouts_lib.LAYOUTS)} or a "
          "multi-line layout string")
    self.layout = parsed
    self._build_tables()

    if max_steps is None:
      longest = max(
          max(distances[cell] for cell in parsed.random_start_cells)
          for distances in (parsed.distances_to(goal) for goal in parsed.goal_cells))
      max_steps = max(20, int(np.ceil(2 * longest / 10) * 10))
    if random_start is None:
      random_start = not parsed.start_cells
    self._default_params = self._validated(EnvParams(
        intended_goal=intended_goal, goal_reward=goal_reward, step_cost=step_cost,
        slip_prob=slip_prob, max_steps=max_steps, random_start=random_start,
        side_effect_penalty=side_effect_penalty, hazard_penalty=hazard_penalty))
    self._hash_key = (parsed, tuple(
        (name, np.asarray(value).item())
        for name, value in dataclasses.asdict(self._default_params).items()))

  # -- static tables (numpy, built once) -----------------------------------------------------

  def _build_tables(self) -> None:
    layout = self.layout
    cells = np.asarray(layout.free_cells, dtype=np.int32).reshape(-1, 2)
    num_states = cells.shape[0]
    cell_to_state = np.full((layout.height, layout.width), -1, dtype=np.int32)
    cell_to_state[cells[:, 0], cells[:, 1]] = np.arange(num_states, dtype=np.int32)

    next_cells = layout.next_cells()
    next_state = cell_to_state[next_cells[..., 0], next_cells[..., 1]]

    def states_of(cell_list):
      return np.array([cell_to_state[r, c] for r, c in cell_list], dtype=np.int32)

    goal_states = states_of(layout.goal_cells)
    hazard_states = states_of(layout.hazard_cells)
    vase_states = states_of(layout.vase_cells)
    goal_of_state = np.full(num_states, -1, dtype=np.int32)
    goal_of_state[goal_states] = np.arange(len(goal_states), dtype=np.int32)
    is_hazard = np.zeros(num_states, dtype=bool)
    is_hazard[hazard_states] = True
    is_vase = np.zeros(num_states, dtype=bool)
    is_vase[vase_states] = True
    terminal = (goal_of_state >= 0) | is_hazard

    random_start_mask = np.zeros(num_states, dtype=bool)
    random_start_mask[states_of(layout.random_start_cells)] = True
    if layout.start_cells:
      fixed_start_mask = np.zeros(num_states, dtype=bool)
      fixed_start_mask[states_of(layout.start_cells)] = True
    else:
      fixed_start_mask = random_start_mask

    scale = np.array([max(layout.height - 1, 1), max(layout.width - 1, 1)], dtype=np.float32)

    self._cells = cells
    self._cell_to_state = cell_to_state
    self._next_state = next_state.astype(np.int32)
    self._goal_states = goal_states
    self._goal_of_state = goal_of_state
    self._is_hazard = is_hazard
    self._is_vase = is_vase
    self._vase_states = vase_states
    self._terminal = terminal
    self._random_start_mask = random_start_mask
    self._fixed_start_mask = fixed_start_mask
    self._normalised_cells = (cells / scale).astype(np.float32)

  # -- metadata ------------------------------------------------------------------------------

  @property
  def num_goals(self) -> int:
    """Number of goals ``K``."""
    return self.layout.num_goals

  @property
  def goal_names(self) -> list[str]:
    """Goal labels in index order, e.g. ``["A", "B"]``."""
    return list(self.layout.goal_names)

  @property
  def num_states(self) -> int:
    """Number of tabular states ``S`` (non-wall cells)."""
    return int(self._cells.shape[0])

  @property
  def num_vases(self) -> int:
    return len(self.layout.vase_cells)

  @property
  def state_cells(self) -> np.ndarray:
    """``[S, 2]`` int32 ``(row, col)`` of each tabular state."""
    return self._cells.copy()

  @property
  def goal_cells(self) -> np.ndarray:
    """``[K, 2]`` int32 ``(row, col)`` of each goal."""
    return np.asarray(self.layout.goal_cells, dtype=np.int32).reshape(-1, 2)

  @property
  def goal_states(self) -> np.ndarray:
    """``[K]`` int32 tabular state index of each goal."""
    return self._goal_states.copy()

  @property
  def obs_dim(self) -> int:
    return self.num_states + 2 + self.num_vases

  @property
  def max_steps(self) -> int:
    """The default time limit."""
    return int(self._default_params.max_steps)

  def __eq__(self, other: object) -> bool:
    return isinstance(other, GoalGrid) and self._hash_key == other._hash_key

  def __hash__(self) -> int:
    return hash(self._hash_key)

  def __repr__(self) -> str:
    return (f"GoalGrid(name={self.name!r}, {self.layout.height}x{self.layout.width}, "
            f"goals={self.goal_names}, states={self.num_states})")

  # -- parameters ----------------------------------------------------------------------------

  @property
  def default_params(self) -> EnvParams:
    return self._default_params

  def make_params(self, **changes: Any) -> EnvParams:
    """The default parameters with ``changes`` applied, validated and cast to their dtypes.

    Values may be arrays (for a batch of parameters to vmap over).

    Args:
      **changes: field values of :class:`EnvParams`.

    Returns:
      The validated :class:`EnvParams`.

    Raises:
      ValueError: for an unknown field or an invalid value (an ``intended_goal`` outside
        ``0 .. K-1``, a ``slip_prob`` outside ``[0, 1]``, a ``max_steps`` below 1, or a
        non-finite reward term).
    """
    unknown = sorted(set(changes) - set(_PARAM_DTYPES))
    if unknown:
      raise ValueError(
          f"unknown GoalGrid parameter(s) {unknown}; valid fields are {sorted(_PARAM_DTYPES)}")
    return self._validated(self._default_params.replace(**changes))

  def params_for_goal(self, goal: int | str, **changes: Any) -> EnvParams:
    """Parameters that reward goal ``goal`` (an index or a label such as ``"B"``).

    Args:
      goal: goal index in ``0 .. K-1`` or goal label.
      **changes: other fields to change, as in :meth:`make_params`.

    Returns:
      The validated :class:`EnvParams`.
    """
    if isinstance(goal, str):
      if goal not in self.goal_names:
        raise ValueError(
            f"intended_goal {goal!r} is not a goal of this layout; goals are {self.goal_names}")
      goal = self.goal_names.index(goal)
    return self.make_params(intended_goal=goal, **changes)

  def _validated(self, params: EnvParams) -> EnvParams:
    raw_goal = np.asarray(params.intended_goal)
    if (not np.issubdtype(raw_goal.dtype, np.number) or np.any(raw_goal != np.round(raw_goal))
        or np.any(raw_goal < 0) or np.any(raw_goal >= self.num_goals)):
      raise ValueError(
          f"intended_goal={raw_goal.tolist()} is out of range; allowed goal indices are "
          f"0..{self.num_goals - 1} ({', '.join(self.goal_names)})")
    values = {name: np.asarray(getattr(params, name), dtype=dtype)
              for name, dtype in _PARAM_DTYPES.items()}
    slip = values["slip_prob"]
    if np.any(~np.isfinite(slip)) or np.any(slip < 0) or np.any(slip > 1):
      raise ValueError(f"slip_prob={slip.tolist()} must lie in [0, 1]")
    if np.any(values["max_steps"] < 1):
      raise ValueError(f"max_steps={values['max_steps'].tolist()} must be at least 1")
    for name in ("goal_reward", "step_cost", "side_effect_penalty", "hazard_penalty"):
      if not np.all(np.isfinite(values[name])):
        raise ValueError(f"{name}={values[name].tolist()} must be finite")
    return EnvParams(**values)

  # -- spaces --------------------------------------------------------------------------------

  def observation_space(self, params: EnvParams | None = None) -> Box:
    return Box(low=0.0, high=1.0, shape=(self.obs_dim,), dtype=jnp.float32)

  def action_space(self, params: EnvParams | None = None) -> Discrete:
    return Discrete(NUM_ACTIONS)

  # -- state helpers (jittable, any leading batch shape) -------------------------------------

  def state_index(self, state: EnvState) -> Array:
    """Tabular state index of the agent, int32 ``[...]``."""
    table = jnp.asarray(self._cell_to_state)
    return table[state.agent_cell[..., 0], state.agent_cell[..., 1]]

  def position(self, state: EnvState) -> Array:
    """The agent's ``(row, col)`` as float32 ``[..., 2]``."""
    return state.agent_cell.astype(jnp.float32)

  def obs_for_state_index(self, state_index: Array, vases_intact: Array | None = None) -> Array:
    """Observation of the agent in tabular state ``state_index``.

    Args:
      state_index: ``[]`` int32 tabular state index.
      vases_intact: ``[num_vases]`` bool; all intact when ``None``.

    Returns:
      ``[obs_dim]`` float32 observation (layout in the module docstring).
    """
    if vases_intact is None:
      vases_intact = jnp.ones(self.num_vases, dtype=bool)
    one_hot = jax.nn.one_hot(state_index, self.num_states, dtype=jnp.float32)
    position = jnp.asarray(self._normalised_cells)[state_index]
    return jnp.concatenate([one_hot, position, vases_intact.astype(jnp.float32)], axis=-1)

  def get_obs(self, state: EnvState) -> Array:
    """Observation ``[obs_dim]`` float32 of ``state``."""
    return self.obs_for_state_index(self.state_index(state), state.vases_intact)

  def all_observations(self, params: EnvParams | None = None) -> Array:
    """Observation of every tabular state with every vase intact (the metrics' probe set).

    Args:
      params: unused (observations do not depend on parameters); accepted for uniformity.

    Returns:
      ``[S, obs_dim]`` float32; row ``i`` is the observation at tabular state ``i``.
    """
    del params
    probes = np.concatenate([
        np.eye(self.num_states, dtype=np.float32),
        self._normalised_cells,
        np.ones((self.num_states, self.num_vases), dtype=np.float32),
    ], axis=-1)
    return jnp.asarray(probes)

  def state_from_index(self, state_index: int | Array, time: int | Array = 0) -> EnvState:
    """A state with the agent at tabular state ``state_index`` and every vase intact."""
    cell = jnp.asarray(self._cells)[state_index]
    return EnvState(
        agent_cell=cell,
        time=jnp.asarray(time, jnp.int32),
        vases_intact=jnp.ones(self.num_vases, dtype=bool))

  # -- dynamics --------------------------------------------------------------------------------

  def reset_env(self, key: PRNGKey, params: EnvParams) -> tuple[Array, EnvState]:
    """Samples a start state (see ``EnvParams.random_start``).

    Args:
      key: PRNG key.
      params: environment parameters.

    Returns:
      ``(obs [obs_dim], state)``.
    """
    # One uniform draw indexes a table of candidate start states (cheaper than a categorical
    # over every cell, and reset runs on every auto-resetting step).
    random_starts = jnp.asarray(np.flatnonzero(self._random_start_mask), jnp.int32)
    fixed_starts = jnp.asarray(np.flatnonzero(self._fixed_start_mask), jnp.int32)
    uniform = jax.random.uniform(key)
    random_index = random_starts[jnp.minimum((uniform * len(random_starts)).astype(jnp.int32),
                                             len(random_starts) - 1)]
    fixed_index = fixed_starts[jnp.minimum((uniform * len(fixed_starts)).astype(jnp.int32),
                                           len(fixed_starts) - 1)]
    state_index = jnp.where(params.random_start, random_index, fixed_index).astype(jnp.int32)
    state = self.state_from_index(state_index)
    return self.get_obs(state), state

  def step_env(
      self, key: PRNGKey, state: EnvState, action: Array, params: EnvParams
  ) -> tuple[Array, EnvState, Array, Array, Array, dict[str, Array]]:
    """One transition, without auto-reset.

    Args:
      key: PRNG key (used for slip).
      state: current state.
      action: ``[]`` int32 in ``0..3`` (0 up, 1 right, 2 down, 3 left); clipped to that range.
      params: environment parameters.

    Returns:
      ``(obs, state, reward, terminated, truncated, info)`` with ``info`` holding
      ``reached_goal`` (int32 goal index entered, -1 for none), ``cell`` (int32 tabular state
      index of the new position), ``broke_vase`` (bool) and ``hit_hazard`` (bool).
      ``truncated`` is True only when the time limit ends an episode that did not terminate.
    """
    key_slip, key_random_action = jax.random.split(key)
    action = jnp.clip(jnp.asarray(action, jnp.int32), 0, NUM_ACTIONS - 1)
    slipped = jax.random.uniform(key_slip) < params.slip_prob
    random_action = jax.random.randint(key_random_action, (), 0, NUM_ACTIONS, dtype=jnp.int32)
    action = jnp.where(slipped, random_action, action)

    # Move.
    next_index = jnp.asarray(self._next_state)[self.state_index(state), action]
    reached_goal = jnp.asarray(self._goal_of_state)[next_index]
    hit_hazard = jnp.asarray(self._is_hazard)[next_index]
    vase_entered = jnp.asarray(self._vase_states) == next_index
    broke_vase = jnp.any(vase_entered & state.vases_intact)
    new_state = EnvState(
        agent_cell=jnp.asarray(self._cells)[next_index],
        time=state.time + 1,
        vases_intact=state.vases_intact & ~vase_entered)

    # Reward and episode end.
    reward = (
        -params.step_cost
        + jnp.where(reached_goal == params.intended_goal, params.goal_reward, 0.0)
        - jnp.where(broke_vase, params.side_effect_penalty, 0.0)
        - jnp.where(hit_hazard, params.hazard_penalty, 0.0)).astype(jnp.float32)
    terminated = (reached_goal >= 0) | hit_hazard
    truncated = (new_state.time >= params.max_steps) & ~terminated
    info = {
        "reached_goal": reached_goal,
        "cell": next_index,
        "broke_vase": broke_vase,
        "hit_hazard": hit_hazard,
    }
    return self.get_obs(new_state), new_state, reward, terminated, truncated, info

  # -- tabular export --------------------------------------------------------------------------

  def tabular(self, params: EnvParams | None = None) -> TabularMDP:
    """The exact tabular MDP of this layout under ``params`` (jittable, vmaps over params).

    Rewards are tabulated for every candidate goal ``k`` as if ``k`` were intended:
    ``E[r|s,a] = sum_s' P(s'|s,a) * (goal_reward * [s' = goal_k] - hazard_penalty *
    [s' hazard] - side_effect_penalty * [s' vase]) - step_cost``. The tabular state does not
    track vases, so the vase penalty is charged on every entry into a vase cell: exact while
    vases are intact (always, when ``side_effect_penalty`` is 0, the default). The start
    distribution follows ``params.random_start``; ``params.intended_goal`` and
    ``params.max_steps`` do not enter the MDP.

    Args:
      params: environment parameters (``default_params`` when ``None``).

    Returns:
      The :class:`~envs.oracles.TabularMDP` (see :mod:`envs.oracles` for the conventions).
    """
    if params is None:
      params = self.default_params
    terminal = jnp.asarray(self._terminal)
    next_state = jnp.asarray(self._next_state)
    transitions = slip_transitions(next_state, terminal, params.slip_prob)
    goal_indicator = jax.nn.one_hot(
        jnp.asarray(self._goal_states), self.num_states, dtype=jnp.float32)  # [K, S]
    arrival_reward = (
        params.goal_reward * goal_indicator
        - params.hazard_penalty * jnp.asarray(self._is_hazard, jnp.float32)
        - params.side_effect_penalty * jnp.asarray(self._is_vase, jnp.float32))  # [K, S]
    rewards = jnp.einsum("sat,kt->ksa", transitions, arrival_reward) - params.step_cost
    rewards = jnp.where(terminal[None, :, None], 0.0, rewards).astype(jnp.float32)
    start_mask = jnp.where(params.random_start, jnp.asarray(self._random_start_mask),
                           jnp.asarray(self._fixed_start_mask)).astype(jnp.float32)
    return TabularMDP(
        transitions=transitions,
        rewards=rewards,
        terminal=terminal,
        goal_states=jnp.asarray(self._goal_states),
        cells=jnp.asarray(self._cells),
        next_state=next_state,
        start_distribution=start_mask / jnp.sum(start_mask),
    )

  # -- rendering (numpy, outside jit) --------------------------------------------------------

  def render(self, state: EnvState | None = None, params: EnvParams | None = None,
             cell_px: int = 16) -> np.ndarray:
    """Draws the grid: walls, goals (the intended one framed), vases, hazards and the agent.

    Goal ``k`` is filled with colour ``GOAL_COLOURS[k]``; the intended goal is drawn in full
    colour with a black frame, the others paler. Intact vases are brown diamonds, broken ones
    grey specks; hazards are orange-red; the agent is a black disc.

    Args:
      state: a single (unbatched) state; ``None`` draws the empty grid with intact vases.
      params: environment parameters (``default_params`` when ``None``).
      cell_px: pixels per cell side.

    Returns:
      ``[H * cell_px, W * cell_px, 3]`` uint8 RGB image.
    """
    if params is None:
      params = self.default_params
    intended = int(np.asarray(params.intended_goal))
    vases_intact = (np.ones(self.num_vases, bool) if state is None
                    else np.asarray(state.vases_intact, bool))
    image = self._draw_grid(intended, vases_intact, cell_px)
    if state is not None:
      row, col = (int(x) for x in np.asarray(state.agent_cell))
      _paint_disc(image, row, col, cell_px, radius=0.32, colour=AGENT_COLOUR)
    return image

  def render_trajectory(
      self, state_indices: Any = None, params: EnvParams | None = None,
      state: EnvState | None = None, cell_px: int = 16,
      colour: tuple[int, int, int] = PATH_COLOUR, length: int | None = None,
      cells: Any = None) -> np.ndarray:
    """Draws one or more paths of cells over the grid.

    Each path is a polyline through the centres of its cells, with a square frame on its first
    cell and a disc on its last. With several paths, overlapping segments look darker.

    Args:
      state_indices: tabular state indices ``[T]`` or ``[N, T]`` (e.g.
        ``Trajectories.state_index``); entries ``< 0`` are padding and are skipped.
      params: environment parameters (``default_params`` when ``None``), for the goal colours.
      state: optional state whose agent and vases are drawn underneath.
      cell_px: pixels per cell side.
      colour: RGB colour of the paths.
      length: if given, only the first ``length`` entries of each path are drawn.
      cells: instead of ``state_indices``, ``(row, col)`` cells ``[T, 2]`` or ``[N, T, 2]``.

    Returns:
      ``[H * cell_px, W * cell_px, 3]`` uint8 RGB image.

    Raises:
      ValueError: if neither or both of ``state_indices`` and ``cells`` are given, or a shape
        is wrong.
    """
    if (state_indices is None) == (cells is None):
      raise ValueError("give exactly one of state_indices ([T] or [N, T]) and cells "
                       "([T, 2] or [N, T, 2])")
    if cells is None:
      indices = np.asarray(state_indices, dtype=np.int64)
      if indices.ndim not in (1, 2):
        raise ValueError(f"state_indices must have shape [T] or [N, T], got {indices.shape}")
      indices = indices.reshape(-1, indices.shape[-1])
      paths = np.where(indices[..., None] >= 0,
                       self._cells[np.clip(indices, 0, self.num_states - 1)], -1)
    else:
      paths = np.asarray(cells)
      if paths.ndim not in (2, 3) or paths.shape[-1] != 2:
        raise ValueError(f"cells must have shape [T, 2] or [N, T, 2], got {paths.shape}")
      paths = paths.reshape(-1, paths.shape[-2], 2).astype(np.int64)

    image = self.render(state, params, cell_px)
    opacity = 0.8 if len(paths) == 1 else max(0.15, 0.8 / np.sqrt(len(paths)))
    width = max(1, cell_px // 8)
    for path in paths:
      path = path[:length] if length is not None else path
      path = path[np.all(path >= 0, axis=-1)]
      if len(path) == 0:
        continue
      centres = (path + 0.5) * cell_px
      mask = np.zeros(image.shape[:2], dtype=bool)
      for start, end in zip(centres[:-1], centres[1:]):
        _line_mask(mask, start, end, width)
      _line_mask(mask, centres[0], centres[0], width)
      _blend(image, mask, colour, opacity)
      _paint_square_outline(image, path[0][0], path[0][1], cell_px, colour)
      _paint_disc(image, path[-1][0], path[-1][1], cell_px, radius=0.2, colour=colour)
    return image

  def _draw_grid(self, intended: int, vases_intact: np.ndarray, cell_px: int) -> np.ndarray:
    layout = self.layout
    image = np.empty((layout.height * cell_px, layout.width * cell_px, 3), dtype=np.uint8)
    walls = layout.wall_mask()
    for row in range(layout.height):
      for col in range(layout.width):
        block = image[row * cell_px:(row + 1) * cell_px, col * cell_px:(col + 1) * cell_px]
        block[...] = WALL_COLOUR if walls[row, col] else FLOOR_COLOUR
        if not walls[row, col] and cell_px >= 4:
          block[-1, :] = GRID_LINE_COLOUR
          block[:, -1] = GRID_LINE_COLOUR
    for row, col in layout.hazard_cells:
      _paint_cell(image, row, col, cell_px, HAZARD_COLOUR)
    for k, (row, col) in enumerate(layout.goal_cells):
      colour = np.asarray(GOAL_COLOURS[k % len(GOAL_COLOURS)], dtype=np.float64)
      if k != intended:
        colour = 0.45 * colour + 0.55 * 255.0
      _paint_cell(image, row, col, cell_px, tuple(int(c) for c in colour))
      if k == intended:
        _paint_square_outline(image, row, col, cell_px, (0, 0, 0), thickness=max(1, cell_px // 8))
    for (row, col), intact in zip(layout.vase_cells, vases_intact):
      if intact:
        _paint_diamond(image, row, col, cell_px, VASE_COLOUR)
      else:
        _paint_disc(image, row, col, cell_px, radius=0.12, colour=BROKEN_VASE_COLOUR)
    return image


# -- drawing helpers (numpy) -------------------------------------------------------------------

def _cell_grid(cell_px: int) -> tuple[np.ndarray, np.ndarray]:
  """Pixel-centre offsets in ``[-0.5, 0.5]`` within a cell, ``[cell_px, cell_px]`` each."""
  offsets = (np.arange(cell_px) + 0.5) / cell_px - 0.5
  return np.meshgrid(offsets, offsets, indexing="ij")


def _paint_cell(image, row, col, cell_px, colour):
  image[row * cell_px:(row + 1) * cell_px - 1, col * cell_px:(col + 1) * cell_px - 1] = colour


def _paint_mask(image, row, col, cell_px, mask, colour):
  block = image[row * cell_px:(row + 1) * cell_px, col * cell_px:(col + 1) * cell_px]
  block[mask] = colour


def _paint_disc(image, row, col, cell_px, radius, colour):
  dy, dx = _cell_grid(cell_px)
  mask = dy**2 + dx**2 <= radius**2
  if not mask.any():
    mask[cell_px // 2, cell_px // 2] = True
  _paint_mask(image, row, col, cell_px, mask, colour)


def _paint_diamond(image, row, col, cell_px, colour):
  dy, dx = _cell_grid(cell_px)
  mask = np.abs(dy) + np.abs(dx) <= 0.3
  if not mask.any():
    mask[cell_px // 2, cell_px // 2] = True
  _paint_mask(image, row, col, cell_px, mask, colour)


def _paint_square_outline(image, row, col, cell_px, colour, thickness=1):
  block = image[row * cell_px:(row + 1) * cell_px, col * cell_px:(col + 1) * cell_px]
  block[:thickness, :] = colour
  block[-thickness:, :] = colour
  block[:, :thickness] = colour
  block[:, -thickness:] = colour


def _line_mask(mask, start, end, width):
  """Marks the pixels within ``width / 2`` of the segment ``start -> end`` (pixel coords)."""
  num = int(np.ceil(np.max(np.abs(end - start)))) + 1
  points = start[None, :] + np.linspace(0.0, 1.0, num)[:, None] * (end - start)[None, :]
  half = width / 2.0
  for y, x in points:
    y0, y1 = int(np.floor(y - half)), int(np.ceil(y + half))
    x0, x1 = int(np.floor(x - half)), int(np.ceil(x + half))
    mask[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True


def _blend(image, mask, colour, opacity):
  colour = np.asarray(colour, dtype=np.float64)
  blended = (1.0 - opacity) * image[mask].astype(np.float64) + opacity * colour
  image[mask] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
