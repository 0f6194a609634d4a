"""This machine computes the embedded default's bits: `python -m momentum_ssl fingerprint`
against the committed reference (src/momentum_ssl/fingerprint.json). On a CPU whose kernels sum
in another order in the portable mode, this test fails and names the digests that differ."""

import json
import subprocess
import sys

import pytest
import torch

from conftest import REPO
from momentum_ssl.fingerprint import compare, load_reference, slice_params
from momentum_ssl.plumbing.compute import cpu_isa_available, is_x86_64

REFERENCE = load_reference()


def fingerprint(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "momentum_ssl", "fingerprint", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(not is_x86_64() or cpu_isa_available() not in ("AVX2", "AVX512"),
                    reason="the portable mode's promise is for x86-64 CPUs with AVX2")
@pytest.mark.skipif(torch.__version__ != REFERENCE["torch"],
                    reason=f"the reference was made with torch {REFERENCE['torch']}")
def test_this_machine_computes_the_defaults_bits():
    done = fingerprint()
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "every digest equals the reference" in done.stdout
    # every stage of the default is covered, and the kernels that the probe compares
    keys = {line.split()[0] for line in done.stdout.splitlines() if line.startswith("  ")}
    assert keys == set(REFERENCE["digests"])
    assert {"default/convert_train", "default/random_features", "default/pretrain_weights",
            "default/pretrain_monitor", "default/run_predictions", "default/run_transfer",
            "kernel/conv_fwd", "kernel/gemm"} <= keys


def test_compare_names_every_digest_that_differs_or_is_missing():
    reference = {"digests": {"a": "1", "b": "2", "c": "3"}}
    assert compare({"a": "1", "b": "2", "c": "3"}, reference) == []
    assert compare({"a": "1", "b": "9", "d": "4"}, reference) == ["b", "c", "d"]


def test_the_slice_is_the_default_on_fewer_images(tmp_path):
    import yaml

    data = yaml.safe_load((REPO / "params.yaml").read_text())
    sliced = slice_params(data, tmp_path)
    assert sliced["data"]["train_per_class"] == 32 and sliced["pretrain"]["epochs"] == 1
    assert list(sliced["grid"]) == ["simclr-full-res"] and sliced["seeds"] == [0]
    for section in ("augment", "model", "methods", "momentum", "residual", "compute", "probe"):
        assert sliced[section] == data[section], section  # the default's computation
    assert data["data"]["train_per_class"] == 2000  # the input is left as it was
    json.dumps(sliced)


def test_a_params_file_without_the_run_is_refused_in_one_line(tmp_path):
    import yaml

    data = yaml.safe_load((REPO / "params.yaml").read_text())
    del data["grid"]["simclr-full-res"]
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(data))
    done = fingerprint("--params", str(other))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "lacks" in done.stderr.strip().splitlines()[-1]
