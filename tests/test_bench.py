"""The benchmarks' own logic (bench/ is not a package: its scripts are run, and imported here
from their folder). Their figures are never asserted: speed is the benchmarks' business."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import common  # noqa: E402
import e2e  # noqa: E402
import flops  # noqa: E402


def test_stage_seconds_run_from_one_running_stage_line_to_the_next():
    lines = [(0.5, "Running stage 'convert':"), (0.6, "> python -m momentum_ssl convert"),
             (10.0, "Running stage 'plan@byol-full':"), (12.5, "Updating lock file"),
             (13.0, "Running stage 'evaluate-raw':"), (20.0, "Use `dvc push` to send")]
    seconds = e2e.stage_seconds(lines, total=21.0)
    assert seconds == pytest.approx({"convert": 9.5, "plan@byol-full": 3.0, "evaluate-raw": 8.0})
    assert [e2e.kind(s) for s in seconds] == ["convert", "plan", "evaluate (baselines)"]
    assert [e2e.kind(s) for s in ("pretrain@byol-full-res-2", "evaluate-random@1",
                                  "evaluate@byol-full-1")] == [
        "pretrain", "evaluate (baselines)", "evaluate"]


def test_evaluation_ratio_counts_every_evaluation_stage_against_pretraining():
    by_kind = {"convert": [5.0], "plan": [1.0, 1.0], "pretrain": [10.0, 10.0],
               "evaluate": [6.0, 5.0], "evaluate (baselines)": [4.0], "report": [3.0]}
    assert e2e.evaluation_ratio(by_kind) == pytest.approx(15.0 / 20.0)
    # an older commit's three stages a run count alike
    by_kind = {"pretrain": [10.0, 10.0], "extract": [2.0, 2.0], "probe": [4.0, 4.0],
               "transfer": [1.0, 1.0], "extract (baselines)": [1.0], "probe (baselines)": [2.0],
               "transfer (baselines)": [1.0], "report": [3.0]}
    assert e2e.evaluation_ratio(by_kind) == pytest.approx(18.0 / 20.0)


def test_measured_sees_the_memory_of_a_child_process_and_its_lines():
    # the parent sleeps while a grandchild holds 300 MB: the tree's peak counts both
    code = ("import subprocess, sys; print('start', flush=True); subprocess.run([sys.executable,"
            " '-c', 'import time; b = bytearray(300 * 2**20); b[::4096] = b\"x\" * len(b[::4096])"
            "; time.sleep(1.5)'], check=True); print('end')")
    done = common.measured([sys.executable, "-c", code], interval=0.1)
    assert done.returncode == 0 and [line for _, line in done.lines] == ["start", "end"]
    assert 300 * 2**20 < done.peak_process_bytes <= done.peak_tree_bytes
    assert done.seconds >= 1.5


def test_print_table_aligns_columns_and_keeps_text_cells(capsys):
    common.print_table(["name", "s"], [["a", 1.234], ["total", ""]], ["{}", "{:.1f}"])
    assert capsys.readouterr().out.splitlines() == ["name     s", "a      1.2", "total"]


def test_gpu_bench_runs_its_training_steps_on_the_cpu():
    out = subprocess.run([sys.executable, str(BENCH / "gpu.py"), "--device", "cpu", "--batch",
                          "4", "--steps", "1", "--warmup", "1", "--methods", "byol,mocov3"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    # each method's figure as soon as it is measured, then the table
    assert [re.fullmatch(r"(\w+): \d+ images/s on CPU, \d+ threads", line).group(1)
            for line in out[:2]] == ["byol", "mocov3"]
    assert out[3].split() == ["method", "images/s"]
    assert [line.split()[0] for line in out[4:6]] == ["byol", "mocov3"]
    assert out[-1].startswith("ratio to the goal")


def test_gpu_recipe_epoch_runs_the_cifar10_recipes_on_the_cpu():
    """bench/gpu_recipe.py (the GPU check's recipe epoch) on the CPU, with a small backbone
    and batch: each method's recipe trains through the epoch and the table names it."""
    out = subprocess.run([sys.executable, str(BENCH / "gpu_recipe.py"), "--device", "cpu",
                          "--params", str(BENCH.parent / "params" / "cifar10.yaml"),
                          "--methods", "simsiam,barlow_twins", "--images", "96", "--batch",
                          "32", "--warmup", "1", "--backbone", "resnet_tiny"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert [re.fullmatch(r"([\w-]+): \d+ images/s, [\d.]+ GiB peak on CPU, \d+ threads, fp32",
                         line).group(1) for line in out[:2]] == ["simsiam-full",
                                                                 "barlow_twins-full"]
    assert out[3].split()[:4] == ["run", "precision", "optimizer", "lr"]
    rows = [line.split() for line in out[4:6]]
    assert [r[:4] for r in rows] == [["simsiam-full", "fp32", "sgd", "0.5"],
                                     ["barlow_twins-full", "fp32", "lars", "0.3"]]
    assert all(r[5] == "3" for r in rows)  # 96 images / 32 = 3 steps


def test_peer_bench_trains_one_epoch_each_way_and_evaluates_both_backbones(tiny, tmp_path):
    """bench/peer.py (goal 3) on the tiny profile (digits, 160 training images: 5 steps of
    32), at two seeds: the momentum-ssl side, the lightly side when lightly is installed
    (bench-only: `make bench-peer`), and the evaluation. Both sides take the same steps with
    the same torch threads; the last line's ratio is the summed wall times', and its kNN
    difference the mean of the per-seed differences, with their interval and verdict."""
    import yaml

    from momentum_ssl.config import to_dict
    from momentum_ssl.analysis.stats import summarize

    try:
        import lightly  # noqa: F401
        sides = ["momentum-ssl", "lightly"]
    except ImportError:
        sides = ["momentum-ssl"]
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(to_dict(tiny), sort_keys=False))
    done = subprocess.run([sys.executable, str(BENCH / "peer.py"), "--params", str(path),
                           "--sides", ",".join(sides), "--seeds", "0,1"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout.splitlines()
    assert out[0].startswith("one epoch of simclr-none (seeds 0, 1), digits: 16 training images")
    assert out[1].split() == ["side", "seed", "threads", "steps", "wall", "s", "loop", "s", "cpu",
                              "s", "s/step", "images/s", "k20", "weighted"]
    rows = {(line.split()[0], int(line.split()[1])): line.split()
            for line in out[2:2 + 2 * len(sides)]}
    assert sorted(rows) == sorted((side, seed) for side in sides for seed in (0, 1))
    assert len({row[2] for row in rows.values()}) == 1  # the same torch threads
    for side, seed, threads, steps, wall, loop, cpu, per_step, rate, knn in rows.values():
        assert steps == "5"
        assert 0 < float(loop) <= float(wall) < float(cpu) + 60  # cpu: the whole process's
        assert float(per_step) == pytest.approx(float(wall) / 5, abs=0.011)
        assert float(rate) == pytest.approx(5 * 32 / float(wall), rel=0.05)
        assert 0.1 < float(knn) <= 1  # 10 classes: a ResNet's features beat chance
    if len(sides) == 1:
        assert out[-1] == "ratio lightly / momentum-ssl: not measured (only momentum-ssl ran)"
        pytest.skip("the lightly side did not run: lightly is bench-only, installed by "
                    "`make bench-peer` (the momentum-ssl side and the evaluation passed)")
    assert len(out) == 8
    # the ceiling: lightly's wall time over momentum-ssl's model step alone, its epochs
    model_s, floor, ceiling = re.fullmatch(
        r"momentum-ssl's model step alone \(batches in memory\): ([\d., ]+) s, ([\d.]+) s for "
        r"the epochs; lightly's wall time over that: ([\d.]+)x, the most this ratio can reach "
        r"with no set-up and no loader", out[-2]).groups()
    steps = [float(v) for v in model_s.split(", ")]
    assert len(steps) == 2 and float(floor) == pytest.approx(5 * sum(steps), abs=0.06)
    lightly_wall = sum(float(rows["lightly", seed][4]) for seed in (0, 1))
    assert float(ceiling) == pytest.approx(lightly_wall / (5 * sum(steps)), rel=0.1)
    ratio, points, low, high, judged = re.fullmatch(
        r"ratio lightly / momentum-ssl wall time: ([\d.]+)x; k20 weighted kNN momentum-ssl - "
        r"lightly: ([+-][\d.]+) points \(mean of 2 seeds, 95% CI \[([+-][\d.]+), "
        r"([+-][\d.]+)\]\): (better|worse|inconclusive)", out[-1]).groups()
    wall = {side: sum(float(rows[side, seed][4]) for seed in (0, 1)) for side in sides}
    differences = [100 * (float(rows["momentum-ssl", seed][-1]) - float(rows["lightly", seed][-1]))
                   for seed in (0, 1)]
    summary = summarize(differences)
    assert float(ratio) == pytest.approx(wall["lightly"] / wall["momentum-ssl"], rel=0.05)
    assert float(points) == pytest.approx(summary.mean, abs=0.02)
    assert (float(low), float(high)) == pytest.approx((summary.low, summary.high), abs=0.02)
    assert judged == ("better" if summary.low > 0 else "worse" if summary.high < 0
                      else "inconclusive")


def test_pipeline_bench_times_the_step_three_ways_with_the_same_threads(tiny, tmp_path):
    """bench/pipeline.py (goal 1) on the tiny profile: the model-only step, the same step fed
    by the loader, and pretrain(); every row with the same torch threads, and the last line's
    ratio is the table's."""
    import yaml

    from momentum_ssl.config import to_dict

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(to_dict(tiny), sort_keys=False))
    done = subprocess.run([sys.executable, str(BENCH / "pipeline.py"), "--params", str(path),
                           "--steps", "2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout.splitlines()
    assert out[0].startswith("pretraining step of simclr-none: digits at 8px")
    rows = [re.split(r"\s{2,}", line.strip()) for line in out[2:5]]
    assert [r[0] for r in rows] == ["model only (batches in memory)", "loader + step",
                                    "pretrain() (+ logging, telemetry, kNN monitor)"]
    # 5 batches an epoch: 2 timed after 3 warm-up steps; pretrain() takes the 2 epochs' 10
    assert [r[1] for r in rows] == ["2", "2", "10"]
    assert len({r[2] for r in rows}) == 1
    seconds = [float(r[3]) for r in rows]
    assert all(s > 0 for s in seconds)
    ratio = float(re.fullmatch(r"ratio loader \+ step / model only: ([\d.]+)x \(goal <= 1.15x\)",
                               out[-1]).group(1))
    assert ratio == pytest.approx(seconds[1] / seconds[0], abs=0.01 + 0.05 * ratio)


def test_peer_comparison_pairs_knn_by_seed_and_sums_the_wall_times():
    import peer

    def results(knn_mine, knn_theirs, wall_mine=2.0, wall_theirs=5.0):
        out = {}
        for seed, (mine, theirs) in enumerate(zip(knn_mine, knn_theirs)):
            out["momentum-ssl", seed] = {"wall_s": wall_mine, "knn": mine}
            out["lightly", seed] = {"wall_s": wall_theirs, "knn": theirs}
        return out

    one = peer.comparison(results([0.70], [0.72]), [0])
    assert one == ("ratio lightly / momentum-ssl wall time: 2.50x; k20 weighted kNN "
                   "momentum-ssl - lightly: -2.00 points (one seed: no interval): inconclusive")
    # the same 2-point deficit at every seed has no spread: no verdict on a zero-width interval
    flat = peer.comparison(results([0.70, 0.71, 0.72], [0.72, 0.73, 0.74]), [0, 1, 2])
    assert flat.endswith("-2.00 points (mean of 3 seeds, 95% CI [-2.00, -2.00]): inconclusive")
    # deficits of 2.0, 2.1, 1.9 points: worse
    worse = peer.comparison(results([0.70, 0.71, 0.72], [0.72, 0.731, 0.739]), [0, 1, 2])
    assert worse.endswith("-2.00 points (mean of 3 seeds, 95% CI [-2.25, -1.75]): worse")
    # differences of +1, -1, +3: the interval holds 0
    mixed = peer.comparison(results([0.71, 0.70, 0.73], [0.70, 0.71, 0.70]), [0, 1, 2])
    assert mixed.endswith("): inconclusive") and "+1.00 points (mean of 3 seeds" in mixed


def test_flops_counts_steps_times_a_step_and_the_encoders_over_both_splits(tiny):
    """bench/flops.py on the tiny profile (digits, 160 train / 40 test images at 8 px, 5
    steps of 32 an epoch, 2 epochs): every cell, and each count against torch's counter run
    here on the same shapes."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from momentum_ssl.config import resolve, with_seed
    from momentum_ssl.core.learner import build_learner

    cells = {c.name: c for c in flops.work(tiny)}
    assert list(cells) == ["byol-full/s0", "byol-projector/s0", "simclr-none/s0", "raw",
                           "random/s0"]
    # a teacher that owns backbone blocks is a second encoder; a projector-only one is not
    assert [c.encoders for c in cells.values()] == [2, 1, 1, 1, 1]
    # raw pixels: nothing to train, the kNN's products over 8 x 8 gray pixels (one channel)
    assert cells["raw"].pretrain == 0 and cells["raw"].evaluate == 2 * 160 * 40 * 64
    run = {r.name: r for r in tiny.grid}["simclr-none"]
    torch.manual_seed(0)
    learner = build_learner(resolve(with_seed(tiny, 0), run), run).train()
    x = torch.randn(32, 3, 8, 8)
    with FlopCounterMode(display=False) as step:
        loss, _ = learner(x, x)
        loss.backward()
    assert cells["simclr-none/s0"].pretrain == 10 * step.get_total_flops()
    learner.eval()
    with FlopCounterMode(display=False) as forward, torch.no_grad():
        features = learner.backbone(x)
    knn = 2 * 160 * 40 * features.shape[1]
    assert cells["simclr-none/s0"].evaluate == pytest.approx(
        forward.get_total_flops() / 32 * 200 + knn)
    # the random-init backbone is the same network; byol-full encodes with two of it (and
    # the teacher's forward runs its projector too) and searches twice
    assert cells["random/s0"].evaluate == pytest.approx(cells["simclr-none/s0"].evaluate)
    assert 2 * cells["simclr-none/s0"].evaluate < cells["byol-full/s0"].evaluate < (
        2.01 * cells["simclr-none/s0"].evaluate)
    assert flops.ratio(list(cells.values())) == pytest.approx(
        sum(c.evaluate for c in cells.values()) / sum(c.pretrain for c in cells.values()))


def test_flops_arithmetic_line_converts_counts_to_seconds_at_the_measured_rates():
    cells = [flops.Work("a/s0", 1, 300e9, 100e9), flops.Work("raw", 1, 0.0, 20e9)]
    line = flops.arithmetic_line(cells, {"encode": 40e9, "train": 100e9}, 9.0, 7.5)
    assert line == ("arithmetic (bench/flops.py): evaluation 120 GFLOP at least, pretraining "
                    "300 GFLOP: 0.40x; at the rates measured here (encoding 40, training step "
                    "100 GFLOP/s) 3 s of the evaluate stages' 9 s and 3 s of the pretrain "
                    "stages' 8 s")


def test_flops_bench_prints_every_cell_and_the_ratio_of_its_totals(tiny, tmp_path):
    import yaml

    from momentum_ssl.config import to_dict

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(to_dict(tiny), sort_keys=False))
    done = subprocess.run([sys.executable, str(BENCH / "flops.py"), "--params", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout.splitlines()
    assert out[0].startswith(f"floating-point work of {path}: 3 runs x 1 seeds")
    rows = {line.split()[0]: line.split() for line in out[2:8]}
    assert list(rows) == ["byol-full/s0", "byol-projector/s0", "simclr-none/s0", "raw",
                          "random/s0", "total"]
    pretrain, evaluate = float(rows["total"][1]), float(rows["total"][2])
    assert pretrain == pytest.approx(sum(float(r[2]) for n, r in rows.items() if n != "total"),
                                     abs=0.3)
    assert re.fullmatch(r"rates, \d+ threads: training step \d+ GFLOP/s \(.*\), encoding \d+ "
                        r"GFLOP/s; at these rates .*", out[-2])
    ratio = float(re.fullmatch(r"ratio evaluation / pretraining FLOPs: ([\d.]+)x \(claim 5b's "
                               r"goal: <= 0.5x of the time\)", out[-1]).group(1))
    assert ratio == pytest.approx(evaluate / pretrain, abs=0.01)


def test_peer_ceiling_is_lightlys_wall_time_over_the_model_steps_alone():
    import peer

    results = {("momentum-ssl", 0): {"steps": 100, "model_step_s": 0.02, "wall_s": 3.0},
               ("momentum-ssl", 1): {"steps": 100, "model_step_s": 0.03, "wall_s": 3.5},
               ("lightly", 0): {"wall_s": 10.0}, ("lightly", 1): {"wall_s": 12.5}}
    assert peer.ceiling(results, [0, 1]) == (
        "momentum-ssl's model step alone (batches in memory): 0.0200, 0.0300 s, 5.0 s for the "
        "epochs; lightly's wall time over that: 4.50x, the most this ratio can reach with no "
        "set-up and no loader")
    results["momentum-ssl", 1]["model_step_s"] = None  # too few batches to time it
    assert peer.ceiling(results, [0, 1]) is None


def test_portable_bench_times_native_and_pinned_kernels_at_the_profiles_threads(tiny, tmp_path):
    """bench/portable.py on the tiny profile: one child with the machine's kernels, one with
    the AVX2 pins, both at compute.threads; the last line is the table's ratio."""
    import yaml

    from momentum_ssl.plumbing.compute import is_x86_64
    from momentum_ssl.config import to_dict

    data = to_dict(tiny)
    data["compute"]["threads"] = 1
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    done = subprocess.run([sys.executable, str(BENCH / "portable.py"), "--params", str(path),
                           "--steps", "2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout.splitlines()
    rows = [re.split(r"\s{2,}", line.strip()) for line in out[2:4]]
    assert [r[0] for r in rows] == ["native", "portable (AVX2)"]
    if is_x86_64():
        assert rows[1][1] == "AVX2"
    assert [r[2] for r in rows] == ["1", "1"] and [r[3] for r in rows] == ["2", "2"]
    ratio = float(re.fullmatch(r"ratio portable / native: ([\d.]+)x", out[-1]).group(1))
    assert ratio == pytest.approx(float(rows[1][4]) / float(rows[0][4]), abs=0.01 + 0.05 * ratio)


def test_crop_decoder_bench_runs_at_a_tiny_size():
    """bench/loader.py --crops at a tiny size: it makes its JPEG folder, converts it, times
    both decoders (here at two views only: each loader compiles its pipeline) and prints
    their ratio."""
    out = subprocess.run([sys.executable, str(BENCH / "loader.py"), "--crops", "--images", "8",
                          "--image-size", "50x40", "--size", "16", "--batch", "4",
                          "--workers", "1", "--epochs", "1", "--rounds", "1", "--views",
                          "2"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].startswith("training-view decoders, 8 JPEGs of 50x40 and 40x50")
    assert out[1].split() == ["decoder", "views", "images", "seconds", "images/s", "CPU",
                              "ms/image"]
    assert [line.split()[:4] for line in out[2:4]] == [
        ["ffcv", "RandomResizedCropRGBImageDecoder", "2", "8"],  # 2 batches of 4
        ["momentum-ssl", "WholeImageCropDecoder", "2", "8"]]
    assert re.fullmatch(r"ratio ffcv / ours CPU time per image: 2 views [\d.]+x", out[-2])
    assert re.fullmatch(r"ratio ours / ffcv images/s: 2 views [\d.]+x", out[-1])
