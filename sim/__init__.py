"""PyBullet navigation simulator: world, robot, lidar, maps, planner and the Gymnasium environment.

Never imports torch or ROS (except sim_node, the ROS bridge)."""
