import pickle

import numpy as np
import pytest
import torch

from rsz_export.errors import EnvironmentProblem, IntegrityError, UsageError
from rsz_export.model.checkpoint import load_checkpoint as load_state_dict_file
from rsz_export.model.weights import (
    build_model,
    choose_weights,
    pretrained_path,
    reference_from_record,
    resolve_weights,
)


@pytest.fixture(scope="module")
def random_weights():
    return resolve_weights("random", seed=0)


def test_random_weights_are_deterministic_and_trained_looking(random_weights):
    state, record = random_weights
    assert record.id == "random" and record.seed == 0 and len(record.sha256) == 64
    model = build_model(state)
    rng = np.random.default_rng(3)
    coarse = torch.from_numpy(rng.standard_normal((6, 3, 7, 7)).astype(np.float32))
    images = torch.nn.functional.interpolate(coarse, size=(224, 224), mode="bilinear")
    images = (images - images.mean(dim=(2, 3), keepdim=True)) / images.std(
        dim=(2, 3), keepdim=True
    )  # as normalised photos
    with torch.no_grad():
        logits = model(images)
    assert torch.isfinite(logits).all()
    spread = logits.std(dim=1)
    assert ((spread > 0.5) & (spread < 20)).all(), spread  # neither collapsed nor exploding
    assert len(set(logits.argmax(1).tolist())) >= 4  # different images, different top-1
    assert (torch.softmax(logits, 1).max(1).values < 0.99).all()


def test_reference_rebuilt_from_record_matches(random_weights):
    state, record = random_weights
    model = reference_from_record(record)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    with pytest.raises(IntegrityError, match="no longer match"):
        reference_from_record(record.__class__(**{**record.__dict__, "sha256": "0" * 64}))


def test_state_dict_file_round_trip(random_weights, tmp_path):
    state, _ = random_weights
    path = tmp_path / "w.pt"
    torch.save(state, path)
    loaded, record = resolve_weights(str(path))
    assert record.id == "file" and all(torch.equal(loaded[k], state[k]) for k in state)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_payload_is_refused_not_executed(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"conv1.weight": _Payload()}, handle)
    with pytest.raises(IntegrityError, match="beyond tensors|corrupt"):
        load_state_dict_file(path)
    assert "this must never run" not in capsys.readouterr().out


def test_torch_save_with_code_object_is_refused(tmp_path):
    path = tmp_path / "evil2.pt"
    torch.save({"model": _Payload()}, path)
    with pytest.raises(IntegrityError, match="beyond tensors"):
        load_state_dict_file(path)


def test_corrupt_and_foreign_weights(tmp_path, random_weights):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(IntegrityError, match="corrupt"):
        load_state_dict_file(bad)
    other = tmp_path / "other.pt"
    torch.save({"fc.weight": torch.zeros(3, 3)}, other)
    with pytest.raises(IntegrityError, match="not a torchvision ResNet-50"):
        load_state_dict_file(other)
    with pytest.raises(UsageError, match="neither"):
        choose_weights(str(tmp_path / "missing.pt"), 0)


def test_pretrained_offline_error_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(EnvironmentProblem, match="resnet50-11ad3fa6.pth") as info:
        pretrained_path("imagenet1k-v2", allow_download=False)
    assert str(tmp_path) in str(info.value)
