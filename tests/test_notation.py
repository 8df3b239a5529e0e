"""One notation for the course: notebooks/README.md holds the table (and the site shows it), and the clashes
the table removed do not come back in the chapters' Markdown.

Each clash is a regular expression for a use of a symbol that the table gives to something else, checked on
every Markdown cell of the chapters listed in CHECKED, one paragraph (or list item) at a time. Each rule also
carries an example of the text it was written against, so a rule that cannot fire fails here too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rlsurvey.site.guide import notation, readme_sections

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "notebooks" / "README.md"
# Every chapter follows the table.
CHECKED = list(range(17))

# The rows the table must have: each symbol with one meaning across the course.
REQUIRED = [
    r"$r_t$",
    r"$\rho_t$",
    r"$\epsilon$",
    r"$\beta$",
    r"$m_t$",
    r"$\tau$",
    r"$\eta$",
    r"$\zeta$",
    r"$\gamma$",
    r"$\lambda$",
    r"$\Delta$",
    r"$\omega$",
    r"$\hat A_t$",
    r"$G_t$",
    r"$\pi_\theta$",
    r"$\pi_{\mathrm{ref}}$",
    r"$\mathrm{KL}(p \,\Vert\, q)$",
]

# (name, pattern, the text it was written against). Patterns see one paragraph or list item at a time.
CLASHES = [
    ("epsilon for epsilon-greedy's exploration rate (epsilon is PPO's clip; the rate is zeta)",
     r"(?s)greedy.*\$[^$]*\\(var)?epsilon|\\(var)?epsilon[^$]*\$.*greedy",
     r"- **epsilon-greedy**: pull the best arm, except with probability $\varepsilon$ a random arm."),
    ("epsilon for a label-flip rate (the flip rate is eta; a coin flip is a reward, not a rate)",
     r"(?si)(?<!coin[ _-])flip.*\$[^$]*\\(var)?epsilon|\\(var)?epsilon[^$]*\$.*(?<!coin[ _-])flip",
     r"plus a flip with probability $\varepsilon$ (a careless labeller)"),
    ("beta as a labeller's or judge's temperature (beta is the KL/DPO coefficient; temperatures are tau)",
     r"(?si)(temperature|scale)[^.]*\\beta|\\beta[^.]*(temperature|`temperature`)",
     r"a Bradley-Terry choice with scale $\beta$ (`temperature`)"),
    ("r_t as a probability ratio (r_t is a reward; ratios are rho)",
     r"r_t\s*\(\\theta\)|r_t\s*=\s*\\pi|ratio \$r\b|\\log r_t",
     r"the probability ratio $r_t(\theta) = \pi_\theta(a_t \mid s_t) / \pi_{\theta_\text{old}}(a_t)$"),
    ("m as a margin or a mass (m_t is the response mask; a margin is omega)",
     r"margin \$m\b|- m\\bigr\)|\bm \\ge 0|mass \$m\b|\(x - m\)",
     r"subtracts a margin $m \ge 0$ on pairs the labeller was sure about"),
    ("lambda for a Lagrange multiplier or a loss weight (lambda is GAE's)",
     r"(?si)lagrang[^$]*\$[^$]*\\lambda|\\lambda\s*\\max|\\lambda\s*\\log\\sigma|\\min_\{\\lambda",
     r"$\min_{\lambda \ge 0}\max_\theta\ \mathbb{E}[R] - \lambda\,(\mathbb{E}[C] - d)$"),
    ("gamma as SimPO's margin (gamma is the discount; the margin is omega)",
     r"\\bar\\ell_l\s*-\s*\\gamma",
     r"$-\log\sigma(\beta\bar\ell_w - \beta\bar\ell_l - \gamma)$"),
    ("T as a temperature (T is the number of steps; the temperature is tau)",
     r"z_t\s*/\s*T\b|z\s*/\s*T\)|\}\{T\}|/T\s*-|temperature \$T\$",
     r"$\mathrm{softmax}(z_t / T)$, the model's next-token distribution at temperature $T$"),
    ("tau as a trajectory (tau is a temperature; a trajectory is xi)",
     r"trajectory \$\\tau|\\tau \\sim p_\\theta",
     r"the expected return of a trajectory $\tau = (s_0, a_0, r_0, s_1, \dots, s_{T})$"),
    ("phi for a critic's parameters (phi is the reward model's; the critic's are psi)",
     r"V_\\phi",
     r"the TD residual $\delta_t = r_t + \gamma V_\phi(s_{t+1}) - V_\phi(s_t)$"),
    ("A_t or S_t or R_{t+1} as Sutton and Barto's action, state and reward (A_t is an advantage)",
     r"\\mathbb\{1\}\[a = A_t\]|q_\*\(A_t\)|S_t = s|R_\{t\+1\} \+",
     r"$$G_t = R_{t+1} + \gamma R_{t+2} + \dots$$ and $\mathbb{E}_\pi[G_t \mid S_t = s, A_t = a]$"),
    ("Delta for a bandit's gap (Delta is DPO's log-ratio margin)",
     r"\\Delta_a|\\bar\\Delta\s*T",
     r"its regret grows linearly, about $\varepsilon \bar\Delta T$"),
    ("k_t for a per-token KL estimate (k_1, k_2, k_3 are the estimators)",
     r"k_t\s*=\s*\\log|\\sum_t k_t|\\beta\\, k_t",
     r"$r_t = -\beta\, k_t + \mathbb{1}[t = T]\; r_\phi(x, y)$"),
    ("V for the vocabulary size (V is a value; the vocabulary is \\mathcal V)",
     r"\\mathbb\{R\}\^V\b|\d+NV\b|\$\|V\|\$|\[N, V\]",
     r"With logits $z_t \in \mathbb{R}^V$, about $5NV$ FLOPs"),
    ("s for a judge's score (s is a state; a judge's score is r_J)",
     r"\bs\(y\)|\ba score \$s\(",
     r"pointwise, a score $s(x, y)$, and $s(y) = \sum_k w_k \cos(\dots)$"),
    ("d for the square root of the KL or a cost limit (d_t is the episode-end flag)",
     r"d = \\sqrt|\\le d\b|- d\)",
     r"they fit, with $d = \sqrt{\mathrm{KL}}$, and $\mathbb{E}[C] \le d$"),
    ("q and o for a prompt and a response (the GRPO papers' letters: here x and y; o_k is an observation)",
     r"\\mid q\b|\(q, o\)|(?<![A-Za-z\\])o_\{i,|(?<![A-Za-z\\])o_i\b",
     r"the ratio $\pi_\theta(o_{i,t} \mid q, o_{i,<t})$ over the tokens of $o_i$"),
    ("G for the size of a group (G_t is a return; a group has K responses)",
     r"\\frac\{1\}\{G\}|\^\{G\}|\$G\$|\$G\s*=|\(G\s*-\s*1\)",
     r"groups of $G = 4$ samples shrink the gradient by $(G-1)/G$"),
    ("w for an importance weight (w_k weighs the parts of a score; ratios are rho)",
     r"\$w\s*=\s*\\pi|\\min\(w,|\bw\s*[<>]\s*(\d|C\b|1/C)",
     r"the ratio $w = \pi_\theta / \pi_\text{sampler}$, capped: $\min(w, C)$"),
    ("C for the cap of a ratio (C is Safe RLHF's cost; a ratio's cap is rho_max)",
     r"\\min\([^$]*,\s*C\)|[<>]\s*(1/)?C\$",
     r"the loss is multiplied by $\min(w, C)$ and tokens with $w > C$ are dropped"),
    ("s_i for GSPO's sequence ratio (s_t is a state; the ratio is rho^seq_i)",
     r"\bs_i\s*=\s*\\exp|\[s_i\]|\bs_\{i,t\}\s*=",
     r"one ratio per response, $s_i = \exp\big(\frac{1}{|o_i|}\sum_t \log \rho_{i,t}\big)$"),
    ("epsilon as a small constant in a denominator (epsilon is PPO's clip; write the constant)",
     r"\\mathrm\{std\}[^$]*\+\s*\\(var)?epsilon",
     r"GRPO's advantage $(r_i - \bar r) / (\mathrm{std}(r) + \epsilon)$"),
    ("varepsilon for the clip (one glyph: \\epsilon)",
     r"\\varepsilon",
     r"clip-higher raises only $1 + \varepsilon_\text{high}$"),
    ("D_KL for a per-token KL estimate (an estimate inside a loss is KL-hat)",
     r"\\mathbb\{D\}_\{\\mathrm\{KL\}\}\s*(=|\\big\[)",
     r"$$\mathbb{D}_{\mathrm{KL}} = \rho^{\mathrm{ref}}_t - \log \rho^{\mathrm{ref}}_t - 1$$"),
]  # fmt: skip


def _markdown(number: int) -> list[str]:
    path = next((ROOT / "notebooks").glob(f"{number:02d}_*.ipynb"))
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]


def _paragraphs(text: str) -> list[str]:
    """Paragraphs and list items: what one reading of a symbol's meaning spans."""
    return [p for p in re.split(r"\n\s*\n|\n(?=\s*(?:[-*]|\d+\.) )", text) if p.strip()]


