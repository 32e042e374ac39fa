"""How one formula of a piece's :class:`~handgrad.nn.derivation.Derivation` is written as text or LaTeX.

Each layer and loss declares its maths as plain strings in the syntax below;
``hg.derive`` (:mod:`handgrad.derivations.derive`) fills them with one
network's widths and renders them with :func:`to_text` or :func:`to_latex`.

The formula syntax
------------------

A formula is written once, in the Unicode the docstrings use, and rendered
both as plain text and as LaTeX::

    "∂J/∂W = Xᵀ G"          →  ∂J/∂W = Xᵀ G          \\partial J/\\partial W = X^\\top G
    "∂J/∂b = Σ_{rows} G"    →  ∂J/∂b = Σ_rows G      \\partial J/\\partial b = \\sum_{\\text{rows}} G
    "A = σ(Z)"              →  A = σ(Z)              A = \\sigma(Z)
    "√(σ² + ε)"             →  √(σ² + ε)             \\sqrt{\\sigma^{2} + \\varepsilon}

* Symbols: Greek letters, ``∂ Σ ⊙ ᵀ √ − × · ≠ ≤ ≥ → ∈ ‖ ² ³ ′``, subscript
  digits (``W₁``) and a combining hat or bar (``X̂``, ``X̄``) all have a LaTeX
  counterpart; a product is written by juxtaposition (``X W``).
* ``_{…}`` and ``^{…}`` group a subscript or superscript (``Y_{rk}``,
  ``Σ_{k≠j}``, ``e^{−Z}``); a single character needs no braces (``W_l``).
  Plain text drops the braces of a one-word group (``Σ_rows``, ``Y_rk``),
  turns digits into sub- or superscripts and keeps other groups in
  parentheses (``e^(−Z)``).
* ``√(…)`` is a square root over the parenthesised group.
* A name of two or more letters is a function: ``exp log tanh max …`` become
  ``\\exp \\log \\tanh \\max``, any other (``softmax``, ``rowsum``) an
  ``\\operatorname``; inside a sub- or superscript it is ``\\text``.
* ``$name`` is a placeholder filled from the concrete network: ``$in`` and
  ``$out`` (the widths of the piece's input and output), ``$K`` (classes,
  for a loss), the shape of each parameter by its name (``$W`` → ``64×32``)
  and each constructor argument (``$alpha``).  ``$$`` is a dollar sign.

Shapes are formulas too: ``"n×$in · $in×$out + $out"`` reads
``n×64 · 64×32 + 32`` for ``Dense(64, 32)``, ``n`` being the number of rows.
"""

import re
import string
import unicodedata

