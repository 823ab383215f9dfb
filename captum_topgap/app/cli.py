"""Command line: ``captum-topgap methods | preview | train | evaluate | demo | sweep | explain | visualize | compare |
bench``.

Every flag is checked by its argparse type (:mod:`captum_topgap.app.arguments`) before any work. A bad value,
a missing or unreadable file, an unknown method name — any ``ValueError``, the library's bad-input error —
ends the run with one line on stderr and exit status 2; any other failure with one line and status 1
(``--debug`` shows the traceback); Ctrl-C with status 130 and, for ``train``, how to resume.

Example:
    >>> main(["methods"])  # doctest: +ELLIPSIS
    name...origin...kind...description
    ...
"""

from __future__ import annotations

import argparse
import copy
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from captum_topgap._checks import check_writable
from captum_topgap.app import commands
from captum_topgap.app.arguments import (
    device,
    fraction,
    image_side,
    int_list,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
    top_k,
)
from captum_topgap.app.compare import DEFAULT_METHODS
from captum_topgap.app.plots import png_path
from captum_topgap.app.visualize import visualize_filters, visualize_neurons
from captum_topgap.data import DATASETS as NAMED_DATASETS
from captum_topgap.evaluate.audit import AUDIT_ATTACKS
from captum_topgap.train.checkpoints import load_model
from captum_topgap.train.losses import VARIANTS

DATASETS = ["textured-mnist", "spurious-mnist", "spurious-fashion-mnist"]
"""The rendered datasets ``preview`` draws."""


