"""Command line: ``captum-topgap methods | preview`` (later: demo, train, explain, evaluate, bench).

Example:
    >>> main(["methods"])  # doctest: +ELLIPSIS
    name...origin...kind...description
    ...
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from captum_topgap.registry import list_methods, method_spec
from captum_topgap.train.losses import VARIANTS


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


def _print_methods(args: argparse.Namespace) -> int:
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


def _preview(args: argparse.Namespace) -> int:
    from captum_topgap.app.plots import save_sample_grid
    from captum_topgap.data import make_dataset

    options = {"size": args.size, "seed": args.seed, "limit": args.n}
    if args.dataset == "textured-mnist":
        options.update(p=args.p, q=args.q)
    data = make_dataset(args.dataset, args.split, **options)
    path = save_sample_grid([data[i] for i in range(min(args.n, len(data)))], args.out)
    print(f"wrote {path} ({min(args.n, len(data))} samples of {args.dataset}/{args.split}, masks outlined)")
    return 0


def _data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="textured-mnist", choices=["textured-mnist", "spurious-mnist",
                                                                   "spurious-fashion-mnist"])
    parser.add_argument("--p", type=float, default=0.0, help="background randomness (Textured MNIST)")
    parser.add_argument("--q", type=float, default=0.0, help="digit-texture randomness (Textured MNIST)")
    parser.add_argument("--size", type=int, default=64, help="image side")
    parser.add_argument("--limit", type=int, default=None, help="use the first N images of each split")
    parser.add_argument("--seed", type=int, default=0)


def _dataset(args: argparse.Namespace, split: str, p: float | None = None):
    from captum_topgap.data import make_dataset

    options = {"size": args.size, "seed": args.seed, "limit": args.limit}
    if args.data == "textured-mnist":
        options.update(p=args.p if p is None else p, q=args.q)
    return make_dataset(args.data, split, **options)


def _train(args: argparse.Namespace) -> int:
    import torch

    from captum_topgap._distributed import is_main
    from captum_topgap.evaluate.metrics import accuracy
    from captum_topgap.train.loop import train
    from captum_topgap.train.objectives import make_objective
    from captum_topgap.train.workflows import explanation_setup, trainable_model, training_method

    torch.manual_seed(args.seed)
    train_data, val_data = _dataset(args, "train"), _dataset(args, "val")
    if args.method == "expansion":
        return _train_expansion(args, train_data, val_data)
    k = (float(args.k) if "." in args.k else int(args.k)) if args.model.startswith("topgap_") else None
    model, model_kwargs = trainable_model(args.model, train_data.n_classes, k)
    method = training_method(args.method, model)
    annotator = None
    if method in ("reff", "rrr"):
        train_data, annotator = explanation_setup(train_data, args.annotated, args.size, args.annotator_epochs,
                                                  args.seed)
    objective = make_objective(method, model, variant=args.variant, weight=args.reff_weight, sparsity=args.sparsity,
                               annotator=annotator)
    metadata = {"model": args.model, "model_kwargs": model_kwargs, "method": method, "data": args.data,
                "sparsity": getattr(objective, "sparsity", 0.0),
                "annotated": -1 if args.annotated is None else args.annotated,
                "variant": args.variant if method == "reff" else "", "weight": getattr(objective, "weight", 0.0),
                "p": args.p, "q": args.q, "size": args.size}
    history = train(model, objective, train_data, val_data, _train_config(args), args.out, args.resume, metadata)
    test_accuracy = accuracy(model, _dataset(args, "test", p=args.test_p), args.batch_size, args.device)
    if not is_main():
        return 0
    print(f"{args.model} ({method}): val accuracy {history[-1]['val_accuracy']:.4f}, "
          f"test accuracy (p={args.test_p}) {test_accuracy:.4f}; checkpoints in {args.out}")
    return 0


def _train_config(args: argparse.Namespace):
    from captum_topgap.train.loop import TrainConfig

    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                       weight_decay=args.weight_decay, optimizer=args.optimizer, seed=args.seed,
                       num_workers=args.workers, device=args.device)


def _train_expansion(args: argparse.Namespace, train_data, val_data) -> int:
    """Expansion CAM: train an ExpansionNet (MSE reconstruction) over the frozen ``--localizer`` checkpoint."""
    from captum_topgap.train.loop import train
    from captum_topgap.train.objectives import ExpansionObjective
    from captum_topgap.train.workflows import expansion_setup

    if not args.localizer:
        raise SystemExit("--method expansion needs --localizer CKPT: the classifier trained by captum-topgap train")
    model, metadata = expansion_setup(args.localizer, args.device)
    metadata.update(data=args.data, p=args.p, q=args.q, size=args.size)
    history = train(model, ExpansionObjective(), train_data, val_data, _train_config(args), args.out, args.resume,
                    metadata)
    print(f"expansion network over {args.localizer}: final reconstruction MSE {history[-1]['train_loss']:.5f}, "
          f"classifier val accuracy {history[-1]['val_accuracy']:.4f} (frozen); checkpoints in {args.out}")
    return 0


def parse_options(items: Sequence[str]) -> dict[str, dict[str, object]]:
    """``["augmented_gradcam.solver=primal_dual", "recipro_cam.gaussian=true"]`` -> per-method keyword arguments.

    Example:
        >>> parse_options(["augmented_gradcam.n_augmentations=16", "augmented_gradcam.solver=primal_dual"])
        {'augmented_gradcam': {'n_augmentations': 16, 'solver': 'primal_dual'}}
    """
    options: dict[str, dict[str, object]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot:
            raise SystemExit(f"--option must look like METHOD.NAME=VALUE, got {item!r}")
        value: object = text
        for convert in (int, float):
            try:
                value = convert(text)
                break
            except ValueError:
                continue
        if text.lower() in ("true", "false"):
            value = text.lower() == "true"
        options.setdefault(method, {})[name] = value
    return options


def _evaluate(args: argparse.Namespace) -> int:
    import json

    from captum_topgap.evaluate.heatmaps import erf_scores, heatmap_scores
    from captum_topgap.evaluate.metrics import accuracy
    from captum_topgap.train.checkpoints import load_model

    model = load_model(args.checkpoint, args.device)
    data = _dataset(args, "test")
    results: dict[str, Any] = {"accuracy": accuracy(model, data, 64, args.device)}
    methods = [m for m in args.methods.split(",") if m]
    if methods:
        results["heatmaps"] = heatmap_scores(model, methods, data, limit=args.explain_limit,
                                             method_kwargs=parse_options(args.option))
    if args.erf_distance:
        results["erf_distance"] = erf_scores(model, data, limit=args.explain_limit)
    results.update(_shift_and_robustness(args, model, data))
    from captum_topgap._distributed import is_main

    if not is_main():
        return 0
    print(f"accuracy {results['accuracy']:.4f}")
    if "erf_distance" in results:
        print("ERF distance: " + "  ".join(f"{k} {v:.4f}" for k, v in results["erf_distance"].items()))
    for name, scores in results.get("heatmaps", {}).items():
        print(f"{name:24s} IoU@0.5 {scores['iou']:.4f}   IoU mean over thresholds {scores['iou_mean_thresholds']:.4f}")
    for region, table in results.get("robustness", {}).items():
        print(f"robust accuracy ({region} pixels, eps={args.eps:.4g}): "
              + "  ".join(f"{name} {value:.4f}" for name, value in table.items()))
    for name, row in results.get("corruptions", {}).items():
        print(f"corruption {name:16s} " + (f"{row:.4f}" if isinstance(row, float) else
                                           "  ".join(f"{k} {v:.4f}" for k, v in row.items())))
    if "groups" in results:
        print(f"groups: average {results['groups']['average']:.4f}  worst group {results['groups']['worst_group']:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def _shift_and_robustness(args: argparse.Namespace, model, data) -> dict[str, object]:
    """``--robustness`` (per ``--region``), ``--corruptions`` and worst-group accuracy when the split has groups."""
    from captum_topgap._distributed import shard
    from captum_topgap.data import batches
    from captum_topgap.evaluate.robustness import evaluate_robustness
    from captum_topgap.evaluate.shift import corruption_accuracy, group_shift

    results: dict[str, object] = {}
    indices = shard(range(min(args.robust_limit, len(data))))
    attacks = [a for a in args.robustness.split(",") if a]
    if attacks:
        results["robustness"] = {
            region: evaluate_robustness(model, batches(data, 64, indices), attacks,
                                        eps=args.eps, region=None if region == "all" else region, seed=args.seed)
            for region in args.region.split(",")}
    if args.corruptions:
        results["corruptions"] = corruption_accuracy(model, batches(data, 64, indices),
                                                     seed=args.seed)
    if hasattr(data, "groups"):
        results["groups"] = group_shift(model, data)
    return results


def _explain(args: argparse.Namespace) -> int:
    from captum_topgap.app.explain import explain, load_image

    if args.checkpoint:
        from captum_topgap.train.checkpoints import load_checkpoint, load_model

        model = load_model(args.checkpoint, args.device)
        size = args.size or load_checkpoint(args.checkpoint)["metadata"].get("size", 224)
        names = [str(c) for c in range(model(_black_image(size, args.device)).shape[1])]
    elif args.model:
        import timm

        import captum_topgap.models  # noqa: F401  (registers topgap_* in timm)

        print(f"warning: --model {args.model} without --checkpoint has random weights (no hub downloads here)")
        model, size = timm.create_model(args.model, pretrained=False).eval(), args.size or 224
        names = [str(c) for c in range(model(_black_image(size, args.device)).shape[1])]
    else:
        from captum_topgap.models.pretrained import efficientnet_lite0, imagenet_classes

        model, size, names = efficientnet_lite0(), args.size or 224, imagenet_classes()
    methods = [m for m in (args.compare or args.method).split(",") if m]
    image = load_image(args.image, size).to(args.device)
    result = explain(model, image, methods, args.out, names, args.target, parse_options(args.option))
    for rank, (name, probability) in enumerate(result["top"], start=1):
        print(f"{rank}. {name:30s} {probability:.4f}")
    print(f"explained class {result['target']} ({names[result['target']]}) with {', '.join(methods)}: {args.out}")
    return 0


def _black_image(size: int, device: str):
    """One black (1, 3, size, size) image, to read a model's number of classes."""
    import torch

    return torch.zeros(1, 3, size, size, device=device)


