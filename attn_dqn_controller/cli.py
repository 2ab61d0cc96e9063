"""`attn-dqn`: train, evaluate and export policies, run the baseline, launch files and the demo.

Each sub-command imports its heavy dependencies lazily, so `attn-dqn --help`
is instant and `attn-dqn launch` never pays for torch.
"""

from __future__ import annotations

import argparse
import sys


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


def _add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    from attn_dqn_controller.robot import PROFILES
    from sim.levels import BUILDING_LEVELS
    from sim.maps import EVAL_SEED_START, LEVELS

    parser.add_argument("--level", choices=LEVELS + BUILDING_LEVELS, action="append",
                        help="map level (repeat for several; default: sparse, cluttered, maze)")
    parser.add_argument("--episodes", type=int, default=100, help="episodes per level")
    parser.add_argument("--seed", type=int, default=EVAL_SEED_START,
                        help=f"first map seed (held-out range starts at {EVAL_SEED_START})")
    parser.add_argument("--json", metavar="OUT", help="write the summary as JSON")
    parser.add_argument("--plot", metavar="OUT.png", help="draw a few trajectories")
    parser.add_argument("--route", choices=["none", "map", "scan_map"], default=None,
                        help="route source: none (goal only), map (planned on the known map, re-planned), scan_map "
                             "(planned on a rolling map of the robot's scans); default: map for a policy with "
                             "route tokens, none otherwise")
    parser.add_argument("--unmapped-fraction", type=float, default=0.0, metavar="F",
                        help="with --route map: leave this fraction (0..1) of the furniture out of the planner's map")
    parser.add_argument("--robot", choices=sorted(PROFILES), default=None,
                        help="robot profile (attn_dqn_controller/robot.py) the simulator runs: footprint, speed "
                             "limits, lidar. baseline: default turtlebot3_burger, and the controller takes the "
                             "profile's limits and footprint; eval: the checkpoint's own profile, and a different "
                             "one is refused")
    parser.add_argument("--map-file", action="append", default=[], metavar="F.yaml",
                        help="a ROS map_server map as the level (repeat for several); with start and goal keys in "
                             "the file one episode per map, otherwise --episodes seeded episodes; the JSON lists "
                             "per-map outcomes")


def _route_kwargs(args, default: str) -> tuple[dict, str]:
    """The env's route keywords from --route / --unmapped-fraction, and their words for a title."""
    route = args.route or default
    fraction = args.unmapped_fraction
    if not 0.0 <= fraction <= 1.0:
        raise CliError(f"--unmapped-fraction {fraction} is invalid: allowed values are in [0, 1]")
    if fraction > 0.0 and route != "map":
        raise CliError(f"--unmapped-fraction {fraction} needs --route map (the planner's prior map), not {route}")
    kwargs = {"route": route}
    if fraction > 0.0:
        kwargs["unmapped_obstacle_fraction"] = fraction
    words = f"route {route}" + (f", {fraction:.0%} of the furniture unmapped" if fraction > 0.0 else "")
    return kwargs, words


def cmd_baseline(args) -> int:
    from attn_dqn_controller.learning.agents import BaselineAgent, DWAAgent, MPPIAgent
    from attn_dqn_controller.robot import DEFAULT_PROFILE

    route, words = _route_kwargs(args, "none")
    robot = args.robot or DEFAULT_PROFILE
    env_kwargs = {**route, "robot": robot}  # the controllers read their limits and footprint off the env's profile
    source = ("the map's route" if route["route"] == "none" else f"the env's route ({words})") + f", robot {robot}"
    words += f"; robot {robot}"
    if args.controller == "dwa":
        return _run_evaluation(DWAAgent(), args, title=f"DWA (Nav2 DWB-style) on {source}", env_kwargs=env_kwargs)
    if args.controller == "mppi":
        agent = MPPIAgent()
        status = _run_evaluation(agent, args, title=f"MPPI (Nav2 MPPI-style) on {source}", env_kwargs=env_kwargs)
        stats = agent.compute_stats()
        print(f"MPPI compute per cycle: median {stats['median_ms']:.1f} ms, p90 {stats['p90_ms']:.1f} ms "
              f"over {stats['cycles']} cycles")
        return status
    return _run_evaluation(BaselineAgent(), args, title=f"privileged A* + pure-pursuit baseline (true map; {words})",
                           env_kwargs=env_kwargs)


