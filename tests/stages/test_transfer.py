import json

import pytest

from momentum_ssl.plumbing.results import transfer_summary
from momentum_ssl.stages.pretrain import pretrain
from momentum_ssl.stages.transfer import transfer


def test_transfer_probes_the_frozen_student_on_each_target(tiny):
    run = next(r for r in tiny.grid if r.name == "byol-full")
    pretrain(tiny, run)
    out = transfer(tiny, "byol-full")
    metrics = json.loads(out.read_text())
    digits = metrics["targets"]["digits"]
    assert (digits["num_train"], digits["num_test"]) == (100, 50)  # 10 and 5 per class
    assert list(k for k in digits if isinstance(digits[k], dict)) == ["student"]
    assert 0 <= digits["student"]["logistic"]["top1"] <= 1
    assert transfer_summary(out) == {"digits": digits["student"]["knn"]["k5_weighted"]}


@pytest.mark.parametrize("baseline", ["raw", "random"])
def test_transfer_baselines(tiny, baseline):
    metrics = json.loads(transfer(tiny, baseline).read_text())
    scores = metrics["targets"]["digits"]
    encoder = "raw" if baseline == "raw" else "student"
    # 10 images per class: raw pixels are a strong digits probe, a random 8-wide network a
    # weak one, but both well above chance (10%)
    assert scores[encoder]["knn"]["k5_weighted"] > (0.5 if baseline == "raw" else 0.2)
