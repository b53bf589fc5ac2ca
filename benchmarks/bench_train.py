"""Training-step time and peak memory, reference kernels vs Triton: stage 1, 128x128, batch 8, sshq512 widths."""

import json

import pytest
import torch

from aniportrait.data.format import LABEL_SHAPES


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    import imageio.v2 as imageio
    import numpy as np

    path = tmp_path_factory.mktemp("bench") / "ds"
    (path / "images").mkdir(parents=True)
    (path / "faces").mkdir()
    rng = np.random.default_rng(0)
    n = 16
    ids = np.array([f"{i:04d}" for i in range(n)])
    for i in ids:
        imageio.imwrite(path / "images" / f"{i}.png", rng.integers(0, 255, (128, 128, 3), dtype=np.uint8))
        imageio.imwrite(path / "faces" / f"{i}.png", rng.integers(0, 255, (128, 128, 3), dtype=np.uint8))
    labels = {k: (0.1 * rng.standard_normal((n, *s))).astype(np.float32) for k, s in LABEL_SHAPES.items()}
    labels["camera"] += np.float32(np.pi / 2)
    np.savez(path / "labels.npz", ids=ids, **labels)
    meta = {"format": "aniportrait-dataset", "version": 1, "image_size": 128, "face_size": 128, "count": n}
    (path / "dataset.json").write_text(json.dumps(meta))
    return path


@pytest.mark.parametrize("impl", ["ref", "triton"])
def bench_train_step(benchmark, dataset, tmp_path, impl):
    from aniportrait.config import SSHQ512
    from aniportrait.train.config import TrainConfig
    from aniportrait.train.loop import Trainer

    config = TrainConfig(generator=SSHQ512, batch_size=8, impl=impl, total_steps=10**6)
    trainer = Trainer(config, dataset, tmp_path / impl, device="cuda", progress=False)
    benchmark.group = "train-step-stage1-128-b8"
    state = {"step": 0}

    def step():
        trainer.d_step(state["step"])
        trainer.g_step(state["step"])
        state["step"] += 1
        torch.cuda.synchronize()

    step()
    torch.cuda.reset_peak_memory_stats()
    benchmark.pedantic(step, rounds=5, warmup_rounds=1, iterations=1)
    benchmark.extra_info.update(
        gpu=torch.cuda.get_device_name(),
        provider=impl,
        mode="train_step",
        peak_mib=round(torch.cuda.max_memory_allocated() / 2**20, 1),
    )
