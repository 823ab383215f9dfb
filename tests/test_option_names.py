"""Issue 34, last piece: an option a method does not take is refused with the list of the options a *user* can
pass — not the arguments ``get_method`` fills itself (grad-cam's ``model`` / ``target_layers``, Captum's
``forward_func`` / ``model`` / ``layer``, a method's ``model`` / ``layer``) — and passing one of those filled
arguments is refused with the ``get_method`` argument to pass instead, in Python and on the command line.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

import captum_topgap
from captum_topgap._checks import check_keywords
from captum_topgap.app.cli import main

FILLED = {"model", "target_layers", "forward_func", "layer"}
"""Arguments get_method fills itself: never in the list of options a user can pass."""

OPTIONS = {
    "gradcam": ["input_size", "reshape_transform", "upsample"],  # grad-cam class, with the adapter's own
    "scorecam": ["input_size", "reshape_transform", "upsample"],  # grad-cam class
    "integrated_gradients": ["multiply_by_inputs"],  # Captum pixel class
    "layer_gradcam": ["device_ids", "input_size", "upsample"],  # Captum layer class, with the adapter's own
    "recipro_cam": ["chunk_size", "gaussian", "input_size", "reshape_transform", "upsample"],  # this project's
}
"""Method -> the constructor options the refusal lists."""

VALID: dict[str, Any] = {"reshape_transform": None, "multiply_by_inputs": False, "device_ids": None, "chunk_size": 8,
         "gaussian": True, "input_size": None, "upsample": False}
"""A value each listed option takes, to show the list holds options a user can pass."""

EXPLAIN = ["explain", "--model", "resnet18", "--size", "32"]
"""``explain`` with a random ResNet-18 at 32 px (nothing to download)."""


def listed(message: str) -> list[str]:
    """The options named after "it takes" in a refusal."""
    match = re.search(r"it takes (\[.*?\])\.", message)
    assert match, message
    return ast.literal_eval(match.group(1))


@pytest.mark.parametrize("name", list(OPTIONS))
def test_an_unknown_option_lists_only_what_a_user_can_pass(name: str, tiny_net) -> None:
    with pytest.raises(TypeError, match=r"got an unexpected keyword argument 'nosuch'; it takes \[") as error:
        captum_topgap.get_method(name, tiny_net, nosuch=1)
    names = listed(str(error.value))
    assert names == OPTIONS[name]
    assert not FILLED & set(names), str(error.value)
    for option in names:  # each one is taken
        options: dict[str, Any] = {option: VALID[option]}
        captum_topgap.get_method(name, tiny_net, **options)


@pytest.mark.parametrize(("name", "argument", "source"), [
    ("gradcam", "target_layers", "layer"),
    ("scorecam", "target_layers", "layer"),
    ("smooth:gradcam", "target_layers", "layer"),
    ("integrated_gradients", "forward_func", "model"),
    ("layer_gradcam", "forward_func", "model"),
])
def test_an_argument_get_method_fills_is_refused_naming_the_one_to_pass(name: str, argument: str, source: str,
                                                                         tiny_net) -> None:
    """Before: grad-cam's ``target_layers`` passed construction and failed at the first call with Python's
    "got multiple values for argument 'target_layers'"; Captum's ``forward_func`` likewise.
    """
    value: Any = [tiny_net.features[4]] if argument == "target_layers" else tiny_net
    options: dict[str, Any] = {argument: value}
    with pytest.raises(TypeError, match=rf"got the keyword argument '{argument}', which get_method fills from "
                                        rf"its `{source}`; pass {source}=\.\.\. instead\."):
        captum_topgap.get_method(name, tiny_net, **options)


def test_the_suggested_layer_is_taken(tiny_net) -> None:
    method = captum_topgap.get_method("gradcam", tiny_net, layer=tiny_net.features[4])
    assert method.layer is tiny_net.features[4]


def test_check_keywords_lists_no_positional_only_or_filled_parameter() -> None:
    def function(first: object, /, model: object, *args: object, k: int = 1) -> None:
        pass

    with pytest.raises(TypeError, match=r"f\(\) got an unexpected keyword argument 'first'; it takes \['k'\]\."):
        check_keywords(function, ["first"], "f()", filled={"model": "model"})
    with pytest.raises(TypeError, match=r"f\(\) got an unexpected keyword argument 'j'; it takes none\."):
        check_keywords(lambda model: None, ["j"], "f()", filled={"model": "model"})
    check_keywords(function, ["k"], "f()", filled={"model": "model"})


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the command line, assert exit status 2 and one line without traceback, and return that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.mark.parametrize("name", list(OPTIONS))
def test_the_command_line_lists_only_what_a_user_can_pass(name: str, tmp_path: Path, capsys) -> None:
    err = refused([*EXPLAIN, "--method", name, "--option", f"{name}.nosuch=1", "--out", str(tmp_path / "x.png")],
                  capsys)
    assert f"error: --option {name}: " in err and "got an unexpected keyword argument 'nosuch'" in err
    assert listed(err) == OPTIONS[name]
    assert not list(tmp_path.iterdir())


def test_the_command_line_names_layer_for_target_layers(tmp_path: Path, capsys) -> None:
    err = refused([*EXPLAIN, "--option", "gradcam.target_layers=layer4", "--out", str(tmp_path / "x.png")], capsys)
    assert ("error: --option gradcam: GradCAM.__init__() got the keyword argument 'target_layers', which get_method "
            "fills from its `layer`; pass layer=... instead.") in err
