"""Recipes: a shipped policy rebuilt from scratch by one command, every step included.

    attn-dqn recipe route --out runs/route [--seed S] [--device cpu] [--quick] [--episodes N]

A recipe file (config/recipe_route.yaml) names its stages in order. Each stage is one of:

- ``train``: a training config plus overrides and a step count; optionally started from an earlier stage's
  policy (``init_from``) and trained from several seeds (``candidates``), of which the one the validation maps
  prefer is kept. ``select`` picks within a run: ``best_validation`` (its best.pt) or ``final``.
- ``distill``: a student (an earlier stage's policy) learns the Q-values of teachers (earlier stages), each
  on its own levels (``attn_dqn_controller.learning.distill``).
- ``export``: an earlier stage's policy becomes ``<out>/policy.pt``, the recipe's product.
- ``evaluate``: that policy, next to a reference (``compare``: the shipped one) where there is one, on held-out
  rows, test map seeds only; a ``courses`` row is followed by its difficulty thirds.

Every selection uses validation map seeds (1,500,000 up); the evaluation uses test map seeds (1,000,000 up),
which nothing in a recipe picks on. Each stage writes its folder under --out with a ``stage.json``; a re-run
with the same --out skips the finished stages and resumes an unfinished training run from its checkpoint
(weights, optimizer and counters, no replay: the trainer refills it), so a run longer than a working day
continues from a few megabytes. A stage whose definition changed since it ran (another seed, config or
override) is refused rather than mixed with the new one; evaluation and export are simply redone.

The policy files a recipe writes carry ``metadata["provenance"]``: the recipe, the stage, its config files
(as paths relative to the project, with their SHA-256), overrides, seed, package version and git commit.
No absolute path of the machine that ran it is recorded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from attn_dqn_controller.learning.config import ConfigError, load_config

STAGE_FILE = "stage.json"
POLICY_NAME = "policy.pt"
EVALUATION_NAME = "evaluation.json"
COMPARE_ROWS_NAME = "compare_rows.json"
COMPARE_LABEL = "shipped"
"""The evaluation's name for the ``compare`` policy (the rebuilt one is "rebuilt")."""
REPORT_NAME = "report.md"
CANDIDATE_SEED_STRIDE = 1000
"""Candidate k of a train stage trains with seed S + k * CANDIDATE_SEED_STRIDE (S: the recipe's seed), so the
candidates of recipes run with neighbouring seeds never share a training seed."""
RECIPES_DIRS = (Path(__file__).resolve().parents[2] / "config", Path("config"))
"""Where `attn-dqn recipe NAME` looks for recipe_NAME.yaml: the source tree's config/, then the working
directory's (a path to a YAML file works too)."""


class RecipeError(ConfigError):
    """A recipe file, or a --out folder, that cannot be used (names the stage, the key and the problem)."""


