"""Claims judged from seeds: each claim of params.yaml's ``claims`` (config.ClaimConfig) against
the per-seed metrics of the grid's runs (docs/STATISTICS.md).

    values = {"byol-full": {0: {"knn_student": 0.77, ...}, 1: {...}}, ...}   # run -> seed -> metric
    verdicts = judge(params.claims, values, unfit={"byol-full": "not shown to have learned: ..."})
    for verdict in plan(verdicts):   # the seeds an inconclusive row needs: only for rows shown
        print(verdict.label, verdict.status, verdict.p, verdict.p_adjusted, verdict.seeds_needed)

``values[run][seed]`` maps metric names to numbers, and ``cv`` and ``rel_change`` to mappings of
block names to numbers (telemetry.py). ``unfit`` names the runs no claim may be judged on (not
shown to have learned, or collapsed): a row that compares one is **not testable**, never a
verdict.

Each claim has one primary row (its first listed method's runs; for ``{other}``, the claim
against every other method at once, which holds only if each comparison does); the other
methods' rows are secondary. Holm's adjustment runs over the primary rows, and separately over
the secondary ones (a second family: across the whole table the chance of any false verdict is
up to 2 alpha), and every verdict is decided on the adjusted p-value. ``alpha`` is always the
family's level; Holm's first step, alpha / m, is ``Verdict.first_step``. The maths is
stats.py's; this module expands the claims' templates, pairs the seeds and adjusts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from itertools import combinations

from ..config import BLOCK_METRICS, METHODS, ClaimConfig
from .stats import (ALPHA, CONTRADICTED, INCONCLUSIVE, SUPPORTED, Effect, Rule, Test,
                    depth_contrast, detectable, direction, equivalence, final_blocks, holm,
                    intersection, mean_rho, no_spread, noninferiority, one_sample, outlier,
                    paired, sd_upper, seeds_needed)

NOT_TESTED = "not tested"      # the grid lacks the runs, or they logged no such metric
NOT_TESTABLE = "not testable"  # the runs exist, but one was not shown to have learned

Values = Mapping[str, Mapping[int, Mapping]]


@dataclass(frozen=True)
class Verdict:
    """One judged claim row: the runs it contrasted, the paired effect over their common seeds
    (a - b; a's own values without b; for a rising claim the final blocks minus the earlier
    ones), the test, the raw and Holm-adjusted p-values, and ``first_step``: Holm's first-step
    level alpha / m of the row's family (m its tested rows), the level that suffices whatever
    the other rows give. A composite row (every pair, against every other method, a dominant
    claim's contrasts) keeps its component rows' effects in ``parts``. :func:`plan` adds, for
    an inconclusive row, the seeds that would give 80% power at the claim's declared effect
    (from the observed sd, a plug-in, and from its 80% upper bound) and the smallest effect its
    seeds detect."""

    claim: ClaimConfig
    a: str
    b: str | None
    status: str
    effect: Effect | None = None
    note: str = ""
    primary: bool = True
    test: Test | None = None
    rho: float | None = None  # a rising claim's mean Spearman rho with depth (a description)
    p: float | None = None
    p_adjusted: float | None = None
    parts: tuple[Effect, ...] = ()
    first_step: float | None = None
    seeds_needed: int | None = None
    seeds_needed_upper: int | None = None
    detectable: float | None = None
    outlier: str = ""  # the note's outlying-seed flag (stats.outlier), '' when none

    @property
    def label(self) -> str:
        return f"{self.a} vs {self.b}" if self.b else self.a


@dataclass(frozen=True)
class Learning:
    """Whether a run has shown that it learned: its student's kNN minus the random-init
    backbone's at the same seed (``effect``, 95% interval), and the seeds at which the health
    telemetry found its projector output collapsed. It has when that interval lies above zero
    (a one-sided test at 0.025) and it never collapsed; a claim that compares a run that has
    not is not testable. Not shown is not "did not learn": at 3 seeds a run that truly gains
    1 sd over random-init is not shown 82% of the time, so the reason gives the gain the guard
    detects with 80% power at the run's seeds (``detects``)."""

    run: str
    effect: Effect | None
    collapsed: tuple[int, ...] = ()
    invalid: str = ""  # why the differences cannot be judged: a NaN, or no spread

    @property
    def learned(self) -> bool:
        s = None if self.effect is None else self.effect.summary
        return (not self.collapsed and not self.invalid and s is not None
                and s.low is not None and s.low > 0)

    @property
    def detects(self) -> float | None:
        """The gain over random-init the guard finds with 80% power at this run's seeds and
        spread (None without a spread)."""
        s = None if self.effect is None else self.effect.summary
        if s is None or not s.std or s.n < 2:
            return None
        return detectable("greater", s.n, s.std)

    @property
    def reason(self) -> str:
        """'' when it learned, else why it is not shown to have (as a claim's note names it)."""
        if self.learned:
            return ""
        why = []
        s = None if self.effect is None else self.effect.summary
        if self.invalid:
            why.append(self.invalid)
        elif s is None:
            why.append("no seed in common with the random-init baseline")
        elif s.low is None:
            why.append(f"kNN {100 * s.mean:+.2f} points over random-init at one seed: no "
                       "interval")
        elif s.low <= 0:
            why.append(f"kNN {100 * s.mean:+.2f} [{100 * s.low:+.2f}, {100 * s.high:+.2f}] "
                       "points over random-init: the interval does not lie above zero (at "
                       f"{s.n} seeds the guard detects a gain of {100 * self.detects:.2f} "
                       "points with 80% power)")
        if self.collapsed:
            seeds = ", ".join(map(str, self.collapsed))
            why.append(f"collapsed at seed{'s' * (len(self.collapsed) > 1)} {seeds}")
        return "not shown to have learned: " + "; ".join(why)


def learning(values: Values, baseline: Mapping[int, Mapping],
             collapsed: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, Learning]:
    """Each run's :class:`Learning` from its per-seed ``knn_student`` and the random-init
    baseline's (``baseline``: seed -> metrics); ``collapsed``: run -> seeds found collapsed."""
    collapsed = collapsed or {}
    random = {seed: m["knn_student"] for seed, m in baseline.items()}
    out = {}
    for run, seeds in values.items():
        student = {seed: m["knn_student"] for seed, m in seeds.items()}
        common = set(student) & set(random)
        values_ = [float(v[s]) for v in (student, random) for s in common]
        invalid, effect = "", None
        if not all(math.isfinite(v) for v in values_):
            invalid = "a value is not finite"  # a NaN kNN cannot be paired; say so, no crash
        elif common:
            effect = paired(student, random)
            # A zero-width interval (two seeds of +1.0) is not evidence of learning; the
            # seeds rule (an interval needs two) stays as it was.
            if len(common) >= 2 and no_spread(effect.differences):
                invalid = "the differences have no spread (identical at every seed)"
        out[run] = Learning(run, effect, tuple(sorted(collapsed.get(run, ()))), invalid)
    return out


def _method_of(run: str) -> str | None:
    return next((m for m in METHODS if run.startswith(f"{m}-")), None)


def _matches(template: str, runs: Mapping) -> list[str]:
    """The runs a filled template names: itself, or with ``{k}`` every last_k run."""
    if "{k}" not in template:
        return [template] if template in runs else []
    pattern = re.escape(template).replace(re.escape("{k}"), r"[1-9][0-9]*")
    return sorted((r for r in runs if re.fullmatch(pattern, r)), key=lambda r: (len(r), r))


def expand(claim: ClaimConfig, values: Values) -> list[tuple[str, str | None]]:
    """The (a, b) run pairs a claim stands for in this grid, the primary method's first;
    empty when none is in it."""
    methods = claim.methods or METHODS
    fills = [m for m in methods] if "{method}" in claim.a else [""]
    pairs = []
    for i, method in enumerate(fills):
        for a in _matches(claim.a.replace("{method}", method), values):
            if claim.b is None:
                pairs.append((a, None))
                continue
            b_template = claim.b.replace("{method}", method)
            if "{other}" in b_template:
                own = method or _method_of(a)
                # with {method} in a: each unordered pair once, in the listed order
                others = (fills[i + 1:] if method else [m for m in METHODS if m != own])
                bs = [r for o in others for r in _matches(b_template.replace("{other}", o),
                                                          values)]
            else:
                bs = _matches(b_template, values)
            pairs += [(a, b) for b in bs]
    return pairs


def _per_seed(values: Values, run: str, claim: ClaimConfig) -> dict[int, float]:
    """Run's metric per seed; a per-block metric averaged over the claim's blocks (nan when a
    block's value is)."""
    out = {}
    for seed, metrics in values[run].items():
        if claim.metric in BLOCK_METRICS:
            blocks = metrics.get(claim.metric) or {}
            if all(b in blocks for b in claim.blocks):
                out[seed] = sum(float(blocks[b]) for b in claim.blocks) / len(claim.blocks)
        elif metrics.get(claim.metric) is not None:
            out[seed] = float(metrics[claim.metric])
    return out


def _test(claim: ClaimConfig, effect: Effect, alpha: float = ALPHA) -> Test:
    """The row's test, its interval at 1 - alpha whatever the kind: a direction claim is
    two-sided at alpha (a rising claim's depth contrast and a dominant claim's contrasts are
    tested > 0); an equivalence or non-inferiority claim and its opposite are each one-sided
    at alpha / 2 (so TOST at alpha / 2 reads the same 1 - alpha interval), because at the
    margin both of their nulls hold and either verdict would be false (:func:`_row_p`)."""
    if claim.kind == "equivalent":
        return equivalence(effect, claim.margin, alpha / 2)
    if claim.kind == "noninferior":
        return noninferiority(effect, claim.margin, alpha / 2)
    side = "greater" if claim.kind in ("dominant", "rising") else claim.kind
    return direction(effect, side, alpha)


ONE_SIDED = ("equivalent", "noninferior")  # kinds whose p and p_against are one-sided


def _row_p(test: Test) -> float | None:
    """The p-value of any verdict on the row, the claim's or its opposite's. A direction
    test's two p-values are already two-sided. The others are doubled: an equivalence's or
    non-inferiority's two nulls (mean <= -margin, mean >= -margin) both hold at the margin
    itself, where the smaller of two tests at alpha would err with chance 2 alpha."""
    if test.p is None:
        return None
    if test.kind in ONE_SIDED:
        return min(1.0, 2 * min(test.p, test.p_against))
    return min(test.p, test.p_against)


def _unfit_note(runs: list[str], unfit: Mapping[str, str]) -> str:
    return "; ".join(f"{run} {unfit[run]}" for run in dict.fromkeys(runs) if run in unfit)


def _rising_row(claim: ClaimConfig, a: str, values: Values, primary: bool,
                alpha: float = ALPHA) -> Verdict:
    """Whether run a's per-block metric rises with depth: per seed, the mean of the final
    blocks minus that of the earlier ones (stats.depth_contrast), tested > 0 by a one-sample
    t; the mean Spearman rho with depth is a description."""
    per_block = {}
    for seed, metrics in values[a].items():
        blocks = metrics.get(claim.metric) or {}
        if all(block in blocks for block in claim.blocks):
            per_block[seed] = [float(blocks[block]) for block in claim.blocks]
    if not per_block:
        return Verdict(claim, a, None, NOT_TESTED, primary=primary,
                       note=f"{a} logged no {claim.metric} for {list(claim.blocks)}")
    bad = [f"{a} seed {seed}" for seed, row in sorted(per_block.items())
           if not all(map(math.isfinite, row))]
    if bad:
        return Verdict(claim, a, None, NOT_TESTED, primary=primary,
                       note=f"no verdict: a block's value is not finite at {', '.join(bad)}")
    if all(len(set(row)) == 1 for row in per_block.values()):
        return Verdict(claim, a, None, NOT_TESTED, primary=primary,
                       note="no verdict: every block has the same value at every seed: no "
                            "order to test")
    final = final_blocks(len(claim.blocks))
    rho = mean_rho(per_block)
    note = (f"mean of the final {final} blocks ({', '.join(claim.blocks[-final:])}) minus "
            f"the earlier {len(claim.blocks) - final}"
            + ("" if rho is None else f"; mean Spearman rho with depth {rho:+.2f}"))
    row = _tested(claim, a, None, depth_contrast(per_block), values, primary, note, alpha)
    return replace(row, rho=rho)


def _pair_row(claim: ClaimConfig, a: str, b: str | None, values: Values, primary: bool,
              alpha: float = ALPHA) -> Verdict:
    """a - b on the claim's metric over their common seeds (a's own values without b)."""
    runs = [a] if b is None else [a, b]
    first = _per_seed(values, a, claim)
    second = {seed: 0.0 for seed in first} if b is None else _per_seed(values, b, claim)
    if not set(first) & set(second):
        return Verdict(claim, a, b, NOT_TESTED, primary=primary,
                       note=f"no seed with {claim.metric} for {' and '.join(runs)}")
    bad = _not_finite({a: first, **({b: second} if b else {})})
    if bad:
        return Verdict(claim, a, b, NOT_TESTED, primary=primary, note=bad)
    return _tested(claim, a, b, paired(first, second), values, primary, alpha=alpha)


def _row(claim: ClaimConfig, a: str, b: str | None, values: Values, unfit: Mapping[str, str],
         primary: bool, alpha: float = ALPHA) -> Verdict:
    """One expanded row: not testable when it compares an unfit run, else its test."""
    runs = [a] if b is None else [a, b]
    if any(r in unfit for r in runs):
        return Verdict(claim, a, b, NOT_TESTABLE, note=_unfit_note(runs, unfit),
                       primary=primary)
    if claim.kind == "rising":
        return _rising_row(claim, a, values, primary, alpha)
    return _pair_row(claim, a, b, values, primary, alpha)


def _not_finite(per_run: Mapping[str, Mapping[int, float]]) -> str:
    """'no verdict: ...' naming each run and seed whose value is nan or infinite, else ''."""
    cells = [f"{run} seed {seed}" for run, seeds in per_run.items()
             for seed, v in sorted(seeds.items()) if not math.isfinite(v)]
    return f"no verdict: not a finite value at {', '.join(cells)}" if cells else ""


def _outlier_note(effect: Effect, what: str = "difference") -> str:
    index = outlier(effect.differences)
    if index is None:
        return ""
    return (f"seed {effect.seeds[index]}'s {what} is an outlier (Grubbs, 5%): the t test "
            "assumes normal differences, read the verdict with care")


def _tested(claim: ClaimConfig, a: str, b: str | None, effect: Effect, values: Values,
            primary: bool, note: str = "", alpha: float = ALPHA) -> Verdict:
    test = _test(claim, effect, alpha)
    notes, flagged = [note] if note else [], ""
    if test.reason:
        notes.append(f"no verdict: {test.reason}")
    elif flagged := _outlier_note(effect):
        notes.append(flagged)
    if claim.cost and b is not None:
        cost_a, cost_b = (_per_seed(values, r, replace(claim, metric="step_s")) for r in (a, b))
        common = set(cost_a) & set(cost_b)
        if common:
            ratio = sum(cost_a[s] for s in common) / sum(cost_b[s] for s in common)
            notes.append(f"step time {a} / {b} = {ratio:.2f}")
    return Verdict(claim, a, b, INCONCLUSIVE, effect, "; ".join(notes), primary, test,
                   p=_row_p(test), outlier=flagged)


def _dominant(claim: ClaimConfig, values: Values, unfit: Mapping[str, str],
              alpha: float = ALPHA) -> Verdict:
    """The momentum effect exceeds every difference between methods: with G the mean over
    methods of (a_m - b_m), G > |a_i - a_j| for every pair, i.e. both per-seed contrasts
    G - (a_i - a_j) and G + (a_i - a_j) > 0. Each contrast is a fixed linear combination of
    one seed's runs, so each gets its own one-sample t; the claim needs all of them
    (:func:`stats.intersection`: the largest p, Bonferroni on the smallest opposite p). The
    per-seed G - max |a_i - a_j| that stood here took a max over noisy values, whose mean lies
    below the quantity claimed: it printed a wrong "contradicted" up to 0.69 of the time."""
    methods = [m for m in (claim.methods or METHODS)
               if claim.a.replace("{method}", m) in values
               and claim.b.replace("{method}", m) in values]
    a_runs = [claim.a.replace("{method}", m) for m in methods]
    b_runs = [claim.b.replace("{method}", m) for m in methods]
    label_a, label_b = ", ".join(a_runs) or claim.a, ", ".join(b_runs) or claim.b
    if len(methods) < 2:
        return Verdict(claim, claim.a, claim.b, NOT_TESTED,
                       note="needs two methods with both runs in the grid, "
                            f"has {len(methods)}")
    if any(r in unfit for r in a_runs + b_runs):
        return Verdict(claim, label_a, label_b, NOT_TESTABLE,
                       note=_unfit_note(a_runs + b_runs, unfit))
    per_run = {r: _per_seed(values, r, claim) for r in a_runs + b_runs}
    seeds = sorted(set.intersection(*(set(v) for v in per_run.values())))
    if not seeds:
        return Verdict(claim, label_a, label_b, NOT_TESTED,
                       note=f"no seed with {claim.metric} for every run")
    bad = _not_finite(per_run)
    if bad:
        return Verdict(claim, label_a, label_b, NOT_TESTED, note=bad)
    gain = {s: sum(per_run[a][s] - per_run[b][s] for a, b in zip(a_runs, b_runs)) / len(a_runs)
            for s in seeds}
    contrasts = {}
    for x, y in combinations(a_runs, 2):
        for sign, name in ((-1, f"({x} - {y})"), (1, f"({y} - {x})")):
            contrasts[f"mean(a - b) - {name}"] = one_sample(
                {s: gain[s] + sign * (per_run[x][s] - per_run[y][s]) for s in seeds})
    tests = {name: _test(claim, effect, alpha) for name, effect in contrasts.items()}
    test = intersection(list(tests.values()))
    weakest = next(name for name, t in tests.items() if t is test or t.p == test.p)
    effect = contrasts[weakest]
    if test.reason:
        note = f"no verdict: {test.reason}"
    else:
        flagged = "; ".join(filter(None, (_outlier_note(e, f"contrast {name}")
                                          for name, e in contrasts.items())))
        note = "; ".join(filter(None, (
            f"the weakest of {len(contrasts)} contrasts mean(a - b) over methods +- (a_i - a_j) "
            f"between methods' a runs: {weakest}; holds only if each does", flagged)))
    return Verdict(claim, label_a, label_b, INCONCLUSIVE, effect, note, True, test,
                   p=_row_p(test), parts=tuple(contrasts.values()))


def _weakest(claim: ClaimConfig, rows: list[Verdict]) -> Verdict:
    """The claim against every other method at once (an intersection-union test,
    stats.intersection): it holds only if every row does, so its p is the largest row p (no
    adjustment needed); it fails if any row fails, so the opposite p is the smallest, times the
    number of rows (Bonferroni)."""
    if any(r.status == NOT_TESTABLE for r in rows):
        bad = [r for r in rows if r.status == NOT_TESTABLE]
        return replace(bad[0], primary=True, note="; ".join(dict.fromkeys(r.note for r in bad)))
    if any(r.test is None or r.test.p is None for r in rows):
        bad = next(r for r in rows if r.test is None or r.test.p is None)
        return replace(bad, primary=True, p=None)
    test = intersection([r.test for r in rows])
    worst = next(r for r in rows if r.test.p == test.p)
    note = (f"the weakest of {len(rows)} comparisons ({', '.join(r.label for r in rows)}); "
            "holds only if each does")
    flagged = [f"{r.label}: {r.outlier}" for r in rows if r.outlier]
    return replace(worst, primary=True, test=test, p=_row_p(test),
                   parts=tuple(r.effect for r in rows),
                   note="; ".join(dict.fromkeys(n for n in (note, worst.note, *flagged) if n)))


def judge_one(claim: ClaimConfig, values: Values,
              unfit: Mapping[str, str] | None = None, alpha: float = ALPHA) -> list[Verdict]:
    """One claim's rows, primary first, before Holm's adjustment (statuses not yet decided:
    tested rows read inconclusive until :func:`judge` adjusts them)."""
    unfit = unfit or {}
    if claim.kind == "dominant":
        return [_dominant(claim, values, unfit, alpha)]
    pairs = expand(claim, values)
    if not pairs:
        runs = claim.a if claim.b is None else f"{claim.a} and {claim.b}"
        templated = any(t in runs for t in ("{method}", "{other}", "{k}"))
        return [Verdict(claim, claim.a, claim.b, NOT_TESTED,
                        note=f"no method has {runs} in the grid" if templated
                        else f"the grid lacks {runs}")]
    rows = [_row(claim, a, b, values, unfit, primary=False, alpha=alpha) for a, b in pairs]
    if claim.b is not None and "{other}" in claim.b:
        return [_weakest(claim, rows), *rows]
    return [replace(rows[0], primary=True), *rows[1:]]


def _adjust(rows: list[Verdict], alpha: float) -> list[Verdict]:
    """Holm over the rows that have a p-value, each decided on its adjusted p and given its
    family's first-step level alpha / m (the level its seeds needed are stated at)."""
    tested = [i for i, r in enumerate(rows) if r.p is not None]
    adjusted = holm([rows[i].p for i in tested])
    out = list(rows)
    first_step = alpha / max(1, len(tested))
    for i, p_adj in zip(tested, adjusted):
        r = rows[i]
        status = INCONCLUSIVE
        if p_adj < alpha:
            status = SUPPORTED if r.test.p <= r.test.p_against else CONTRADICTED
        out[i] = replace(r, status=status, p_adjusted=p_adj, first_step=first_step)
    return out


def judge(claims: tuple[ClaimConfig, ...], values: Values,
          unfit: Mapping[str, str] | None = None, alpha: float = ALPHA) -> list[Verdict]:
    """Every claim's rows in the claims' order (each claim's primary row first), decided on
    Holm-adjusted p-values at the family level ``alpha``: over the primary rows, and over the
    secondary rows apart. The seeds needed are :func:`plan`'s, for the rows a report shows."""
    rows = [v for claim in claims for v in judge_one(claim, values, unfit, alpha)]
    primary = _adjust([r for r in rows if r.primary], alpha)
    secondary = _adjust([r for r in rows if not r.primary], alpha)
    done = iter(primary), iter(secondary)
    return [next(done[0]) if r.primary else next(done[1]) for r in rows]


RULE_KINDS = {"greater": "greater", "less": "greater", "dominant": "greater",
              "rising": "greater", "noninferior": "noninferior", "equivalent": "equivalent"}


def plan(verdicts: list[Verdict]) -> list[Verdict]:
    """Each inconclusive row with its seeds needed for 80% power at the claim's declared effect
    at Holm's first-step level (stats.seeds_needed, by bisection), from the observed sd (a
    plug-in figure) and from its 80% upper bound (stats.sd_upper), and the smallest effect its
    seeds detect. Every test of a row must reject at the one-sided level first_step / 2: a
    single row's power is the non-central t's; a composite row's (every pair, against every
    other method, a dominant claim's contrasts) is simulated for the whole rule from the
    covariance of its rows' differences (stats.Rule), since every row must pass."""
    out = []
    for r in verdicts:
        if (r.status != INCONCLUSIVE or r.test is None or r.effect is None
                or r.first_step is None):
            out.append(r)
            continue
        s = r.effect.summary
        if not s.std or s.n < 2:  # no spread to plan from
            out.append(r)
            continue
        planned = r.claim.planned_effect
        kind = RULE_KINDS[r.claim.kind]
        upper = sd_upper(1.0, s.n)  # the sd's 80% upper bound, as a factor
        if len(r.parts) > 1:
            rule = Rule.from_rows(kind, r.parts, r.first_step / 2)
            needed = (rule.seeds_needed(planned), rule.scaled(upper).seeds_needed(planned)
                      ) if planned else (None, None)
            smallest = rule.detectable(s.n)
        else:
            # power() takes a direction test's two-sided level, a one-sided kind's own
            level = r.first_step / 2 if kind in ONE_SIDED else r.first_step
            needed = (seeds_needed(kind, s.std, planned, level),
                      seeds_needed(kind, upper * s.std, planned, level)) if planned else (None,
                                                                                           None)
            smallest = detectable(kind, s.n, s.std, level)
        out.append(replace(r, seeds_needed=needed[0], seeds_needed_upper=needed[1],
                           detectable=smallest))
    return out


__all__ = ["Learning", "NOT_TESTABLE", "NOT_TESTED", "RULE_KINDS", "Verdict", "expand", "judge",
           "judge_one", "learning", "plan"]
