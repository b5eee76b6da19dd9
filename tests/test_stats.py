"""seqlab.tools.stats against hand-computed values (t interval, Welch, Holm)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seqlab.tools import stats


def test_mean_ci_is_students_t_interval():
    m, lo, hi = stats.mean_ci([1, 2, 3, 4, 5])
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, 4) * s / sqrt(n)
    assert m == 3 and lo == pytest.approx(3 - half) and hi == pytest.approx(3 + half)
    m, lo, hi = stats.mean_ci([0.7])
    assert m == 0.7 and math.isnan(lo) and math.isnan(hi)  # one seed: no interval


def test_welch_matches_its_formula():
    a, b = np.array([1.0, 2.0, 4.0, 7.0]), np.array([3.0, 5.0, 6.0, 8.0, 9.0])
    va, vb = a.var(ddof=1) / 4, b.var(ddof=1) / 5
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 4)  # Welch-Satterthwaite
    from scipy import stats as st

    got_t, got_p = stats.welch(a, b)
    assert got_t == pytest.approx(t) and got_p == pytest.approx(2 * st.t.sf(abs(t), dof))
    assert stats.welch([1.0], [2.0, 3.0])[1] == 1.0  # undefined with one seed
    assert stats.welch([1.0, 1.0], [1.0, 1.0])[1] == 1.0
    assert stats.welch([1.0, 1.0], [2.0, 2.0])[1] == 0.0  # no spread, different means


def test_holm_step_down():
    got = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert got == pytest.approx([0.03, 0.06, 0.06, 0.02])  # 4p, 3p, 2p -> monotone, 1p
    assert stats.holm([0.5, 0.9]) == [1.0, 1.0]


def test_ordering_says_which_neighbours_are_separated():
    arms = {
        "c": [5.0, 5.1, 4.9, 5.05],
        "a": [10.0, 10.1, 9.9, 10.05],
        "b": [9.95, 10.02, 10.08, 9.9],
    }
    assert stats.ordering(arms, "max") == "a ~ b > c"
    assert stats.ordering(arms, "min") == "c > b ~ a"  # best (lowest) first
    pairs = {(p.a, p.b): p for p in stats.compare(arms)}
    assert pairs[("c", "a")].significant and not pairs[("a", "b")].significant
    assert pairs[("c", "a")].p_holm >= pairs[("c", "a")].p
    table = stats.markdown(arms, "eval/accuracy")
    assert "| a vs b |" in table and "[" in table
    assert stats.csv_rows(arms, "acc").splitlines()[0].startswith("arm,seeds,acc_mean")
