"""A checkpoint directory packed for Ray's object store and written back on another node."""
import pickle

import pytest

from trainer.checkpoint import pack, unpack


def test_a_packed_checkpoint_is_written_back_byte_for_byte(tmp_path):
    source = tmp_path / "round-1"
    source.mkdir()
    files = {"adapter_config.json": b'{"r": 8}', "adapter_model.safetensors": bytes(range(256)) * 100,
             "optimizer.pt": b"\x00state", "checkpoint.json": b"{}"}
    for name, data in files.items():
        (source / name).write_bytes(data)
    packed = pickle.loads(pickle.dumps(pack(source)))  # as the object store carries it
    assert packed.nbytes == sum(map(len, files.values()))
    out = unpack(packed, tmp_path / "elsewhere" / "round-1")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files


def test_only_flat_directories_and_plain_names(tmp_path):
    (tmp_path / "nested").mkdir()
    with pytest.raises(ValueError, match="flat"):
        pack(tmp_path)
    from trainer.checkpoint import PackedCheckpoint

    with pytest.raises(ValueError, match="plain name"):
        unpack(PackedCheckpoint((("../escape", b"x"),)), tmp_path / "out")
