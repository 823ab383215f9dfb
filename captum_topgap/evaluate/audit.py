"""A robustness audit for gradient masking: is a model's robust accuracy real, or do its gradients hide?

One white-box attack is not a robustness result (Carlini et al. 2019, "On Evaluating Adversarial
Robustness"; Athalye et al. 2018, "Obfuscated Gradients Give a False Sense of Security"). The audit runs,
at one L∞ budget ε, attacks of three kinds from the existing engines (:mod:`captum_topgap.evaluate.robustness`):

- white-box gradient attacks: PGD-20 (the Top-GAP poster's attack), PGD-50, PGD-100 (Foolbox), APGD on the
  cross-entropy and on the DLR loss (ART; the gradient attacks of AutoAttack, Croce & Hein 2020);
- a gradient-free attack: Square with 1 000 queries (ART);
- transfer attacks: PGD-20 examples crafted on each ``surrogate`` model and fed to the audited one;

and an ε sweep of PGD-20 up to a budget that breaks every classifier (at ε = 128/255 every pixel can
reach mid-grey). The attacks run as AutoAttack runs them, in a **cascade**: the reference attack on every
correctly classified image, each later attack only on the images every earlier one left standing. The
value of an attack is the accuracy after it and all before it, so the last one is the **robust accuracy**,
the minimum over the attacks *per image*, as AutoAttack and RobustBench report it; the reference's own
value is what a claim quoting it measured. The sweep cascades the same way over growing ε (an example
found at a smaller ε is valid at a larger one).

The verdict (:meth:`AuditRules.judge`), by rules fixed here and printed beside it:

- **gradient-masked** when a sign of masking shows: a stronger gradient attack (more iterations, APGD), the
  gradient-free attack or a transfer attack breaks more than ``margin`` of the images that every earlier
  attack left standing (an attack whose gradients work leaves nothing for those to find), or the largest
  ε of the sweep leaves an accuracy above ``zero``;
- otherwise **robust** when the robust accuracy is at least ``floor``, else **not robust**.

Example:
    >>> rules = AuditRules()
    >>> rules.judge({"pgd20": 0.517, "pgd50": 0.313, "square1000": 0.300}, {128 / 255: 0.0})[0]
    'gradient-masked'
    >>> rules.judge({"pgd20": 0.0, "pgd100": 0.0, "square1000": 0.0}, {128 / 255: 0.0})[0]
    'not robust'
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from captum_topgap._state import preserved_state
from captum_topgap.evaluate.robustness import (
    EPS,
    AttackSpec,
    adversarial_examples,
    check_attack_inputs,
    check_budget,
    normalize,
    predict_normalised,
    robust_counts,
)

AUDIT_ATTACKS = ("pgd20", "pgd50", "pgd100", "apgd_ce100", "apgd_dlr100", "square1000")
SWEEP = (16 / 255, 32 / 255, 64 / 255, 128 / 255)
TRANSFER = "pgd20"
Attack = Callable[[torch.Tensor], torch.Tensor]
"""An attack on the images of an index: the booleans 'still classified correctly after it'."""
_WHAT = {"pgd": "a stronger gradient attack", "apgd_ce": "a stronger gradient attack",
         "apgd_dlr": "a stronger gradient attack (a loss that does not saturate)",
         "square": "a gradient-free attack finds what the gradients miss",
         "transfer": "another model's gradients find what this one's miss"}


@dataclass(frozen=True)
class AuditRules:
    """The verdict's rules: ``reference`` is the attack a claim quotes (the poster's PGD-20); ``margin`` the
    accuracy drop that counts as a sign of masking (about one standard error at 50 images: ± 0.07 at 0.5);
    ``zero`` the accuracy the largest ε must reach; ``floor`` the robust accuracy a robust model keeps.
    """

    reference: str = "pgd20"
    margin: float = 0.05
    zero: float = 0.02
    floor: float = 0.10

    def signs(self, cascade: Mapping[str, float], sweep: Mapping[float, float]) -> list[str]:
        """The signs of gradient masking, each a sentence with its numbers, from the ``cascade`` (attack name →
        accuracy after it and every earlier attack, in the order run; ``reference`` first) and the ``sweep``
        (ε → accuracy).

        Example:
            >>> AuditRules().signs({"pgd20": 0.5, "pgd50": 0.3}, {})
            ['pgd50 breaks 0.200 of the images (> 0.05) that pgd20 left standing: a stronger gradient attack']
        """
        found, names = [], list(cascade)
        if names and names[0] != self.reference:
            raise ValueError(f"the cascade must start with the reference attack {self.reference!r}, got {names}")
        for before, name in itertools.pairwise(names):
            drop = cascade[before] - cascade[name]
            if drop > self.margin:
                left = self.reference if before == self.reference else f"{before} and every attack before it"
                found.append(f"{name} breaks {drop:.3f} of the images (> {self.margin:g}) that {left} left standing: "
                             f"{_WHAT[_kind(name)]}")
        if sweep:
            largest = max(sweep)
            if sweep[largest] > self.zero:
                found.append(f"at eps = {fraction(largest)} accuracy stays {sweep[largest]:.3f} (> {self.zero:g}): "
                             "an attack with an unbounded budget must reach 0")
        return found

    def judge(self, cascade: Mapping[str, float], sweep: Mapping[float, float]) -> tuple[str, list[str]]:
        """(verdict, reasons): ``"gradient-masked"`` on any sign, else ``"robust"`` when the robust accuracy
        (the cascade's last value) is ≥ ``floor``, else ``"not robust"``.

        Example:
            >>> AuditRules().judge({"pgd20": 0.6, "pgd100": 0.58, "square1000": 0.57}, {128 / 255: 0.0})
            ('robust', ['robust accuracy 0.570 ≥ 0.1 with no sign of masking'])
        """
        found = self.signs(cascade, sweep)
        robust = list(cascade.values())[-1]
        if found:
            return "gradient-masked", found
        if robust >= self.floor:
            return "robust", [f"robust accuracy {robust:.3f} ≥ {self.floor:g} with no sign of masking"]
        return "not robust", [f"robust accuracy {robust:.3f} < {self.floor:g} with no sign of masking"]

    def describe(self) -> str:
        """The rules in one line, printed beside every verdict."""
        return (f"gradient-masked iff an attack after {self.reference} (more steps, APGD, Square, transfer) breaks > "
                f"{self.margin:g} of the images the earlier ones left, or the largest eps leaves > {self.zero:g}; "
                f"else robust iff robust accuracy ≥ {self.floor:g}")


def cascade_columns(result: Mapping[str, Any]) -> dict[str, float]:
    """The accuracies of an audit in cascade order, ``clean`` first, the transfer stages as one ``transfer``
    column (the accuracy after the last of them), so audits with different surrogates share columns.

    Example:
        >>> cascade_columns({"clean": 1.0, "pgd20": 0.5, "transfer:a": 0.4, "transfer:b": 0.3,
        ...                  "robust_accuracy": 0.3, "verdict": "robust"})
        {'clean': 1.0, 'pgd20': 0.5, 'transfer': 0.3}
    """
    columns: dict[str, float] = {}
    for name, value in result.items():
        if isinstance(value, float) and name != "robust_accuracy":
            columns["transfer" if name.startswith("transfer:") else name] = value
    return columns


def _kind(name: str) -> str:
    return "transfer" if name.startswith("transfer:") else AttackSpec.parse(name).kind


def fraction(eps: float) -> str:
    """ε as a fraction of 255 where it is one: ``fraction(8 / 255) == "8/255"``.

    Example:
        >>> fraction(16 / 255), fraction(0.1)
        ('16/255', '0.1')
    """
    steps = Fraction(eps * 255).limit_denominator(8)
    return f"{steps.numerator}/255" if steps.denominator == 1 and abs(eps * 255 - steps) < 1e-6 else f"{eps:g}"


def robustness_audit(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, eps: float = EPS,
                     attacks: Sequence[str] = AUDIT_ATTACKS, surrogates: Mapping[str, nn.Module] | None = None,
                     sweep: Sequence[float] = SWEEP, rules: AuditRules | None = None,
                     bounds: tuple[float, float] = (0.0, 1.0), preprocessing: Mapping[str, Any] | None = None,
                     batch_size: int = 64, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Every attack's accuracy in the cascade at ``eps``, the robust accuracy, the ε sweep and the verdict.

    robust_accuracy = 1/N Σ_i [f(x_i) = y_i] · Π_a [f(A_a(x_i)) = y_i]   over attacks a (transfer included)

    Args:
        model: the classifier audited (its state restored afterwards).
        inputs: (N, C, H, W) images within ``bounds``.
        labels: (N,) class indices.
        eps: the L∞ budget of the claim.
        attacks: attack names (:class:`AttackSpec`) in cascade order, the rules' ``reference`` first.
        surrogates: name → model; each crafts ``transfer:NAME`` examples with PGD-20 at ``eps`` (run last).
        sweep: larger budgets at which the reference attack runs alone, cascading over ε from the images it
            left at ``eps``; the largest must break every model.
        rules: the verdict's rules (:class:`AuditRules`).
        bounds: the valid input range; the engines clip to it.
        preprocessing: ``dict(mean=…, std=…)`` applied inside the model (inputs stay in ``bounds``).
        batch_size: images per forward pass of the clean and transfer predictions and per attack chunk.
        seed: seeds every engine's randomness (random starts, square positions).
        progress: a tqdm bar over the attacks.

    Returns ``{"clean", "<attack>": accuracy after it …, "transfer:<name>": …, "input_gradient_l1": {median
    over the images the reference attack left / broke}, "robust_accuracy", "sweep": {"16/255": …}, "verdict",
    "reasons", "rules"}`` (attacks in cascade order).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        >>> x, y = torch.rand(6, 3, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2])
        >>> audit = robustness_audit(net, x, y, attacks=("pgd20", "pgd50"), sweep=(1.0,), progress=False)
        >>> audit["robust_accuracy"] == audit["pgd50"] <= audit["pgd20"] <= audit["clean"]
        True
    """
    rules = rules or AuditRules()
    eps = check_attack_inputs(model, inputs, labels, eps, bounds)
    names = [AttackSpec.parse(name).name for name in attacks]
    if not names or names[0] != rules.reference:
        raise ValueError(f"`attacks` must start with the rules' reference attack {rules.reference!r}, got {names}")
    budgets = sorted(check_budget(value, bounds, "sweep") for value in sweep)
    labels = labels.to(inputs.device)
    def white_box(name: str, budget: float) -> Attack:
        return lambda index: robust_counts(model, inputs[index], labels[index], name, budget, bounds=bounds,
                                           preprocessing=preprocessing, batch_size=batch_size, seed=seed)[0]

    def transfer(surrogate: nn.Module) -> Attack:
        return lambda index: predict_normalised(model, adversarial_examples(
            surrogate, inputs[index], labels[index], TRANSFER, eps, bounds=bounds, preprocessing=preprocessing,
            seed=seed), preprocessing, batch_size) == labels[index]

    cascade = [(name, white_box(name, eps)) for name in names]
    cascade += [(f"transfer:{name}", transfer(surrogate)) for name, surrogate in (surrogates or {}).items()]
    bar = tqdm(total=len(cascade) + len(budgets), desc="robustness audit", disable=not progress, leave=False)
    result: dict[str, Any] = {}
    with preserved_state(model):
        standing = predict_normalised(model, inputs, preprocessing, batch_size) == labels
        result["clean"] = standing.float().mean().item()
        after_reference = standing
        correct = standing.clone()
        for name, attack in cascade:
            bar.set_postfix_str(name)
            standing = _survivors(standing, attack)
            result[name] = standing.float().mean().item()
            if name == rules.reference:
                after_reference = standing.clone()
            bar.update()
        norms = input_gradient_l1(model, inputs, labels, preprocessing, batch_size)
        result["input_gradient_l1"] = {
            "survived_reference": _median(norms[after_reference]), "broken_by_reference": _median(
                norms[correct & ~after_reference])}
        sweep_values = {}
        for budget in budgets:  # the reference alone over growing eps, from the images it left at eps
            bar.set_postfix_str(f"{rules.reference} at eps {fraction(budget)}")
            after_reference = _survivors(after_reference, white_box(rules.reference, budget))
            sweep_values[budget] = after_reference.float().mean().item()
            bar.update()
    bar.close()
    accuracies = {name: result[name] for name, _ in cascade}
    result["robust_accuracy"] = standing.float().mean().item()
    result["sweep"] = {fraction(budget): value for budget, value in sweep_values.items()}
    result["verdict"], result["reasons"] = rules.judge(accuracies, sweep_values)
    result["rules"] = rules.describe()
    return result


def input_gradient_l1(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                      preprocessing: Mapping[str, Any] | None = None, batch_size: int = 64) -> torch.Tensor:
    """‖∂CE(f(x), y)/∂x‖₁ per image, in input units: the audit's evidence of *where* gradients vanish.

    Images that survive a gradient attack with input gradients far smaller than those it breaks sit on a flat
    (or masked) loss; the gradient-free and transfer stages then tell a flat loss (they fail too) from
    masked gradients (they succeed).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2, bias=False))
        >>> with torch.no_grad():
        ...     _ = net[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0]]))
        >>> round(input_gradient_l1(net, torch.zeros(1, 1, 2, 2), torch.tensor([0])).item(), 4)  # 1 − softmax₀
        0.5
    """
    norms = []
    for start in range(0, len(inputs), batch_size):
        x = inputs[start:start + batch_size].detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(normalize(x, preprocessing)), labels[start:start + batch_size], reduction="sum")
        (gradient,) = torch.autograd.grad(loss, x)
        norms.append(gradient.flatten(1).abs().sum(1).detach())
    return torch.cat(norms) if norms else inputs.new_zeros(0)


def _median(values: torch.Tensor) -> float | None:
    return values.median().item() if len(values) else None


def _survivors(standing: torch.Tensor, attack: Attack) -> torch.Tensor:
    """``standing`` with the images the attack breaks set False; only standing images are attacked."""
    standing = standing.clone()
    index = standing.nonzero().flatten()
    if len(index):
        standing[index] = attack(index).to(standing.device)
    return standing
