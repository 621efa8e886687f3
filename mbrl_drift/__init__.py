"""mbrl_drift: how model-based RL agents fail when one of their parts breaks."""

from mbrl_drift.agent import Agent, EnvSpec, get_path, set_path
from mbrl_drift.config import AgentConfig, TrainConfig
from mbrl_drift.train import Trainer, TrainingHooks, TrainState, make_train
from mbrl_drift.trajectories import Trajectories

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentConfig",
    "EnvSpec",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "TrainingHooks",
    "Trajectories",
    "get_path",
    "make_train",
    "set_path",
]
