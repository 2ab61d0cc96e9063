"""managed_controller_node: the controller, waiting unconfigured for a lifecycle manager.

The same ``ControllerNode`` as ``controller_node``, with ``autostart`` false by default: nothing drives until
Nav2's lifecycle_manager (``bond_timeout: 0.0``: the node makes no bond) or ``ros2 lifecycle set`` configures
and activates it. See ``controller_node`` for the transitions.
"""

from __future__ import annotations

import sys

from attn_dqn_controller.nodes.runner import managed_main as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