class _Formatter(argparse.HelpFormatter):
    """argparse's help, with every option's default at the end of its line (when it has one)."""

    def _format_action(self, action: argparse.Action) -> str:
        empty = action.default is None or action.default is False or action.default in ("", [], argparse.SUPPRESS)
        shown = not empty and action.help != argparse.SUPPRESS
        if action.option_strings and shown and "%(default)" not in (action.help or ""):
            action = copy.copy(action)
            action.help = f"{action.help or ''} (default: %(default)s)".strip()
        return super()._format_action(action)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage block) that names the sub-command, and the help shows
    every default.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _debug_flag() -> argparse.ArgumentParser:
    """The ``--debug`` flag every sub-command takes (a parent parser)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--debug", action="store_true", help="on failure, show the full traceback")
    return parent


def _command(sub: argparse._SubParsersAction, name: str, help: str) -> argparse.ArgumentParser:
    """A sub-command parser that takes ``--debug``."""
    return sub.add_parser(name, help=help, parents=[_debug_flag()])


def _data_options(parser: argparse.ArgumentParser, p: float = 0.0) -> None:
    parser.add_argument("--data", default="textured-mnist", choices=list(NAMED_DATASETS))
    parser.add_argument("--root", default=None,
                        help="the dataset's folder on disk in its published layout (cub: the one holding "
                             "CUB_200_2011/; cifar10: cifar-10-batches-py/; docs/data.md)")
    parser.add_argument("--p", type=probability, default=p, help="background randomness (Textured MNIST)")
    parser.add_argument("--q", type=probability, default=0.0, help="digit-texture randomness (Textured MNIST)")
    parser.add_argument("--size", type=image_side, default=64, help="image side")
    parser.add_argument("--limit", type=positive_int, default=None, help="use the first N images of each split")
    parser.add_argument("--seed", type=non_negative_int, default=0)


def _add_train(sub: argparse._SubParsersAction) -> None:
    train = _command(sub, "train", "train a baseline or Top-GAP model with the one training loop")
    train.add_argument("--model", default="topgap_resnet18", help="timm name (topgap_* for Top-GAP)")
    train.add_argument("--method", default="auto",
                       choices=["auto", "baseline", "topgap", "reff", "rrr", "abn", "boxhead", "expansion",
                                "perception"])
    train.add_argument("--pretrained", action="store_true",
                       help="fine-tune ImageNet weights (offline, from their packages): --model efficientnet_lite0/1/2 "
                            "or topgap_efficientnet_lite0/1/2")
    train.add_argument("--k", type=top_k, default=None,
                       help="Top-GAP k: positions (≥ 1) or a fraction in (0, 1]; topgap_* models only (default 64)")
    train.add_argument("--sparsity", type=non_negative_float, default=None,
                       help="Top-GAP λ (default: train.losses.TOPGAP_SPARSITY)")
    train.add_argument("--annotated", type=positive_int, default=None,
                       help="ReFF/RRR/ABN: images that keep their masks (default all)")
    train.add_argument("--variant", default="reff", choices=sorted(VARIANTS),
                       help="ReFF variant: reff, l1, l2 (published) or one that closes its loophole (docs/reff.md)")
    train.add_argument("--reff-weight", type=non_negative_float, default=None,
                       help="λ of the ReFF/RRR term or ABN's γ (default: train.objectives.REFF_WEIGHT of the "
                            "variant, ABN_WEIGHT)")
    train.add_argument("--alpha", type=probability, default=None,
                       help="boxhead: α of α · cross-entropy + (1 − α) · box loss (default train.objectives.BOX_ALPHA)")
    train.add_argument("--annotator-epochs", type=positive_int, default=20,
                       help="ReFF/RRR/ABN: pix2pix epochs on the annotated set")
    _data_options(train)
    train.add_argument("--localizer", default=None, help="expansion: the classifier checkpoint to expand (frozen)")
    train.add_argument("--classifier", default=None,
                       help="perception: the classifier checkpoint whose layer the decoder inverts (frozen)")
    train.add_argument("--layer", default=None,
                       help="perception: the layer E stops at (default: the layer Grad-CAM explains)")
    train.add_argument("--consistency", type=non_negative_float, default=None,
                       help="perception: β of the feature-consistency term (default models.perception's)")
    train.add_argument("--test-p", type=probability, default=1.0, help="background randomness of the test split")
    train.add_argument("--epochs", type=positive_int, default=10)
    train.add_argument("--batch-size", type=positive_int, default=32)
    train.add_argument("--lr", type=positive_float, default=0.01)
    train.add_argument("--momentum", type=probability, default=0.8)
    train.add_argument("--weight-decay", type=non_negative_float, default=1e-5)
    train.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    train.add_argument("--workers", type=non_negative_int, default=0, help="DataLoader workers")
    train.add_argument("--device", type=device, default="cpu")
    train.add_argument("--out", default="runs/train", help="checkpoint folder")
    train.add_argument("--resume", default=None, help="a last.pt (same folder, same settings) to continue from")
    train.add_argument("--restore-best", action="store_true",
                       help="end with the best validation epoch's weights (those of best.pt), not the last epoch's")
    train.set_defaults(run=commands.train_model)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    evaluate = _command(sub, "evaluate", "accuracy, heat-map IoU, robustness and shift of a checkpoint")
    evaluate.add_argument("--checkpoint", required=True)
    _data_options(evaluate, p=1.0)
    evaluate.add_argument("--methods", default="", help="comma-separated registry names, e.g. gradcam,topgap_cam")
    evaluate.add_argument("--explain-limit", type=positive_int, default=200, help="images used for the heat-map scores")
    evaluate.add_argument("--option", action="append", default=[], metavar="METHOD.NAME=VALUE",
                          help="a method's constructor option, e.g. augmented_gradcam.solver=primal_dual")
    evaluate.add_argument("--erf-distance", action="store_true", help="also the mean ERF distance of the true class")
    evaluate.add_argument("--robustness", default="",
                          help="comma-separated attacks: pgd20,pgd50,square[N],apgd_ce[N],apgd_dlr[N]; 'audit' adds "
                               "the gradient-masking audit (docs/robustness.md)")
    evaluate.add_argument("--audit-attacks", default=",".join(AUDIT_ATTACKS),
                          help="the audit's cascade, PGD-20 first (default: %(default)s)")
    evaluate.add_argument("--surrogate", action="append", default=[], metavar="CHECKPOINT",
                          help="a model whose PGD-20 examples the audit transfers (repeatable)")
    evaluate.add_argument("--region", default="all", help="pixels attacked: all, background, object (comma list)")
    evaluate.add_argument("--eps", type=fraction, default=8 / 255, help="L∞ budget, e.g. 8/255")
    evaluate.add_argument("--robust-limit", type=positive_int, default=500, help="images attacked / corrupted")
    evaluate.add_argument("--corruptions", action="store_true", help="accuracy under 5 corruptions × 5 severities")
    evaluate.add_argument("--device", type=device, default="cpu")
    evaluate.add_argument("--json", default=None, help="also write the results to this JSON file")
    evaluate.set_defaults(run=commands.evaluate_model)


def _add_explain(sub: argparse._SubParsersAction) -> None:
    explain = _command(sub, "explain", "top-5 classes and a heat-map overlay of one photo")
    explain.add_argument("image", nargs="?", default=None, help="a photo (default: scikit-image's cat)")
    explain.add_argument("--method", default="gradcam", help="a registry name (captum-topgap methods)")
    explain.add_argument("--compare", default=None, help="several methods side by side, e.g. gradcam,augmented_gradcam")
    explain.add_argument("--model", default=None, help="a timm name (random weights unless --checkpoint)")
    explain.add_argument("--checkpoint", default=None, help="a best.pt written by captum-topgap train")
    explain.add_argument("--decoder", default=None,
                         help="perception_visualization (required): a best.pt of train --method perception; its "
                              "classifier is explained (--checkpoint, if given, must hold the same weights)")
    explain.add_argument("--target", type=non_negative_int, default=None,
                         help="class to explain (default: the top class)")
    explain.add_argument("--size", type=image_side, default=None, help="image side (default: the model's)")
    explain.add_argument("--option", action="append", default=[], metavar="METHOD.NAME=VALUE")
    explain.add_argument("--out", default="explanation.png")
    explain.add_argument("--device", type=device, default="cpu")
    explain.set_defaults(run=commands.explain_image)


def _add_visualize(sub: argparse._SubParsersAction) -> None:
    visualize = _command(sub, "visualize",
                         "maximally activating patches, class models, first-layer filters or channel images")
    visualize.add_argument("what", choices=["patches", "classes", "filters", "neurons"])
    visualize.add_argument("--checkpoint", required=True, help="a best.pt written by captum-topgap train")
    visualize.add_argument("--layer", default=None,
                           help="patches (required), neurons (default: the Grad-CAM layer): a dotted name, e.g. layer3")
    visualize.add_argument("--channels", type=int_list, default=None,
                           help="patches (default 0,1,2,3), neurons (default: the first 8): comma-separated")
    visualize.add_argument("--n", type=positive_int, default=9, help="patches: how many per channel")
    visualize.add_argument("--classes", type=int_list, default=None, help="classes: comma-separated (default: all)")
    visualize.add_argument("--steps", type=positive_int, default=200, help="classes, neurons: gradient-ascent steps")
    visualize.add_argument("--lr", type=positive_float, default=0.5, help="classes, neurons: step size")
    visualize.add_argument("--l2", type=non_negative_float, default=1e-3,
                           help="classes, neurons: λ of the L2 regulariser")
    visualize.add_argument("--jitter", type=non_negative_int, default=0,
                           help="classes, neurons: random roll in pixels (0: off)")
    visualize.add_argument("--blur-every", type=non_negative_int, default=0,
                           help="classes, neurons: Gaussian blur period (0: off)")
    _data_options(visualize, p=1.0)
    visualize.set_defaults(limit=2000, size=None)
    visualize.add_argument("--device", type=device, default="cpu")
    visualize.add_argument("--out", default="visualization", help="the folder the PNGs are written into")
    visualize.set_defaults(run=run_visualize)


def run_visualize(args: argparse.Namespace) -> int:
    """``captum-topgap visualize``: patches and classes by :func:`commands.visualize_units`; filters and neurons
    (``--size``: default the checkpoint's) by :mod:`captum_topgap.app.visualize`.

    Example:
        >>> run_visualize(build_parser().parse_args(["visualize", "filters", "--checkpoint", "missing.pt"]))
        Traceback (most recent call last):
        ...
        captum_topgap.app.arguments.UsageError: --checkpoint: checkpoint missing.pt does not exist; pass a best.pt ...
    """
    if args.what in ("patches", "classes"):
        args.channels = args.channels or [0, 1, 2, 3]
        return commands.visualize_units(args)
    metadata = commands.checked_checkpoint(args.checkpoint).get("metadata", {})
    model = load_model(args.checkpoint, args.device)
    if args.what == "filters":
        return visualize_filters(model, args.out)
    return visualize_neurons(model, args.out, args.layer, args.channels, args.size or metadata.get("size", 64),
                             args.steps, args.lr, args.l2, args.jitter, args.blur_every, args.seed)


def _add_small(sub: argparse._SubParsersAction) -> None:
    methods = _command(sub, "methods", "list every registered method")
    methods.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    methods.set_defaults(run=commands.print_methods)

    preview = _command(sub, "preview", "save a PNG grid of dataset samples with mask outlines")
    preview.add_argument("--dataset", default="textured-mnist", choices=DATASETS)
    preview.add_argument("--split", default="train", choices=["train", "val", "test"])
    preview.add_argument("--p", type=probability, default=0.0, help="background randomness (Textured MNIST)")
    preview.add_argument("--q", type=probability, default=0.0, help="digit-texture randomness (Textured MNIST)")
    preview.add_argument("--size", type=image_side, default=64)
    preview.add_argument("--seed", type=non_negative_int, default=0)
    preview.add_argument("--n", type=positive_int, default=16, help="number of samples")
    preview.add_argument("--out", default="samples.png")
    preview.set_defaults(run=commands.preview)

    demo = _command(sub, "demo", "the papers' claims in their own settings on Textured MNIST: a report")
    demo.add_argument("--out", default="demo", help="report folder (index.html, results.json, figures, models)")
    demo.add_argument("--quick", action="store_true",
                      help="each scenario's quick budget: one seed, fewer images (docs/demo.md: its reference steps)")
    demo.add_argument("--seed", type=non_negative_int, default=None, help="run this one seed instead of the preset's")
    demo.add_argument("--scenarios", default=None,
                      help="comma-separated scenarios to run (default: the default ones; see --list-scenarios)")
    demo.add_argument("--list-scenarios", action="store_true",
                      help="print each scenario's paper, data, models, claims and measured cost per preset, and exit")
    demo.add_argument("--time", action="store_true",
                      help="with --list-scenarios: time this machine's reference step and give each cost in minutes")
    demo.add_argument("--backbone", default="scratch", choices=["scratch", "pretrained"],
                      help="object and spurious scenarios: ResNet-18s from scratch at 48 px, or the papers' protocol — "
                           "fine-tune ImageNet EfficientNet-Lite0 at 192 px (over the default budget, docs/demo.md)")
    demo.add_argument("--keep-checkpoints", action="store_true",
                      help="keep each model's resumable last.pt and best.pt beside the model.pt the report lists")
    demo.add_argument("--device", type=device, default="cpu", help="where every model trains and is measured (cuda)")
    demo.add_argument("--root", default=None,
                      help="the folder of a scenario's dataset on disk, in its published layout (docs/data.md)")
    demo.set_defaults(run=commands.demo)

    sweep = _command(sub, "sweep", "choose ReFF's variant and λ, or Top-GAP's k and λ, on a validation split")
    sweep.add_argument("--candidate", action="append", required=True, metavar="METHOD[:VARIANT[:λ[:LAYERS]]]",
                       help="e.g. baseline, reff:reff:0.001, reff:contrastive:100:layer1,layer2, rrr::10; with "
                            "--scenario robustness: baseline, topgap:K:λ")
    sweep.add_argument("--scenario", default="spurious", choices=["spurious", "robustness"],
                       help="the demo scenario swept (robustness: scored by validation PGD-20)")
    sweep.add_argument("--seeds", type=int_list, default=[0], help="comma-separated training seeds")
    sweep.add_argument("--quick", action="store_true", help="the demo's --quick budget (same training)")
    sweep.add_argument("--backbone", default="scratch", choices=["scratch", "pretrained"],
                       help="the demo's backbone: ResNet-18s from scratch, or ImageNet EfficientNet-Lite0 fine-tuned")
    sweep.add_argument("--pretrained-size", type=positive_int, default=192,
                       help="image side with --backbone pretrained")
    sweep.add_argument("--optimizer", default="adam", choices=["adam", "sgd"], help="every candidate's optimiser")
    sweep.add_argument("--lr", type=positive_float, default=1e-3, help="every candidate's learning rate")
    sweep.add_argument("--momentum", type=probability, default=0.8, help="SGD's momentum")
    sweep.add_argument("--images", type=positive_int, default=None,
                       help="training images of the swept scenario (default: the preset's)")
    sweep.add_argument("--epochs", type=positive_int, default=None,
                       help="training epochs of the swept scenario (default: the preset's)")
    sweep.add_argument("--out", default="sweep", help="folder for sweep.json and the checkpoints")
    sweep.set_defaults(run=commands.sweep_candidates)

    bench = _command(sub, "bench", "cost ratios, medians of interleaved A/B timings in one run")
    bench.add_argument("--only", default=None, help="run one row by name")
    bench.add_argument("--json", action="store_true", help="print {name: {ratio, target, a_s, b_s, ...}}")
    bench.add_argument("--quick", action="store_true", help="small images (64 px, batch 4)")
    bench.add_argument("--repeats", type=positive_int, default=None)
    bench.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's)")
    bench.add_argument("--device", type=device, default="cpu")
    bench.set_defaults(run=commands.bench)


def _add_compare(sub: argparse._SubParsersAction) -> None:
    compare = _command(sub, "compare", "every method scored side by side: localisation, faithfulness, sanity, class "
                                           "discrimination, cost")
    compare.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated registry names")
    source = compare.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", default=None, help="a best.pt (default: train a ResNet-18 in the run)")
    source.add_argument("--model", default=None, help="a timm name with random weights (10 classes)")
    _data_options(compare, p=1.0)
    compare.set_defaults(size=None)
    compare.add_argument("--option", action="append", default=[], metavar="METHOD.NAME=VALUE",
                         help="a method's constructor option, e.g. rise.n_masks=500")
    compare.add_argument("--quick", action="store_true", help="fewer images and samples (≤ 10 min on 2 cores)")
    compare.add_argument("--device", type=device, default="cpu")
    compare.add_argument("--out", default="compare", help="report folder (index.html, results.json, figures)")
    compare.set_defaults(run=commands.compare_methods)


DESCRIPTION = ("Top-GAP, ReFF, Augmented Grad-CAM and Expansion CAM for Captum, pytorch-grad-cam, timm and Foolbox. "
               "`captum-topgap COMMAND --help` lists a command's options and their defaults.")


def build_parser() -> argparse.ArgumentParser:
    """The ``captum-topgap`` argument parser with one sub-command per job (each takes ``--debug``).

    Example:
        >>> build_parser().parse_args(["train", "--epochs", "3"]).epochs
        3
    """
    parser = _Parser(prog="captum-topgap", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_small(sub)
    _add_train(sub)
    _add_evaluate(sub)
    _add_explain(sub)
    _add_visualize(sub)
    _add_compare(sub)
    return parser


OUTPUTS: dict[str, tuple[str, bool]] = {
    "train": ("out", True), "demo": ("out", True), "compare": ("out", True), "sweep": ("out", True),
    "visualize": ("out", True), "explain": ("out", False), "preview": ("out", False), "evaluate": ("json", False),
}
"""What each command writes: (its option, whether a folder), checked before any work."""


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse the command's ``--out`` / ``--json`` before any work when it could not be written there.

    Example:
        >>> check_outputs(argparse.Namespace(command="explain", out="/proc/cat"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: --out /proc/cat.png cannot be written: ...
    """
    option, folder = OUTPUTS.get(args.command, ("", True))
    value = getattr(args, option, None) if option else None
    if value:
        check_writable(png_path(value) if option == "out" and not folder else value, f"--{option}", folder)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``captum-topgap`` console script: run one sub-command, report a failure in one line.

    Exit status: 0 done, 1 the work failed, 2 a bad argument or file, 130 interrupted.

    Example:
        >>> main(["train", "--epochs", "0"])
        2
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    if threading.current_thread() is threading.main_thread():  # the start-up handler of captum_topgap_cli
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        check_outputs(args)
        if args.run in (commands.train_model, commands.evaluate_model):
            from captum_topgap._distributed import setup

            setup()  # joins torchrun's process group; nothing in a single process
        return args.run(args)
    except KeyboardInterrupt:
        hint = f"; continue with --resume {args.out}/last.pt" if args.command == "train" else ""
        print(f"captum-topgap {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        status = 2 if isinstance(error, (ValueError, FileNotFoundError)) else 1
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"captum-topgap {args.command}: error: {message}", file=sys.stderr)
        return status


if __name__ == "__main__":
    raise SystemExit(main())