def cmd_eval(args) -> int:
    from attn_dqn_controller.learning.agents import PolicyAgent
    from attn_dqn_controller.policy import Policy

    if args.checkpoint is None:
        from attn_dqn_controller.shipped import shipped_model_path

        args.checkpoint = shipped_model_path()
    agent = PolicyAgent(Policy.load(args.checkpoint, device=args.device))
    trained_for = agent.policy.robot.name
    if args.robot is not None and args.robot != trained_for:
        raise CliError(f"--robot {args.robot} does not match {args.checkpoint}, which was trained for robot profile "
                       f"'{trained_for}': a policy is evaluated on its own robot (leave --robot out, or pass "
                       f"--robot {trained_for})")
    evasion = _enable_evasion(agent.policy, args.evasion)
    route, words = _route_kwargs(args, "map" if agent.policy.spec.route_points > 0 else "none")
    env_kwargs = {**agent.env_kwargs(), "safety": args.safety == "on", "smoothing": args.smoothing == "on", **route}
    title = (f"policy {args.checkpoint} (safety {args.safety}, smoothing {args.smoothing}, evasion {evasion}, {words}, "
             f"robot {trained_for})")
    return _run_evaluation(agent, args, title=title, env_kwargs=env_kwargs)


def _enable_evasion(policy, choice: str) -> str:
    """Apply --evasion to the policy (auto: on when it sees >= 2 frames, as the node's default); 'on' or 'off'."""
    frames = policy.spec.history_length
    if choice == "on" and frames < 2:
        raise CliError(f"--evasion on needs a policy that sees >= 2 frames; this one sees {frames} "
                       f"(one frame shows no motion): use --evasion off or auto")
    if choice == "off" or frames < 2:
        return "off"
    policy.enable_evasion()
    return "on"


def _evaluation_rows(args) -> list[tuple[str, str, dict, int]]:
    """(row name, level, extra env kwargs, episodes) of every evaluation row: the levels, then the map files."""
    from pathlib import Path

    from attn_dqn_controller.planning.map_io import load_map

    if args.episodes < 1:
        raise CliError(f"--episodes {args.episodes} is invalid: allowed values are integers >= 1")
    rows = []
    if args.level or not args.map_file:
        rows += [(level, level, {}, args.episodes) for level in args.level or ["sparse", "cluttered", "maze"]]
    for path in args.map_file:
        map_file = load_map(path)  # a bad file fails here, naming the file and the field
        fixed_task = map_file.start is not None and map_file.goal is not None
        rows.append((Path(path).name, "map_file", {"map_file": map_file}, 1 if fixed_task else args.episodes))
    return rows


def _run_evaluation(agent, args, title: str, env_kwargs: dict) -> int:
    from attn_dqn_controller.learning.evaluation import (difficulty_rows, evaluate, format_table, summarize,
                                                         write_json)

    rows = _evaluation_rows(args)
    summaries, examples, per_map, map_records = [], {}, [], []
    for name, level, extra, episodes in rows:
        summary, records = evaluate(agent, level, episodes, args.seed, env_kwargs={**env_kwargs, **extra},
                                    record_trajectories=4 if args.plot else 0)
        summary.level = name
        summaries.append(summary)
        summaries.extend(difficulty_rows(name, records))  # courses: one row per difficulty third
        examples[name] = records[:4]
        if level == "map_file":
            map_records += records
            per_map.append({"map_file": str(extra["map_file"].path), **summary.to_json_dict(),
                            "outcomes": [{"map_seed": r.map_seed, "outcome": r.outcome, "steps": r.steps,
                                          "path_length": r.path_length, "spl": r.spl, "score": r.score}
                                         for r in records]})
        print(format_table([summary]) if len(rows) == 1 else f"{name}: success {summary.success_rate:.1%}",
              flush=True)
    if len(per_map) > 1:  # every map file's episodes together
        summaries.append(summarize(f"all {len(per_map)} maps", map_records))
    print(format_table(summaries, title=title))
    if args.json:
        write_json(args.json, summaries, per_map=per_map)
    if args.plot:
        from attn_dqn_controller.plots import plot_trajectories

        plot_trajectories(examples, args.plot, title=title)
        print(f"trajectories written to {args.plot}")
    return 0


def cmd_train(args) -> int:
    from attn_dqn_controller.learning.trainer import train_command

    return train_command(args)


def cmd_distill(args) -> int:
    from attn_dqn_controller.learning.distill import distill_command

    return distill_command(args)


def cmd_recipe(args) -> int:
    from attn_dqn_controller.learning.recipe import recipe_command

    return recipe_command(args)


def cmd_export(args) -> int:
    from attn_dqn_controller.policy import Policy

    if not args.onnx and not args.policy:
        raise CliError("nothing to export: give --onnx OUT and/or --policy OUT.pt")
    policy = Policy.load(args.checkpoint, device="cpu")
    if args.policy:
        path = policy.save(args.policy)
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB): weights, model config, observation spec "
              f"and action table, without training state")
    if args.onnx:
        report = policy.export_onnx(args.onnx)
        print(f"exported {args.onnx}; max |onnxruntime - torch| on random inputs = {report['max_abs_error']:.2e}")
    return 0


