"""bench/gpu_check.sh cannot rot: on the CPU, every file, test and command-line flag its steps
name exists and collects, docs/GPU.md lists its steps and limits as the script has them, and on
a machine without CUDA the script stops at step 1 with its message. (The steps themselves need
a GPU: tests/test_gpu.py and the benchmarks skip or stop without one.)"""

import os
import re
import shlex
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = REPO / "bench" / "gpu_check.sh"
DOC = REPO / "docs" / "GPU.md"


def steps() -> list[tuple[int, list[str]]]:
    """(limit in seconds, command after "$PY") of each ``step`` line of the script, in order."""
    text = SCRIPT.read_text().replace("\\\n", "")
    out = []
    for line in text.splitlines():
        if line.startswith("step "):
            words = shlex.split(line)
            assert words[2] == "$PY", line  # every step runs the check's Python
            out.append((int(words[1]), words[3:]))
    return out


def test_the_script_has_its_seven_steps_within_eight_minutes():
    limits = [limit for limit, _ in steps()]
    assert len(limits) == 7 and sum(limits) <= 8 * 60, limits
    header = re.search(r"at most (\d+) minutes \(the sum", SCRIPT.read_text())
    assert header and int(header.group(1)) * 60 == sum(limits)
    assert steps()[0][1][0] == "-c"  # step 1: the device, before anything else


@pytest.mark.parametrize("index", [i for i, (_, command) in enumerate(steps())
                                   if command[0] not in ("-c", "-m")])  # scripts, not pytest
def test_every_steps_script_and_flags_exist(index):
    """A script's --help lists every flag the step passes; a path it names exists."""
    _, command = steps()[index]
    script = REPO / command[0]
    assert script.is_file(), command[0]
    done = subprocess.run([sys.executable, str(script), "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for word in command[1:]:
        if word.startswith("--"):
            assert re.search(rf"{re.escape(word)}\b", done.stdout), (command[0], word)
        elif "/" in word:
            assert (REPO / word).exists(), word


def test_the_gpu_tests_selection_collects():
    """Step 3's pytest selection collects, here, the GPU tests it means to run (they skip here:
    no CUDA); a moved file would stop pytest with "file not found" and run none."""
    (_, command), = [s for s in steps() if s[1][:2] == ["-m", "pytest"]]
    selection = [w for w in command[2:] if w not in ("-q", "-s")]
    for word in selection:
        if word.endswith(".py"):
            assert (REPO / word).is_file(), word
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", *selection],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    collected = [line for line in done.stdout.splitlines() if "::" in line]
    for name in ("test_gpu.py::test_a_bf16_channels_last_step",
                 "test_gpu.py::test_each_precision_trains_a_recipe_on_cuda",
                 "test_gpu.py::test_two_deterministic_runs",
                 "test_gpu.py::test_pretrain_runs_on_cuda_through_the_ffcv_loader",
                 "test_compute.py::test_two_deterministic_cuda_runs_give_the_same_weights",
                 "test_host_syncs.py::test_cuda_training_steps_make_no_synchronising_call"):
        assert any(name in line for line in collected), (name, collected)


def test_the_end_to_end_step_builds_its_dag(tmp_path):
    """Step 7's study, as the script asks for it, down to Snakemake's dry run."""
    (_, command), = [s for s in steps() if s[1][0] == "bench/gpu_study.py"]
    done = subprocess.run([sys.executable, *command, "--dry-run", "--dir", str(tmp_path),
                           "--train-per-class", "2", "--test-per-class", "1"], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert done.returncode == 0, done.stdout + done.stderr
    for rule in ("convert", "pretrain", "evaluate", "evaluate_random", "report"):
        assert re.search(rf"^{rule}\s+1$", done.stdout, re.M), (rule, done.stdout)
    params = (tmp_path / "params.yaml").read_text()
    assert "device: cuda" in params and "jpeg_above: 0" in params


def test_the_package_step_finds_everything_in_this_environment():
    (_, command), = [s for s in steps() if s[1][0] == "bench/gpu_setup.py"]
    done = subprocess.run([sys.executable, *command, "--dry-run"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "nothing to install" in done.stdout, done.stdout
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import gpu_setup
    finally:
        sys.path.pop(0)
    wanted = {gpu_setup.name_of(r) for r in gpu_setup.requirements()}
    assert {"ffcv", "dvc", "dvclive", "snakemake", "pytest"} <= wanted
    assert not wanted & {"torch", "torchvision"}  # the machine's CUDA builds are kept


def test_gpu_md_lists_the_scripts_steps_and_limits():
    rows = re.findall(r"^\| (\d+) \| (\d+) s \| (.*) \|$", DOC.read_text(), re.M)
    assert [int(n) for n, _, _ in rows] == list(range(1, len(steps()) + 1))
    assert [int(limit) for _, limit, _ in rows] == [limit for limit, _ in steps()]
    for (_, _, what), (_, command) in zip(rows, steps()):
        if command[0] == "-c":
            continue
        shown = re.match(r"`python ([^`]*)`", what)
        assert shown and shlex.split(shown.group(1)) == command, (what, command)
    total = sum(limit for limit, _ in steps())
    assert f"within {total // 60} minutes on an H100 (the sum of its steps' time limits" in \
        " ".join(DOC.read_text().split())


def test_without_cuda_the_check_stops_at_step_1_with_its_message():
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120,
                          env=env)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "no CUDA device visible: nothing to check" in out
    assert out.count("\n== ") + out.startswith("== ") == 1, out  # only step 1 started
    assert "gpu_setup" not in out
