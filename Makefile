# Two commands do all the set-up on a fresh machine:
#   make demo   -> virtual environment + pinned dependencies, then the main job
#   make test   -> the same set-up, then the whole test suite
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test bench colcon clean

# The Nav2 and TF interface packages the node needs, built into the venv unless installed (docs/reference/interfaces.md).
INTERFACES := tools/build_interfaces.py $(wildcard interfaces/cmake/*.cmake interfaces/*/package.xml \
	interfaces/*/CMakeLists.txt interfaces/*/action/*.action interfaces/*/msg/*.msg)

$(STAMP): requirements.txt setup.py setup.cfg package.xml $(INTERFACES)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==24.3.1
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) tools/build_interfaces.py  # nav2_msgs, tf2_msgs: colcon in the venv, instant when up to date
	$(PY) tests/real_launch_venv.py --if-available  # the real `ros2 launch` for its conformance tests
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/attn-dqn demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15 tests  # 2 processes, a test file each; the 15 slowest

bench: $(STAMP)  # the performance benchmarks (figures, not tests); compare.py and robustness.py are run on their own
	$(PY) bench/bench_sim.py
	$(PY) bench/bench_learner.py --quick
	$(PY) bench/bench_node_latency.py --model models/attn_dqn_route.pt
	$(PY) bench/bench_distributed.py

clean:
	rm -rf $(VENV) .venv-launch ros2_ws/build ros2_ws/install ros2_ws/log