def cmd_launch(args) -> int:
    """The real ROS 2 launch system when it can be imported (as on a ROS 2 installation), else the runner."""
    from attn_dqn_controller.launch_env import real_launch_available
    from attn_dqn_controller.launch_runner import launch_command

    use_real = args.launcher == "ros2" or (args.launcher == "auto" and real_launch_available())
    if use_real and not args.print_plan:
        runner_only = [flag for flag, value in (("--exit-on-first", args.exit_on_first), ("--timeout", args.timeout),
                                                ("--grace-period", args.grace_period)) if value]
        if runner_only:
            raise CliError(f"{', '.join(runner_only)}: options of the project's runner only; "
                           f"add --launcher runner (or drop them) to run with the real ROS 2 launch")
        return _launch_with_ros2(args)
    if not real_launch_available():
        why = "the real launch package is not importable"
    elif args.print_plan:
        why = "--print is an option of the runner"
    else:
        why = "--launcher runner"
    print(f"attn-dqn launch: the project's launch runner (a ROS 2 YAML launch subset; {why})", flush=True)
    return launch_command(args)


def _launch_with_ros2(args) -> int:
    import hashlib
    import os
    import tempfile
    from pathlib import Path

    from attn_dqn_controller.launch_env import real_launch_available, real_launch_environment
    from attn_dqn_controller.launch_runner import parse_launch_arguments, resolve_launch_target

    if not real_launch_available():
        raise CliError("--launcher ros2: the launch, launch_ros and ros2launch packages are not importable")
    # one small ament index per checkout and interpreter (the executables' shebang names the interpreter)
    from attn_dqn_controller.launch_env import SOURCE_ROOT

    key = hashlib.sha256(f"{SOURCE_ROOT}\0{sys.executable}".encode()).hexdigest()[:12]
    real_launch_environment(os.environ, Path(tempfile.gettempdir()) / f"attn_dqn_ament_{os.getuid()}_{key}")
    import launch
    from ros2launch.api import launch_a_launch_file

    path, pairs = resolve_launch_target(args.launch_file, args.launch_arguments)
    parse_launch_arguments(pairs)  # the same NAME:=VALUE check as the runner
    version = getattr(launch, "__version__", None) or _distribution_version("launch")
    print(f"attn-dqn launch: the real ROS 2 launch system (launch {version}), as `ros2 launch`", flush=True)
    return launch_a_launch_file(launch_file_path=str(path), launch_file_arguments=list(pairs),
                                noninteractive=False)  # as `ros2 launch` without -n


def _distribution_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown version"


def cmd_demo(args) -> int:
    from attn_dqn_controller.demo import run_demo

    return run_demo(args)


