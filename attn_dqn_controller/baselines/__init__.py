"""Classical controllers evaluated beside the learned policy (the privileged A* + pure pursuit lives in sim.planner)."""