_GREEK = {
    "α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "ε": "varepsilon", "ζ": "zeta", "η": "eta",
    "θ": "theta", "ι": "iota", "κ": "kappa", "λ": "lambda", "μ": "mu", "ν": "nu", "ξ": "xi", "π": "pi",
    "ρ": "rho", "σ": "sigma", "τ": "tau", "υ": "upsilon", "φ": "phi", "χ": "chi", "ψ": "psi", "ω": "omega",
    "Γ": "Gamma", "Δ": "Delta", "Θ": "Theta", "Λ": "Lambda", "Ξ": "Xi", "Π": "Pi", "Φ": "Phi", "Ψ": "Psi",
    "Ω": "Omega",
}
_SYMBOLS = {
    "∂": r"\partial", "Σ": r"\sum", "∏": r"\prod", "⊙": r"\odot", "∘": r"\circ", "·": r"\cdot",
    "⋅": r"\cdot", "×": r"\times", "≠": r"\neq", "≤": r"\le", "≥": r"\ge", "≈": r"\approx", "→": r"\to",
    "←": r"\leftarrow", "∈": r"\in", "∞": r"\infty", "…": r"\dots", "±": r"\pm", "∇": r"\nabla",
    "ℝ": r"\mathbb{R}", "𝟙": r"\mathbb{1}", "½": r"\tfrac{1}{2}",
}
_PLAIN = {"−": "-", "′": "'", "ᵀ": r"^{\top}"}
_SUPERSCRIPT = dict(zip("0123456789+−=()n", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿ"))
_SUBSCRIPT = dict(zip("0123456789+−=()", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎"))
_FROM_SUPERSCRIPT = {v: k.replace("−", "-") for k, v in _SUPERSCRIPT.items() if k in "0123456789+−"}
_FROM_SUBSCRIPT = {v: k.replace("−", "-") for k, v in _SUBSCRIPT.items() if k in "0123456789+−"}
_ACCENTS = {"\u0302": "hat", "\u0304": "bar", "\u0303": "tilde", "\u0307": "dot"}
_FUNCTIONS = {"exp", "log", "ln", "tanh", "sinh", "cosh", "sin", "cos", "max", "min", "det", "arg"}
_WORD = re.compile(r"[A-Za-z]{2,}")


def fill(template, values):
    """``template`` with each ``$name`` replaced by ``values[name]``; unknown names are left as written."""
    return string.Template(template).safe_substitute({key: _value_text(v) for key, v in values.items()})


def _value_text(value):
    if isinstance(value, tuple):
        return "×".join(str(v) for v in value) if value else "1"
    return str(value)


def to_text(formula):
    """``formula`` as plain Unicode text (see the module docstring)."""
    out, i = [], 0
    while i < len(formula):
        char = formula[i]
        if char in "_^" and i + 1 < len(formula) and formula[i + 1] == "{":
            content, i = _group(formula, i + 1)
            out.append(_script_text(char, to_text(content)))
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _script_text(kind, content):
    table = _SUBSCRIPT if kind == "_" else _SUPERSCRIPT
    if content and all(c in table for c in content):
        return "".join(table[c] for c in content)
    if re.fullmatch(r"[\w,′]+", content):
        return kind + content
    return f"{kind}({content})"


def to_latex(formula):
    """``formula`` as LaTeX math (no surrounding ``$``; see the module docstring)."""
    latex = re.sub(r" {2,}", " ", _latex(formula, in_script=False)).strip()
    return re.sub(r"(\\[A-Za-z]+) (?=[_^(){}\[\],/])", r"\1", latex)     # "\sum _{" → "\sum_{"


def _latex(formula, in_script):
    out, i, norm_open = [], 0, True
    while i < len(formula):
        char = formula[i]
        if char in "_^" and i + 1 < len(formula) and formula[i + 1] == "{":
            content, i = _group(formula, i + 1)
            out.append(f"{char}{{{_latex(content, in_script=True).strip()}}}")
            continue
        if char == "√":
            if i + 1 < len(formula) and formula[i + 1] == "(":
                content, i = _group(formula, i + 1, "(", ")")
            else:
                content, i = formula[i + 1:i + 2], i + 2
            out.append(rf"\sqrt{{{_latex(content, in_script).strip()}}}")
            continue
        word = _WORD.match(formula, i)
        if word and (i == 0 or not formula[i - 1].isalpha()):
            name = word.group()
            if in_script and len(name) > 2:
                out.append(rf"\text{{{name}}}")
            elif in_script:
                out.append(name)        # two indices, as in Y_{rk}
            elif name in _FUNCTIONS:
                out.append(rf"\{name} ")
            else:
                out.append(rf"\operatorname{{{name}}}")
            i = word.end()
            continue
        if i + 1 < len(formula) and formula[i + 1] in _ACCENTS:
            out.append(rf"\{_ACCENTS[formula[i + 1]]}{{{_latex(char, in_script)}}}")
            i += 2
            continue
        if char == "‖":
            out.append(r"\lVert " if norm_open else r"\rVert ")
            norm_open = not norm_open
        elif char in _GREEK:
            out.append(f"\\{_GREEK[char]} ")
        elif char in _SYMBOLS:
            out.append(_SYMBOLS[char] + " ")
        elif char in _PLAIN:
            out.append(_PLAIN[char])
        elif char in _FROM_SUPERSCRIPT:
            digits, i = _run(formula, i, _FROM_SUPERSCRIPT)
            out.append(f"^{{{digits}}}")
            continue
        elif char in _FROM_SUBSCRIPT:
            digits, i = _run(formula, i, _FROM_SUBSCRIPT)
            out.append(f"_{{{digits}}}")
            continue
        elif char in "{}":
            out.append("\\" + char)
        elif char in "%#&":
            out.append("\\" + char)
        else:
            out.append(char)
        i += 1
    return "".join(out)


def _run(formula, i, table):
    start = i
    while i < len(formula) and formula[i] in table:
        i += 1
    return "".join(table[c] for c in formula[start:i]), i


def _group(formula, i, opening="{", closing="}"):
    """The text inside the bracket opening at ``formula[i]`` and the index after its closing bracket."""
    depth = 0
    for j in range(i, len(formula)):
        if formula[j] == opening:
            depth += 1
        elif formula[j] == closing:
            depth -= 1
            if depth == 0:
                return formula[i + 1:j], j + 1
    return formula[i + 1:], len(formula)      # unbalanced: the rest, rather than failing


def width(text):
    """Columns ``text`` takes in a terminal: combining accents take none."""
    return sum(0 if unicodedata.combining(c) else 1 for c in text)
