"""Checkpoints as training scripts save them: every wrapping reads to the same state_dict and names the same
weights (no export here: these run in the fast tier); everything else is refused with what did not fit."""

from __future__ import annotations

import pytest
import torch
import torchvision

from rsz_export.errors import IntegrityError, UsageError
from rsz_export.model import checkpoint
from rsz_export.model.checkpoint import load_checkpoint
from rsz_export.model.weights import choose_weights, resolve_weights, state_dict_sha256
from tests.helpers import CHECKPOINT_WRAPPINGS


@pytest.fixture()
def ten_class(wrapped_checkpoints):
    return wrapped_checkpoints


@pytest.mark.slow
def test_every_wrapping_reads_to_the_identical_state_dict_and_names_the_same_weights(ten_class):
    """Each wrapping gives back the very tensors saved, and the same content hash: the export key, so one export
    serves every wrapping of the same weights, while each build records (and verifies) its own file."""
    state, paths = ten_class
    records = {}
    for name, path in paths.items():
        loaded, records[name] = resolve_weights(str(path))
        assert loaded.keys() == state.keys(), name
        assert all(torch.equal(loaded[k], state[k]) and loaded[k].dtype == state[k].dtype for k in state), name
    assert {r.content_sha256 for r in records.values()} == {state_dict_sha256(state)}
    assert {(r.id, r.num_classes) for r in records.values()} == {("file", 10)}
    assert len({r.sha256 for r in records.values()}) == len(CHECKPOINT_WRAPPINGS)  # seven different files
    assert all(r.source == str(paths[n].resolve()) for n, r in records.items())
    choice = choose_weights(str(paths["ddp-with-optimizer.pt"]), known=records["ddp-with-optimizer.pt"])
    assert (choice.key, choice.num_classes) == (f"state:{state_dict_sha256(state)}", 10)


def test_other_tensors_give_another_key(ten_class, tmp_path):
    state, _ = ten_class
    changed = {**state, "fc.bias": state["fc.bias"] + 1e-6}
    torch.save(changed, tmp_path / "changed.pt")
    assert choose_weights(str(tmp_path / "changed.pt")).key != f"state:{state_dict_sha256(state)}"


def test_a_known_file_is_not_read_again(ten_class, monkeypatch):
    """A rebuild whose manifest recorded this file (same sha256) takes its content hash from there: no torch."""
    _, paths = ten_class
    record = choose_weights(str(paths["bare.pt"])).record

    def refuse(*args):
        raise AssertionError("read the checkpoint although the manifest describes it")

    monkeypatch.setattr(checkpoint, "read_file", refuse)
    assert choose_weights(str(paths["bare.pt"]), known=record).record == record
    with pytest.raises(AssertionError, match="read the checkpoint"):
        choose_weights(str(paths["weights.pt"]), known=record)  # another file: read it


def test_num_classes_is_checked_against_the_head(ten_class):
    _, paths = ten_class
    assert resolve_weights(str(paths["bare.pt"]), num_classes=10)[1].num_classes == 10
    with pytest.raises(UsageError, match=r"--num-classes 12 does not match the checkpoint .*which has 10 classes"):
        choose_weights(str(paths["bare.pt"]), num_classes=12)
    with pytest.raises(UsageError, match="which has 1000 classes"):
        choose_weights("imagenet1k-v2", num_classes=10)
    with pytest.raises(UsageError, match=r"--num-classes must be a whole number in 1\.\.100000, got 0"):
        choose_weights("random", num_classes=0)
    assert choose_weights("random", num_classes=10).key == "random:seed=0:classes=10"
    assert choose_weights("random").key == "random:seed=0"  # the default head keeps its earlier key


def test_safetensors_is_recognised_by_content_too(ten_class, tmp_path):
    state, paths = ten_class
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(paths["model.safetensors"].read_bytes())
    assert torch.equal(load_checkpoint(renamed)["fc.weight"], state["fc.weight"])


def _refused(path, *phrases):
    with pytest.raises(IntegrityError) as info:
        load_checkpoint(path)
    for phrase in phrases:
        assert phrase in str(info.value), str(info.value)


def test_another_architecture_is_refused_with_what_did_not_fit(tmp_path):
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp_path / "resnet18.pt")
    _refused(tmp_path / "resnet18.pt", "not a torchvision ResNet-50 checkpoint", "missing: layer1.0.conv3.weight",
             "of the wrong shape: layer1.0.conv1.weight [64, 64, 3, 3], expected [64, 64, 1, 1]",
             "24 of the wrong shape", "122 tensors (conv1.weight")
    vit = torchvision.models.VisionTransformer(32, 16, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32)
    torch.save({"model": vit.state_dict(), "epoch": 1}, tmp_path / "vit.pt")
    _refused(tmp_path / "vit.pt", "the keys 'model', 'epoch'", "in its 'model' entry", "unexpected: class_token",
             "266 missing: fc.weight (2-D, [classes, 2048]), conv1.weight")


def test_files_that_hold_no_resnet50_are_refused(ten_class, tmp_path):
    state, paths = ten_class
    torch.save({"epoch": 3, "optimizer": {"state": {}, "param_groups": []}}, tmp_path / "no-model.pt")
    _refused(tmp_path / "no-model.pt", "holds no state_dict: its keys are 'epoch', 'optimizer'")
    torch.save({k: v for k, v in state.items() if not k.startswith("fc.")}, tmp_path / "headless.pt")
    _refused(tmp_path / "headless.pt", "1 missing: fc.weight (2-D, [classes, 2048])")
    torch.save({"module." + k if k < "l" else k: v for k, v in state.items()}, tmp_path / "half-prefixed.pt")
    _refused(tmp_path / "half-prefixed.pt", "8 unexpected: module.conv1.weight")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    _refused(tmp_path / "list.pt", "holds a list, not a state_dict")


def test_truncated_files_are_integrity_errors(ten_class, tmp_path):
    _, paths = ten_class
    for name in ("bare.pt", "model.safetensors"):
        data = paths[name].read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        _refused(tmp_path / name, "is corrupt, truncated or not a")


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_code_inside_a_training_checkpoint_is_refused_not_run(ten_class, tmp_path, capsys):
    state, _ = ten_class
    torch.save({"state_dict": state, "hyper_parameters": _Payload()}, tmp_path / "evil.ckpt")
    _refused(tmp_path / "evil.ckpt", "refused to load", "Unsupported global: GLOBAL print")
    assert "this must never run" not in capsys.readouterr().out
