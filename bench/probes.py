"""Claim 4, the probes: the probe stage on 60,000 x 512 features against scikit-learn called
directly, wall time, peak memory and accuracy.

    python bench/probes.py [--params params.yaml] [--dim 512]

Features: Fashion-MNIST (60,000 train, 10,000 test images) as fixed random ReLU features,
relu(pixels @ W) with W ~ N(0, 1/784) of ``--dim`` columns (seed 0): class structure like a
weak encoder's, and reproducible without a trained model. Both sides run in a process of their
own, timed from its start (imports included) with its peak memory (RSS sampled every 0.2 s):

- the probe stage: ``momentum_ssl.stages.probes.probe`` with the params file's ``probe`` section
  (kNN k 20 and 200, weighted and majority; logistic regression with C chosen on
  ``c_search_max_train`` images and fitted on all 60,000), reading and writing Parquet;
- scikit-learn, the way one would write the same probes by hand:
  ``KNeighborsClassifier(n_neighbors=k, metric="cosine")`` uniform and with exp(cos/T) weights
  for the first k, and ``make_pipeline(StandardScaler(), LogisticRegression(C=C,
  max_iter=10000, tol=tol))`` on all of train in float64, with the C the probe stage chose and
  the params' ``tol``: the converged fit the stage's logistic regression must reproduce (its C
  search is not repeated on this side). scikit-learn's own default (100 iterations) stops
  unconverged on these features.

Goal: the probe stage under 60 s and 4 GB on 2 cores, with the same accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from common import ROOT, machine, measured, print_table

STAGE = """
import json, sys
from momentum_ssl.config import load_params
from momentum_ssl.stages.probes import probe
folder = sys.argv[2]
probe(load_params(sys.argv[1]), "bench", features=folder, out=folder + "/probe.json",
      predictions_out=folder + "/predictions.parquet")
"""

SKLEARN = """
import json, sys, warnings
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from momentum_ssl.plumbing.results import read_features
k, temperature, folder = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
c, tol = float(sys.argv[4]), float(sys.argv[5])
(train, train_y, _), (test, test_y, _) = (read_features(f"{folder}/{split}.parquet")
                                          for split in ("train", "test"))
x, t = train["student"], test["student"]
weighted = lambda d: np.exp((1 - d) / temperature)  # cosine distance -> exp(cos / T)
scores = {f"k{k}_majority": KNeighborsClassifier(k, metric="cosine").fit(x, train_y)
          .score(t, test_y),
          f"k{k}_weighted": KNeighborsClassifier(k, metric="cosine", weights=weighted)
          .fit(x, train_y).score(t, test_y)}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    logistic = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=10000, tol=tol))
    scores["logistic"] = logistic.fit(x.astype(np.float64), train_y).score(
        t.astype(np.float64), test_y)
scores["logistic_iterations"] = int(logistic[-1].n_iter_[0])
scores["logistic_converged"] = not any("converge" in str(w.message) for w in caught)
print(json.dumps(scores))
"""


def random_relu_features(dim: int) -> tuple:
    import numpy as np

    from momentum_ssl.data.datasets import FASHION_MNIST_ROOT, _IDX_FILES, _find_idx, read_idx

    w = np.random.default_rng(0).normal(0, 1 / 28, (784, dim)).astype(np.float32)
    out = []
    for split in ("train", "test"):
        files = [_find_idx(FASHION_MNIST_ROOT, stem) for stem in _IDX_FILES[split]]
        if None in files:
            sys.exit(f"Fashion-MNIST not found in {FASHION_MNIST_ROOT}: sudo apt-get install "
                     "dataset-fashion-mnist")
        images, labels = read_idx(files[0], 3), read_idx(files[1], 1)
        pixels = images.reshape(len(images), -1).astype(np.float32) / 255
        out.append((np.maximum(pixels @ w, 0), labels.astype(np.int64)))
    return out


def run(code: str, *args: str):
    done = measured([sys.executable, "-c", code, *args], cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    if done.returncode:
        sys.exit("\n".join(line for _, line in done.lines))
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args()

    from momentum_ssl.config import load_params
    from momentum_ssl.plumbing.results import write_features

    params = load_params(args.params)
    cfg = params.probe
    (train_x, train_y), (test_x, test_y) = random_relu_features(args.dim)
    with tempfile.TemporaryDirectory() as folder:
        for split, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
            write_features(Path(folder) / f"{split}.parquet", {"student": x}, y,
                           {"params_hash": "bench", "name": "bench"})
        stage = run(STAGE, str(Path(args.params).resolve()), folder)
        ours = json.loads((Path(folder) / "probe.json").read_text())
        k = cfg.knn_k[0]
        reference = run(SKLEARN, str(k), str(cfg.temperature), folder,
                        str(ours["student"]["logistic"]["C"]), str(cfg.tol))
        theirs = json.loads(reference.lines[-1][1])
    ours = ours["student"]
    print(f"probes on {len(train_x):,} x {args.dim} features (random ReLU features of "
          f"Fashion-MNIST), {len(test_x):,} test; {machine()}")
    print_table(
        ["probe", "seconds", "peak GB", f"kNN k{k} weighted", f"kNN k{k} majority", "logistic"],
        [["probe stage", stage.seconds, stage.peak_tree_bytes / 1e9,
          ours["knn"][f"k{k}_weighted"], ours["knn"][f"k{k}_majority"],
          ours["logistic"]["top1"]],
         ["scikit-learn, converged", reference.seconds, reference.peak_tree_bytes / 1e9,
          theirs[f"k{k}_weighted"], theirs[f"k{k}_majority"], theirs["logistic"]]],
        ["{}", "{:.1f}", "{:.2f}", "{:.4f}", "{:.4f}", "{:.4f}"])
    fits = ", ".join(f"C {f['C']} {f['on']} {f['iterations']}" for f in ours["logistic"]["fits"])
    print(f"the probe stage also scores k = {', '.join(map(str, cfg.knn_k[1:]))} and chooses "
          f"C among {list(cfg.logistic_c)} (chose {ours['logistic']['C']}); its L-BFGS "
          f"iterations: {fits}; final gradient {ours['logistic']['grad_norm']:.1e} "
          f"(tol {cfg.tol}), converged: {ours['logistic']['converged']}")
    print(f"scikit-learn's fit of that C: {theirs['logistic_iterations']} lbfgs iterations, "
          f"converged: {theirs['logistic_converged']}; goal: < 60 s and < 4 GB, the same "
          "accuracy")
    print(f"ratio probe stage / scikit-learn: {stage.seconds / reference.seconds:.2f}x "
          f"the time, logistic top-1 {100 * (ours['logistic']['top1'] - theirs['logistic']):+.2f} "
          f"points ({round((ours['logistic']['top1'] - theirs['logistic']) * len(test_y)):+d} "
          "test images)")


if __name__ == "__main__":
    main()