def _demo(args: argparse.Namespace) -> int:
    from captum_topgap.app.demo import run_demo
    from captum_topgap.app.report import summary

    report = run_demo(args.out, quick=args.quick, seed=args.seed)
    print(summary(report))
    print(f"report: {Path(args.out) / 'index.html'} ({report['seconds'] / 60:.1f} min)")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    import json

    from captum_topgap.app.demo import DemoConfig
    from captum_topgap.app.selection import choose, parse_candidate, sweep

    candidates = [parse_candidate(text) for text in args.candidate]
    config = DemoConfig.quick() if args.quick else DemoConfig()
    config = replace(config, seeds=tuple(int(s) for s in args.seeds.split(",")))
    rows = sweep(candidates, config, Path(args.out) / "models")
    print(f"{'candidate':44s} {'seed':>4s} {'val acc':>8s} {'follows bg':>10s}  collapsed")
    for row in rows:
        follows = row["val_follows_background"]
        print(f"{row['label']:44s} {row['seed']:4d} {row['val_accuracy']:8.3f} "
              f"{'–' if follows is None else f'{follows:.3f}':>10s}  {','.join(row['collapsed']) or '–'}")
    best = choose(rows)
    print(f"best on the shifted validation split: {best['candidate']} (mean accuracy {best['val_accuracy']:.3f})")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "sweep.json").write_text(json.dumps({"rows": rows, "best": best}, indent=1))
    return 0


