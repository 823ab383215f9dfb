"""What each ``captum-topgap`` sub-command does, given its parsed (and already checked) arguments.

Each function returns the exit status; the checks that need files or the registry raise
:class:`~captum_topgap.app.arguments.UsageError` before any work, which :func:`captum_topgap.app.cli.main`
prints as one line with exit status 2.

Example:
    >>> parse_options(["augmented_gradcam.n_augmentations=16", "augmented_gradcam.solver=primal_dual"],
    ...               ["augmented_gradcam"])
    {'augmented_gradcam': {'n_augmentations': 16, 'solver': 'primal_dual'}}
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import timm
import torch
import torchvision.utils

from captum_topgap._distributed import is_main, shard
from captum_topgap._layers import resolve_layer
from captum_topgap.app.arguments import UsageError
from captum_topgap.app.bench import reference_step
from captum_topgap.app.bench import run as run_bench
from captum_topgap.app.compare import CompareConfig, run_compare
from captum_topgap.app.demo import DemoConfig, describe_data, run_demo
from captum_topgap.app.explain import explain, explain_perception, load_image, weight_difference
from captum_topgap.app.plots import png_path, save_sample_grid
from captum_topgap.app.report import summary
from captum_topgap.app.scenarios import PRESETS, SCENARIOS
from captum_topgap.app.selection import choose, choose_robust, parse_candidate, sweep
from captum_topgap.app.visualize import class_model, max_activating_patches, save_patch_grid
from captum_topgap.data import Samples, batches, collate, dataset_arguments, make_dataset
from captum_topgap.evaluate.audit import robustness_audit
from captum_topgap.evaluate.heatmaps import erf_scores, heatmap_scores
from captum_topgap.evaluate.metrics import accuracy, normalize_per_image
from captum_topgap.evaluate.robustness import AttackSpec, evaluate_robustness
from captum_topgap.evaluate.shift import corruption_accuracy, group_shift
from captum_topgap.models.perception import CONSISTENCY_WEIGHT, PerceptionDecoder
from captum_topgap.models.pretrained import efficientnet_lite0, imagenet_classes, pretrained_name
from captum_topgap.registry import canonical_name, get_method, list_methods, method_spec
from captum_topgap.train.checkpoints import load_checkpoint, load_model
from captum_topgap.train.loop import TrainConfig, kept_record, train
from captum_topgap.train.objectives import ExpansionObjective, PerceptionObjective, make_objective, objective_weight
from captum_topgap.train.workflows import (
    expansion_setup,
    explanation_setup,
    perception_setup,
    trainable_model,
    training_method,
)


def methods_table() -> list[tuple[str, str, str, str]]:
    """Rows (name, origin, kind, one-line description) of every registered method, sorted by name.

    Example:
        >>> ("gradcam", "grad-cam", "layer") == methods_table()[[r[0] for r in methods_table()].index("gradcam")][:3]
        True
    """
    rows = []
    for name in list_methods():
        spec = method_spec(name)
        spec.load()
        rows.append((name, spec.origin, spec.kind, spec.description))
    return rows


def methods_markdown() -> str:
    """The method table as Markdown, as it stands in docs/methods.md.

    Example:
        >>> methods_markdown().splitlines()[0]
        '| name | origin | kind | description |'
    """
    lines = ["| name | origin | kind | description |", "|---|---|---|---|"]
    lines += [f"| `{name}` | {origin} | {kind} | {text} |" for name, origin, kind, text in methods_table()]
    return "\n".join(lines)


def print_methods(args: argparse.Namespace) -> int:
    """``captum-topgap methods``: the registry as a table (``--markdown``: as in docs/methods.md)."""
    if args.markdown:
        print(methods_markdown())
        return 0
    rows = methods_table()
    widths = [max(len(r[i]) for r in [("name", "origin", "kind", ""), *rows]) for i in range(3)]
    print(f"{'name':<{widths[0]}}  {'origin':<{widths[1]}}  {'kind':<{widths[2]}}  description")
    for name, origin, kind, description in rows:
        print(f"{name:<{widths[0]}}  {origin:<{widths[1]}}  {kind:<{widths[2]}}  {description}")
    print(f"\n{len(rows)} methods; use them with captum_topgap.get_method(name, model, layer=None).")
    return 0


def preview(args: argparse.Namespace) -> int:
    """``captum-topgap preview``: a PNG grid of samples with their masks outlined."""
    options: dict[str, Any] = {"size": args.size, "seed": args.seed, "limit": args.n}
    if args.dataset == "textured-mnist":
        options.update(p=args.p, q=args.q)
    data = make_dataset(args.dataset, args.split, **options)
    path = save_sample_grid([data[i] for i in range(min(args.n, len(data)))], args.out)
    print(f"wrote {path} ({min(args.n, len(data))} samples of {args.dataset}/{args.split}, masks outlined)")
    return 0


CIFAR_ROOT = "--data cifar10 needs --root: the folder that holds cifar-10-batches-py/ (nothing is downloaded)"


def dataset(args: argparse.Namespace, split: str, p: float | None = None) -> Samples:
    """The ``--data`` split with those of ``--size``, ``--seed``, ``--limit``, ``--root`` and ``--p``/``--q`` that the
    dataset takes; a dataset on disk without ``--root`` is a usage error naming the flag.
    """
    given: dict[str, Any] = {"size": args.size, "seed": args.seed, "limit": args.limit, "root": args.root,
                             "p": args.p if p is None else p, "q": args.q}
    require_root(args)
    takes = dataset_arguments(args.data)
    return make_dataset(args.data, split, **{key: value for key, value in given.items() if key in takes})


def require_root(args: argparse.Namespace) -> None:
    """A usage error naming ``--root`` when ``--data`` reads a dataset from disk and none was given.

    Example:
        >>> require_root(argparse.Namespace(data="textured-mnist", root=None))
        >>> require_root(argparse.Namespace(data="cub", root=None))
        Traceback (most recent call last):
        ...
        captum_topgap.app.arguments.UsageError: --data cub reads the dataset from disk: pass --root, the folder ...
    """
    if "root" in dataset_arguments(args.data) and args.root is None:
        raise UsageError(CIFAR_ROOT if args.data == "cifar10" else
                         f"--data {args.data} reads the dataset from disk: pass --root, the folder that holds it in "
                         "its published layout (docs/data.md)")


def checked_checkpoint(path: str, name: str = "--checkpoint") -> dict[str, Any]:
    """The checkpoint's content, or a usage error naming the flag (missing, unreadable, not a checkpoint)."""
    try:
        return load_checkpoint(path)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(f"{name}: {error}") from error


