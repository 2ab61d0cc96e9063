"""PyBullet navigation simulator: world, robot, lidar, maps, planner and the Gymnasium environment.

Never imports torch or ROS (except sim_node, the ROS bridge)."""

import gymnasium

# The entry point is a string, so registering imports neither PyBullet nor the environment module.
if "AttnNav-v0" not in gymnasium.registry:
    gymnasium.register(id="AttnNav-v0", entry_point="sim.env:AttnNavEnv")