def cmd_params(args) -> int:
    from attn_dqn_controller.nodes.parameter_reference import params_command

    return params_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attn-dqn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a policy in simulation")
    p.add_argument("--config", required=True, help="training config YAML (see config/train_*.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--out", help="run directory (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("--total-steps", type=int, help="override total environment steps")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--distributed", choices=["none", "ray"], default="none")
    p.add_argument("--actors", type=int, default=2, help="Ray actors (with --distributed ray)")
    p.add_argument("--ray-address", default=None, help="join an existing Ray cluster: auto or HOST:PORT")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint on held-out maps")
    p.add_argument("--checkpoint", default=None,
                   help="policy checkpoint (default: the shipped route-guided policy models/attn_dqn_route.pt, "
                        "from the package share when installed)")
    p.add_argument("--device", default="auto")
    p.add_argument("--safety", choices=["on", "off"], default="off",
                   help="apply the geometric safety layer (stop / slow-down zones) after the policy, as the node does")
    p.add_argument("--smoothing", choices=["on", "off"], default="off",
                   help="apply the velocity smoother (the robot profile's acceleration limits), as the node can")
    p.add_argument("--evasion", choices=["auto", "on", "off"], default="auto",
                   help="the predictive evasion shield on the policy's choice, as the node applies it by default "
                        "(auto: on for policies that see >= 2 frames; off: the Q-network's argmax alone)")
    _add_eval_arguments(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("baseline", help="evaluate a classical controller: privileged A* + pure pursuit, DWA or MPPI")
    p.add_argument("--controller", choices=["pure_pursuit", "dwa", "mppi"], default="pure_pursuit",
                   help="pure_pursuit: privileged A* + pure pursuit (default); dwa: a Nav2 DWB-style local planner "
                        "on the scan, following a route planned on the known map; mppi: a Nav2 MPPI-style "
                        "sampling MPC on the scan, following the same route")
    _add_eval_arguments(p)
    p.set_defaults(func=cmd_baseline)

    p = sub.add_parser("distill", help="copy several teachers' Q-values, each on its own levels, into one "
                                       "network (DAgger rounds)")
    p.add_argument("--config", required=True, help="training config YAML: the student's robot, env and model")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--student", required=True, help="checkpoint the student starts from")
    p.add_argument("--teacher", action="append", default=[], required=True, metavar="LEVEL[,LEVEL...]=CKPT",
                   help="a teacher and the levels it teaches (LEVEL may carry a route: maze@scan_map); repeat")
    p.add_argument("--rounds", type=int, default=3, help="DAgger rounds (round 0: the teachers drive)")
    p.add_argument("--episodes", type=int, default=20, help="episodes per level and round")
    p.add_argument("--epochs", type=int, default=8, help="passes over the data after each round")
    p.add_argument("--epsilon", type=float, default=0.05, help="random actions while the student drives")
    p.add_argument("--temperature", type=float, default=0.0,
                   help="0: match the teachers' advantages (squared error); > 0: KL of the teachers' softmax at "
                        "this temperature (Q units; ~0.01 is the teachers' median gap between their best two)")
    p.add_argument("--out", required=True, help="directory for policy.pt and distill.json")
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("recipe", help="rebuild a shipped policy from scratch, every stage of its recipe "
                                      "(e.g. route: config/recipe_route.yaml)")
    p.add_argument("recipe", help="a recipe name (config/recipe_NAME.yaml, e.g. route) or a recipe file")
    p.add_argument("--out", default=None, help="folder for every stage, policy.pt, evaluation.json and report.md "
                                               "(default runs/NAME); run again with the same --out to continue")
    p.add_argument("--seed", type=int, default=None, help="the recipe's seed (default: the recipe file's)")
    p.add_argument("--device", default=None, help="training device: auto | cpu | cuda | cuda:N")
    p.add_argument("--quick", action="store_true",
                   help="shrink every stage to a few hundred steps and a handful of episodes: a trial, not a policy")
    p.add_argument("--episodes", type=int, default=None,
                   help="evaluation episodes per row (default: the recipe file's; 200 for a published table)")
    p.set_defaults(func=cmd_recipe)

    p = sub.add_parser("export", help="export a checkpoint to ONNX (checked against torch) or a slim policy file")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--onnx", metavar="OUT", help="ONNX file (checked against torch with onnxruntime)")
    p.add_argument("--policy", metavar="OUT.pt", help="inference-only checkpoint (what models/ ships)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("launch", help="run a ROS 2 YAML launch file (real ROS 2 launch when importable, else the runner)")
    try:
        from attn_dqn_controller.launch_runner import add_launch_arguments

        add_launch_arguments(p)
    except ImportError:  # pragma: no cover - only while the launch runner is missing
        pass
    p.add_argument("--launcher", choices=["auto", "ros2", "runner"], default="auto",
                   help="auto (default): the real ROS 2 launch when importable, else the project's runner")
    p.set_defaults(func=cmd_launch)

    p = sub.add_parser("demo", help="the main job: the shipped policy crossing buildings through ROS 2 (headless), "
                                    "with no prior map and then on a map_server map; prints the outcomes and "
                                    "draws one picture")
    p.add_argument("--episodes", type=int, default=3,
                   help="held-out maps crossed with no prior map (route_source scan_map), one launch (default: 3)")
    p.add_argument("--level", choices=["office", "warehouse"], default="office",
                   help="building level of those maps (default: office)")
    p.add_argument("--min-route", type=float, default=10.0, metavar="M",
                   help="shortest start-to-goal path of the maps picked, m: the first consecutive held-out seeds "
                        "with routes this long (default: 10)")
    p.add_argument("--map", default=None, metavar="FILE.yaml",
                   help="then one route on this map_server map, its start and goal from the file, with "
                        "route_source map (default: the shipped maps/example_office.yaml; '' skips it)")
    p.add_argument("--model", default=None, help="checkpoint (default: the shipped models/attn_dqn_route.pt)")
    p.add_argument("--launch-file", default=None, metavar="FILE",
                   help="simulation launch file declaring sim.launch.yaml's arguments (default: sim.launch.yaml)")
    p.add_argument("--out", default="out/demo", help="where the picture (demo.png) and the nodes' output "
                                                     "(launch_N.log) go")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("params", help="the controller node's ROS parameters as a Markdown reference, from its "
                                      "parameter table")
    p.add_argument("--out", metavar="FILE.md", help="write the page here (default: print it; the repository's "
                                                   "copy is docs/reference/parameters.md)")
    p.add_argument("--check", metavar="FILE.md", help="exit 1 when FILE.md differs from the code")
    p.set_defaults(func=cmd_params)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (CliError, FileNotFoundError, ValueError) as exc:
        print(f"attn-dqn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - checkpoint/launch errors carry their own message
        if type(exc).__name__ in {"CheckpointError", "LaunchError", "ConfigError"}:
            print(f"attn-dqn {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
