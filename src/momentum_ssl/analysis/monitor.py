"""The kNN monitor: the probe stage's kNN score of the student (and teacher) while a run trains.

    knn = KnnMonitor.build(params, learner, device)   # inactive when a subset size is 0
    # in the loop, after each optimiser step and EMA update:
    knn.after_step(step, steps_per_epoch, live)       # every eval_every steps, each epoch's end
    knn.end_epoch("byol-full", epoch, epoch_s)        # prints the scores and the monitor's cost
    knn.summarize(live)                               # time/monitor_s

As the online kNN of solo-learn and lightly's kNN callback, so that a run shows within minutes
whether it learns; but scored exactly as the ``probe`` stage scores extracted features, so the
curve ends where the probe starts. A fixed subset of each split, ``pretrain.monitor_train`` and
``pretrain.monitor_test`` images drawn class-stratified with a seed (:func:`stratified_sample`),
is decoded once as the eval loader decodes it (un-augmented, normalised) and kept in memory on
the training device. Each evaluation then costs only the forward passes and the kNN: the learner
goes to eval mode, :class:`~momentum_ssl.core.encoders.Encoders` embeds both subsets under no_grad
(the student's pooled backbone output, and the teacher's when it owns backbone blocks: scopes
full and last_k), every module's train/eval mode is restored, and
:func:`~momentum_ssl.analysis.classifiers.knn_probe` scores the weighted kNN with the first k of
``probe.knn_k`` and ``probe.temperature`` (the report's headline kNN). Eval mode leaves
BatchNorm's running statistics alone and nothing draws random numbers, so a run's weights do
not depend on the monitor. DVCLive logs ``monitor/knn_student`` and ``monitor/knn_teacher`` at
the training step, and ``time/monitor_s`` (set-up and evaluations) in the summary. The set-up
(loading the subsets, importing scikit-learn's neighbours, once a process) is printed once,
apart from each epoch's evaluations.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..config import Params
from ..core.encoders import Encoders
from ..data.augment import EvalTransform
from ..data.loaders import EvalLoader, beton_folder, beton_records, read_labels, read_raw_images
from .classifiers import knn_probe

SPLIT_STREAMS = {"train": 1, "test": 2}  # one seeded stream per split
# Images per forward pass. Eval mode makes features independent of the batch; 512 embedded the
# default's 1,500 images 10% faster than the loader's 128 on the 2-core CPU.
EVAL_BATCH = 512


def stratified_sample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of ``size`` samples, each class's share in proportion to its frequency
    (largest-remainder rounding, ties to the lower class), drawn with ``seed``; every index
    when ``size >= len(labels)``."""
    labels = np.asarray(labels)
    if size >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    share = size * counts / len(labels)
    quota = np.floor(share).astype(np.int64)
    quota[np.argsort(-(share - quota), kind="stable")[:size - quota.sum()]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(chosen))


def load_subset(params: Params, split: str, size: int,
                device: torch.device) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """(images (n, 3, H, W) on ``device``, labels, indices into the split) of the monitor's
    subset of ``split``: the eval loader's images, decoded once (read straight from the file
    when stored raw, :func:`~momentum_ssl.data.loaders.read_raw_images`)."""
    folder = beton_folder(params)
    checked = beton_records(folder, split)  # (path, meta, records): read and checked once
    labels = read_labels(folder, split, checked)
    seed = np.random.SeedSequence([params.seed, SPLIT_STREAMS[split]])
    indices = stratified_sample(labels, size, seed)
    raw = read_raw_images(folder, split, indices, checked)
    if raw is not None:
        meta = checked[1]
        transform = EvalTransform(params.augment.size, meta["mean"], meta["std"])
        images = transform(torch.from_numpy(raw).permute(0, 3, 1, 2))
        return images.to(device), labels[indices], indices
    parts, seen = [], []
    for x, y in EvalLoader(folder, params.augment.size, params.loader, split, "cpu", indices):
        parts.append(x.clone())  # FFCV reuses its output buffers
        seen.append(y.numpy().reshape(-1).copy())
    if not np.array_equal(np.concatenate(seen), labels[indices]):
        raise RuntimeError(f"the eval loader's labels of {split} differ from the .beton's "
                           "metadata: a bug in read_labels or EvalLoader")
    return torch.cat(parts).to(device), labels[indices], indices


