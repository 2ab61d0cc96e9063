"""attn_dqn_controller: a Transformer Q-network navigation controller for ROS 2.

The package's layers, from the bottom up (see docs/ and DESIGN.md):
``observation``/``actions`` (the pure-NumPy contract), ``model`` (torch),
``policy`` (checkpoint -> act), ``learning`` (replay, learner, trainer),
``nodes`` (ROS 2) and ``cli``. Nothing here imports rclpy or PyBullet at
package import time.
"""

__version__ = "0.1.0"
