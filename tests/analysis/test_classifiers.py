"""The probes of frozen features against scikit-learn called directly: weighted and majority
kNN, and the logistic regression with its C search and convergence record."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conftest import blobs
from momentum_ssl.analysis.classifiers import knn_probe, logistic_probe


@pytest.fixture(scope="module")
def data():
    x, y = blobs(700)
    return x[:500], y[:500], x[500:], y[500:]


@pytest.mark.parametrize("k", [5, 20])
def test_knn_matches_scikit_learn_called_directly(data, k):
    train_x, train_y, test_x, test_y = data
    ours = knn_probe(train_x, train_y, test_x, test_y, ks=(k,), temperature=0.07)
    majority = KNeighborsClassifier(k, metric="cosine", algorithm="brute")
    weighted = KNeighborsClassifier(k, metric="cosine", algorithm="brute",
                                    weights=lambda d: np.exp((1 - d) / 0.07))
    assert ours[f"k{k}_majority"] == majority.fit(train_x, train_y).score(test_x, test_y)
    assert ours[f"k{k}_weighted"] == weighted.fit(train_x, train_y).score(test_x, test_y)
    assert 0.5 < ours[f"k{k}_weighted"] <= 1.0


def test_weighted_and_majority_votes_differ_where_they_should():
    # one very close neighbour of class 1 against two far ones of class 0
    train_x = np.array([[1.0, 0.0], [0.0, 1.0], [0.05, 1.0]], dtype=np.float32)
    train_y = np.array([1, 0, 0])
    test_x = np.array([[1.0, 0.01]], dtype=np.float32)
    scores = knn_probe(train_x, train_y, test_x, np.array([1]), ks=(3,), temperature=0.07)
    assert scores == {"k3_weighted": 1.0, "k3_majority": 0.0}


def converged(c):
    """scikit-learn's logistic regression run to convergence in float64: the reference."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=10000, tol=1e-10))


def within_one_image(score, reference, n):
    return abs(score - reference) * n <= 1 + 1e-9


def test_logistic_matches_scikit_learn_with_the_chosen_c(data):
    train_x, train_y, test_x, test_y = data
    x64, t64 = train_x.astype(np.float64), test_x.astype(np.float64)
    ours = logistic_probe(train_x, train_y, test_x, test_y, cs=(0.001, 0.1, 10.0),
                          val_fraction=0.2, max_iter=500, seed=0)
    fit, val = train_test_split(np.arange(500), test_size=0.2, stratify=train_y, random_state=0)
    val_scores = [converged(c).fit(x64[fit], train_y[fit]).score(x64[val], train_y[val])
                  for c in (0.001, 0.1, 10.0)]
    best = (0.001, 0.1, 10.0)[int(np.argmax(val_scores))]
    assert ours["C"] == best and ours["converged"]
    assert within_one_image(ours["top1"], converged(best).fit(x64, train_y).score(t64, test_y),
                            len(test_y))
    assert within_one_image(ours["val_top1"], max(val_scores), len(val))
    # every fit reports how it ended: the C search in ascending C, then the final fit
    assert [(f["C"], f["on"]) for f in ours["fits"]] == [
        (0.001, "search"), (0.1, "search"), (10.0, "search"), (best, "train")]
    for f in ours["fits"]:
        assert f["converged"] and f["grad_norm"] <= 1e-6 and 0 <= f["iterations"] <= 500
    assert ours["fits"][-1]["iterations"] == ours["iterations"] > 0
    assert ours["grad_norm"] == ours["fits"][-1]["grad_norm"]


def test_logistic_says_when_its_fit_stopped_unconverged(data):
    train_x, train_y, test_x, test_y = data
    ours = logistic_probe(train_x, train_y, test_x, test_y, cs=(10.0,), val_fraction=0.2,
                          max_iter=2, seed=0)
    assert not ours["converged"] and ours["iterations"] == 2 and ours["grad_norm"] > 1e-6
    assert not any(f["converged"] for f in ours["fits"])


def test_logistic_chooses_c_on_a_subsample_and_refits_on_all_of_train(data):
    train_x, train_y, test_x, test_y = data
    cs = (0.001, 0.1, 10.0)
    x64, t64 = train_x.astype(np.float64), test_x.astype(np.float64)
    ours = logistic_probe(train_x, train_y, test_x, test_y, cs=cs, val_fraction=0.25,
                          max_iter=500, search_max_train=200, seed=0)
    search, _ = train_test_split(np.arange(500), train_size=200, stratify=train_y,
                                 random_state=0)
    search = np.sort(search)
    fit, val = train_test_split(search, test_size=0.25, stratify=train_y[search],
                                random_state=0)
    val_scores = [converged(c).fit(x64[fit], train_y[fit]).score(x64[val], train_y[val])
                  for c in cs]
    best = cs[int(np.argmax(val_scores))]
    assert ours["C"] == best and within_one_image(ours["val_top1"], max(val_scores), len(val))
    # the chosen C is fitted on all 500 train images, not on the 200 that chose it
    assert within_one_image(ours["top1"], converged(best).fit(x64, train_y).score(t64, test_y),
                            len(test_y))
    assert ours["converged"]


@pytest.mark.parametrize("per_class, val_fraction, search, says", [
    (1, 0.5, None, "class 0 has 1"),                   # a class with one image cannot stratify
    (3, 0.1, None, "probes.val_fraction"),             # 30 images: 3 held out for 10 classes
    (20, 0.1, 5, "probes.c_search_max_train"),         # a C search on 5 images of 10 classes
])
def test_logistic_refuses_a_validation_split_too_small_for_the_classes_in_one_line(
        per_class, val_fraction, search, says):
    from momentum_ssl.config import ConfigError

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), per_class)
    x = rng.normal(size=(len(y), 4)).astype(np.float32)
    with pytest.raises(ConfigError, match=says) as caught:
        logistic_probe(x, y, x, y, val_fraction=val_fraction, search_max_train=search)
    assert "\n" not in str(caught.value) and "data.train_per_class" in str(caught.value)