class KnnMonitor:
    def __init__(self, learner: torch.nn.Module, train: tuple[torch.Tensor, np.ndarray],
                 test: tuple[torch.Tensor, np.ndarray], k: int, temperature: float,
                 eval_every: int = 0, batch_size: int = EVAL_BATCH, setup_s: float = 0.0):
        self.learner, self.encoders = learner, Encoders(learner)
        (self.train_x, self.train_y), (self.test_x, self.test_y) = train, test
        self.k, self.temperature, self.key = k, temperature, f"k{k}_weighted"
        self.eval_every, self.batch_size = eval_every, batch_size
        self.active = True
        self.setup_s, self.seconds, self.evaluations = setup_s, setup_s, 0
        self._setup_printed = False
        self.latest: dict[str, float] = {}
        self._epoch_s = 0.0

    @classmethod
    def build(cls, params: Params, learner: torch.nn.Module, device: torch.device,
              active: bool = True) -> "KnnMonitor":
        """The monitor of ``params.pretrain``; inactive (every call returns at once) when a
        subset size is 0 or ``active`` is False (ranks other than 0)."""
        cfg = params.pretrain
        if not active or cfg.monitor_train == 0 or cfg.monitor_test == 0:
            return _Inactive()
        started = time.perf_counter()
        # knn_probe's scikit-learn, imported here (about 0.7 s on 2 cores, once a process) so
        # that the set-up, not the first evaluation, pays for it: each epoch's line shows what
        # the evaluations cost, and the set-up is printed once beside it
        import sklearn.neighbors  # noqa: F401
        train = load_subset(params, "train", cfg.monitor_train, device)
        test = load_subset(params, "test", cfg.monitor_test, device)
        return cls(learner, train[:2], test[:2], params.probe.knn_k[0],
                   params.probe.temperature, cfg.eval_every, EVAL_BATCH,
                   time.perf_counter() - started)

    def due(self, step: int, steps_per_epoch: int) -> bool:
        """After step ``step`` (0-based): every ``eval_every`` steps and at each epoch's end."""
        return ((self.eval_every > 0 and step % self.eval_every == 0)
                or (step + 1) % steps_per_epoch == 0)

    @torch.no_grad()
    def _embed(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self.encoders.names}
        for i in range(0, len(images), self.batch_size):
            for name, f in self.encoders(images[i:i + self.batch_size]).items():
                parts[name].append(f.float().cpu().numpy())
        return {name: np.concatenate(p) for name, p in parts.items()}

    def embed(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Features of the train and test subsets per encoder, in eval mode; every module's
        mode is restored afterwards."""
        modes = [(m, m.training) for m in self.learner.modules()]
        self.learner.eval()
        try:
            return self._embed(self.train_x), self._embed(self.test_x)
        finally:
            for module, training in modes:
                module.training = training

    def evaluate(self) -> dict[str, float]:
        """{"knn_student": top-1, "knn_teacher": ...} on the test subset."""
        started = time.perf_counter()
        train, test = self.embed()
        scores = {f"knn_{name}": knn_probe(train[name], self.train_y, test[name], self.test_y,
                                           (self.k,), self.temperature)[self.key]
                  for name in train}
        took = time.perf_counter() - started
        self.seconds, self._epoch_s, self.evaluations = (self.seconds + took,
                                                         self._epoch_s + took,
                                                         self.evaluations + 1)
        self.latest = scores
        return scores

    def after_step(self, step: int, steps_per_epoch: int, live) -> None:
        """Evaluate and log at training step ``step`` when it is due."""
        if not self.due(step, steps_per_epoch):
            return
        scores = self.evaluate()
        if live is not None:
            live.step = step
            for name, value in scores.items():
                live.log_metric(f"monitor/{name}", round(value, 6))

    def end_epoch(self, name: str, epoch: int, epoch_s: float) -> str:
        """Print the last scores and the monitor's share of the epoch's ``epoch_s`` seconds."""
        took, self._epoch_s = self._epoch_s, 0.0
        scores = ", ".join(f"{key[4:]} {100 * value:.2f}" for key, value in self.latest.items())
        line = (f"{name} epoch {epoch}: kNN monitor ({self.key}, {len(self.train_y)} train / "
                f"{len(self.test_y)} test images) {scores}; it took {took:.2f} s of the "
                f"epoch's {epoch_s:.1f} s ({100 * took / max(epoch_s, 1e-9):.1f}%)")
        if not self._setup_printed:  # once a process: loading the subsets, importing
            line += f", after a set-up of {self.setup_s:.2f} s"
            self._setup_printed = True
        print(line, flush=True)
        return line

    def summarize(self, live) -> None:
        live.log_metric("time/monitor_s", round(self.seconds, 2), plot=False)


class _Inactive:
    """The monitor turned off: the loop's calls cost nothing."""

    active = False

    def after_step(self, step: int, steps_per_epoch: int, live) -> None:
        pass

    def end_epoch(self, name: str, epoch: int, epoch_s: float) -> None:
        pass

    def summarize(self, live) -> None:
        pass
