"""Two CPU processes on gloo over loopback: DDP training equals single-process training with the same global
batch, resume works under DDP, ReFF's double back-propagation and Top-GAP's loss run, sharded evaluation
equals the single-process numbers.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from captum_topgap._distributed import setup, shard, world_size
from captum_topgap.evaluate.heatmaps import erf_scores, heatmap_scores
from captum_topgap.evaluate.metrics import accuracy
from captum_topgap.train.loop import TrainConfig, train
from captum_topgap.train.losses import ReFF
from captum_topgap.train.objectives import CrossEntropy, ReFFObjective, TopGAPObjective

TOLERANCE = 1e-5  # float sums in another order: DDP averages two half-batch gradients


def tiny_model() -> nn.Module:
    """No BatchNorm: its statistics would be per rank (SyncBatchNorm is for GPUs)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3))


def tiny_data(n: int = 32) -> list[tuple[torch.Tensor, int, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(n, 3, 8, 8, generator=generator)
    masks = torch.rand(n, 1, 8, 8, generator=generator) > 0.5
    return [(images[i], i % 3, masks[i]) for i in range(n)]


def config(epochs: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=8, lr=0.1, seed=3, progress=False)


def reff_objective(model: nn.Module) -> ReFFObjective:
    return ReFFObjective(ReFF(model, layers=[model[0]], weights=(1.0,)), weight=0.1)


def evaluate(model: nn.Module) -> dict:
    data = tiny_data(13)  # an odd number: shards of 7 and 6
    return {"accuracy": accuracy(model, data), "heatmaps": heatmap_scores(model, ["gradcam"], data, limit=11,
                                                                         progress=False),
            "erf": erf_scores(model, data, limit=11, progress=False)}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    setup()
    try:
        results = {}
        model = tiny_model()
        batches: list[int] = []  # what this rank's copy of the model sees: half of each global batch
        handle = model.register_forward_pre_hook(lambda _m, args: batches.append(args[0].shape[0]))
        train(model, CrossEntropy(), tiny_data(), None, config(2))
        handle.remove()
        results["straight"] = model.state_dict()
        split = {"world": world_size(), "batches": batches, "shard": len(shard(range(13)))}
        (Path(out) / f"rank{rank}.json").write_text(json.dumps(split))
        model = tiny_model()
        train(model, CrossEntropy(), tiny_data(), None, config(1), Path(out) / "run")
        dist.barrier()  # rank 0 has written last.pt
        model = tiny_model()
        train(model, CrossEntropy(), tiny_data(), None, config(2), Path(out) / "run", Path(out) / "run" / "last.pt")
        results["resumed"] = model.state_dict()
        model = tiny_model()
        train(model, reff_objective(model), tiny_data(), None, config(1))
        results["reff"] = model.state_dict()
        from tests.conftest import tiny_topgap

        topgap = tiny_topgap()
        history = train(topgap, TopGAPObjective(), tiny_data(), None, config(1))
        results["topgap_loss"] = history[-1]["train_loss"]
        scores = evaluate(tiny_model())
        if rank == 0:
            torch.save(results, Path(out) / "ddp.pt")
            (Path(out) / "eval.json").write_text(json.dumps(scores))
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    return out, torch.load(out / "ddp.pt", weights_only=True)


def assert_close(a: dict, b: dict) -> None:
    for key in a:
        assert torch.allclose(a[key], b[key], atol=TOLERANCE, rtol=0), key


@pytest.mark.slow
def test_ddp_training_equals_single_process_training_with_the_same_global_batch(ddp_run) -> None:
    _, results = ddp_run
    model = tiny_model()
    train(model, CrossEntropy(), tiny_data(), None, config(2))
    assert_close(results["straight"], model.state_dict())
    assert not torch.equal(results["straight"]["4.weight"], tiny_model().state_dict()["4.weight"])


@pytest.mark.slow
def test_the_work_is_really_split_over_the_two_processes(ddp_run) -> None:
    out, _ = ddp_run
    ranks = [json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert all(r["batches"] == [4] * 8 for r in ranks)  # 32 images, 2 epochs, global batch 8 = 4 per rank
    assert [r["shard"] for r in ranks] == [7, 6]        # 13 evaluation images


@pytest.mark.slow
def test_resume_under_ddp_continues_to_the_same_weights(ddp_run) -> None:
    out, results = ddp_run
    assert_close(results["resumed"], results["straight"])
    assert json.loads((out / "run" / "history.json").read_text())[-1]["epoch"] == 2  # only rank 0 wrote it


@pytest.mark.slow
def test_reff_double_backprop_and_topgap_loss_under_ddp(ddp_run) -> None:
    _, results = ddp_run
    model = tiny_model()
    train(model, reff_objective(model), tiny_data(), None, config(1))
    assert_close(results["reff"], model.state_dict())
    assert torch.isfinite(torch.tensor(results["topgap_loss"]))


@pytest.mark.slow
def test_sharded_evaluation_equals_the_single_process_numbers(ddp_run) -> None:
    out, _ = ddp_run
    sharded = json.loads((out / "eval.json").read_text())
    single = evaluate(tiny_model())
    assert sharded["accuracy"] == single["accuracy"]
    # per-image scores are float32 and summed per batch: other batches round differently (~1e-8)
    for key, value in single["heatmaps"]["gradcam"].items():
        assert sharded["heatmaps"]["gradcam"][key] == pytest.approx(value, abs=1e-6)
    for key, value in single["erf"].items():
        assert sharded["erf"][key] == pytest.approx(value, abs=1e-6)
