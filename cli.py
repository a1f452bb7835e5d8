"""robustbench-lift command line: a thin layer over the library.

Each command imports what it needs when it runs: ``check``, ``compare``, ``report`` and
``list`` read files and registries only, so they start without torch or foolbox.

Bad input ends with one line on stderr and exit status 2; results go to files, logs and
progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robustbench_lift.errors import USER_ERRORS, UserError

EXIT_USAGE = 2
EXIT_FAILED_CELLS = 1

Command = Callable[[argparse.Namespace], int]


def _parse_options(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values parsed as YAML scalars (3 -> int, true -> bool)."""
    import yaml

    options = {}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"option {pair!r} must look like key=value")
        key, value = pair.split("=", 1)
        options[key] = yaml.safe_load(value)
    return options


def _parse_epsilons(pairs: list[str]) -> dict[str, list[float]]:
    """``attack=0,0.01,0.03`` pairs -> {attack: [epsilons]}."""
    grid: dict[str, list[float]] = {}
    for pair in pairs:
        attack, separator, values = pair.partition("=")
        if not separator:
            raise UserError(f"--epsilons {pair!r} must look like attack=0,0.01,0.03")
        try:
            grid[attack] = [float(value) for value in values.split(",") if value]
        except ValueError:
            raise UserError(f"--epsilons {pair!r}: epsilons must be numbers") from None
    return grid


