import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def models_dir():
    """Trained stage models (trained once, shared by xdist workers through a file lock)."""
    return Path(os.environ.get("RPACCEL_MODELS", REPO / "build" / "models"))


@pytest.fixture(scope="session")
def qmodels(models_dir):
    from rpaccel.golden.train import build_models

    return build_models(models_dir, log=lambda s: None)


@pytest.fixture(scope="session")
def ml():
    from rpaccel.golden.data import load_ml100k

    return load_ml100k()
