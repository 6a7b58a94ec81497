"""The pass/fail verdict of a run, and the loss figures it is judged on."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class LossSummary:
    finite: bool
    fell: bool
    first: float | None  # mean of the first 10% of steps
    last: float | None  # mean of the last 10% of steps
    curve: list = field(default_factory=list)  # [step, loss] pairs, at most about 200

    @classmethod
    def of(cls, losses: Sequence[float], stopped_nonfinite: bool) -> LossSummary:
        n = max(1, len(losses) // 10)
        first = sum(losses[:n]) / n if losses else None
        last = sum(losses[-n:]) / n if losses else None
        finite = bool(losses) and not stopped_nonfinite and all(math.isfinite(v) for v in losses)
        fell = finite and len(losses) >= 2 and last < first
        stride = max(1, len(losses) // 200)
        curve = [
            [i + 1, round(v, 5) if math.isfinite(v) else str(v)]
            for i, v in enumerate(losses)
            if i % stride == 0 or i == len(losses) - 1
        ]
        return cls(finite, fell, first, last, curve)


@dataclass(frozen=True)
class Rule:
    """Which gate applies to a run, and why."""

    kind: str  # "preset-f1" | "user-f1" | "training-works"
    f1_threshold: float | None
    why: str


def choose_rule(
    asked_f1: float | None, builtin_data: bool, user_model: bool, preset: str, preset_f1: float
) -> Rule:
    """The preset's F1 gate holds for the built-in corpus and model, where it was calibrated;
    for user data or a user checkpoint nobody knows what F1 to expect, so the default gate only
    checks that training worked. `--f1-gate X` asks for an F1 in either case."""
    if asked_f1 is not None:
        return Rule("user-f1", asked_f1, f"--f1-gate {asked_f1} asked for it")
    if builtin_data and not user_model:
        return Rule(
            "preset-f1", preset_f1, f"the built-in corpus: preset {preset}'s calibrated F1 gate"
        )
    what = "user data" if not builtin_data else "a user checkpoint"
    return Rule(
        "training-works",
        None,
        f"{what}: no F1 is known to expect, so the gate checks that training worked (loss "
        "finite and falling, evaluation run); --f1-gate X asks for an F1",
    )


@dataclass
class Gate:
    passed: bool
    f1_threshold: float | None
    f1: float
    loss_finite: bool
    loss_fell: bool
    reasons: list[str]
    kind: str = "preset-f1"
    why: str = ""

    @classmethod
    def judge(cls, loss: LossSummary, f1: float, rule: Rule) -> Gate:
        threshold = rule.f1_threshold
        reasons = []
        if not loss.finite:
            reasons.append("the loss is not finite (NaN or inf)")
        elif not loss.fell:
            reasons.append("the loss did not fall")
        if threshold is not None and f1 < threshold:
            reasons.append(f"dev F1 {f1:.4f} is below the gate {threshold}")
        if not math.isfinite(f1):
            reasons.append("the evaluation gave no F1")
        return cls(not reasons, threshold, f1, loss.finite, loss.fell, reasons, rule.kind, rule.why)
