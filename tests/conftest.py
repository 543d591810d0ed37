"""Shared fixtures: a tiny phantom cohort and a tiny trained bundle (built once per test session)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from livercad.config import Config, load_config

if TYPE_CHECKING:
    from livercad.pipeline.training.orchestrate import PipelineTraining

# Caches the package writes at run time (exported ONNX graphs under $XDG_CACHE_HOME/livercad/onnx) go to a
# private temporary folder, never to the user's home.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="livercad-test-cache-")
# No test downloads weights by accident: `imagenet` fails at once unless a test serves them itself
# (tests/runtime/test_weights_download.py clears this and serves files from 127.0.0.1).
os.environ["LIVERCAD_OFFLINE"] = "1"

TINY = [
    "data.phantom.n=8",
    "data.phantom.shape=[64, 64, 12]",
    "data.phantom.classes=[normal, cirrhosis]",
    "data.phantom.seed=3",
    "preprocess.image_size=64",
    "segment.model.encoder=resnet18",
    "segment.model.encoder_weights=none",  # the package default is imagenet: tests train from random init, offline
    "segment.train.max_epochs=1",
    "segment.train.steps_per_epoch=3",
    "segment.train.batch_size=4",
    "classify.backbone=resnet18",
    "classify.weights=none",
    "classify.image_size=64",
    "classify.classes=[normal, cirrhosis]",
    "classify.train.max_epochs=1",
    "classify.train.steps_per_epoch=2",
    "classify.train.batch_size=8",
    "inference.precision=fp32",
]


def tiny_config(*extra: str) -> Config:
    """The smallest config that exercises every stage (seconds, not minutes)."""
    return load_config(None, [*TINY, *extra])


#: torch's intra-op threads when the session starts. The tiny bundle trains with them whichever module asks for
#: it first (its weights, and so the golden file, depend on the thread count), also on an xdist worker.
SESSION_THREADS = torch.get_num_threads()


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the count it found."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread for a module of tiny batches (OpenMP hand-off costs, large on a busy machine).

    Use it as ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``: restored after the module.
    """
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory: pytest.TempPathFactory) -> PipelineTraining:
    """Train both stages on a tiny phantom once (with :data:`SESSION_THREADS`); returns train_pipeline's result."""
    from livercad.pipeline.training.orchestrate import train_pipeline

    root = tmp_path_factory.mktemp("tiny_pipeline")
    with torch_threads(SESSION_THREADS):
        return train_pipeline(tiny_config(), root, progress=False)


@pytest.fixture(scope="session")
def tiny_bundle(tiny_trained: PipelineTraining) -> Path:
    """Path of the tiny model bundle."""
    return Path(tiny_trained.bundle)