def clashes_in(text: str) -> list[str]:
    """The names of the clashes found in a Markdown text."""
    found = []
    for name, pattern, _ in CLASHES:
        if any(re.search(pattern, p) for p in _paragraphs(text)):
            found.append(name)
    return found


def _table_rows(readme: str) -> list[list[str]]:
    body = readme_sections(readme)["Notation"]
    rows = [line for line in body.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in r.strip("|").split(" | ")] for r in rows[1:]]


def test_the_readme_states_the_standard_and_the_table():
    readme = README.read_text(encoding="utf-8")
    sections = readme_sections(readme)
    assert set(sections) == {"The evidence standard", "Notation"}, "notebooks/README.md lost a section"
    points = re.findall(r"^(\d)\. \*\*", sections["The evidence standard"], re.M)
    assert points == ["1", "2", "3", "4", "5", "6"], f"the standard has six numbered points, got {points}"
    rows = _table_rows(readme)
    assert all(len(r) == 3 for r in rows), [r for r in rows if len(r) != 3]
    symbols = [r[0] for r in rows]
    assert len(symbols) == len(set(symbols)), "a symbol has two rows of the table"
    cells = " ".join(symbols)
    missing = [s for s in REQUIRED if s not in cells]
    assert not missing, f"the notation table has no row for {missing}"


