"""The demo end to end at a tiny budget: results.json's schema, claims that follow from its numbers, the HTML
(numbers, embedded PNGs, a real browser) and checkpoints that every command loads.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

import captum_topgap
from captum_topgap.app.cli import main
from captum_topgap.app.demo import DemoConfig, evaluate_claims, run_demo
from captum_topgap.app.report import cell
from captum_topgap.app.scenarios import SCENARIOS, Budget, scenario
from captum_topgap.train.checkpoints import load_checkpoint

TINY = DemoConfig(seeds=(3,), budgets={
    "object": Budget(32, 1, 16, 16, explain_images=4, attack_images=4, size=32, corruption_images=4),
    "robustness": Budget(32, 1, 16, 16, audit_images=4, audit_attacks=("pgd20", "pgd30", "square20"),
                         audit_sweep=(128 / 255,), size=24),
    "spurious": Budget(32, 1, 16, 16, explain_images=4, attack_images=4, size=32)})
CLAIMS = [claim for spec in SCENARIOS if spec.default for claim in spec.claims]


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
def test_results_json_has_both_scenarios_every_model_and_claims_that_follow_from_its_numbers(demo) -> None:
    out, _report = demo
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["scenarios"]) == {"object", "robustness", "spurious"}
    assert saved["scenarios"]["robustness"]["size"] == 24
    assert {"preset", "seeds", "scenarios", "budgets", "device"} <= set(saved["config"])
    for scene in saved["scenarios"].values():  # each scenario's budget, time and cost in reference steps
        assert scene["budget"]["images"] == 32 and scene["budget"]["seeds"] == [3]
        assert scene["reference_steps"] == pytest.approx(scene["seconds"] / saved["reference_step"])
    assert 0 < saved["reference_step"] < 60 and saved["peak_memory_mb"] > 100
    assert saved["reference_steps"] == pytest.approx(saved["seconds"] / saved["reference_step"])
    assert sum(scene["seconds"] for scene in saved["scenarios"].values()) <= saved["seconds"]
    expected = {(s.name, m.name, 3) for s in SCENARIOS if s.default for m in s.models}
    assert {(m["scenario"], m["name"], m["seed"]) for m in saved["models"]} == expected
    for row in saved["models"]:
        assert (out / row["checkpoint"]).is_file() and not Path(row["checkpoint"]).is_absolute()
    assert len(saved["claims"]) == len(CLAIMS)
    for claim in saved["claims"]:
        assert {"claim", "scenario", "held", "criterion", "seeds", "values"} <= set(claim)
        assert isinstance(claim["held"], bool) and claim["seeds"] == 1
    recomputed = json.loads(json.dumps(evaluate_claims(saved["models"])))
    assert [{k: v for k, v in c.items() if k != "mechanism"} for c in saved["claims"]] == recomputed
    for claim in saved["claims"]:  # a claim that did not hold names what was measured about it
        assert bool(claim["mechanism"]) is not claim["held"]
    spurious = [m for m in saved["models"] if m["scenario"] == "spurious"]
    for row in spurious:
        assert 0 <= row["measures"]["follows_background"] <= 1
        first = "backbone.layer1" if row["name"] == "topgap" else "layer1"  # Top-GAP's stages sit in its backbone
        assert row["measures"]["in_mask_share"] == row["measures"][f"in_mask_share/{first}"]  # 8 × 8 at 32 px
    for row in spurious:  # worst-group accuracy over the three background groups; Top-GAP's kept positions
        measures = row["measures"]
        groups = [measures[f"group_accuracy/{g}"] for g in ("agrees", "conflicts", "neutral")
                  if f"group_accuracy/{g}" in measures]
        assert groups and measures["worst_group_accuracy"] == min(groups)
        assert ("topk_on_object" in measures) is (row["name"] == "topgap")
    for row in (m for m in saved["models"] if m["scenario"] == "object"):  # the shifts score the two it names
        measures = row["measures"]
        assert ("sketch_accuracy" in measures) is (row["name"] in ("baseline", "topgap")), row["name"]
        assert ("random_texture_accuracy" in measures) is ("sketch_accuracy" in measures)
        if row["name"] != "reff":
            cells = [v for k, v in measures.items() if k.startswith("corruption/") and k.count("/") == 2]
            assert len(cells) == 25 and measures["corruption_accuracy"] == pytest.approx(sum(cells) / 25)
    reff = next(m for m in spurious if m["name"] == "reff")
    assert set(reff["history"][0]["diagnostic"]) == {"layer1", "layer2", "layer3", "layer4"}
    for row in spurious:  # a decoder over the baseline and the control only; every count is of the 16 test images
        measures = row["measures"]
        assert ("observer/pv" in measures) is (row["name"] in ("baseline", "control")), row["name"]
        if row["name"] in ("baseline", "control"):
            assert measures["count/correct"] + measures["count/wrong"] == 16
            assert all(0 <= measures[f"{kind}/{explanation}"] <= 1 for kind in ("observer", "texture_predicted",
                       "texture_shown") for explanation in ("gradcam", "pv"))
            assert measures["texture_shown/input"] == spurious[0]["measures"]["texture_shown/input"]  # one reader
    for row in saved["models"]:  # the best validation epoch where validation is in distribution, else the last
        kept = [record["epoch"] for record in row["history"] if record.get("restored")]
        best = max(row["history"], key=lambda r: (r["val_accuracy"], -r["train_loss"]))["epoch"]
        assert kept == ([] if row["scenario"] == "spurious" else [best]), row["name"]


@pytest.mark.slow
def test_results_json_keeps_the_audit_of_every_attacked_model_with_loadable_checkpoints(demo) -> None:
    out, _report = demo
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["audit"]) == {"robustness"} and set(saved["audit"]["robustness"]) == {"baseline", "topgap"}
    for name, entry in saved["audit"]["robustness"].items():
        assert entry["verdict"] in ("robust", "gradient-masked", "not robust")
        cascade = [entry[key] for key in ("clean", "pgd20", "pgd30", "square20")]
        assert cascade == sorted(cascade, reverse=True)  # each attack only removes images
        other = "topgap" if name == "baseline" else "baseline"
        assert entry["robust_accuracy"] == entry[f"transfer:{other}"] <= entry["square20"]
        (seed,) = entry["seeds"]
        assert set(seed["sweep"]) == {"128/255"} and seed["verdict"] == entry["verdict"]
        checkpoint = load_checkpoint(out / seed["checkpoint"])
        assert checkpoint["metadata"]["size"] == 24 and checkpoint["metadata"]["scenario"] == "robustness"
        model = captum_topgap.load_model(out / seed["checkpoint"])
        assert model(torch.zeros(1, 3, 24, 24)).shape == (1, 10)
    row = next(m for m in saved["models"] if m["scenario"] == "robustness" and m["name"] == "topgap")
    assert row["measures"]["pgd20"] == saved["audit"]["robustness"]["topgap"]["pgd20"]
    assert row["measures"]["gradient_masked"] == float(row["audit"]["verdict"] == "gradient-masked")
    claims = {c["claim"]: c for c in saved["claims"] if c["scenario"] == "robustness"}
    assert claims["Top-GAP is more robust to PGD-20 than the baseline (the poster's attack)"]["values"] == [
        row["measures"]["pgd20"]]


@pytest.mark.slow
def test_html_shows_every_claim_and_measure_and_embeds_real_pngs(demo) -> None:
    out, report = demo
    page = _Page()
    text = (out / "index.html").read_text()
    page.feed(text)
    for claim in report["claims"]:
        assert claim["claim"] in page.cells and cell(claim) in page.cells and claim["criterion"] in page.cells
        assert ("; ".join(claim["mechanism"]) or "–") in page.cells
    for row in report["models"]:
        assert row["label"] in page.cells
        assert f"{row['measures'].get('shifted_accuracy', row['measures'].get('accuracy')):.3f} ± 0.000" in page.cells
    assert "one seed: the verdicts are indicative" in text
    held = sum(claim["held"] for claim in report["claims"])
    assert f"{held} of {len(CLAIMS)} claims held" in text
    assert len(page.images) == 6
    assert "Perception Visualization: decoders over the baseline and the control, shifted test split" in text
    assert "Verdict rules (fixed in code): gradient-masked iff" in text
    for src in page.images:
        assert base64.b64decode(src.removeprefix("data:image/png;base64,"))[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(demo, tmp_path: Path) -> None:
    out, _ = demo
    command = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*command, "--dump-dom", (out / "index.html").as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert dom.returncode == 0 and dom.stdout.count("<table>") == 8 and dom.stdout.count("<img") == 6
    shot = tmp_path / "page.png"
    subprocess.run([*command, f"--screenshot={shot}", "--window-size=1200,3000", (out / "index.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


@pytest.mark.slow
def test_every_demo_checkpoint_loads_and_explain_evaluate_visualize_accept_them(demo, tmp_path: Path) -> None:
    out, report = demo
    for row in report["models"]:
        assert Path(row["checkpoint"]).name == "model.pt"
        folder = (out / row["checkpoint"]).parent
        assert sorted(p.name for p in folder.glob("*.pt")) == ["model.pt"]  # no last.pt / best.pt by default
        stored = load_checkpoint(out / row["checkpoint"])
        assert "optimizer" not in stored and stored["metadata"]["demo_model"] == row["name"]
        assert {t.dtype for t in stored["model"].values() if t.is_floating_point()} <= {torch.float16, torch.float64}
        model = captum_topgap.load_model(out / row["checkpoint"])
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10) and not model.training
    topgap = next(r for r in report["models"] if r["name"] == "topgap")["checkpoint"]
    reff = next(r for r in report["models"] if r["name"] == "reff_contrastive")["checkpoint"]
    assert main(["explain", "--checkpoint", str(out / topgap), "--method", "topgap_cam",
                 "--out", str(tmp_path / "e.png")]) == 0
    assert main(["evaluate", "--checkpoint", str(out / reff), "--size", "32", "--q", "1", "--limit", "8",
                 "--methods", "gradcam", "--explain-limit", "4"]) == 0
    assert main(["visualize", "classes", "--checkpoint", str(out / reff), "--classes", "0", "--steps", "2",
                 "--out", str(tmp_path / "v")]) == 0
    assert (tmp_path / "e.png").is_file() and (tmp_path / "v" / "class0.png").is_file()


@pytest.mark.slow
def test_the_papers_protocol_fine_tunes_one_pretrained_backbone_for_every_model(tmp_path: Path) -> None:
    from dataclasses import replace

    config = replace(TINY, backbone="pretrained", pretrained_size=64, scenarios=("object", "spurious"),
                     budgets={name: TINY.budgets[name] for name in ("object", "spurious")})
    report = run_demo(tmp_path, config=config, progress=False)
    assert report["scenarios"]["spurious"]["size"] == 64
    names = {}
    for row in report["models"]:
        meta = load_checkpoint(tmp_path / row["checkpoint"])["metadata"]
        assert meta["pretrained"] is True and meta["size"] == 64
        names[row["name"]] = meta["model"]
    assert names["baseline"] == names["reff"] == names["control"] == "pixel_efficientnet_lite0"
    assert names["topgap"] == "topgap_efficientnet_lite0"
    reff = next(r for r in report["models"] if r["scenario"] == "spurious" and r["name"] == "reff")
    assert set(reff["history"][0]["diagnostic"]) == {"blocks.1", "blocks.2", "blocks.4", "blocks.6"}
    assert reff["measures"]["in_mask_share"] == reff["measures"]["in_mask_share/blocks.2"]  # 8 × 8 at 64 px
    with pytest.raises(ValueError, match="`backbone` must be one of"):
        DemoConfig(backbone="imagenet")


PERCEPTION = {(claim.measure, claim.model): claim for claim in scenario("spurious").claims if claim.measure.split(
    "/")[0] in ("preservation_wrong", "observer", "texture_predicted", "texture_shown")}


def test_the_perception_claims_are_judged_on_fixed_numbers() -> None:
    """Three seeds: the baseline's reconstruction keeps its decision on its errors (≥ 0.5 in every seed), the
    control's misses the bound in one seed; PV's observer beats the overlay's on the control's errors by ≥ 0.2 in
    every seed; the baseline's PV shows the predicted class's texture more than the control's in every seed but by
    less than the margin (0.1); the control's PV shows its own background far less than its overlay does.
    """
    measures = {
        "baseline": {"preservation_wrong": [0.99, 1.0, 0.98], "texture_predicted/pv": [0.35, 0.30, 0.32]},
        "control": {"preservation_wrong": [0.60, 0.45, 0.70], "observer/pv": [0.70, 0.65, 0.72],
                    "observer/gradcam": [0.50, 0.45, 0.50], "texture_predicted/pv": [0.28, 0.25, 0.24],
                    "texture_shown/pv": [0.10, 0.12, 0.09], "texture_shown/gradcam": [0.90, 0.85, 0.88]}}
    rows = [{"name": name, "scenario": "spurious", "seed": seed, "measures": {key: values[seed]
                                                                              for key, values in by_key.items()}}
            for name, by_key in measures.items() for seed in range(3)]
    assert set(PERCEPTION) == {("preservation_wrong", "baseline"), ("preservation_wrong", "control"),
                               ("observer/pv", "control"), ("texture_predicted/pv", "baseline"),
                               ("texture_shown/pv", "control")}
    judged = {(row["measure"], row["model"]): row for row in evaluate_claims(rows, list(PERCEPTION.values()))}
    assert {key: row["held"] for key, row in judged.items()} == {
        ("preservation_wrong", "baseline"): True, ("preservation_wrong", "control"): False,
        ("observer/pv", "control"): True, ("texture_predicted/pv", "baseline"): False,
        ("texture_shown/pv", "control"): True}
    assert judged[("observer/pv", "control")]["reference_values"] == [0.50, 0.45, 0.50]  # the overlay's observer
    assert judged[("texture_predicted/pv", "baseline")]["gap"] == pytest.approx(0.2 / 3)


@pytest.mark.slow
def test_the_perception_measure_leaves_each_classifier_as_it_was_and_observes_its_decisions(
        tmp_path: Path, monkeypatch) -> None:
    """The decoders train over the frozen models, which come back with the same weights and flags; every observer
    is fitted on the model's decisions on the validation split (not the labels); the panels hold a correct and a
    wrong prediction.
    """
    from captum_topgap.app import demo as demo_module
    from captum_topgap.app.demo import Stage, measure_perception, scenario_data, train_model
    from captum_topgap.data import collate
    from captum_topgap.evaluate.metrics import predict

    spec = scenario("spurious")
    data = scenario_data(spec, TINY)
    trained = {model.name: train_model(model, spec, data, TINY, 3, tmp_path / model.name, False)
               for model in spec.models if model.perception}
    before = {name: ({key: value.clone() for key, value in t.model.state_dict().items()},
                     [p.requires_grad for p in t.model.parameters()], t.model.training) for name, t in trained.items()}
    fitted_on: list[torch.Tensor] = []
    observer = demo_module.machine_observer

    def spy(fit_images: torch.Tensor, fit_decisions: torch.Tensor, *rest, **options):
        fitted_on.append(fit_decisions)
        return observer(fit_images, fit_decisions, *rest, **options)

    monkeypatch.setattr(demo_module, "machine_observer", spy)
    measured = measure_perception(Stage(spec, TINY.budget(spec), data, 32, torch.device("cpu"), False, TINY), trained)
    assert set(measured) == {"baseline", "control"}
    validation = collate(data["val"])
    for index, (name, t) in enumerate(trained.items()):
        state, flags, training = before[name]
        assert all(torch.equal(state[key], value) for key, value in t.model.state_dict().items())
        assert [p.requires_grad for p in t.model.parameters()] == flags and t.model.training is training
        decisions = predict(t.model, validation.images)
        assert not torch.equal(decisions, validation.labels)  # so that fitting on the labels would show
        assert all(torch.equal(seen, decisions) for seen in fitted_on[3 * index:3 * index + 3])
        panels = measured[name]["panels"]
        right = (panels["prediction"] == panels["labels"]).tolist()
        assert right in ([True, False], [True], [False]) and panels["pv"].shape[1:] == (3, 32, 32)


def test_the_demo_keeps_one_half_precision_checkpoint_per_model_unless_asked(tmp_path: Path) -> None:
    """The footprint: model.pt holds fp16 weights (no Adam state); the model in memory holds the same rounded
    weights, so what is measured is what is stored; --keep-checkpoints adds the loop's best.pt and last.pt.
    """
    from dataclasses import replace

    from captum_topgap.app.demo import scenario_data, train_model
    from captum_topgap.app.scenarios import BASELINE

    assert DemoConfig().keep_checkpoints is False and DemoConfig.quick().keep_checkpoints is False
    data = scenario_data(SCENARIOS[0], TINY)
    for keep in (False, True):
        folder = tmp_path / str(keep)
        trained = train_model(BASELINE, SCENARIOS[0], data, replace(TINY, keep_checkpoints=keep), 0, folder, False)
        assert sorted(p.name for p in folder.iterdir()) == (
            ["best.pt", "history.json", "last.pt", "model.pt"] if keep else ["model.pt"])
        stored = load_checkpoint(trained.checkpoint)
        assert "optimizer" not in stored and stored["history"] == trained.history
        for name, tensor in trained.model.state_dict().items():
            if tensor.is_floating_point():
                assert stored["model"][name].dtype == torch.float16
                assert torch.equal(stored["model"][name].float(), tensor)  # measured == stored
        if keep:
            assert trained.checkpoint.stat().st_size < (folder / "last.pt").stat().st_size / 5
    args = ["demo", "--out", str(tmp_path / "d"), "--keep-checkpoints", "--scenarios", "bogus"]
    assert main(args) == 2  # the flag parses; the bad scenario is refused before anything is trained
    assert not (tmp_path / "d").exists()


@pytest.mark.slow
def test_cli_demo_prints_both_scenarios_and_every_claim(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(DemoConfig, "quick", classmethod(lambda cls: TINY))
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "[object]" in printed and "[spurious]" in printed and "[robustness]" in printed
    verdicts = "(robust|gradient-masked|not robust)"
    assert re.search(rf"^  audit topgap: robust accuracy \d\.\d{{3}}, {verdicts} \(", printed, re.M)
    assert re.search(r"^ReFF \(published\)\s+\d\.\d{3} ± ", printed, re.M)
    assert printed.count("[held, indicative]") + printed.count("[did not hold, indicative]") == len(CLAIMS)
    assert (tmp_path / "index.html").is_file()


def test_sweep_candidates_parse_and_the_choice_skips_collapsed_ones() -> None:
    from captum_topgap.app.selection import choose, parse_candidate

    spec = parse_candidate("reff:contrastive:100:layer1,layer2")
    assert (spec.method, spec.variant, spec.weight, spec.layers) == ("reff", "contrastive", 100.0, ("layer1", "layer2"))
    assert parse_candidate("rrr::10").weight == 10.0 and parse_candidate("baseline").method == "baseline"
    stem = parse_candidate("reff:contrastive:100:stem")
    assert stem.stem and stem.layers is None and not spec.stem
    for bad, message in [("abn", "METHOD must be baseline, reff or rrr"), ("rrr:share", "VARIANT is a ReFF variant"),
                         ("reff:share:x", "λ must be a number, got 'x'"),
                         ("rrr::1:stem", "'stem' (the stem and the four stages) is a ReFF option")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_candidate(bad)
    rows = [{"candidate": "a", "val_accuracy": 0.5, "collapsed": ["layer4"]},
            {"candidate": "b", "val_accuracy": 0.2, "collapsed": []}, {"candidate": "b", "val_accuracy": 0.3,
                                                                        "collapsed": []},
            {"candidate": "c", "val_accuracy": 0.26, "collapsed": []}]
    for row in rows:
        row["val_in_distribution_accuracy"] = 0.9
    assert choose(rows)["candidate"] == "c"
    assert choose(rows[:3])["val_accuracy"] == pytest.approx(0.25)  # the mean over seeds
    with pytest.raises(ValueError, match="every candidate collapsed"):
        choose(rows[:1])


def test_the_choice_keeps_the_baselines_in_distribution_accuracy_within_two_points() -> None:
    from captum_topgap.app.selection import choose

    def row(name: str, shifted: float, in_distribution: float) -> dict:
        return {"candidate": name, "val_accuracy": shifted, "val_in_distribution_accuracy": in_distribution,
                "collapsed": []}

    rows = [row("baseline", 0.09, 1.0), row("reff:contrastive:100:stem", 0.41, 0.79),
            row("reff:contrastive:30:stem", 0.30, 0.99), row("reff:contrastive:30:stem", 0.28, 0.97),
            row("reff:contrastive:10:stem", 0.20, 1.0)]
    best = choose(rows)  # 30 keeps 0.98 on the mean, exactly 2 points below; 100 gains more but loses 21
    assert best == {"candidate": "reff:contrastive:30:stem", "val_accuracy": pytest.approx(0.29),
                    "val_in_distribution_accuracy": pytest.approx(0.98), "keeps_in_distribution": True}
    nobody = choose([rows[0], rows[1], row("rrr::10", 0.15, 0.97)])  # no candidate keeps it: the best, flagged
    assert nobody["candidate"] == "reff:contrastive:100:stem" and nobody["keeps_in_distribution"] is False
    alone = choose(rows[1:])  # without a baseline, no floor: the best, and nothing said to be kept
    assert alone["candidate"] == "reff:contrastive:100:stem" and alone["keeps_in_distribution"] is None
    with pytest.raises(ValueError, match="only the baseline was swept"):
        choose(rows[:1])


def test_robustness_candidates_parse_and_the_choice_keeps_the_clean_accuracy() -> None:
    from captum_topgap.app.selection import choose_robust, parse_candidate

    spec = parse_candidate("topgap:0.08:1", "robustness")
    assert (spec.architecture, spec.method, spec.k, spec.weight) == ("topgap_preact_resnet18", "topgap", 0.08, 1.0)
    assert parse_candidate("topgap:16:0.01", "robustness").k == 16
    assert parse_candidate("baseline", "robustness").architecture == "preact_resnet18_cifar"
    for bad in ("topgap:0.08", "topgap:x:1", "reff:1:1", "topgap:0:1"):
        with pytest.raises(ValueError, match=re.escape("use 'baseline' or 'topgap:K:λ' with K > 0")):
            parse_candidate(bad, "robustness")
    rows = [{"candidate": "baseline", "val_accuracy": 0.90, "val_pgd20": 0.1},
            {"candidate": "topgap:0.02:1", "val_accuracy": 0.87, "val_pgd20": 0.9},  # 3 points less accurate
            {"candidate": "topgap:0.25:1", "val_accuracy": 0.88, "val_pgd20": 0.4},  # exactly 2 points: kept
            {"candidate": "topgap:0.25:1", "val_accuracy": 0.88, "val_pgd20": 0.2}]
    assert choose_robust(rows) == {"candidate": "topgap:0.25:1", "val_accuracy": 0.88, "val_pgd20": pytest.approx(0.3)}
    with pytest.raises(ValueError, match=r"no Top-GAP candidate is within 0\.02"):
        choose_robust(rows[:2])


@pytest.mark.slow
def test_cli_sweep_scores_candidates_on_the_validation_split(tmp_path: Path, monkeypatch, capsys) -> None:
    from captum_topgap.app.selection import choose

    monkeypatch.setattr(DemoConfig, "quick", classmethod(lambda cls: TINY))
    assert main(["sweep", "--quick", "--candidate", "baseline", "--candidate", "reff:contrastive:100",
                 "--seeds", "0", "--images", "24", "--epochs", "2", "--out", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert [row["candidate"] for row in saved["rows"]] == ["baseline", "reff:contrastive:100"]
    assert {(row["images"], row["epochs"]) for row in saved["rows"]} == {(24, 2)}  # the budget asked for, not TINY's
    stored = torch.load(tmp_path / "models" / "baseline" / "seed0" / "model.pt", weights_only=False)
    assert len(stored["history"]) == 2
    assert all(0 <= row[key] <= 1 for row in saved["rows"]
               for key in ("val_accuracy", "val_in_distribution_accuracy", "val_erf_digit_share"))
    assert saved["best"] == choose(saved["rows"])
    printed = capsys.readouterr().out
    assert "best on the shifted validation split" in printed and "in-dist" in printed and "ERF digit" in printed
    assert "the baseline's in-distribution accuracy within 2 points" in printed