def _visualize(args: argparse.Namespace) -> int:
    """``visualize patches``: a grid PNG per channel; ``visualize classes``: a PNG per class and an overview."""
    import torchvision.utils

    from captum_topgap._layers import resolve_layer
    from captum_topgap.app.visualize import class_model, max_activating_patches, save_patch_grid
    from captum_topgap.evaluate.metrics import normalize_per_image
    from captum_topgap.train.checkpoints import load_checkpoint, load_model

    model = load_model(args.checkpoint, args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size = load_checkpoint(args.checkpoint)["metadata"].get("size", 64)
    if args.what == "patches":
        if not args.layer:
            raise SystemExit("visualize patches needs --layer (a dotted module name, e.g. layer3)")
        layer, data = resolve_layer(model, args.layer), _dataset(argparse.Namespace(**{**vars(args), "size": size}),
                                                                 "test")
        for channel in (int(c) for c in args.channels.split(",")):
            patches = max_activating_patches(model, layer, channel, data, n=args.n)
            path = save_patch_grid(patches, data, out / f"{args.layer}_channel{channel}.png")
            print(f"channel {channel}: top activation {patches[0].value:.3f}, receptive field box "
                  f"{patches[0].box} -> {path}")
        return 0
    classes = [int(c) for c in args.classes.split(",")] if args.classes else list(range(model(
        _black_image(size, args.device)).shape[1]))
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


def _fraction(text: str) -> float:
    """``"8/255"`` or ``"0.03"`` -> float (for ``--eps``)."""
    numerator, _, denominator = text.partition("/")
    return float(numerator) / float(denominator or 1)


def _bench(args: argparse.Namespace) -> int:
    import json

    import torch

    from captum_topgap.app.bench import run

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = run(args.only, args.quick, args.repeats, args.device)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'benchmark':34s} {'ratio':>7s} {'target':>7s} {'A s':>8s} {'B s':>8s}  extra")
    for name, row in rows.items():
        extra = "  ".join(f"{k}={v:.2f}" for k, v in row.items() if k not in ("ratio", "target", "a_s", "b_s"))
        flag = "ok" if row["ratio"] <= row["target"] else "OVER"
        print(f"{name:34s} {row['ratio']:7.3f} {row['target']:7.2f} {row['a_s']:8.4f} {row['b_s']:8.4f}  "
              f"{flag} {extra}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``captum-topgap`` argument parser with one sub-command per job."""
    parser = argparse.ArgumentParser(prog="captum-topgap", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    methods = commands.add_parser("methods", help="list every registered method")
    methods.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    methods.set_defaults(run=_print_methods)
    preview = commands.add_parser("preview", help="save a PNG grid of dataset samples with mask outlines")
    preview.add_argument("--dataset", default="textured-mnist",
                         choices=["textured-mnist", "spurious-mnist", "spurious-fashion-mnist"])
    preview.add_argument("--split", default="train", choices=["train", "val", "test"])
    preview.add_argument("--p", type=float, default=0.0, help="background randomness (Textured MNIST)")
    preview.add_argument("--q", type=float, default=0.0, help="digit-texture randomness (Textured MNIST)")
    preview.add_argument("--size", type=int, default=64)
    preview.add_argument("--seed", type=int, default=0)
    preview.add_argument("--n", type=int, default=16, help="number of samples")
    preview.add_argument("--out", default="samples.png")
    preview.set_defaults(run=_preview)

    train = commands.add_parser("train", help="train a baseline or Top-GAP model with the one training loop")
    train.add_argument("--model", default="topgap_resnet18", help="timm name (topgap_* for Top-GAP)")
    train.add_argument("--method", default="auto", choices=["auto", "baseline", "topgap", "reff", "rrr", "expansion"])
    train.add_argument("--k", default="64", help="Top-GAP k: positions (int) or a fraction (float)")
    train.add_argument("--sparsity", type=float, default=None, help="Top-GAP λ (default: train.losses.TOPGAP_SPARSITY)")
    train.add_argument("--annotated", type=int, default=None,
                       help="ReFF/RRR: images that keep their masks (default all)")
    train.add_argument("--variant", default="reff", choices=sorted(VARIANTS),
                       help="ReFF variant: reff, l1, l2 (published) or one that closes its loophole (docs/reff.md)")
    train.add_argument("--reff-weight", type=float, default=None,
                       help="λ of the ReFF/RRR term (default: train.objectives.REFF_WEIGHT of the variant)")
    train.add_argument("--annotator-epochs", type=int, default=20,
                       help="ReFF/RRR: pix2pix epochs on the annotated set")
    _data_options(train)
    train.add_argument("--localizer", default=None, help="expansion: the classifier checkpoint to expand (frozen)")
    train.add_argument("--test-p", type=float, default=1.0, help="background randomness of the test split")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--lr", type=float, default=0.01)
    train.add_argument("--momentum", type=float, default=0.8)
    train.add_argument("--weight-decay", type=float, default=1e-5)
    train.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    train.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    train.add_argument("--device", default="cpu")
    train.add_argument("--out", default="runs/train", help="checkpoint folder")
    train.add_argument("--resume", default=None, help="a last.pt to continue from")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="accuracy, heat-map IoU, robustness and shift of a checkpoint")
    evaluate.add_argument("--checkpoint", required=True)
    _data_options(evaluate)
    evaluate.set_defaults(p=1.0)
    evaluate.add_argument("--methods", default="", help="comma-separated registry names, e.g. gradcam,topgap_cam")
    evaluate.add_argument("--explain-limit", type=int, default=200, help="images used for the heat-map scores")
    evaluate.add_argument("--option", action="append", default=[], metavar="METHOD.NAME=VALUE",
                          help="a method's constructor option, e.g. augmented_gradcam.solver=primal_dual")
    evaluate.add_argument("--erf-distance", action="store_true", help="also the mean ERF distance of the true class")
    evaluate.add_argument("--robustness", default="", help="comma-separated attacks: pgd20,pgd50,square[N]")
    evaluate.add_argument("--region", default="all", help="pixels attacked: all, background, object (comma list)")
    evaluate.add_argument("--eps", type=_fraction, default=8 / 255, help="L∞ budget, e.g. 8/255")
    evaluate.add_argument("--robust-limit", type=int, default=500, help="images attacked / corrupted")
    evaluate.add_argument("--corruptions", action="store_true", help="accuracy under 5 corruptions × 5 severities")
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument("--json", default=None, help="also write the results to this JSON file")
    evaluate.set_defaults(run=_evaluate)

    demo = commands.add_parser("demo", help="the papers' claims in their own settings on Textured MNIST: a report")
    demo.add_argument("--out", default="demo", help="report folder (index.html, results.json, figures, models)")
    demo.add_argument("--quick", action="store_true", help="one seed, fewer test images (≤ 10 min on 2 cores)")
    demo.add_argument("--seed", type=int, default=None, help="run this one seed instead of the preset's")
    demo.set_defaults(run=_demo)

    sweep = commands.add_parser("sweep", help="choose ReFF's variant and λ on a shifted validation split")
    sweep.add_argument("--candidate", action="append", required=True, metavar="METHOD[:VARIANT[:λ[:LAYERS]]]",
                       help="e.g. baseline, reff:reff:0.001, reff:contrastive:100:layer1,layer2, rrr::10")
    sweep.add_argument("--seeds", default="0", help="comma-separated training seeds")
    sweep.add_argument("--quick", action="store_true", help="the demo's --quick budget (same training)")
    sweep.add_argument("--out", default="sweep", help="folder for sweep.json and the checkpoints")
    sweep.set_defaults(run=_sweep)

    explain = commands.add_parser("explain", help="top-5 classes and a heat-map overlay of one photo")
    explain.add_argument("image", nargs="?", default=None, help="a photo (default: scikit-image's cat)")
    explain.add_argument("--method", default="gradcam", help="a registry name (captum-topgap methods)")
    explain.add_argument("--compare", default=None, help="several methods side by side, e.g. gradcam,augmented_gradcam")
    explain.add_argument("--model", default=None, help="a timm name (random weights unless --checkpoint)")
    explain.add_argument("--checkpoint", default=None, help="a best.pt written by captum-topgap train")
    explain.add_argument("--target", type=int, default=None, help="class to explain (default: the top class)")
    explain.add_argument("--size", type=int, default=None, help="image side (default: the model's)")
    explain.add_argument("--option", action="append", default=[], metavar="METHOD.NAME=VALUE")
    explain.add_argument("--out", default="explanation.png")
    explain.add_argument("--device", default="cpu")
    explain.set_defaults(run=_explain)

    visualize = commands.add_parser("visualize", help="maximally activating patches or class-model images")
    visualize.add_argument("what", choices=["patches", "classes"])
    visualize.add_argument("--checkpoint", required=True, help="a best.pt written by captum-topgap train")
    visualize.add_argument("--layer", default=None, help="patches: the layer (dotted name, e.g. layer3)")
    visualize.add_argument("--channels", default="0,1,2,3", help="patches: comma-separated channels")
    visualize.add_argument("--n", type=int, default=9, help="patches: how many per channel")
    visualize.add_argument("--classes", default=None, help="classes: comma-separated (default: all)")
    visualize.add_argument("--steps", type=int, default=200, help="classes: gradient-ascent steps")
    visualize.add_argument("--lr", type=float, default=0.5, help="classes: step size")
    visualize.add_argument("--l2", type=float, default=1e-3, help="classes: λ of the L2 regulariser")
    visualize.add_argument("--jitter", type=int, default=0, help="classes: random roll in pixels (0: off)")
    visualize.add_argument("--blur-every", type=int, default=0, help="classes: Gaussian blur period (0: off)")
    _data_options(visualize)
    visualize.set_defaults(p=1.0, limit=2000)
    visualize.add_argument("--device", default="cpu")
    visualize.add_argument("--out", default="visualization")
    visualize.set_defaults(run=_visualize)

    bench = commands.add_parser("bench", help="cost ratios, medians of interleaved A/B timings in one run")
    bench.add_argument("--only", default=None, help="run one row by name")
    bench.add_argument("--json", action="store_true", help="print {name: {ratio, target, a_s, b_s, ...}}")
    bench.add_argument("--quick", action="store_true", help="small images (64 px, batch 4)")
    bench.add_argument("--repeats", type=int, default=None)
    bench.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    bench.add_argument("--device", default="cpu")
    bench.set_defaults(run=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``captum-topgap`` console script."""
    args = build_parser().parse_args(argv)
    if args.run in (_train, _evaluate):
        from captum_topgap._distributed import setup

        setup()  # joins torchrun's process group; nothing in a single process
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