def train_model(args: argparse.Namespace) -> int:
    """``captum-topgap train``: one model with the one training loop (or an expansion network)."""
    config = train_config(args)
    if args.resume:
        checked_checkpoint(args.resume, "--resume")
    if args.method == "expansion":
        return train_expansion(args, config)
    if args.method == "perception":
        return train_perception(args, config)
    for flag, value in (("--classifier", args.classifier), ("--layer", args.layer),
                        ("--consistency", args.consistency)):
        if value is not None:
            raise UsageError(f"{flag} is an option of --method perception; drop it for --method {args.method}")
    if args.method in ("topgap", "auto") and not args.model.startswith("topgap_") and args.method == "topgap":
        raise UsageError(f"--method topgap needs a topgap_* model, got --model {args.model}")
    name = args.model
    if args.pretrained:
        try:
            name = pretrained_name(args.model)
        except ValueError as error:
            raise UsageError(f"--pretrained: {error}") from None
    torch.manual_seed(args.seed)
    train_data, val_data = dataset(args, "train"), dataset(args, "val")
    test_data = dataset(args, "test", p=args.test_p)  # built before training: a broken tree fails fast
    if args.k is not None and not name.startswith("topgap_"):
        raise UsageError(f"--k is Top-GAP's top-k; --model {args.model} is not a topgap_* model (drop --k, or train "
                         f"topgap_{args.model})")
    k = args.k
    model, model_kwargs = trainable_model(name, getattr(train_data, "n_classes", 10), k, pretrained=args.pretrained)
    method = training_method(args.method, model)
    annotator = None
    if method in ("reff", "rrr", "abn"):
        train_data, annotator = explanation_setup(train_data, args.annotated, args.size, args.annotator_epochs,
                                                  args.seed)
    weight = args.alpha if method == "boxhead" else args.reff_weight
    objective = make_objective(method, model, variant=args.variant, weight=weight, sparsity=args.sparsity,
                               annotator=annotator)
    metadata = {"model": name, "model_kwargs": model_kwargs, "pretrained": args.pretrained, "method": method,
                "data": args.data,
                "sparsity": getattr(objective, "sparsity", 0.0),
                "annotated": -1 if args.annotated is None else args.annotated,
                "variant": args.variant if method == "reff" else "", "weight": objective_weight(objective),
                "p": args.p, "q": args.q, "size": args.size}
    history = train(model, objective, train_data, val_data, config, args.out, args.resume, metadata)
    test_accuracy = accuracy(model, test_data, args.batch_size, args.device)
    kept = kept_record(history)
    shift = f" (p={args.test_p})" if "p" in dataset_arguments(args.data) else ""
    if is_main():
        print(f"{args.model} ({method}): epoch {kept['epoch']} kept, val accuracy {kept['val_accuracy']:.4f}, "
              f"test accuracy{shift} {test_accuracy:.4f}; checkpoints in {args.out}")
    return 0


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The loop's settings from ``train``'s flags."""
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                       weight_decay=args.weight_decay, optimizer=args.optimizer, seed=args.seed,
                       num_workers=args.workers, device=args.device, restore_best=args.restore_best)


def train_expansion(args: argparse.Namespace, config: TrainConfig) -> int:
    """Expansion CAM: train an ExpansionNet (MSE reconstruction) over the frozen ``--localizer`` checkpoint."""
    if not args.localizer:
        raise UsageError("--method expansion needs --localizer CKPT: the classifier trained by captum-topgap train")
    checked_checkpoint(args.localizer, "--localizer")
    model, metadata = expansion_setup(args.localizer, args.device)
    metadata.update(data=args.data, p=args.p, q=args.q, size=args.size)
    history = train(model, ExpansionObjective(), dataset(args, "train"), dataset(args, "val"), config, args.out,
                    args.resume, metadata)
    print(f"expansion network over {args.localizer}: final reconstruction MSE {history[-1]['train_loss']:.5f}, "
          f"classifier val accuracy {history[-1]['val_accuracy']:.4f} (frozen); checkpoints in {args.out}")
    return 0


def train_perception(args: argparse.Namespace, config: TrainConfig) -> int:
    """Perception Visualization: train a PerceptionDecoder over the frozen ``--classifier`` checkpoint."""
    if not args.classifier:
        raise UsageError("--method perception needs --classifier CKPT: the classifier trained by captum-topgap train")
    checked_checkpoint(args.classifier, "--classifier")
    try:
        model, metadata = perception_setup(args.classifier, args.size, args.layer, args.device)
    except ValueError as error:
        raise UsageError(f"--layer: {error}" if args.layer else str(error)) from None
    metadata.update(data=args.data, p=args.p, q=args.q, size=args.size)
    objective = PerceptionObjective(CONSISTENCY_WEIGHT if args.consistency is None else args.consistency)
    history = train(model, objective, dataset(args, "train"), dataset(args, "val"), config, args.out, args.resume,
                    metadata)
    print(f"perception decoder at {model.layer_name!r} over {args.classifier}: final loss "
          f"{history[-1]['train_loss']:.5f}, classifier val accuracy {history[-1]['val_accuracy']:.4f} (frozen); "
          f"checkpoints in {args.out}")
    return 0


def parse_options(items: Sequence[str], methods: Sequence[str]) -> dict[str, dict[str, object]]:
    """``["augmented_gradcam.solver=primal_dual", "recipro_cam.gaussian=true"]`` -> per-method keyword arguments.

    Numbers and true/false are converted; a malformed item, an unknown method or one not among ``methods`` (the
    run's, whose option would be ignored) is a usage error.

    Example:
        >>> parse_options(["recipro_cam.gaussian=true"], ["recipro_cam"])
        {'recipro_cam': {'gaussian': True}}
    """
    options: dict[str, dict[str, object]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot or not method or not name:
            raise UsageError(f"--option must look like METHOD.NAME=VALUE, got {item!r}")
        try:
            canonical = canonical_name(method)
        except ValueError as error:
            raise UsageError(f"--option {item!r}: {error}") from None
        if canonical not in methods:
            raise UsageError(f"--option {item!r}: {canonical!r} is not among the methods this run explains "
                             f"({', '.join(methods) or 'none'}); add it to the methods or drop the option.")
        value: object = text
        for convert in (int, float):
            try:
                value = convert(text)
                break
            except ValueError:
                continue
        if text.lower() in ("true", "false"):
            value = text.lower() == "true"
        options.setdefault(canonical, {})[name] = value
    return options


def check_options(model: torch.nn.Module, options: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse ``--option`` values before any work: each optioned method is built once on ``model`` (as the run
    builds it), so an option it does not take or a bad value is a usage error (exit status 2) naming ``--option``.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        ...                           torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> check_options(net, {"gradcam": {"nosuch": 1}})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        captum_topgap.app.arguments.UsageError: --option gradcam: GradCAM.__init__() got an unexpected keyword ...
    """
    for name, values in options.items():
        try:
            get_method(name, model, **values)
        except (TypeError, ValueError) as error:
            raise UsageError(f"--option {name}: {error}") from error


def method_names(text: str, flag: str) -> list[str]:
    """Comma-separated registry names in their registered spelling (unknown ones: a usage error with the closest
    names).

    Example:
        >>> method_names("gradcam_plus_plus, smooth:saliency", "--methods")
        ['gradcam++', 'smooth:saliency']
    """
    try:
        return [canonical_name(name.strip()) for name in text.split(",") if name.strip()]
    except ValueError as error:
        raise UsageError(f"{flag}: {error}") from None


def evaluate_model(args: argparse.Namespace) -> int:
    """``captum-topgap evaluate``: accuracy, heat-map scores, ERF distance, robustness and shift of a checkpoint."""
    attacks = [a.strip() for a in args.robustness.split(",") if a.strip()]
    audit = "audit" in attacks
    attacks = [a for a in attacks if a != "audit"]
    if args.surrogate and not audit:
        raise UsageError("--surrogate is used by the audit only; add --robustness audit")
    audit_attacks = [a.strip() for a in args.audit_attacks.split(",") if a.strip()]
    for flag, names in (("--robustness", attacks), ("--audit-attacks", audit_attacks if audit else [])):
        for attack in names:
            try:
                AttackSpec.parse(attack)
            except ValueError as error:
                raise UsageError(f"{flag}: {error}") from None
    if audit and (not audit_attacks or AttackSpec.parse(audit_attacks[0]).name != "pgd20"):
        raise UsageError(f"--audit-attacks must start with pgd20 (the reference attack), got {args.audit_attacks!r}")
    regions = [r.strip() for r in args.region.split(",") if r.strip()]
    if not set(regions) <= {"all", "background", "object"}:
        raise UsageError(f"--region must list all, background and/or object, got {args.region!r}")
    require_root(args)
    checked_checkpoint(args.checkpoint)
    for path in args.surrogate:
        checked_checkpoint(path, "--surrogate")
    methods = method_names(args.methods, "--methods")
    options = parse_options(args.option, methods)
    model = load_model(args.checkpoint, args.device)
    check_options(model, options)
    data = dataset(args, "test")
    results: dict[str, Any] = {"accuracy": accuracy(model, data, 64, args.device)}
    if methods:
        results["heatmaps"] = heatmap_scores(model, methods, data, limit=args.explain_limit, method_kwargs=options)
    if args.erf_distance:
        results["erf_distance"] = erf_scores(model, data, limit=args.explain_limit)
    indices = shard(range(min(args.robust_limit, len(data))))
    if attacks:
        results["robustness"] = {
            region: evaluate_robustness(model, batches(data, 64, indices), attacks, eps=args.eps,
                                        region=None if region == "all" else region, seed=args.seed)
            for region in regions}
    if audit:
        attacked = collate([data[i] for i in indices])
        surrogates = {Path(path).parent.name or path: load_model(path, args.device) for path in args.surrogate}
        results["audit"] = robustness_audit(model, attacked.images.to(args.device), attacked.labels.to(args.device),
                                            eps=args.eps, attacks=audit_attacks, surrogates=surrogates,
                                            seed=args.seed)
    if args.corruptions:
        results["corruptions"] = corruption_accuracy(model, batches(data, 64, indices), seed=args.seed)
    if hasattr(data, "groups"):
        results["groups"] = group_shift(model, data)
    if is_main():
        print_evaluation(results, args)
    return 0


def print_evaluation(results: dict[str, Any], args: argparse.Namespace) -> None:
    """``evaluate``'s lines on the terminal, and ``--json``."""
    print(f"accuracy {results['accuracy']:.4f}")
    if "erf_distance" in results:
        print("ERF distance: " + "  ".join(f"{k} {v:.4f}" for k, v in results["erf_distance"].items()))
    for name, scores in results.get("heatmaps", {}).items():
        print(f"{name:24s} IoU@0.5 {scores['iou']:.4f}   IoU mean over thresholds {scores['iou_mean_thresholds']:.4f}")
    for region, table in results.get("robustness", {}).items():
        print(f"robust accuracy ({region} pixels, eps={args.eps:.4g}): "
              + "  ".join(f"{name} {value:.4f}" for name, value in table.items()))
    if "audit" in results:
        audit = results["audit"]
        print(f"robustness audit (eps={args.eps:.4g}, cascade): " + "  ".join(
            f"{name} {value:.4f}" for name, value in audit.items() if isinstance(value, float)))
        print("  eps sweep of pgd20: " + "  ".join(f"{eps} {value:.4f}" for eps, value in audit["sweep"].items()))
        print(f"  verdict: {audit['verdict']} ({'; '.join(audit['reasons'])})")
        print(f"  rules: {audit['rules']}")
    for name, row in results.get("corruptions", {}).items():
        print(f"corruption {name:16s} " + (f"{row:.4f}" if isinstance(row, float) else
                                           "  ".join(f"{k} {v:.4f}" for k, v in row.items())))
    if "groups" in results:
        print(f"groups: average {results['groups']['average']:.4f}  worst group {results['groups']['worst_group']:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


PV = "perception_visualization"
"""The registry name of Perception Visualization, the one method ``explain`` runs with ``--decoder``."""


def explain_image(args: argparse.Namespace) -> int:
    """``captum-topgap explain``: top-5 classes and heat-maps of one photo (``--method perception_visualization
    --decoder CKPT``: input | Grad-CAM | reconstruction | PV, see :func:`explain_with_decoder`).
    """
    flag = "--compare" if args.compare else "--method"
    methods = method_names(args.compare or args.method, flag)
    options = parse_options(args.option, methods)
    if args.image is not None and not Path(args.image).is_file():
        raise UsageError(f"IMAGE {args.image} does not exist; give a photo (PNG, JPEG, …) or none for the cat")
    if PV in methods and args.compare:
        raise UsageError(f"--compare: {PV} writes its own four panels (input | Grad-CAM | reconstruction | PV); "
                         f"explain it alone with --method {PV} --decoder CKPT")
    if args.decoder is not None and methods != [PV]:
        raise UsageError(f"--decoder is an option of --method {PV}; drop it for {flag} {args.compare or args.method}")
    if methods == [PV]:
        return explain_with_decoder(args, options.get(PV, {}))
    if args.checkpoint:
        size = args.size or checked_checkpoint(args.checkpoint)["metadata"].get("size", 224)
        model = load_model(args.checkpoint, args.device)
        names = [str(c) for c in range(model(black_image(model, size, args.device)).shape[1])]
    elif args.model:
        if args.model not in timm.list_models():
            raise UsageError(f"--model {args.model!r} is not a timm model name (see timm.list_models()).")
        print(f"warning: --model {args.model} without --checkpoint has random weights (no hub downloads here)")
        model, size = timm.create_model(args.model, pretrained=False).eval(), args.size or 224
        names = [str(c) for c in range(model(black_image(model, size, args.device)).shape[1])]
    else:
        model, size, names = efficientnet_lite0(), args.size or 224, imagenet_classes()
    if args.target is not None and args.target >= len(names):
        raise UsageError(f"--target must be a class index in [0, {len(names)}), got {args.target}")
    check_options(model, options)
    image = load_image(args.image, size).to(args.device)
    result = explain(model, image, methods, args.out, names, args.target, options)
    for rank, (name, probability) in enumerate(result["top"], start=1):
        print(f"{rank}. {name:30s} {probability:.4f}")
    print(f"explained class {result['target']} ({names[result['target']]}) with {', '.join(methods)}: "
          f"{png_path(args.out)}")
    return 0


def explain_with_decoder(args: argparse.Namespace, options: Mapping[str, Any]) -> int:
    """``captum-topgap explain --method perception_visualization --decoder CKPT``: the photo at the decoder's size,
    explained by the decoder's classifier; every check (a decoder checkpoint, ``--checkpoint`` holding the very
    classifier it was trained over, ``--size``, ``--target``, ``--option``) before anything is written.
    """
    if not args.decoder:
        raise UsageError(f"--method {PV} needs --decoder CKPT: a decoder trained by captum-topgap train --method "
                         "perception --classifier CKPT")
    if args.model:
        raise UsageError("--model: the --decoder checkpoint holds its classifier; drop --model (or pass that "
                         "classifier's --checkpoint)")
    metadata = checked_checkpoint(args.decoder, "--decoder").get("metadata", {})
    try:
        decoder = load_model(args.decoder, args.device)
    except ValueError as error:
        raise UsageError(f"--decoder: {error}") from None
    if not isinstance(decoder, PerceptionDecoder):
        raise UsageError(f"--decoder {args.decoder} is not a perception decoder (its method is "
                         f"{metadata.get('method', 'not recorded')!r}); train one with captum-topgap train --method "
                         "perception --classifier CKPT")
    if args.checkpoint:
        checked_checkpoint(args.checkpoint)
        difference = weight_difference(decoder.classifier, load_model(args.checkpoint, args.device))
        if difference:
            raise UsageError(f"--decoder {args.decoder} was trained over another classifier than --checkpoint "
                             f"{args.checkpoint} ({difference}); pass the decoder trained over that checkpoint, or "
                             "drop --checkpoint to explain the decoder's own classifier")
    height, width = decoder.image_size
    if args.size is not None and (args.size, args.size) != (height, width):
        raise UsageError(f"--size {args.size}: the decoder {args.decoder} reconstructs {height} × {width} images; "
                         f"drop --size (or pass --size {height}), or train a decoder at {args.size} px")
    names = [str(c) for c in range(decoder.classifier(black_image(decoder.classifier, height, args.device)).shape[1])]
    if args.target is not None and args.target >= len(names):
        raise UsageError(f"--target must be a class index in [0, {len(names)}), got {args.target}")
    try:
        get_method(PV, decoder.classifier, decoder=decoder, **options)
    except (TypeError, ValueError) as error:
        raise UsageError(f"--option {PV}: {error}") from error
    image = load_image(args.image, (height, width)).to(args.device)
    result = explain_perception(decoder, image, args.out, names, args.target, options)
    for rank, (name, probability) in enumerate(result["top"], start=1):
        print(f"{rank}. {name:30s} {probability:.4f}")
    target = int(result["target"][0])
    print(f"explained class {target} ({names[target]}) with {PV} at {decoder.layer_name!r} "
          f"(input | Grad-CAM | reconstruction | PV): {png_path(args.out)}")
    return 0


def compare_methods(args: argparse.Namespace) -> int:
    """``captum-topgap compare``: every method scored side by side into ``--out``."""
    methods = method_names(args.methods, "--methods")
    if not methods:
        raise UsageError("--methods is empty; give comma-separated registry names (captum-topgap methods)")
    options = parse_options(args.option, methods)
    config = CompareConfig.quick() if args.quick else CompareConfig()
    model, data = None, None
    if args.checkpoint:
        size = args.size or checked_checkpoint(args.checkpoint)["metadata"].get("size", 64)
        model = load_model(args.checkpoint, args.device)
    elif args.model:
        if args.model not in timm.list_models():
            raise UsageError(f"--model {args.model!r} is not a timm model name (see timm.list_models()).")
        print(f"warning: --model {args.model} without --checkpoint has random weights (no hub downloads here)")
        size = args.size or config.size
        model = timm.create_model(args.model, pretrained=False, num_classes=10).to(args.device).eval()
    else:
        size = args.size or config.size
    config = replace(config, size=size, seed=args.seed, images=args.limit or config.images)
    check_options(model or trainable_model("resnet18", 10)[0], options)  # the ResNet-18 compare trains
    if model is not None:
        data = dataset(argparse.Namespace(**{**vars(args), "size": size, "limit": config.images}), "test")
    report = run_compare(args.out, methods, model, data, config, options)
    for row in report["methods"]:
        print(f"{row['method']:22s} " + "  ".join(f"{key} {row[key]:.3g}" for key in
                                                  ("iou", "pxap", "max_box_acc_v2", "deletion_auc",
                                                   "insertion_auc", "road",
                                                   "randomization_similarity", "seconds_per_image"))
              + ("  FLAGGED by the randomisation test" if row["flagged"] else ""))
    print(f"report: {Path(args.out) / 'index.html'}")
    return 0


def black_image(model: torch.nn.Module, size: int, device: str) -> torch.Tensor:
    """One black (1, C, size, size) image in the model's dtype, to read its number of classes."""
    first = next(model.parameters())
    channels = getattr(model, "in_chans", 3)
    return torch.zeros(1, channels, size, size, device=device, dtype=first.dtype)


def demo(args: argparse.Namespace) -> int:
    """``captum-topgap demo``: the scenarios, every claim, the report (``--list-scenarios``: what each one is)."""
    if args.list_scenarios:
        print(scenario_list(reference_step(args.device) if args.time else None))
        return 0
    known = [scenario.name for scenario in SCENARIOS]
    scenarios = tuple(name.strip() for name in (args.scenarios or "").split(",") if name.strip()) or tuple(
        scenario.name for scenario in SCENARIOS if scenario.default)
    if not set(scenarios) <= set(known):
        raise UsageError(f"--scenarios must list some of {', '.join(known)}, got {args.scenarios!r}")
    report = run_demo(args.out, quick=args.quick, seed=args.seed, scenarios=scenarios,
                      keep_checkpoints=args.keep_checkpoints, backbone=args.backbone, device=args.device,
                      root=args.root)
    print(summary(report))
    print(f"report: {Path(args.out) / 'index.html'} ({report['seconds'] / 60:.1f} min, "
          f"{report['reference_steps']:.0f} reference steps of {report['reference_step']:.3f} s)")
    return 0


def scenario_list(step: float | None = None) -> str:
    """``demo --list-scenarios``: each scenario with its paper, data, models, claim count and measured cost per
    preset in reference steps (and, given this machine's ``step``, in its minutes).

    Example:
        >>> scenario_list().splitlines()[0].split()[:2]
        ['object', '(default):']
    """
    lines = []
    for scenario in SCENARIOS:
        costs = []
        for preset in PRESETS:
            cost = scenario.cost.get(preset)
            minutes = f" ≈ {cost * step / 60:.1f} min here" if cost and step else ""
            costs.append(f"{preset} {cost:,.0f} reference steps{minutes}" if cost else f"{preset} not measured")
        lines += [f"{scenario.name} ({'default' if scenario.default else 'run alone with --scenarios'}): "
                  f"{scenario.paper} — {scenario.table}",
                  f"    data: {describe_data(scenario)}, {scenario.size} px; models: "
                  f"{', '.join(model.name for model in scenario.models)}; {len(scenario.claims)} claims",
                  f"    cost: {'; '.join(costs)}"]
    if step:
        lines.append(f"reference step (ResNet-18 training step, 48 px, batch 32) here: {step:.3f} s")
    return "\n".join(lines)


def sweep_candidates(args: argparse.Namespace) -> int:
    """``captum-topgap sweep``: candidates scored on the (shifted) validation split, the best named."""
    try:
        candidates = [parse_candidate(text, args.scenario) for text in args.candidate]
    except ValueError as error:
        raise UsageError(f"--candidate: {error}") from None
    config = replace(DemoConfig.quick() if args.quick else DemoConfig(), seeds=tuple(args.seeds),
                     backbone=args.backbone, pretrained_size=args.pretrained_size, optimizer=args.optimizer,
                     lr=args.lr, momentum=args.momentum).with_budget(args.scenario, args.images, args.epochs)
    rows = sweep(candidates, config, Path(args.out) / "models", scenario_name=args.scenario)
    if args.scenario == "robustness":
        print(f"{'candidate':44s} {'seed':>4s} {'val acc':>8s} {'val PGD-20':>10s}")
        for row in rows:
            print(f"{row['label']:44s} {row['seed']:4d} {row['val_accuracy']:8.3f} {row['val_pgd20']:10.3f}")
        best = choose_robust(rows)
        print(f"best on the validation split: {best['candidate']} (mean PGD-20 {best['val_pgd20']:.3f}, accuracy "
              f"{best['val_accuracy']:.3f})")
    else:
        print(f"{'candidate':44s} {'seed':>4s} {'val acc':>8s} {'follows bg':>10s} {'in-dist':>8s} {'ERF digit':>9s}"
              "  collapsed")
        for row in rows:
            follows = row["val_follows_background"]
            print(f"{row['label']:44s} {row['seed']:4d} {row['val_accuracy']:8.3f} "
                  f"{'–' if follows is None else f'{follows:.3f}':>10s} {row['val_in_distribution_accuracy']:8.3f} "
                  f"{row['val_erf_digit_share']:9.3f}  {','.join(row['collapsed']) or '–'}")
        best = choose(rows)
        kept = {True: "keeps the baseline's in-distribution accuracy within 2 points",
                False: "no candidate keeps the baseline's in-distribution accuracy within 2 points",
                None: "no baseline swept: add --candidate baseline to hold the in-distribution accuracy"}
        print(f"best on the shifted validation split: {best['candidate']} (mean accuracy {best['val_accuracy']:.3f}, "
              f"in-distribution {best['val_in_distribution_accuracy']:.3f}; {kept[best['keeps_in_distribution']]})")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "sweep.json").write_text(json.dumps({"rows": rows, "best": best}, indent=1))
    return 0


def visualize_units(args: argparse.Namespace) -> int:
    """``visualize patches``: a grid PNG per channel; ``visualize classes``: a PNG per class and an overview."""
    size = checked_checkpoint(args.checkpoint)["metadata"].get("size", 64)
    model = load_model(args.checkpoint, args.device)
    if args.what == "patches" and not args.layer:
        raise UsageError("visualize patches needs --layer (a dotted module name, e.g. layer3)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.what == "patches":
        try:
            layer = resolve_layer(model, args.layer)
        except ValueError as error:
            raise UsageError(f"--layer: {error}") from None
        data = dataset(argparse.Namespace(**{**vars(args), "size": size}), "test")
        for channel in args.channels:
            patches = max_activating_patches(model, layer, channel, data, n=args.n)
            path = save_patch_grid(patches, data, out / f"{args.layer}_channel{channel}.png")
            print(f"channel {channel}: top activation {patches[0].value:.3f}, receptive field box "
                  f"{patches[0].box} -> {path}")
        return 0
    n_classes = model(black_image(model, size, args.device)).shape[1]
    classes = args.classes or list(range(n_classes))
    if max(classes) >= n_classes:
        raise UsageError(f"--classes must be class indices in [0, {n_classes}), got {max(classes)}")
    pictures = []
    for target in classes:
        image, scores = class_model(model, target, (3, size, size), steps=args.steps, lr=args.lr, l2=args.l2,
                                    jitter=args.jitter, blur_every=args.blur_every, seed=args.seed)
        pictures.append(normalize_per_image(image[None])[0].cpu())
        torchvision.utils.save_image(pictures[-1], out / f"class{target}.png")
        print(f"class {target}: score {scores[0]:.2f} -> {scores[-1]:.2f}")
    torchvision.utils.save_image(pictures, out / "classes.png", nrow=len(pictures), padding=2, pad_value=1.0)
    print(f"class models in {out}")
    return 0


def bench(args: argparse.Namespace) -> int:
    """``captum-topgap bench``: the cost ratios, medians of interleaved timings."""
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = run_bench(args.only, args.quick, args.repeats, args.device)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'benchmark':38s} {'ratio':>7s} {'target':>7s} {'A s':>8s} {'B s':>8s}  extra")
    for name, row in rows.items():
        extra = "  ".join(f"{k}={v:.2f}" for k, v in row.items() if k not in ("ratio", "target", "a_s", "b_s"))
        flag = "ok" if row["ratio"] <= row["target"] else "OVER"
        print(f"{name:38s} {row['ratio']:7.3f} {row['target']:7.2f} {row['a_s']:8.4f} {row['b_s']:8.4f}  "
              f"{flag} {extra}")
    return 0
