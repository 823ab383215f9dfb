"""Command line: ``captum-topgap methods | preview`` (later: demo, train, explain, evaluate, bench).

Example:
    >>> main(["methods"])  # doctest: +ELLIPSIS
    name...origin...kind...description
    ...
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from captum_topgap.registry import list_methods, method_spec


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
    from captum_topgap.data import make_dataset
    from captum_topgap.plots import save_sample_grid

    options = {"size": args.size, "seed": args.seed, "limit": args.n}
    if args.dataset == "textured-mnist":
        options.update(p=args.p, q=args.q)
    data = make_dataset(args.dataset, args.split, **options)
    path = save_sample_grid([data[i] for i in range(min(args.n, len(data)))], args.out)
    print(f"wrote {path} ({min(args.n, len(data))} samples of {args.dataset}/{args.split}, masks outlined)")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``captum-topgap`` console script."""
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
