"""Planning shared by the simulator and the node: occupancy grids, inflation, grid planners, the rolling scan
map and the route ahead of the robot. Pure NumPy/SciPy: no ROS, PyBullet or torch."""
