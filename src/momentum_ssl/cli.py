"""``python -m momentum_ssl <stage>``: thin wrappers that load params and call one function.

Expected failures (bad params, a missing or corrupt dataset) print one ``error:`` line naming the
problem and the fix, and exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, NamedTuple

from .config import ConfigError, load_params, to_dict


def _convert(args: argparse.Namespace) -> None:
    from .data.convert import convert
    from .data.datasets import SPLITS

    out = convert(load_params(args.params))
    meta = json.loads((out / "meta.json").read_text())
    counts = ", ".join(f"{split} {meta['splits'][split]['num_samples']}" for split in SPLITS)
    print(f"wrote {out}/{{train,test}}.beton ({counts} images)")


def _imagenet100(args: argparse.Namespace) -> None:
    from .data.imagenet100 import build_subset, imagenet100_classes

    out = build_subset(args.root, args.out)
    then = ("convert it with: python -m momentum_ssl convert --params "
            "params/imagenet100_resnet18.yaml" if args.out == FLAGS["subset-to"][1]["default"]
            else f"set data.root: {out} in the profile, then convert")
    print(f"wrote {out}: train/ and val/ link the {len(imagenet100_classes())} ImageNet-100 "
          f"classes of {args.root}; {then}")


def _grid_run(params, args: argparse.Namespace):
    """The grid run ``--run`` names (a RunSpec); an error naming the choices otherwise."""
    runs = {run.name: run for run in params.grid}
    if args.run not in runs:
        raise ConfigError(f"--run {args.run!r} is not in the grid of {args.params}; choose one "
                          "of: " + ", ".join(runs))
    return runs[args.run]


def _run_or_baseline(params, args: argparse.Namespace) -> str:
    """The name ``--run`` gives, a grid run's or a baseline's (raw, random); an error naming
    the choices otherwise."""
    from .plumbing.paths import BASELINES

    names = [*(run.name for run in params.grid), *BASELINES]
    if args.run not in names:
        raise ConfigError(f"--run {args.run!r} is not in the grid of {args.params}; choose one "
                          "of: " + ", ".join(names))
    return args.run


def _seed(params, args: argparse.Namespace) -> int | None:
    """The training seed a per-run stage works on: ``--seed``, which must be one of
    ``params.seeds`` (it may be left out when there is only one); None for raw pixels."""
    from .plumbing.paths import SEEDLESS

    if args.run in SEEDLESS:
        if args.seed is not None:
            raise ConfigError(f"--run {args.run} has no seed (raw pixels draw nothing); "
                              "leave out --seed")
        return None
    if args.seed is None:
        if len(params.seeds) == 1:
            return params.seeds[0]
        raise ConfigError(f"--seed is needed: {args.params} trains every run with seeds "
                          f"{list(params.seeds)}")
    if args.seed not in params.seeds:
        raise ConfigError(f"--seed {args.seed} is not one of the seeds of {args.params}: "
                          f"{list(params.seeds)}")
    return args.seed


def _start_torch(params, gpus: int = 0) -> list[str] | None:
    """Claim ``gpus`` free GPUs (0: none; plumbing/devices.py) before anything starts CUDA,
    which reads CUDA_VISIBLE_DEVICES once; refuse GPUs that CUDA cannot use; then apply the
    ``compute`` section's thread count and CUDA settings (its CPU pins were set before torch
    loaded, in ``__main__``). Returns the claimed GPUs (None: none)."""
    from .plumbing.compute import configure

    claimed = _claim_gpus(params, gpus) if gpus else None
    configure(params.compute, params.pretrain.device)
    return claimed


def _load_for_torch(args: argparse.Namespace):
    """The params of a stage that runs torch and claims no GPU, started by
    :func:`_start_torch`."""
    params = load_params(args.params)
    _start_torch(params)
    return params


def _evaluation(args: argparse.Namespace, claim: bool = True):
    """(params, run or baseline name, seed): the set-up of extract, probe, transfer and
    evaluate; with ``claim``, a GPU is claimed when the run's encoder needs one, before torch
    starts (:func:`_start_torch`)."""
    params = load_params(args.params)
    name, seed = _run_or_baseline(params, args), _seed(params, args)
    gpus = 0
    if claim:
        from .core.encoders import needs_accelerator

        gpus = 1 if needs_accelerator(name) else 0
    _start_torch(params, gpus)
    return params, name, seed


def _plan(args: argparse.Namespace) -> None:
    from .config.loader import check_recipes_tracked
    from .stages.plan import write_plan

    params = load_params(args.params)
    check_recipes_tracked(args.params)
    path, written = write_plan(params, _grid_run(params, args), _seed(params, args))
    print(f"wrote {path}" if written else f"{path} is up to date")


def _claim_gpus(params, count: int = 1) -> list[str] | None:
    """Claim free GPUs before CUDA starts (plumbing/devices.py); None on a machine without one.
    A claimed GPU that CUDA cannot use, or ``pretrain.device: cuda`` without one, is an error."""
    if params.pretrain.device == "cpu":
        return None
    import os

    from .plumbing.devices import claim, cuda_problem

    preset = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = claim(count)
    if gpus is not None:  # which devices, and whether SLURM (or a user) chose them
        how = "kept CUDA_VISIBLE_DEVICES" if preset is not None else "claimed"
        print(f"GPUs {','.join(gpus)} ({how})", flush=True)
    problem = cuda_problem(params.pretrain.device, gpus)
    if problem:
        raise ConfigError(problem)
    return gpus


def _across_nodes(params, run, seed: int, params_path: str) -> bool:
    """Train ``run`` on several nodes of this SLURM job when its GPUs are more than
    ``cluster.gpus_per_node``: one torchrun agent a node, started with srun
    (plumbing/launch.py), this process waiting for them. False for a run on one node."""
    import subprocess

    from .plumbing.launch import LaunchError, across_nodes, nodes_for

    per_node = params.cluster.gpus_per_node
    if nodes_for(run.gpus, per_node) == 1:
        return False
    try:
        cmd = across_nodes(run.name, run.gpus, per_node, [
            "pretrain", "--run", run.name, "--seed", str(seed), "--params", params_path])
    except LaunchError as err:
        raise ConfigError(str(err)) from None
    print(" ".join(cmd), flush=True)
    done = subprocess.run(cmd)
    if done.returncode:
        raise SystemExit(done.returncode)
    return True


def _pretrain(args: argparse.Namespace) -> None:
    import os
    import subprocess

    from .stages.plan import check_plan
    from .stages.pretrain import pretrain

    params = load_params(args.params)
    run, seed = _grid_run(params, args), _seed(params, args)
    check_plan(params, run, seed, args.params)
    if "WORLD_SIZE" not in os.environ and _across_nodes(params, run, seed, args.params):
        return
    gpus = _start_torch(params, run.gpus if "WORLD_SIZE" not in os.environ else 1)
    if run.gpus > 1 and "WORLD_SIZE" not in os.environ:
        if gpus is None:
            print(f"{run.name} asks for {run.gpus} GPUs and this machine has none: training "
                  "in one process on the CPU")
        else:  # one process per claimed GPU; this process holds the claim until they end
            torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                        f"--nproc-per-node={len(gpus)}", "-m", "momentum_ssl", "--",
                        "pretrain", "--run", run.name, "--seed", str(seed), "--params",
                        args.params]
            print(" ".join(torchrun[2:]), flush=True)
            done = subprocess.run(torchrun)
            if done.returncode:
                raise SystemExit(done.returncode)
            return
    print(f"wrote {pretrain(params, run, seed=seed)}")


def _verify(args: argparse.Namespace) -> None:
    """Train one run-seed again, into results/verify/, and compare its weights with those the
    pipeline stored (results/runs/<run>/s<seed>/model.pt, from DVC's cache or a remote)."""
    import shutil

    import torch

    from .plumbing.artifacts import load_torch, read_json
    from .plumbing.compute import provenance, state_digest
    from .plumbing.paths import RESULTS, cell, run_dir
    from .stages.plan import check_plan
    from .stages.pretrain import pretrain

    params = _load_for_torch(args)
    run, seed = _grid_run(params, args), _seed(params, args)
    check_plan(params, run, seed, args.params)
    stored = run_dir(cell(run.name, seed)) / "model.pt"
    rewrite = f"dvc repro pretrain@{run.name}-{seed}"
    if not stored.is_file():
        raise ConfigError(f"{stored} not found: run `{rewrite}` or `dvc pull` first, then "
                          "verify")
    # read (and check) what is stored before the retraining writes anything
    theirs = load_torch(stored, rewrite, ("learner",))["learner"]
    recorded = stored.parent / "provenance.json"
    where = read_json(recorded, rewrite) if recorded.is_file() else {"cpu": "unknown"}
    out = RESULTS / "verify" / cell(run.name, seed)
    shutil.rmtree(out, ignore_errors=True)
    pretrain(params, run, out=out, seed=seed)
    ours = load_torch(out / "model.pt", f"python -m momentum_ssl verify --run {run.name}",
                      ("learner",))["learner"]
    a, b = state_digest(ours), state_digest(theirs)
    here = provenance(params.compute)
    print(f"stored:  {b}  ({where.get('cpu')}, {where.get('cpu_isa_used')}, "
          f"{where.get('threads')} threads, portable {where.get('portable')})")
    print(f"retrain: {a}  ({here['cpu']}, {here['cpu_isa_used']}, {here['threads']} threads, "
          f"portable {here['portable']})")
    if a == b:
        print(f"{cell(run.name, seed)}: identical weights")
        return
    differ = [k for k in theirs if k not in ours or not torch.equal(ours[k], theirs[k])]
    print(f"{cell(run.name, seed)}: the weights differ in {len(differ)} of {len(theirs)} "
          "tensors (docs/REPRODUCIBILITY.md says what is bit for bit)")
    raise SystemExit(1)


def _extract(args: argparse.Namespace) -> None:
    from .stages.features import extract

    params, name, seed = _evaluation(args)
    print(f"wrote {extract(params, name, seed=seed)}/{{train,test}}.parquet")


def _probe(args: argparse.Namespace) -> None:
    from .stages.probes import probe

    params, name, seed = _evaluation(args, claim=False)
    _print_probe(probe(params, name, seed=seed))


def _print_probe(out) -> None:
    metrics = json.loads(out.read_text())
    key = metrics["knn_headline"]
    scores = ", ".join(f"{enc} kNN {metrics[enc]['knn'][key]:.4f} logistic "
                       f"{metrics[enc]['logistic']['top1']:.4f}"
                       for enc in ("student", "teacher", "raw") if enc in metrics)
    print(f"wrote {out}: {scores}")


def _transfer(args: argparse.Namespace) -> None:
    from .stages.transfer import transfer

    params, name, seed = _evaluation(args)
    _print_transfer(transfer(params, name, seed=seed))


def _print_transfer(out) -> None:
    from .plumbing.results import transfer_summary

    scores = ", ".join(f"{t} kNN {v:.4f}" for t, v in transfer_summary(out).items())
    print(f"wrote {out}: {scores}")


def _evaluate(args: argparse.Namespace) -> None:
    """extract, probe and transfer of one grid run or baseline in one process: the DAG's
    stage (each is also a command of its own). One process pays the imports (torch,
    scikit-learn, pyarrow: about 2 s) and DVC's bookkeeping (about 1.3 s a stage) once,
    not three times."""
    from .stages.features import extract
    from .stages.probes import probe
    from .stages.transfer import transfer

    params, name, seed = _evaluation(args)
    print(f"wrote {extract(params, name, seed=seed)}/{{train,test}}.parquet", flush=True)
    _print_probe(probe(params, name, seed=seed))
    _print_transfer(transfer(params, name, seed=seed))


def _evaluate_epochs(args: argparse.Namespace) -> None:
    from .stages.epochs import evaluate_epochs

    params = load_params(args.params)
    run, seed = _grid_run(params, args), _seed(params, args)
    _start_torch(params, 1)  # encodes on the run's device: a GPU when there is one
    print(f"wrote {evaluate_epochs(params, run.name, seed=seed)}")


def _export(args: argparse.Namespace) -> None:
    from .stages.export import export

    params = _load_for_torch(args)
    run = _grid_run(params, args)
    path = export(params, run.name, args.teacher, args.out, _seed(params, args))
    meta = json.loads(path.read_text())
    files = ",".join(f for f in (meta["files"]["state_dict"], meta["files"]["safetensors"],
                                 path.name) if f)
    print(f"wrote {path.parent}/{{{files}}} ({meta['format']} state_dict of the "
          f"{meta['encoder']}'s {meta['backbone']})")


def _linear(args: argparse.Namespace) -> None:
    """The papers' linear evaluation of one grid run at one seed (stages/linear.py): a GPU
    job at paper scale, so it claims one as evaluate does."""
    from .stages.linear import linear

    params = load_params(args.params)
    if not params.linear:
        raise ConfigError(f"linear is off in {args.params}: set 'linear: true' there to run "
                          "the linear evaluation (its recipe: recipes.linear, docs/STAGES.md)")
    name, seed = _grid_run(params, args).name, _seed(params, args)
    _start_torch(params, 1)
    out = linear(params, name, seed=seed)
    print(f"wrote {out}: top-1 {json.loads(out.read_text())['top1']:.4f}")


def _report(args: argparse.Namespace) -> None:
    from .stages.report import report

    print(f"wrote {report(load_params(args.params))}")


def _params(args: argparse.Namespace) -> None:
    """The file with every default filled in, then each run's resolved recipe (only that run's
    with ``--run``)."""
    import yaml

    from .config import recipe

    params = load_params(args.params)
    if args.run is not None:
        run = _grid_run(params, args)
        print(yaml.safe_dump({run.name: recipe(params, run)}, sort_keys=False), end="")
        return
    print(yaml.safe_dump(to_dict(params), sort_keys=False), end="")
    resolved = {run.name: recipe(params, run) for run in params.grid}
    print("# each grid run's resolved recipe (the shared sections, then recipes.<method>, then "
          "the run's own keys)")
    print(yaml.safe_dump({"resolved": resolved}, sort_keys=False), end="")


def _study(args: argparse.Namespace) -> None:
    from .study import write_study

    folder = write_study(args.name)
    print(f"wrote {folder}/dvc.yaml, {folder}/Snakefile and {folder}/params.yaml (a copy of "
          f"its profile); run it with: cd {folder} && dvc repro (or snakemake --cores all "
          "--resources gpu=4)")


def _claims_doc(args: argparse.Namespace) -> None:
    from pathlib import Path

    import yaml

    from .stages.report import claims_doc

    notes_file = Path(args.notes)
    if not notes_file.is_file():
        raise ConfigError(f"claims notes {notes_file} not found; run in the study's folder "
                          "(studies/claims) or pass --notes FILE")
    notes = yaml.safe_load(notes_file.read_text())
    if not isinstance(notes, dict):
        raise ConfigError(f"{notes_file}: expected a mapping of claim name to note")
    out = claims_doc(load_params(args.params), notes, Path(args.out), wall_s=args.wall_s)
    print(f"wrote {out}")


def _fingerprint(args: argparse.Namespace) -> None:
    """This machine's digests of the kernels and of the default's stages on a slice, each
    against the committed reference (src/momentum_ssl/fingerprint.json)."""
    from contextlib import redirect_stdout
    from pathlib import Path

    from .fingerprint import compare, fingerprint, load_reference
    from .plumbing.compute import provenance

    params = _load_for_torch(args)
    with redirect_stdout(sys.stderr):  # the stages' own lines: stdout stays the digests
        ours = fingerprint(Path(args.params))
    if args.json:
        print(json.dumps(ours, indent=1))
        return
    reference = load_reference()
    differ = compare(ours, reference)
    here = provenance(params.compute)
    print(f"this machine: {here['cpu']}, {here['cpu_isa_available']} available, kernels "
          f"{here['cpu_isa_used']}, {here['threads']} threads, torch {here['torch']}")
    for key in sorted(ours):
        mark = "differs" if key in differ else "same"
        print(f"  {key:28s} {ours[key]}  {mark}")
    checked = "; ".join(f"{m['cpu']} ({m['date']})" for m in reference["machines"])
    if not differ:
        print(f"every digest equals the reference (checked on: {checked})")
        return
    print(f"{len(differ)} of {len(reference['digests'])} digests differ from the reference "
          f"(checked on: {checked}): this machine will not reproduce the default's numbers bit "
          "for bit (docs/REPRODUCIBILITY.md)")
    raise SystemExit(1)


def _sweep_doc(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .study import sweep_doc

    out = sweep_doc(load_params(args.params), args.name, Path(args.out), wall_s=args.wall_s,
                    source=str(args.params))
    print(f"wrote {out}")


# Each command's flags, by name, in the order --help lists them (Stage.flags).
FLAGS = {
    "name": (("name",), dict(help="the study: any profile params/NAME.yaml, e.g. claims")),
    "sweep-name": (("name",), dict(help="the study, e.g. momentum_sweep")),
    "page": (("--out",), dict(required=True, help="the page to write")),
    "wall-s": (("--wall-s",), dict(type=float, default=None, help="the study's wall time in "
                                   "seconds, to print in the document")),
    "notes": (("--notes",), dict(default="notes.yaml", help="what this scale can say about "
                                 "each claim (default: notes.yaml, in the study's folder)")),
    "doc": (("--out",), dict(default="CLAIMS.md",
                             help="the document to write (make claims: docs/CLAIMS.md)")),
    "imagenet-root": (("--root",), dict(required=True, help="an ILSVRC-2012 folder holding "
                                        "train/ and val/, one folder per WordNet ID")),
    "subset-to": (("--out",), dict(default="data/raw/imagenet100", help="folder to write "
                                   "(default: data/raw/imagenet100, where the profiles read)")),
    "params": (("--params",), dict(default="params.yaml", help="params file (default: "
                                   "params.yaml; profiles live in params/)")),
    "run": (("--run",), dict(required=True, help="grid run name, e.g. byol-full")),
    "run-or-baseline": (("--run",), dict(required=True, help="grid run name (e.g. byol-full) "
                                         "or baseline (raw, random)")),
    "run-recipe": (("--run",), dict(default=None,
                                    help="print only this grid run's resolved recipe")),
    "seed": (("--seed",), dict(type=int, default=None, help="training seed, one of "
                               "params.seeds (may be left out when there is only one)")),
    "teacher": (("--teacher",), dict(action="store_true", help="export the teacher's backbone "
                                     "(scopes full and last_k)")),
    "export-to": (("--out",), dict(help="folder to write to (default: results/export/<run>)")),
    "json": (("--json",), dict(action="store_true",
                               help="print the digests alone, as JSON (for the reference)")),
}


class Stage(NamedTuple):
    command: Callable[[argparse.Namespace], None]
    help: str
    flags: tuple[str, ...] = ("params",)  # keys of FLAGS
    trains: bool = False  # runs the training loop: a diverged loss is an expected failure


PER_RUN = ("params", "run", "seed")
PER_RUN_OR_BASELINE = ("params", "run-or-baseline", "seed")

STAGES = {
    "imagenet100": Stage(_imagenet100, "link CMC's 100 ImageNet-100 classes of an ImageNet "
                                       "root into data/raw/imagenet100 (no copies)",
                         ("imagenet-root", "subset-to")),
    "convert": Stage(_convert, "convert params.data.dataset to data/beton/<dataset>/*.beton"),
    "plan": Stage(_plan, "write the params one grid run reads at one seed to "
                         "results/plan/<run>/s<seed>.yaml", PER_RUN),
    "pretrain": Stage(_pretrain, "pretrain one grid run (--run NAME), resuming if it was "
                                 "stopped", PER_RUN, trains=True),
    "extract": Stage(_extract, "features of a grid run or baseline (raw, random) to Parquet",
                     PER_RUN_OR_BASELINE),
    "probe": Stage(_probe, "kNN and logistic probes of a grid run's or baseline's features",
                   PER_RUN_OR_BASELINE),
    "transfer": Stage(_transfer, "probe a grid run's frozen student (or a baseline) on the "
                                 "transfer targets", PER_RUN_OR_BASELINE),
    "evaluate": Stage(_evaluate, "extract, probe and transfer of a grid run or baseline in one "
                                 "process: the DAG's stage", PER_RUN_OR_BASELINE),
    "evaluate-epochs": Stage(_evaluate_epochs, "kNN of each kept checkpoint of a grid run "
                                               "(pretrain.keep_every)", PER_RUN),
    "export": Stage(_export, "a grid run's trained backbone as a torchvision (resnet18/50) or "
                             "momentum_ssl (resnet_tiny) state_dict, plus safetensors",
                    (*PER_RUN, "teacher", "export-to")),
    "verify": Stage(_verify, "train one run-seed again (into results/verify/) and compare its "
                             "weights with the stored results/runs/<run>/s<seed>/model.pt",
                    PER_RUN, trains=True),
    "linear": Stage(_linear, "the papers' linear evaluation of a grid run (SGD on its frozen "
                             "backbone, recipes.linear) when the profile sets linear: true",
                    PER_RUN),
    "report": Stage(_report, "results/report.md and results/plots/*.png from every probe"),
    "params": Stage(_params, "validate a params file and print it with every default filled "
                             "in, then each run's resolved recipe", ("params", "run-recipe")),
    "study": Stage(_study, "write studies/NAME/dvc.yaml and Snakefile (the root pipeline seen "
                           "from there) and its params.yaml, a copy of the profile "
                           "params/NAME.yaml", ("name",)),
    "fingerprint": Stage(_fingerprint, "digests of this machine's kernels and of the default's "
                                       "stages on a slice of its data, checked against the "
                                       "committed reference", ("params", "json"), trains=True),
    "claims-doc": Stage(_claims_doc, "the claims document (docs/CLAIMS.md) from a finished "
                                     "claims study (run in studies/claims)",
                        ("wall-s", "notes", "doc", "params")),
    "sweep-doc": Stage(_sweep_doc, "a sweep study's document (docs/<NAME>.md) from its "
                                   "finished study (run in studies/NAME)",
                       ("sweep-name", "page", "wall-s", "params")),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m momentum_ssl", description=__doc__.split(
        "\n")[0])
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, stage in STAGES.items():
        command = sub.add_parser(name, help=stage.help, description=stage.help)
        for flag in stage.flags:
            names, options = FLAGS[flag]
            command.add_argument(*names, **options)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .plumbing.artifacts import CorruptArtifact, MissingArtifact
    from .data.datasets import DataError, DatasetNotFound

    expected: tuple = (ConfigError, DataError, DatasetNotFound, MissingArtifact, CorruptArtifact)
    if STAGES[args.stage].trains:  # only these pay for importing the training loop
        from .plumbing.precision import PrecisionUnavailable
        from .stages.pretrain import TrainingDiverged

        expected += (TrainingDiverged, PrecisionUnavailable)
    try:
        STAGES[args.stage].command(args)
    except expected as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
