"""Fault injection: pure functions that break one component of an agent's parameters.

* Weight faults (:mod:`~mbrl_drift.faults.weight`): ``fault(key, params, severity) -> params``.
* Activation faults (:mod:`~mbrl_drift.faults.activation`): corrupt a component's output,
  ``fault.apply_to(component_path, key, activations, severity)``.
* Training-time faults (:mod:`~mbrl_drift.faults.training`): reward and value-target corruption
  and optax gradient transforms, gated by the training step.
* A text grammar (:mod:`~mbrl_drift.faults.spec`):
  ``parse_fault_spec("value:gaussian(scale=0.5)")``; the same grammar for training-time faults
  (:mod:`~mbrl_drift.faults.training_spec`) gives training hooks:
  ``parse_training_fault_spec("value:target_noise(scale=0.5, start_step=2000)")``.
* Fine-tuning-delta faults (:mod:`~mbrl_drift.faults.delta`): move, perturb or drop the
  difference between a fine-tuned component and its frozen base (``base/<path>``).
* Matched-damage calibration (:mod:`~mbrl_drift.faults.calibrate`).

Targets address components by path (:mod:`~mbrl_drift.faults.paths`): ``"value"``,
``"world_model/*"``, ``"value+world_model/reward"``.
"""

from mbrl_drift.faults.activation import (
    ActivationFault,
    ablate_activations,
    activation_ablation,
    activation_noise,
    activation_stuck_at,
    noise_activations,
    stuck_activations,
)
from mbrl_drift.faults.calibrate import CalibrationResult, calibrate_severity, isotonic_fit
from mbrl_drift.faults.delta import (
    components_with_base,
    delta_dropout,
    delta_noise,
    delta_scale,
    with_base_components,
)
from mbrl_drift.faults.paths import component_paths, match_components, resolve_target
from mbrl_drift.faults.spec import (
    REQUIRED,
    FaultInfo,
    describe_faults,
    list_faults,
    parse_fault_spec,
)
from mbrl_drift.faults.training import (
    RewardFault,
    TrainingHooks,
    SignalFault,
    TargetFault,
    freeze,
    gradient_noise,
    is_active,
    lr_spike,
    reset_optimizer_state,
    reward_noise,
    reward_sign_flip,
    reward_swap,
    target_noise,
    target_offset,
    target_sign_flip,
)
from mbrl_drift.faults.training_spec import (
    combine_hooks,
    describe_training_faults,
    list_training_faults,
    parse_training_fault_spec,
)
from mbrl_drift.faults.weight import (
    Fault,
    bit_flip,
    compose,
    count_nonfinite,
    gaussian_noise,
    interpolate,
    output_scale,
    param_distance,
    reinitialize,
    sign_flip,
    stuck_at,
    swap,
    unit_ablation,
)

__all__ = [
    "components_with_base",
    "delta_dropout",
    "delta_noise",
    "delta_scale",
    "with_base_components",
    "ActivationFault",
    "CalibrationResult",
    "Fault",
    "FaultInfo",
    "REQUIRED",
    "RewardFault",
    "TrainingHooks",
    "SignalFault",
    "TargetFault",
    "ablate_activations",
    "activation_ablation",
    "activation_noise",
    "activation_stuck_at",
    "bit_flip",
    "calibrate_severity",
    "combine_hooks",
    "component_paths",
    "compose",
    "count_nonfinite",
    "describe_faults",
    "describe_training_faults",
    "freeze",
    "gaussian_noise",
    "gradient_noise",
    "interpolate",
    "is_active",
    "isotonic_fit",
    "list_faults",
    "list_training_faults",
    "lr_spike",
    "match_components",
    "noise_activations",
    "output_scale",
    "param_distance",
    "parse_fault_spec",
    "parse_training_fault_spec",
    "reinitialize",
    "reset_optimizer_state",
    "resolve_target",
    "reward_noise",
    "reward_sign_flip",
    "reward_swap",
    "sign_flip",
    "stuck_activations",
    "stuck_at",
    "swap",
    "target_noise",
    "target_offset",
    "target_sign_flip",
    "unit_ablation",
]
