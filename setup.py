"""ament_python package: the Python package, the simulator, launch/config files and executables."""

from glob import glob

from setuptools import setup

PACKAGE = "attn_dqn_controller"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=[PACKAGE, f"{PACKAGE}.learning", f"{PACKAGE}.nodes", "sim",
              f"{PACKAGE}.planning", f"{PACKAGE}.baselines", "sim.levels"],
    package_data={"sim": ["assets/*.urdf"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.yaml")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")),
        (f"share/{PACKAGE}/models", glob("models/*.pt")),
        (f"share/{PACKAGE}/maps", glob("maps/*.yaml") + glob("maps/*.pgm")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="attn_dqn_controller maintainers",
    maintainer_email="maintainers@attn-dqn-controller.org",
    description="ROS 2 navigation controller driven by a Transformer Q-network trained in PyBullet.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "attn-dqn = attn_dqn_controller.cli:main",
            "controller_node = attn_dqn_controller.nodes.controller_node:main",
            "managed_controller_node = attn_dqn_controller.nodes.managed_controller_node:main",
            "sim_node = sim.sim_node:main",
        ],
    },
)