def test_the_site_shows_the_table():
    page = notation(README.read_text(encoding="utf-8"))
    assert page.count("<tr>") == len(_table_rows(README.read_text(encoding="utf-8"))) + 1  # the header row
    assert "<h2>The evidence standard</h2>" in page and r"$\rho_t$" in page
    with pytest.raises(ValueError, match="Notation"):
        notation("# A README\n\n## Something else\n\ntext\n")


@pytest.mark.parametrize("name, pattern, example", CLASHES, ids=[c[0].split(" (")[0] for c in CLASHES])
def test_each_rule_can_fail(name, pattern, example):
    assert name in clashes_in(example), f"the rule does not fire on the text it was written for: {example!r}"


@pytest.mark.parametrize("number", CHECKED)
def test_no_symbol_clash_in_the_chapter(number):
    patterns = {name: pattern for name, pattern, _ in CLASHES}
    problems = {}
    for text in _markdown(number):
        for name in clashes_in(text):
            found = [p.strip()[:160] for p in _paragraphs(text) if re.search(patterns[name], p)]
            problems.setdefault(name, []).extend(found)
    assert not problems, f"chapter {number:02d} gives a symbol a second meaning: {problems}"


@pytest.mark.parametrize("number", [3, 4])
def test_the_kl_direction_is_flagged_where_it_is_defined(number):
    """Chapter 03's PPO diagnostic and chapter 04's RLHF penalty put different policies first: both say so."""
    between_policies = r"\\mathrm\{KL\}\\big\(\\pi|\\mathrm\{KL\}\(\\pi"
    defining = [t for t in _markdown(number) if re.search(between_policies, t)]
    assert defining, f"chapter {number:02d} no longer defines a KL between policies"
    flagged = any("direction" in t for t in defining)
    assert flagged, f"chapter {number:02d} states a KL without flagging its direction"
