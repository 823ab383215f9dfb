"""The demo report (numbers in the HTML = results.json, embedded PNGs, findings from the numbers) and explain."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from captum_topgap.cli import main
from captum_topgap.report import MODELS, DemoConfig, findings, observations, run_demo

TINY = DemoConfig(size=16, train_images=48, test_images=32, epochs=1, explain_images=8, attack_images=8, seed=3)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.images: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_cell = tag in ("td", "th")
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.cells.append(data)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out, config=TINY, progress=False)


@pytest.mark.slow
def test_results_json_holds_every_number_and_findings_follow_from_them(demo) -> None:
    out, report = demo
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"] == {**TINY.__dict__} and set(saved["results"]) == set(MODELS)
    assert saved["findings"] == findings(saved["results"])
    assert saved["observations"] == observations(saved["results"])
    for name, row in saved["results"].items():
        assert set(row["heatmaps"]) == ({"topgap_cam"} if name == "topgap" else set()) | {
            "gradcam", "recipro_cam", "augmented_gradcam"}
        for region in ("all", "background"):
            assert row["robustness"][region]["pgd20"] <= row["robustness"][region]["clean"]
        assert row["robustness"]["all"]["clean"] == row["robustness"]["background"]["clean"]
        assert 0 <= row["erf"]["background_share"] <= 1
    assert all((out / "models" / name / "best.pt").is_file() for name in MODELS)


@pytest.mark.slow
def test_html_shows_the_numbers_of_results_json_and_embeds_real_pngs(demo) -> None:
    out, report = demo
    page = _Page()
    page.feed((out / "index.html").read_text())
    cells = page.cells
    for name, row in report["results"].items():
        assert f"{row['accuracy']['shifted']:.3f}" in cells
        assert f"{row['robustness']['background']['pgd20']:.3f}" in cells
        assert f"{row['heatmaps']['gradcam']['energy_pointing_game']:.3f}" in cells
        assert MODELS[name] in cells
    assert len(page.images) == 2
    for src in page.images:
        assert base64.b64decode(src.removeprefix("data:image/png;base64,"))[:8] == b"\x89PNG\r\n\x1a\n"
    held = sum(f["held"] for f in report["findings"])
    assert f"{held} of {len(report['findings'])} claims of the seeds held" in (out / "index.html").read_text()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(demo, tmp_path: Path) -> None:
    out, _ = demo
    command = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=2000"]
    dom = subprocess.run(command + ["--dump-dom", (out / "index.html").as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert dom.returncode == 0 and dom.stdout.count("<table>") == 4 and dom.stdout.count("<img") == 2
    shot = tmp_path / "page.png"
    subprocess.run(command + [f"--screenshot={shot}", "--window-size=1100,2400", (out / "index.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


@pytest.mark.slow
def test_cli_demo_prints_the_summary_table(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(DemoConfig, "quick", classmethod(lambda cls, seed=0: TINY))
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^Top-GAP ResNet-18\s+\d\.\d{3}", printed, re.M)
    assert printed.count("[held]") + printed.count("[did not hold]") == 7
    assert (tmp_path / "index.html").is_file()


@pytest.mark.slow
def test_explain_the_bundled_cat_with_the_pretrained_model(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cat.png"
    assert main(["explain", "--compare", "gradcam,augmented_gradcam", "--size", "160", "--out", str(out),
                 "--option", "augmented_gradcam.n_augmentations=8"]) == 0
    printed = capsys.readouterr().out
    top1 = re.search(r"^1\. (.+?)\s+0\.\d+$", printed, re.M).group(1)
    assert top1 in {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_explain_errors_name_the_argument(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="IMAGE .*missing.png does not exist"):
        main(["explain", str(tmp_path / "missing.png"), "--model", "resnet18", "--size", "32"])
    with pytest.raises(ValueError, match=r"--target must be a class index in \[0, 1000\), got 1000"):
        main(["explain", "--model", "resnet18", "--size", "32", "--target", "1000", "--out", str(tmp_path / "x.png")])