def _parse_attack_options(pairs: list[str], base: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``pgd_linf.steps=50`` pairs merged over ``base`` -> {attack: {option: value}} (YAML scalars)."""
    import yaml

    merged = {attack: dict(values) for attack, values in (base or {}).items()}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        attack, dot, option = key.partition(".")
        if not separator or not dot or not attack or not option:
            raise UserError(f"--attack-option {pair!r} must look like ATTACK.OPTION=VALUE, e.g. pgd_linf.steps=50")
        merged.setdefault(attack, {})[option] = yaml.safe_load(value)
    return merged


def command_run(arguments: argparse.Namespace) -> int:
    from robustbench_lift.run.config import RunConfig, config_from_mapping, load_config
    from robustbench_lift.run.executors import EXECUTORS

    segmentation = arguments.task == "segmentation"
    if segmentation:
        from robustbench_lift.run.segmentation import segmentation_config

        base = segmentation_config(arguments.quick)
    else:
        base = RunConfig.quick() if arguments.quick else RunConfig()
    config = load_config(arguments.config, base) if arguments.config else base
    overrides = {
        "models": arguments.models,
        "suites": arguments.suites,
        "corruptions": arguments.corruptions,
        "severities": arguments.severities,
        "sample_size": arguments.sample_size,
        "seed": arguments.seed,
        "workers": arguments.workers,
        "data_dir": arguments.data_dir,
        "download": arguments.download or None,
        "output_dir": arguments.output_dir,
        "run_name": arguments.run_name,
        "profile": arguments.profile,
        "reference_model": arguments.reference_model,
        "device": arguments.device,
        "batch_size": arguments.batch_size,
        "threads": arguments.threads,
        "dataset": arguments.dataset,
        "perturbations": arguments.perturbations,
        "difficulty": arguments.difficulty,
        "perturbation_sample_size": arguments.perturbation_sample_size,
        "shift_max": arguments.shift_max,
        "attacks": arguments.attacks,
        "attack_sample_size": arguments.attack_sample_size,
        "attack_epsilons": _parse_epsilons(arguments.epsilons) if arguments.epsilons else None,
        "attack_options": (
            _parse_attack_options(arguments.attack_option, config.attack_options) if arguments.attack_option else None
        ),
        "precision": arguments.precision,
        "attack_precision": arguments.attack_precision,
        "channels_last": arguments.channels_last,
        "executor": arguments.executor,
        "ray_address": arguments.ray_address,
        "model_processes": arguments.model_processes,
        "cache_dir": arguments.cache_dir,
        "corruption_data": arguments.corruption_data,
        "corruption_layout": arguments.corruption_layout,
        "corruption_engine": arguments.corruption_engine,
        "perturbation_data": arguments.perturbation_data,
        "perturbation_layout": arguments.perturbation_layout,
    }
    if segmentation:
        # The segmentation suite owns its own data set, corruption and perturbation keys.
        for general, owned in SEGMENTATION_OVERRIDES.items():
            overrides[owned] = overrides.pop(general)
    config = config_from_mapping({key: value for key, value in overrides.items() if value is not None}, config)
    # Before importing torch (seconds): an unreachable Ray cluster fails at once.
    EXECUTORS.get(config.executor)(config).check()
    from robustbench_lift.results import failed_cells
    from robustbench_lift.run.runner import run_benchmark

    directory = run_benchmark(config, overwrite=arguments.overwrite)
    _show_run(directory, report=not arguments.no_report)
    failed = failed_cells(directory)
    if failed:
        # The run is complete and written; the failed cells are marked in results.csv.
        print(
            f"robustbench-lift: error: {len(failed)} cells failed (model returned NaN or inf), e.g. {failed[0]}; see {directory}/results.csv",
            file=sys.stderr,
        )
        return EXIT_FAILED_CELLS
    return 0


# run options that mean the segmentation suite's own keys under --task segmentation.
SEGMENTATION_OVERRIDES = {
    "dataset": "segmentation_dataset",
    "corruptions": "segmentation_corruptions",
    "perturbations": "segmentation_perturbations",
    "perturbation_sample_size": "segmentation_sequence_count",
}


def _show_run(directory: Path, report: bool) -> None:
    """Writes the run's report (unless ``report`` is off) and prints the short answer."""
    from robustbench_lift.reporting.tables import leaderboard_text, seed_text

    if report:
        from robustbench_lift.reporting.html import write_report

        write_report(directory)
    elif (directory / "index.html").is_file() and json.loads((directory / "run.json").read_text()).get("cells", {}).get(
        "computed"
    ):
        logging.getLogger("robustbench_lift").warning(
            "%s/index.html is from before this run's new cells; rebuild it with: robustbench-lift report %s",
            directory,
            directory,
        )
    print(leaderboard_text(directory))
    across_seeds = seed_text(directory)
    if across_seeds:
        print(across_seeds)
    print(f"run: {directory}")
    if (directory / "index.html").is_file():
        print(f"report: {directory / 'index.html'}")


def command_train(arguments: argparse.Namespace) -> int:
    from robustbench_lift.training import TrainingConfig, train

    config = TrainingConfig(
        architecture=arguments.architecture,
        pooling=arguments.pooling,
        pooling_options=_parse_options(arguments.pooling_option),
        dataset=arguments.dataset,
        epochs=arguments.epochs,
        batch_size=arguments.batch_size,
        learning_rate=arguments.learning_rate,
        detail_weight=arguments.detail_weight,
        approximation_weight=arguments.approximation_weight,
        seed=arguments.seed,
        threads=arguments.threads,
    )
    from robustbench_lift.models._registry import MODELS
    from robustbench_lift.nn.kinds import resolve_options

    MODELS.get(config.architecture)
    resolve_options(config.pooling, config.pooling_options)
    if config.epochs < 1:
        raise UserError("epochs must be at least 1")
    if config.threads < 1:
        raise UserError(f"threads must be at least 1, got {config.threads}")
    metadata = train(config, arguments.output, data_dir=arguments.data_dir, download=arguments.download)
    print(f"{arguments.output}: clean test accuracy {metadata['clean_test_accuracy']:.4f}")
    return 0


def command_corrupt(arguments: argparse.Namespace) -> int:
    import corruptions
    from corruptions.engines import ENGINES
    from robustbench_lift.data.datasets import load_dataset
    from robustbench_lift.data.files import ImageFiles
    from robustbench_lift.data.writer import write_corruption_set
    from robustbench_lift.evaluation.inference import resolve_device
    from robustbench_lift.run.config import config_from_mapping
    from robustbench_lift.run.executors import EXECUTORS

    if arguments.corruption_engine not in ENGINES:
        raise UserError(
            f"unknown corruption engine {arguments.corruption_engine!r}; known: {', '.join(ENGINES.names())}"
        )
    device = resolve_device(arguments.device)
    # The run config's checks of the executor keys (ray_address needs executor ray, ...).
    settings = config_from_mapping(
        {"executor": arguments.executor, "ray_address": arguments.ray_address, "workers": arguments.workers}
    )
    executor = EXECUTORS.get(settings.executor)(settings)
    executor.check()  # an unreachable cluster fails before any image is decoded
    data = load_dataset(arguments.dataset, arguments.split, arguments.data_dir, arguments.download)
    indices = None
    if arguments.sample_size:
        dataset, indices = data.sample(arguments.sample_size, arguments.seed)
    else:
        dataset = data.subset(range(len(data))) if isinstance(data, ImageFiles) else data  # decodes a folder
    names = arguments.corruptions or ["all"]
    if len(names) == 1 and names[0] in ("common", "extra", "all"):
        names = corruptions.corruption_names(names[0])
    with executor:
        root = write_corruption_set(
            dataset,
            arguments.output,
            arguments.layout,
            names,
            arguments.severities,
            profile=arguments.profile,
            seed=arguments.seed,
            workers=arguments.workers,
            image_format=arguments.image_format,
            indices=indices,
            engine=arguments.corruption_engine,
            device=device,
            mapper=executor,
        )
    print(root)
    return 0


def command_report(arguments: argparse.Namespace) -> int:
    from robustbench_lift.reporting.html import write_report

    print(write_report(arguments.run_directory))
    return 0


def command_compare(arguments: argparse.Namespace) -> int:
    from robustbench_lift.reporting.comparison import compare_runs

    markdown, html = compare_runs(arguments.run_a, arguments.run_b, arguments.output)
    print(markdown.read_text())
    print(f"written: {markdown} {html}", file=sys.stderr)
    return 0


def command_check(arguments: argparse.Namespace) -> int:
    from robustbench_lift.per_image import sidecar_path
    from robustbench_lift.reporting.gate import check_run, write_baseline

    if arguments.update_baseline:
        written = write_baseline(arguments.run_directory, arguments.baseline)
        sidecar = sidecar_path(written)
        print(
            f"baseline written: {written}"
            + (
                f" (per-image outcomes for paired tests: {sidecar})"
                if sidecar.exists()
                else " (the run has no per_image.npz: checks against it will be unpaired)"
            )
        )
        return 0
    result = check_run(arguments.run_directory, arguments.baseline, arguments.policy, arguments.junit)
    print(result.markdown)
    return result.exit_code


def _print_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    widths = {column: max(len(column), *(len(str(row[column])) for row in rows)) for column in columns}
    print("  ".join(column.ljust(widths[column]) for column in columns).rstrip())
    for row in rows:
        print("  ".join(str(row[column]).ljust(widths[column]) for column in columns).rstrip())


def _listing(what: str) -> list[dict[str, Any]]:
    """The rows of ``robustbench-lift list WHAT``; reads registries only (no torch, no foolbox)."""
    import robustbench_lift as api

    if what == "poolings":
        from robustbench_lift.nn.kinds import pooling_table

        return pooling_table()
    if what == "architectures":
        from robustbench_lift.models._registry import MODELS

        return [
            {"architecture": name, "description": MODELS.get(name).description} for name in api.list_architectures()
        ]
    if what == "models":
        from robustbench_lift.models._factory import model_spec_table

        return model_spec_table()
    if what == "zoo":
        from robustbench_lift.models.zoo import zoo_table

        return zoo_table()
    if what == "segmentation-zoo":
        from robustbench_lift.models.segmentation_zoo import segmentation_zoo_table

        return segmentation_zoo_table()
    if what == "corruptions":
        import corruptions

        return [
            {
                "corruption": name,
                "family": corruptions.corruption_family(name),
                "set": "common" if name in corruptions.COMMON_CORRUPTIONS else "extra (not in mCE)",
            }
            for name in api.list_corruptions("all")
        ]
    if what == "suites":
        from robustbench_lift.evaluation.suites import SUITES

        return [{"suite": name, "description": SUITES.get(name).description} for name in api.list_suites()]
    if what == "perturbations":
        from corruptions import perturbations

        return [
            {
                "perturbation": name,
                "set": "main (in mFR)" if name in perturbations.MAIN_PERTURBATIONS else "extra",
                "frames (cifar)": perturbations.frame_count(name, "cifar"),
                "rule": "noise: vs first frame" if name in perturbations.NOISE_PERTURBATIONS else "consecutive frames",
            }
            for name in api.list_perturbations("all")
        ]
    if what == "attacks":
        from robustbench_lift.evaluation.attacks import ATTACKS

        return [
            {
                "attack": name,
                "label": ATTACKS.get(name).label,
                "norm": ATTACKS.get(name).norm,
                "minimization": ATTACKS.get(name).minimization,
                "default epsilons": ", ".join(f"{value:.4g}" for value in ATTACKS.get(name).default_epsilons),
                "headline": f"{ATTACKS.get(name).headline_epsilon:.4g}",
                "options": ", ".join(f"{key}={option.default}" for key, option in ATTACKS.get(name).options.items())
                or "-",
            }
            for name in api.list_attacks()
        ]
    if what == "datasets":
        return [{"dataset": name} for name in api.list_datasets()]
    raise UserError(f"cannot list {what!r}")


LISTABLE = (
    "models",
    "poolings",
    "architectures",
    "zoo",
    "segmentation-zoo",
    "corruptions",
    "perturbations",
    "attacks",
    "suites",
    "datasets",
)


def command_list(arguments: argparse.Namespace) -> int:
    _print_table(_listing(arguments.what))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robustbench-lift", description="Robustness benchmarks for ConvNets that differ only in their pooling."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the benchmark (no arguments: the built-in Fashion-MNIST benchmark)")
    run.add_argument(
        "--task",
        choices=("classification", "segmentation"),
        default="classification",
        help="segmentation: the built-in segmentation benchmark (segmentation zoo on garment scenes, docs/segmentation.md)",
    )
    run.add_argument("--config", help="YAML file with RunConfig keys (see README)")
    run.add_argument("--quick", action="store_true", help="small preset for CI: 200 images, severities 1, 3, 5")
    run.add_argument(
        "--models",
        nargs="+",
        metavar="SPEC",
        help="zoo names, checkpoint files, pretrained specs or python:<module>:<callable>[:<key>=<value>]...[@<weights>] "
        "for your own model; NAME=SPEC names it (see 'list models'; default: the whole zoo)",
    )
    run.add_argument("--suites", nargs="+", help="suites to run (see 'list suites')")
    run.add_argument("--corruptions", nargs="+", help="corruption names, or common / extra / all")
    run.add_argument("--severities", nargs="+", type=int)
    run.add_argument(
        "--sample-size", type=int, help="test images to sample (default 500; 80 scenes under --task segmentation)"
    )
    run.add_argument("--seed", type=int)
    run.add_argument("--workers", type=int, help="processes generating corrupted inputs")
    run.add_argument("--batch-size", type=int)
    run.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    run.add_argument("--dataset")
    run.add_argument("--data-dir")
    run.add_argument("--download", action="store_true", help="let torchvision download missing data")
    run.add_argument("--profile", choices=None, help="corruption severity profile: cifar or imagenet")
    run.add_argument("--reference-model", help="model normalising CE (default: the max-pooling model)")
    run.add_argument("--perturbations", nargs="+", help="perturbation names, or main / extra / all")
    run.add_argument("--difficulty", type=int, help="compare perturbation frames this far apart (default 1)")
    run.add_argument(
        "--perturbation-sample-size",
        type=int,
        help="sequences per perturbation (default 100; 12 under --task segmentation)",
    )
    run.add_argument("--shift-max", type=int, help="largest shift in px for shift consistency (default 4)")
    run.add_argument("--attacks", nargs="+", help="attack names (see 'list attacks')")
    run.add_argument("--attack-sample-size", type=int, help="images attacked (default 50)")
    run.add_argument(
        "--epsilons", nargs="+", metavar="ATTACK=EPS,EPS", help="epsilon grid per attack, e.g. pgd_linf=0,0.01,0.03"
    )
    run.add_argument(
        "--attack-option",
        nargs="+",
        metavar="ATTACK.OPTION=VALUE",
        help="an attack's hyperparameter, e.g. pgd_linf.steps=50 pgd_linf.restarts=5 autoattack.steps=100 "
        "(see docs/attacks.md)",
    )
    run.add_argument("--device", help="auto (default: CUDA when available, else CPU), cpu, cuda or cuda:N")
    run.add_argument("--precision", help="inference precision: fp32 (default), bf16 or fp16 (CUDA only); autocast")
    run.add_argument("--attack-precision", help="precision of attack passes: fp32 (default), bf16 or fp16")
    run.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels-last memory format for inference (default: on)",
    )
    run.add_argument("--output-dir")
    run.add_argument(
        "--run-name", help="results go to OUTPUT_DIR/RUN_NAME; rerunning the same command resumes an interrupted run"
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a finished run of another config under the same run name (else refused)",
    )
    run.add_argument("--no-report", action="store_true", help="do not write index.html and plots at the end of the run")
    run.add_argument("--executor", help="local (default: this process) or ray (cells as Ray tasks)")
    run.add_argument(
        "--model-processes",
        type=int,
        help="local executor on the CPU: processes evaluating models in parallel, one thread each (default: one per core)",
    )
    run.add_argument("--ray-address", help="Ray cluster to attach to, host:port or auto (default: start a local one)")
    run.add_argument("--cache-dir", help="cache the corruption suite's generated inputs here (default: no cache)")
    run.add_argument(
        "--corruption-data", help="read corrupted images from this pre-made set instead of generating them"
    )
    run.add_argument("--corruption-layout", help="layout of --corruption-data, e.g. cifar-c (default: detect)")
    run.add_argument(
        "--corruption-engine",
        "--engine",
        dest="corruption_engine",
        help="numpy (default: the reference), torch (batched, on the evaluation device) or auto (torch on CUDA)",
    )
    run.add_argument(
        "--perturbation-data", help="read perturbation sequences from this pre-made set instead of generating them"
    )
    run.add_argument("--perturbation-layout", help="layout of --perturbation-data, e.g. cifar-p (default: detect)")
    run.set_defaults(handler=command_run)

    train = commands.add_parser("train", help="train a model and write a checkpoint with metadata")
    train.add_argument("--architecture", default="small_cnn")
    train.add_argument("--pooling", default="max")
    train.add_argument("--pooling-option", action="append", default=[], metavar="KEY=VALUE")
    train.add_argument("--dataset", default="fashion_mnist")
    train.add_argument("--epochs", type=int, default=6)
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--learning-rate", type=float, default=0.05)
    train.add_argument("--detail-weight", type=float, default=0.01, help="lifting detail regulariser (0 = off)")
    train.add_argument(
        "--approximation-weight", type=float, default=0.01, help="lifting approximation regulariser (0 = off)"
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=1)
    train.add_argument("--data-dir")
    train.add_argument("--download", action="store_true")
    train.add_argument("--output", required=True, help="checkpoint path (.safetensors)")
    train.set_defaults(handler=command_train)

    corrupt = commands.add_parser(
        "corrupt", help="write a corruption data set (ImageNet-C or CIFAR-10-C layout); resumable"
    )
    corrupt.add_argument("--output", required=True, help="folder to write (re-running resumes it)")
    corrupt.add_argument("--layout", default="cifar-c", help="cifar-c, imagenet-c or tiny-imagenet-c")
    corrupt.add_argument("--dataset", default="fashion_mnist")
    corrupt.add_argument("--split", default="test")
    corrupt.add_argument("--data-dir")
    corrupt.add_argument("--download", action="store_true")
    corrupt.add_argument("--corruptions", nargs="+", help="names, or common / extra / all (default all)")
    corrupt.add_argument("--severities", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    corrupt.add_argument("--profile", default="cifar")
    corrupt.add_argument("--seed", type=int, default=0)
    corrupt.add_argument("--sample-size", type=int, help="seeded subset of the split (default: all of it)")
    corrupt.add_argument("--workers", type=int, default=2)
    corrupt.add_argument(
        "--image-format", default="jpeg", help="jpeg (quality 85, as published) or png (lossless), image layouts only"
    )
    corrupt.add_argument(
        "--corruption-engine",
        "--engine",
        dest="corruption_engine",
        default="numpy",
        help="numpy (default: the reference) or torch (batched tensors on --device); the manifest records it",
    )
    corrupt.add_argument("--device", default="cpu", help="where the torch engine computes: cpu (default), cuda, auto")
    corrupt.add_argument(
        "--executor", default="local", help="local (default: this machine) or ray (chunks as Ray tasks on a cluster)"
    )
    corrupt.add_argument(
        "--ray-address", help="Ray cluster to attach to, host:port or auto (default: start a local one)"
    )
    corrupt.set_defaults(handler=command_corrupt)

    report = commands.add_parser("report", help="rebuild the HTML report and plots of a finished run")
    report.add_argument("run_directory")
    report.set_defaults(handler=command_report)

    compare = commands.add_parser(
        "compare", help="difference per model and metric between two runs (B - A), with intervals"
    )
    compare.add_argument("run_a")
    compare.add_argument("run_b")
    compare.add_argument("--output", help="folder for comparison.md / .html (default: RUN_B/comparison)")
    compare.set_defaults(handler=command_compare)

    check = commands.add_parser("check", help="regression gate: exit 0 pass, 1 regression, 2 usage or data error")
    check.add_argument("run_directory")
    check.add_argument("--baseline", required=True, help="committed baseline file (CSV)")
    check.add_argument("--policy", help="gate policy YAML (default: reports/policy.yaml)")
    check.add_argument("--junit", help="also write JUnit XML here")
    check.add_argument(
        "--update-baseline", action="store_true", help="write the baseline from this run instead of checking"
    )
    check.set_defaults(handler=command_check)

    listing = commands.add_parser("list", help="list " + ", ".join(LISTABLE))
    listing.add_argument("what", choices=LISTABLE)
    listing.set_defaults(handler=command_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if arguments.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    previous = _terminate_on_sigterm()
    try:
        return arguments.handler(arguments)
    except USER_ERRORS as error:
        print(f"robustbench-lift: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as error:
        print("robustbench-lift: interrupted; no results written", file=sys.stderr)
        return 128 + signal.SIGTERM if isinstance(error, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that cleanup (worker processes, the run's lock and
    store) runs instead of the process vanishing mid-write."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def _terminate_on_sigterm() -> Any:
    """Installs the SIGTERM handler; returns the previous one (None when not possible)."""
    try:
        return signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread (cli.main called from a worker thread)
        return None


if __name__ == "__main__":
    sys.exit(main())