# --- the recipe file ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainStage:
    name: str
    config: Path
    total_steps: int
    overrides: tuple = ()
    init_from: str = ""
    """An earlier stage whose policy starts this one (fine-tuning); "" trains from scratch."""
    candidates: int = 1
    """Training seeds tried; the one whose run scored best on the validation maps is kept."""
    select: str = "best_validation"
    """Within a run: best_validation (best.pt, the best of the run's validation evaluations) or final."""
    jobs: int = 1
    """Candidates trained at the same time, each in its own process. A run with one torch thread keeps about one
    core busy (its simulator processes mostly wait on the learner), so two on 2 cores take about the time of one."""
    estimate_min: float = 1.0
    """Wall-clock minutes per candidate on 2 cores: weighs the stage in the recipe's progress bar."""
    kind: str = "train"

    def minutes(self) -> float:
        return self.estimate_min * -(-self.candidates // min(self.jobs, self.candidates))


@dataclass(frozen=True)
class DistillStage:
    name: str
    config: Path
    student: str
    teachers: tuple
    """((levels...), stage) pairs: each stage's policy teaches its levels."""
    overrides: tuple = ()
    rounds: int = 3
    episodes: int = 20
    epochs: int = 8
    epsilon: float = 0.05
    temperature: float = 0.0
    estimate_min: float = 1.0
    kind: str = "distill"

    def minutes(self) -> float:
        return self.estimate_min


@dataclass(frozen=True)
class ExportStage:
    name: str
    source: str
    estimate_min: float = 0.1
    kind: str = "export"

    def minutes(self) -> float:
        return self.estimate_min


@dataclass(frozen=True)
class EvaluateStage:
    name: str
    policy: str
    rows: tuple
    compare: Path | None = None
    episodes: int = 50
    seed: int = 1_000_000
    max_steps: int = 0
    """Episode time limit in control steps; 0: each level's default."""
    evasion: str = "auto"
    """auto: the evasion shield on for policies that see >= 2 frames, as the node drives them; on; off."""
    jobs: int = 2
    """Rows evaluated in parallel worker processes (one torch thread each)."""
    compare_results: Path | None = None
    """A recorded evaluation of ``compare`` (the file this stage writes as compare_rows.json): its rows are used
    instead of evaluating them again when it was made of the same policy file (SHA-256), episodes, map seeds,
    shield and time limit. The shipped policy's rows are the same in every run of the recipe."""
    estimate_min: float = 1.0
    kind: str = "evaluate"

    def minutes(self) -> float:
        return self.estimate_min


STAGE_TYPES = {"train": TrainStage, "distill": DistillStage, "export": ExportStage, "evaluate": EvaluateStage}
KEYS = {"train": {"name", "kind", "config", "set", "total_steps", "init_from", "candidates", "select", "jobs",
                  "estimate_min"},
        "distill": {"name", "kind", "config", "set", "student", "teachers", "rounds", "episodes", "epochs",
                    "epsilon", "temperature", "estimate_min"},
        "export": {"name", "kind", "from", "estimate_min"},
        "evaluate": {"name", "kind", "policy", "compare", "rows", "episodes", "seed", "max_steps", "evasion", "jobs",
                     "compare_results", "estimate_min"}}
SELECT_RULES = ("best_validation", "final")


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path
    seed: int
    stages: tuple
    quick: dict = field(default_factory=dict)
    """Per stage kind, the keys --quick replaces (``set`` is appended to the stage's)."""

    def stage(self, name: str):
        return next(s for s in self.stages if s.name == name)


def recipe_path(name_or_path: str) -> Path:
    """A recipe name (config/recipe_NAME.yaml) or a path to a recipe file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise RecipeError(f"recipe file {name_or_path!r} does not exist")
        return candidate
    for folder in RECIPES_DIRS:
        path = folder / f"recipe_{name_or_path}.yaml"
        if path.is_file():
            return path
    known = sorted({p.stem[len("recipe_"):] for folder in RECIPES_DIRS for p in folder.glob("recipe_*.yaml")})
    raise RecipeError(f"no recipe named {name_or_path!r}: known recipes are {', '.join(known) or 'none'} "
                      f"(or give a recipe file, NAME.yaml)")


def load_recipe(name_or_path: str, quick: bool = False) -> Recipe:
    """Read and check a recipe file (with --quick's reductions applied when `quick`); RecipeError says what
    is wrong: an unknown stage kind or key, a missing config file, a stage named before it runs, a bad override."""
    path = recipe_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RecipeError(f"recipe file {path}: not valid YAML: {exc}") from None
    where = f"recipe file {path}"
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: must be a mapping with keys name, seed, stages (and quick)")
    unknown = set(data) - {"name", "seed", "stages", "quick"}
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: name, seed, stages, quick")
    name = data.get("name") or path.stem.removeprefix("recipe_")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise RecipeError(f"{where}: seed must be an integer >= 0, got {seed!r}")
    raw_stages = data.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise RecipeError(f"{where}: 'stages' must be a non-empty list of stages")
    quick_data = data.get("quick") or {}
    if not isinstance(quick_data, dict) or set(quick_data) - set(STAGE_TYPES):
        raise RecipeError(f"{where}: 'quick' must map stage kinds ({', '.join(STAGE_TYPES)}) to the keys --quick "
                          f"replaces")
    for kind, keys in quick_data.items():
        if not isinstance(keys, dict) or set(keys) - (KEYS[kind] - {"name", "kind"}):
            raise RecipeError(f"{where}: quick.{kind} must be a mapping of {kind} stage keys, got {keys!r}")
    stages = []
    for index, raw in enumerate(raw_stages):
        if not isinstance(raw, dict):
            raise RecipeError(f"{where}: stage {index + 1} must be a mapping, got {raw!r}")
        kind = raw.get("kind")
        label = f"{where}: stage {index + 1} ({raw.get('name', 'unnamed')})"
        if kind not in STAGE_TYPES:
            raise RecipeError(f"{label}: unknown stage kind {kind!r}; allowed: {', '.join(STAGE_TYPES)}")
        if quick:
            raw = _with_quick(raw, quick_data.get(kind, {}))
        stages.append(_parse_stage(raw, kind, label, path.parent, [s.name for s in stages]))
    recipe = Recipe(name=str(name), path=path, seed=seed, stages=tuple(stages), quick=quick_data)
    _check_configs(recipe)
    return recipe


def _with_quick(raw: dict, reductions: dict) -> dict:
    merged = {**raw, **{k: v for k, v in reductions.items() if k != "set"}}
    if "set" in reductions:
        merged["set"] = list(raw.get("set") or []) + list(reductions["set"])
    return merged


def _parse_stage(raw: dict, kind: str, label: str, base: Path, earlier: list):
    unknown = set(raw) - KEYS[kind]
    if unknown:
        raise RecipeError(f"{label}: unknown key(s) {sorted(unknown)} for a {kind} stage; "
                          f"allowed: {', '.join(sorted(KEYS[kind]))}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        raise RecipeError(f"{label}: 'name' must be a word (letters, digits, _), got {name!r}")
    if name in earlier:
        raise RecipeError(f"{label}: a stage named {name!r} comes earlier; stage names must differ")

    def need(cond: bool, key: str, msg: str) -> None:
        if not cond:
            raise RecipeError(f"{label}: '{key}' {msg}, got {raw.get(key)!r}")

    def integer(key: str, default=None, low: int = 1) -> int:
        value = raw.get(key, default)
        need(not isinstance(value, bool) and isinstance(value, int) and value >= low, key,
             f"must be an integer >= {low}")
        return value

    def number(key: str, default: float, low: float = 0.0) -> float:
        value = raw.get(key, default)
        need(not isinstance(value, bool) and isinstance(value, (int, float)) and value >= low, key,
             f"must be a number >= {low}")
        return float(value)

    def stage_ref(key: str, value=None) -> str:
        value = raw.get(key) if value is None else value
        need(isinstance(value, str) and value in earlier, key,
             f"must name an earlier stage ({', '.join(earlier) or 'none so far'})")
        return value

    def config_file() -> Path:
        value = raw.get("config")
        need(isinstance(value, str) and value, "config", "must be a training config file")
        path = base / value
        if not path.is_file():
            raise RecipeError(f"{label}: config file {value!r} does not exist (paths are relative to the recipe "
                              f"file's folder)")
        return path

    def overrides() -> tuple:
        value = raw.get("set") or []
        need(isinstance(value, list) and all(isinstance(v, str) for v in value), "set",
             "must be a list of KEY=VALUE overrides")
        return tuple(value)

    estimate = number("estimate_min", 1.0)
    if kind == "train":
        select = raw.get("select", "best_validation")
        need(select in SELECT_RULES, "select", f"must be one of {', '.join(SELECT_RULES)}")
        init = stage_ref("init_from") if raw.get("init_from") else ""
        return TrainStage(name=name, config=config_file(), total_steps=integer("total_steps"),
                          overrides=overrides(), init_from=init, candidates=integer("candidates", 1),
                          select=select, jobs=integer("jobs", 1), estimate_min=estimate)
    if kind == "distill":
        teachers = raw.get("teachers")
        need(isinstance(teachers, list) and teachers, "teachers",
             "must be a list of {levels: [LEVEL, ...], from: STAGE}")
        parsed, seen = [], set()
        for entry in teachers:
            need(isinstance(entry, dict) and set(entry) == {"levels", "from"}, "teachers",
                 "must be a list of {levels: [LEVEL, ...], from: STAGE}")
            levels = entry["levels"]
            need(isinstance(levels, list) and levels and all(isinstance(v, str) for v in levels), "teachers",
                 "needs a non-empty list of levels per teacher")
            for level in levels:
                _check_level(level, f"{label}: teachers")
                need(level not in seen, "teachers", f"gives level {level!r} two teachers")
                seen.add(level)
            parsed.append((tuple(levels), stage_ref("teachers", entry["from"])))
        return DistillStage(name=name, config=config_file(), student=stage_ref("student"), teachers=tuple(parsed),
                            overrides=overrides(), rounds=integer("rounds", 3), episodes=integer("episodes", 20),
                            epochs=integer("epochs", 8), epsilon=number("epsilon", 0.05),
                            temperature=number("temperature", 0.0), estimate_min=estimate)
    if kind == "export":
        return ExportStage(name=name, source=stage_ref("from"), estimate_min=estimate)
    from sim.maps import EVAL_SEED_START, VALIDATION_SEED_START

    rows = raw.get("rows")
    need(isinstance(rows, list) and rows and all(isinstance(r, str) for r in rows), "rows",
         "must be a non-empty list of LEVEL@ROUTE rows")
    for row in rows:
        _check_level(row, f"{label}: rows")
    episodes, seed = integer("episodes", 50), integer("seed", EVAL_SEED_START, low=0)
    if not EVAL_SEED_START <= seed or seed + episodes > VALIDATION_SEED_START:
        raise RecipeError(f"{label}: map seeds {seed}..{seed + episodes - 1} leave the test range "
                          f"{EVAL_SEED_START}..{VALIDATION_SEED_START - 1}: an evaluation reports test maps only")
    compare = raw.get("compare")
    if compare is not None:
        need(isinstance(compare, str) and (base / compare).is_file(), "compare",
             "must be a policy file (relative to the recipe file's folder)")
        compare = base / compare
    compare_results = raw.get("compare_results")
    if compare_results is not None:
        need(compare is not None and isinstance(compare_results, str) and (base / compare_results).is_file(),
             "compare_results", "must be a file of recorded rows of the 'compare' policy (relative to the recipe "
             "file's folder)")
        compare_results = base / compare_results
    evasion = raw.get("evasion", "auto")
    need(evasion in ("auto", "on", "off"), "evasion", "must be auto, on or off")
    return EvaluateStage(name=name, policy=stage_ref("policy"), rows=tuple(rows), compare=compare,
                         episodes=episodes, seed=seed, max_steps=integer("max_steps", 0, low=0), evasion=evasion,
                         jobs=integer("jobs", 2), compare_results=compare_results, estimate_min=estimate)


def _check_level(entry: str, where: str) -> None:
    from sim.levels import BUILDING_LEVELS
    from sim.maps import LEVELS
    from sim.route_source import parse_level

    try:
        level, _ = parse_level(entry)
    except ValueError as exc:
        raise RecipeError(f"{where}: {exc}") from None
    if level not in LEVELS + BUILDING_LEVELS:
        raise RecipeError(f"{where}: unknown level {level!r} in {entry!r}; allowed: "
                          f"{', '.join(LEVELS + BUILDING_LEVELS)}")


def references(stage) -> list:
    """The earlier stages whose policies `stage` takes."""
    if stage.kind == "train":
        return [stage.init_from] if stage.init_from else []
    if stage.kind == "distill":
        return list(dict.fromkeys([stage.student] + [source for _, source in stage.teachers]))
    return [stage.source] if stage.kind == "export" else [stage.policy]


def _check_configs(recipe: Recipe) -> None:
    """Load every stage's config with its overrides now, so a bad key fails before hours of training."""
    for stage in recipe.stages:
        if stage.kind in ("train", "distill"):
            try:
                load_config(stage.config, list(stage.overrides) + [f"seed={recipe.seed}"])
            except ConfigError as exc:
                raise RecipeError(f"recipe file {recipe.path}: stage {stage.name!r}: {exc}") from None
        for ref in references(stage):
            if recipe.stage(ref).kind == "evaluate":
                raise RecipeError(f"recipe file {recipe.path}: stage {stage.name!r} takes the policy of "
                                  f"{ref!r}, an evaluate stage, which makes none")


# --- provenance -----------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_commit() -> dict:
    """{"git_commit": ..., "git_dirty": ...} of the source tree, or {} where it is not a git checkout."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return {}
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit, "git_dirty": bool(status.strip())}


# --- running ----------------------------------------------------------------------------------------
class _Context:
    """What the stages of one invocation share: the recipe, --out, the seed, the device, the progress bar."""

    def __init__(self, recipe: Recipe, out: Path, seed: int, device: str | None, quick: bool, progress: bool):
        from attn_dqn_controller import __version__
        from attn_dqn_controller.checkpoint import portable_path

        self.recipe, self.out, self.seed, self.device, self.quick = recipe, out, seed, device, quick
        self.progress = progress
        self.fraction = lambda: 0.0
        """The running stage's share done, read by the recipe's progress bar."""
        self.base = {"recipe": recipe.name, "recipe_file": portable_path(recipe.path),
                     "recipe_sha256": _sha256(recipe.path), "seed": seed, "quick": quick,
                     "package_version": __version__, **git_commit()}
        self.fingerprints: dict[str, str] = {}

    def stage_dir(self, name: str) -> Path:
        return self.out / name

    def policy_of(self, name: str) -> Path:
        """The policy file a finished stage produced."""
        stage = self.recipe.stage(name)
        return self.out / POLICY_NAME if stage.kind == "export" else self.stage_dir(name) / POLICY_NAME

    def relative(self, path: Path) -> str:
        """A path under --out as the provenance records it (relative to --out)."""
        from attn_dqn_controller.checkpoint import portable_path

        return portable_path(path, base=self.out)

    def provenance(self, stage, **extra) -> dict:
        from attn_dqn_controller.checkpoint import portable_path

        info = {**self.base, "stage": stage.name, "kind": stage.kind}
        if stage.kind in ("train", "distill"):
            info.update(config=portable_path(stage.config), config_sha256=_sha256(stage.config),
                        overrides=list(stage.overrides))
        info.update(extra)
        return info

    def fingerprint(self, stage) -> str:
        """What the stage's result depends on: its definition, config file contents, seed and upstream stages."""
        definition = {}
        for item in dataclasses.fields(stage):
            value = getattr(stage, item.name)
            if item.name in ("estimate_min", "jobs", "compare_results"):
                continue  # how long it takes, how many processes, what is reused: not what it makes
            if isinstance(value, Path):
                value = _sha256(value)
            definition[item.name] = value
        upstream = [self.fingerprints[name] for name in references(stage)]
        payload = {"definition": definition, "seed": self.seed, "upstream": upstream}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_stage(path: Path) -> dict | None:
    try:
        return json.loads((path / STAGE_FILE).read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data) -> None:
    """Atomic: a crash leaves the previous file or none, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


@contextmanager
def _watch(bar, base: float, weight: float, ctx: _Context):
    """Move the recipe's bar from `base` toward `base + weight` as the running stage reports its share done."""
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(1.0):
            try:
                share = min(max(float(ctx.fraction()), 0.0), 1.0)
            except Exception:  # noqa: BLE001 - a stage between two states; the next poll reads it
                continue
            target = base + weight * share
            if target > bar.n:
                bar.update(target - bar.n)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run_recipe(recipe: Recipe, out: str | Path, seed: int | None = None, device: str | None = None,
               quick: bool = False, progress: bool = True, command: str = "") -> Path:
    """Run (or continue) every stage of `recipe` into `out`; returns the report's path."""
    from attn_dqn_controller.progress import progress_bar

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = _Context(recipe, out, recipe.seed if seed is None else seed, device, quick, progress)
    stages = recipe.stages
    for stage in stages:  # what each stage depends on, before anything runs: a changed stage fails now
        ctx.fingerprints[stage.name] = ctx.fingerprint(stage)
        state = _read_stage(ctx.stage_dir(stage.name))
        if state and state.get("fingerprint") != ctx.fingerprints[stage.name] and stage.kind in ("train", "distill"):
            raise RecipeError(f"{out}: stage {stage.name!r} there was made by another definition (seed, config, "
                              f"overrides or an earlier stage differ): use another --out, or delete "
                              f"{ctx.stage_dir(stage.name)} and what follows it to redo them")
    done = {s.name for s in stages if _finished(ctx, s)}
    weights = [s.minutes() for s in stages]
    bar = progress_bar(total=sum(weights), initial=sum(w for s, w in zip(stages, weights) if s.name in done),
                       desc=f"recipe {recipe.name}", disable=not progress, position=0,
                       bar_format="{desc}{percentage:3.0f}%|{bar}| {elapsed} elapsed, {remaining} left")
    started = time.monotonic()
    try:
        for index, (stage, weight) in enumerate(zip(stages, weights)):
            label = f"stage {index + 1}/{len(stages)} {stage.name}"
            if stage.name in done:
                print(f"{label}: finished earlier, skipped ({ctx.stage_dir(stage.name)})", flush=True)
                continue
            bar.set_description(f"recipe {recipe.name}, {label}")
            print(f"{label} ({_describe(stage)})", flush=True)
            base = bar.n
            ctx.fraction = lambda: 0.0
            with _watch(bar, base, weight, ctx):
                _run_stage(ctx, stage)
            bar.update(max(base + weight - bar.n, 0.0))
    except KeyboardInterrupt:
        print(f"\nrecipe {recipe.name} interrupted: run the same command again (same --out) to continue; "
              f"finished stages are kept, a training run resumes from its last checkpoint", flush=True)
        raise
    finally:
        bar.close()
    report = write_report(ctx, command)
    made = [str(path) for path in (out / POLICY_NAME, out / EVALUATION_NAME, report) if path.exists()]
    print(f"recipe {recipe.name} done in {time.monotonic() - started:.0f} s: {', '.join(made)}", flush=True)
    return report


def _finished(ctx: _Context, stage) -> bool:
    state = _read_stage(ctx.stage_dir(stage.name))
    if not state or state.get("status") != "done" or state.get("fingerprint") != ctx.fingerprints[stage.name]:
        return False
    if stage.kind == "evaluate":
        return (ctx.out / EVALUATION_NAME).is_file()
    return ctx.policy_of(stage.name).is_file()


def _describe(stage) -> str:
    if stage.kind == "train":
        seeds = f", {stage.candidates} seeds, the validation's best kept" if stage.candidates > 1 else ""
        return f"train {stage.total_steps:,} steps{seeds}, about {stage.minutes():.0f} min on 2 cores"
    if stage.kind == "distill":
        return (f"distill {len(stage.teachers)} teachers, {stage.rounds} rounds x {stage.episodes} episodes per level, "
                f"about {stage.minutes():.0f} min on 2 cores")
    if stage.kind == "evaluate":
        return (f"evaluate {len(stage.rows)} rows x {stage.episodes} episodes on test maps from {stage.seed}, "
                f"about {stage.minutes():.0f} min on 2 cores")
    return f"export {stage.source}'s policy"


def _run_stage(ctx: _Context, stage) -> None:
    folder = ctx.stage_dir(stage.name)
    folder.mkdir(parents=True, exist_ok=True)
    state = _read_stage(folder) or {}
    if state.get("fingerprint") != ctx.fingerprints[stage.name]:
        state = {}
    before = float(state.get("wall_s", 0.0))
    state = {"stage": stage.name, "kind": stage.kind, "fingerprint": ctx.fingerprints[stage.name],
             "status": "running", "wall_s": before}
    _write_json(folder / STAGE_FILE, state)
    started = time.monotonic()
    try:
        summary = {"train": _run_train, "distill": _run_distill, "export": _run_export,
                   "evaluate": _run_evaluate}[stage.kind](ctx, stage)
        state.update(status="done", summary=summary)
    finally:
        state["wall_s"] = round(before + time.monotonic() - started, 1)
        _write_json(folder / STAGE_FILE, state)


def _export(source: Path, target: Path, metadata: dict) -> None:
    """`source`'s policy (no training state) to `target`, atomically, with `metadata` added."""
    from attn_dqn_controller.policy import Policy

    policy = Policy.load(source, device="cpu")
    policy.save(target, metadata=metadata)


def _train_candidate(config, run_dir: Path, device: str | None, provenance: dict, init_label: str,
                     progress: bool) -> None:
    """Train (or resume) one candidate to config.total_steps in run_dir (in the recipe's process, or a worker's)."""
    from attn_dqn_controller.learning.trainer import CHECKPOINT_NAME, TrainingRun, VectorEnvCollector, run_training

    run = TrainingRun(config, run_dir, device=device, resume=(run_dir / CHECKPOINT_NAME).exists())
    run.metadata_extra = {"provenance": provenance, **({"init_from": init_label} if init_label else {})}
    try:
        collector = VectorEnvCollector(run)
    except BaseException:
        run.close()
        raise
    run_training(run, collector, progress=progress)


def _train_side_by_side(runs: list, device: str | None, init_label: str) -> None:
    """Train candidates at once, each in a spawned process (nothing of this one inherited), and wait for all.

    Ctrl-C or SIGTERM here stops them all the way the trainer stops (SIGTERM to each: its last checkpoint stays
    the resume point) before this process goes; a candidate that fails is named with its exit code."""
    from multiprocessing import get_context

    from attn_dqn_controller.learning.trainer import _raise_interrupt

    spawn = get_context("spawn")
    workers = [(seed, spawn.Process(target=_train_candidate, name=f"candidate-{seed}",
                                    args=(config, run_dir, device, provenance, init_label, False)))
               for seed, run_dir, config, provenance in runs]
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        for _, worker in workers:
            worker.start()
        for _, worker in workers:
            worker.join()
    except KeyboardInterrupt:
        for _, worker in workers:
            if worker.is_alive():
                worker.terminate()
        for _, worker in workers:
            worker.join()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    failed = [f"seed {seed} (exit code {worker.exitcode})" for seed, worker in workers if worker.exitcode != 0]
    if failed:
        raise RecipeError(f"training candidate(s) failed: {', '.join(failed)}; its error is printed above, and "
                          f"the same command resumes from the last checkpoints")


def _steps_logged(run_dir: Path) -> int:
    """A running candidate's environment steps, from the last line of its progress.csv (0 before the first)."""
    try:
        lines = (run_dir / "progress.csv").read_text().strip().splitlines()
        header, last = lines[0].split(","), lines[-1].split(",")
        return int(float(last[header.index("step")])) if len(lines) > 1 else 0
    except (OSError, ValueError, IndexError):
        return 0


def _run_train(ctx: _Context, stage: TrainStage) -> dict:
    from attn_dqn_controller.checkpoint import load_checkpoint
    from attn_dqn_controller.learning.trainer import CHECKPOINT_NAME

    folder = ctx.stage_dir(stage.name)
    init = ctx.policy_of(stage.init_from) if stage.init_from else None
    runs = []   # (seed, run_dir, config, provenance) of each candidate still to train
    seeds = [ctx.seed + k * CANDIDATE_SEED_STRIDE for k in range(stage.candidates)]
    for seed in seeds:
        run_dir = folder / f"seed_{seed}"
        overrides = list(stage.overrides) + [f"seed={seed}", f"total_steps={stage.total_steps}"]
        config = load_config(stage.config, overrides)
        if init is not None:
            config.init_from = str(init)
            config.validate()
        provenance = ctx.provenance(stage, overrides=overrides, total_steps=stage.total_steps,
                                    **({"init_from": ctx.relative(init)} if init is not None else {}))
        checkpoint = run_dir / CHECKPOINT_NAME
        steps_done = load_checkpoint(checkpoint).metadata.get("env_steps", 0) if checkpoint.exists() else 0
        if steps_done < stage.total_steps:
            runs.append((seed, run_dir, config, provenance))
        else:
            print(f"  seed {seed}: finished earlier ({steps_done:,} steps)", flush=True)
    init_label = ctx.relative(init) if init is not None else ""
    done_before = stage.candidates - len(runs)
    jobs = min(stage.jobs, len(runs))
    if jobs > 1:
        ctx.fraction = lambda: (done_before + sum(min(_steps_logged(r[1]) / stage.total_steps, 1.0)
                                                  for r in runs)) / stage.candidates
        print(f"  training seeds {', '.join(str(r[0]) for r in runs)}, {jobs} at a time", flush=True)
        for first in range(0, len(runs), jobs):
            _train_side_by_side(runs[first:first + jobs], ctx.device, init_label)
    else:
        for k, (seed, run_dir, config, provenance) in enumerate(runs):
            ctx.fraction = lambda k=k, run_dir=run_dir: (done_before + k + min(
                _steps_logged(run_dir) / stage.total_steps, 1.0)) / stage.candidates
            _train_candidate(config, run_dir, ctx.device, provenance, init_label, ctx.progress)
    candidates = []
    for seed in seeds:
        run_dir = folder / f"seed_{seed}"
        final = load_checkpoint(run_dir / CHECKPOINT_NAME)
        score = float((final.training or {}).get("best_eval", -1.0))
        best = run_dir / "best.pt"
        picked = best if stage.select == "best_validation" and best.exists() else run_dir / CHECKPOINT_NAME
        candidates.append({"seed": seed, "run": ctx.relative(run_dir), "picked": ctx.relative(picked),
                           "validation_success": score if score >= 0 else None,
                           "env_steps": int(final.metadata.get("env_steps", 0)),
                           "train_wall_s": float(final.metadata.get("wall_time_s", 0.0)), "path": picked})
    # The candidates' own validation (the same validation maps for every seed) picks the seed.
    chosen = max(candidates, key=lambda c: -1.0 if c["validation_success"] is None else c["validation_success"])
    for c in candidates:
        print(f"  seed {c['seed']}: validation success {_percent(c['validation_success'])}"
              f"{'  <- kept' if c is chosen else ''}", flush=True)
    selection = {"rule": stage.select, "seed": chosen["seed"], "file": chosen["picked"],
                 "validation_success": chosen["validation_success"],
                 "candidates": [{k: v for k, v in c.items() if k != "path"} for c in candidates]}
    provenance = ctx.provenance(stage, overrides=list(stage.overrides) + [f"seed={chosen['seed']}",
                                                                          f"total_steps={stage.total_steps}"],
                                total_steps=stage.total_steps, selection=selection,
                                **({"init_from": ctx.relative(init)} if init is not None else {}))
    _export(chosen["path"], folder / POLICY_NAME, {"provenance": provenance})
    return {"policy": ctx.relative(folder / POLICY_NAME), "selection": selection,
            "env_steps": sum(c["env_steps"] for c in candidates)}


def _percent(value) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _run_distill(ctx: _Context, stage: DistillStage) -> dict:
    from attn_dqn_controller.learning.distill import DistillSettings, Distiller

    folder = ctx.stage_dir(stage.name)
    overrides = list(stage.overrides) + [f"seed={ctx.seed}"]
    config = load_config(stage.config, overrides)
    teachers = [(levels, str(ctx.policy_of(source))) for levels, source in stage.teachers]
    settings = DistillSettings(rounds=stage.rounds, episodes=stage.episodes, epochs=stage.epochs,
                               epsilon=stage.epsilon, temperature=stage.temperature)
    distiller = Distiller(config, str(ctx.policy_of(stage.student)), teachers, settings, progress=ctx.progress)
    taught = {level: ctx.relative(ctx.policy_of(source)) for levels, source in stage.teachers for level in levels}
    distiller.metadata_extra = {"distilled_from": taught, "provenance": ctx.provenance(
        stage, overrides=overrides, student=ctx.relative(ctx.policy_of(stage.student)), teachers=taught,
        settings=dataclasses.asdict(settings))}
    levels = len(distiller.levels)
    ctx.fraction = lambda: sum(len(d.obs) for d in distiller.data.values()) / (levels * stage.rounds)
    try:
        distiller.run(folder)
    finally:
        distiller.close()
    last = distiller.history[-1]
    return {"policy": ctx.relative(folder / POLICY_NAME), "rounds": len(distiller.history),
            "same_action": {level: round(a["same_action"], 4) for level, a in last["agreement"].items()}}


def _run_export(ctx: _Context, stage: ExportStage) -> dict:
    from attn_dqn_controller.checkpoint import load_checkpoint

    source = ctx.policy_of(stage.source)
    chain = {}  # every stage that made a policy before this one: its provenance (less what all share), wall-clock
    for earlier in ctx.recipe.stages[:ctx.recipe.stages.index(stage)]:
        if earlier.kind in ("train", "distill"):
            made = load_checkpoint(ctx.policy_of(earlier.name)).metadata.get("provenance", {})
            state = _read_stage(ctx.stage_dir(earlier.name)) or {}
            chain[earlier.name] = {**{k: v for k, v in made.items() if k not in ctx.base and k != "stage"},
                                   "wall_s": state.get("wall_s")}
    provenance = ctx.provenance(stage, source=ctx.relative(source), chain=chain)
    _export(source, ctx.out / POLICY_NAME, {"provenance": provenance})
    return {"policy": POLICY_NAME, "source": ctx.relative(source)}


def evaluate_row(policy_path: str, row: str, episodes: int, seed: int, evasion: str, max_steps: int) -> dict:
    """One policy on one row, greedy, as the node drives it (`evasion`); a summary dict (runs in a worker). On a
    `courses` row it also holds ``thirds``: one summary per difficulty third (rows ROW/easy, ROW/medium, ROW/hard;
    a third no episode fell in has none)."""
    import torch

    torch.set_num_threads(1)
    from attn_dqn_controller.learning.agents import PolicyAgent
    from attn_dqn_controller.learning.evaluation import difficulty_rows, evaluate, third_row_name
    from attn_dqn_controller.policy import Policy

    agent = PolicyAgent(Policy.load(policy_path, device="cpu"))
    frames = agent.policy.spec.history_length
    shield = evasion == "on" or (evasion == "auto" and frames >= 2)
    if shield:
        agent.policy.enable_evasion()
    kwargs = agent.env_kwargs()
    if max_steps:
        kwargs["max_steps"] = max_steps
    started = time.perf_counter()
    summary, records = evaluate(agent, row, episodes, seed, env_kwargs=kwargs, progress=False)
    thirds = [{**third.to_json_dict(), "row": third_row_name(row, third)}
              for third in difficulty_rows(row, records)]
    return {**summary.to_json_dict(), "row": row, "evasion": shield, "wall_s": round(time.perf_counter() - started, 1),
            **({"thirds": thirds} if thirds else {})}


def _run_evaluate(ctx: _Context, stage: EvaluateStage) -> dict:
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from attn_dqn_controller.checkpoint import portable_path
    from attn_dqn_controller.progress import progress_bar

    folder = ctx.stage_dir(stage.name)
    policies = {"rebuilt": ctx.policy_of(stage.policy)}
    if stage.compare is not None:
        policies[COMPARE_LABEL] = stage.compare
    jobs, results, keys = [], {}, {}
    recorded = _recorded_rows(stage)
    for label, path in policies.items():
        key = keys[label] = {"sha256": _sha256(path), "episodes": stage.episodes, "seed": stage.seed,
                             "evasion": stage.evasion, "max_steps": stage.max_steps}
        for row in stage.rows:
            cache = folder / "rows" / f"{label}__{row.replace('@', '_at_').replace(':', '_')}.json"
            cached = json.loads(cache.read_text()) if cache.exists() else None
            if cached and cached.get("key") == key:  # an interrupted evaluation keeps its finished rows
                results[(label, row)] = cached["result"]
            elif label == COMPARE_LABEL and recorded.get("key") == key and row in recorded.get("rows", {}):
                results[(label, row)] = {**recorded["rows"][row], "recorded": True}
            else:
                jobs.append((label, row, path, cache, key))
    if recorded and any(r.get("recorded") for r in results.values()):
        print(f"  the compare policy's recorded rows: {portable_path(stage.compare_results)} "
              f"({sum(bool(r.get('recorded')) for r in results.values())} of {len(stage.rows)} rows)", flush=True)
    total = len(policies) * len(stage.rows) * stage.episodes
    bar = progress_bar(total=total, initial=len(results) * stage.episodes, desc="evaluate", unit="ep",
                       disable=not ctx.progress, leave=False)
    ctx.fraction = lambda: bar.n / total

    def record(label, row, cache, key, result) -> None:
        results[(label, row)] = result
        _write_json(cache, {"key": key, "result": result})
        bar.update(stage.episodes)
        bar.write(f"  {label:<8} {row:<16} success {result['success_rate']:6.1%}  collisions "
                  f"{result['collision_rate']:5.1%}  SPL {result['spl']:.3f}  ({result['wall_s']:.0f} s)")

    try:
        if stage.jobs > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(max_workers=min(stage.jobs, len(jobs)), mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(evaluate_row, str(path), row, stage.episodes, stage.seed, stage.evasion,
                                       stage.max_steps): (label, row, cache, key)
                           for label, row, path, cache, key in jobs}
                for future in as_completed(futures):
                    record(*futures[future], future.result())
        else:
            for label, row, path, cache, key in jobs:
                record(label, row, cache, key, evaluate_row(str(path), row, stage.episodes, stage.seed,
                                                            stage.evasion, stage.max_steps))
    finally:
        bar.close()
    rows = []  # each row, then its difficulty thirds (courses rows), as rows ROW/THIRD that name their row
    for label in policies:
        for row in stage.rows:
            result = results[(label, row)]
            rows.append({"policy": label, **{k: v for k, v in result.items() if k != "thirds"}})
            rows += [{"policy": label, **third, "third_of": row} for third in result.get("thirds", [])]
    evaluation = {"episodes": stage.episodes, "seed": stage.seed, "max_steps": stage.max_steps,
                  "evasion": stage.evasion,
                  "policies": {label: (POLICY_NAME if label == "rebuilt" else portable_path(path))
                               for label, path in policies.items()},
                  "rows": list(stage.rows), "results": rows}
    _write_json(ctx.out / EVALUATION_NAME, evaluation)
    if COMPARE_LABEL in policies:   # what compare_results reads: this run's rows of the compare policy, to reuse
        _write_json(folder / COMPARE_ROWS_NAME,
                    {"key": keys[COMPARE_LABEL], "policy": portable_path(policies[COMPARE_LABEL]), **git_commit(),
                     "date": time.strftime("%Y-%m-%d"),
                     "rows": {row: {k: v for k, v in results[(COMPARE_LABEL, row)].items() if k != "recorded"}
                              for row in stage.rows}})
    return {"evaluation": EVALUATION_NAME}


def _recorded_rows(stage: EvaluateStage) -> dict:
    """The compare policy's recorded rows (compare_results), or {} when there are none or they cannot be read."""
    if stage.compare_results is None:
        return {}
    try:
        recorded = json.loads(stage.compare_results.read_text())
    except (OSError, ValueError) as error:
        print(f"  compare_results {stage.compare_results} unreadable ({error}): the compare policy is evaluated",
              flush=True)
        return {}
    return recorded if isinstance(recorded, dict) else {}


# --- the report -----------------------------------------------------------------------------------------
def _minutes(seconds) -> str:
    if seconds is None:
        return "–"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def write_report(ctx: _Context, command: str = "") -> Path:
    """report.md: the stages with their wall-clock and selection, and the evaluation table."""
    from attn_dqn_controller.learning.evaluation import row_cell

    recipe = ctx.recipe
    lines = [f"# Recipe `{recipe.name}`: {'a quick trial' if ctx.quick else 'the rebuilt policy'}", ""]
    if command:
        lines += ["    " + command, ""]
    source = ctx.base.get("git_commit", "")
    lines += [f"Recipe file `{ctx.base['recipe_file']}`, seed {ctx.seed}"
              + (", --quick (every stage shrunk: a trial, not a policy)" if ctx.quick else "")
              + (f", package {ctx.base['package_version']}")
              + (f", commit {source[:12]}{' with local changes' if ctx.base.get('git_dirty') else ''}" if source
                 else "") + ".", "",
              "## Stages", "", "| # | stage | what | selection | wall-clock |", "|---|---|---|---|---:|"]
    total = 0.0
    for index, stage in enumerate(recipe.stages):
        state = _read_stage(ctx.stage_dir(stage.name)) or {}
        wall = state.get("wall_s")
        total += float(wall or 0.0)
        summary = state.get("summary", {})
        what, selection = _describe(stage).split(", about")[0], ""
        if stage.kind in ("train", "distill"):
            what += f" (`{ctx.provenance(stage)['config']}`" + (
                f", {' '.join(stage.overrides)}" if stage.overrides else "") + ")"
        if stage.kind == "train" and "selection" in summary:
            chosen = summary["selection"]
            scores = ", ".join(f"seed {c['seed']} {_percent(c['validation_success'])}"
                               for c in chosen["candidates"])
            selection = f"`{chosen['file']}` ({scores} on validation maps)"
        if stage.kind == "distill" and "same_action" in summary:
            selection = "agreement with the teachers on held-out states: " + ", ".join(
                f"{level} {share:.0%}" for level, share in summary["same_action"].items())
        status = "" if state.get("status") == "done" else " (unfinished)"
        lines.append(f"| {index + 1} | {stage.name}{status} | {what} | {selection} | {_minutes(wall)} |")
    lines += ["", f"Total wall-clock: {_minutes(total)}.", ""]
    evaluation_path = ctx.out / EVALUATION_NAME
    if evaluation_path.exists():
        evaluation = json.loads(evaluation_path.read_text())
        labels = list(evaluation["policies"])
        by_key = {(r["policy"], r["row"]): r for r in evaluation["results"]}
        lines += ["## Held-out evaluation", "",
                  f"Test map seeds {evaluation['seed']:,} up (never used to pick anything), "
                  f"{evaluation['episodes']} episodes per row, greedy, evasion shield {evaluation['evasion']} "
                  f"(auto: on for policies that see >= 2 frames, as the node drives them)"
                  + (f", episodes cut at {evaluation['max_steps']} steps" if evaluation.get("max_steps") else "")
                  + ". Success / collisions / SPL:", "",
                  "| row | " + " | ".join(f"{label} (`{evaluation['policies'][label]}`)" for label in labels) + " |",
                  "|---|" + "---|" * len(labels)]
        for row in evaluation["rows"]:
            thirds = [r["row"] for r in evaluation["results"] if r.get("third_of") == row]
            for name in [row, *dict.fromkeys(thirds)]:  # a courses row, then its difficulty thirds
                lines.append(f"| {name} | " + " | ".join(row_cell(by_key.get((label, name))) for label in labels)
                             + " |")
        if any(r.get("third_of") for r in evaluation["results"]):
            lines += ["", "ROW/easy, ROW/medium, ROW/hard: the row's episodes split by the course's difficulty third "
                          "(BARN's measures, sim/levels/courses.py)."]
        lines.append("")
    path = ctx.out / REPORT_NAME
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)
    return path


def recipe_command(args) -> int:
    """`attn-dqn recipe` entry point."""
    recipe = load_recipe(args.recipe, quick=args.quick)
    if args.episodes is not None:
        if args.episodes < 1:
            raise RecipeError(f"--episodes {args.episodes} is invalid: allowed values are integers >= 1")
        recipe = dataclasses.replace(recipe, stages=tuple(
            dataclasses.replace(s, episodes=args.episodes) if s.kind == "evaluate" else s for s in recipe.stages))
        for stage in recipe.stages:  # the evaluation must stay on test maps
            if stage.kind == "evaluate":
                from sim.maps import VALIDATION_SEED_START

                if stage.seed + stage.episodes > VALIDATION_SEED_START:
                    raise RecipeError(f"--episodes {args.episodes}: map seeds from {stage.seed} would reach the "
                                      f"validation range ({VALIDATION_SEED_START} up)")
    if args.seed is not None and args.seed < 0:
        raise RecipeError(f"--seed {args.seed} is invalid: allowed values are integers >= 0")
    out = Path(args.out or Path("runs") / recipe.name)
    words = ["attn-dqn", "recipe", args.recipe, "--out", str(args.out or out)]
    for flag, value in (("--seed", args.seed), ("--device", args.device), ("--episodes", args.episodes)):
        if value is not None:
            words += [flag, str(value)]
    if args.quick:
        words.append("--quick")
    run_recipe(recipe, out, seed=args.seed, device=args.device, quick=args.quick, command=" ".join(words))
    return 0


__all__ = ["Recipe", "RecipeError", "load_recipe", "run_recipe", "recipe_command", "write_report"]
