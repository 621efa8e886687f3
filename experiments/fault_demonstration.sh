#!/usr/bin/env bash
# Matched-damage fault demonstration on GoalGrid-FourRooms.
#
# Question: when the value function or a world-model part of a trained planning agent breaks, by
# the same amount of damage (the same drop in intended-goal success), does the agent fail
# coherently (goes somewhere else, competently) or incoherently (wanders)?
#
# 1. trains the planning agent for goal A (4 seeds, one vmapped call);
# 2. fine-tunes a copy for goal B with the encoder and dynamics frozen, so its value function and
#    reward head live in the same latent space (the reference of the goal-swap faults);
# 3. evaluates structured faults (value goal swap, value + reward-head goal swap, value sign flip)
#    and random faults (Gaussian weight noise on value, dynamics, reward head) at severities
#    calibrated to the same success drop, at planning horizons 1 and 3, greedy and Boltzmann.
#
# Usage: bash experiments/fault_demonstration.sh [OUT_DIR] [TARGET_DROP]
set -euo pipefail
out=${1:-runs/fault_demo}
drop=${2:-0.5}
mkdir -p "$out"
[ -f "$out/goal_a/summary.json" ] || mbrl-drift train --env GoalGrid-FourRooms --seeds 4 \
    --out "$out/goal_a" --quiet
[ -f "$out/goal_b/summary.json" ] || mbrl-drift train --env GoalGrid-FourRooms --seeds 4 \
    --out "$out/goal_b" --quiet --init-from "$out/goal_a" --env-arg intended_goal=1 \
    --freeze world_model/encoder,world_model/dynamics,world_model/termination,world_model/decoder
mbrl-drift evaluate --run "$out/goal_a" --episodes 50 --horizon 1,3 --policy greedy,boltzmann \
    --match-drop "$drop" --json "$out/matched_damage.json" \
    --fault "value:swap(run=$out/goal_b)" \
    --fault "value+world_model/reward:swap(run=$out/goal_b)" \
    --fault "value:signflip" \
    --fault "value:gaussian(scale=1.0)" \
    --fault "world_model/dynamics:gaussian(scale=1.0)" \
    --fault "world_model/reward:gaussian(scale=1.0)"
