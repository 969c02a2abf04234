"""Reading MyriadLAMA: a data file, a folder of them, a `save_to_disk` folder, or the hub, as a
`datasets.Dataset` with every field and the expected types; and rows of it as checked Python dicts."""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path
from typing import Optional

from selfens.data.hub import load_hub_dataset
from selfens.data.records import BOM, DataError, read_json, read_jsonl, require

HUB_ID = "iszhaoxin/MyriadLAMA"
FIELDS = ("uuid", "rel_uri", "sub_ent", "obj_aliases", "template", "is_manual")
_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".arrow": "arrow"}
_SAVED = ("dataset_info.json", "state.json", "dataset_dict.json")  # what `save_to_disk` writes
_HUB_LIKE = re.compile(r"[\w.-]+/[\w.-]+")
_ARROW_STRINGS = ("uuid", "rel_uri", "template")  # compared and matched as Arrow strings, before Python


def read_dataset(path: str, split: str):
    """The `datasets.Dataset` at `path` (a local file or folder, or a hub id), once it has rows and every
    field, with `uuid`, `rel_uri` and `template` as strings."""
    local = Path(path).expanduser()
    if local.exists():
        dataset = _read_local(local, split)
    elif _local_path(path):
        raise DataError(
            f"MyriadLAMA data not found: {path} (expected a parquet or jsonl file, a folder of them, a "
            f"folder written by save_to_disk, or the hub id {HUB_ID})"
        )
    else:
        try:
            dataset = load_hub_dataset(
                path,
                split,
                f"where there is a network, run `hf download {path} --repo-type dataset --local-dir DIR` and pass "
                f"path: DIR",
            )
        except DataError as error:
            if path == HUB_ID:
                raise
            raise DataError(
                f"MyriadLAMA data not found: {path} is no file or folder here; as a hub id, {error}"
            ) from None
    return _checked_schema(dataset, path)


def _local_path(path: str) -> bool:
    """Whether `path`, which does not exist, names a local file or folder rather than a hub id: one that
    starts with `.`, `/` or `~`, names a data file (`.jsonl`, ...), is not `owner/name`, or whose
    `owner` is a folder here (`data/myriadlama` next to a data/ folder). Any other `owner/name` may be
    either: it is looked up on the hub, and its error says that it is no file or folder here either."""
    name = Path(path)
    return (
        path.startswith((".", "/", "~"))
        or name.suffix in _BUILDERS
        or not _HUB_LIKE.fullmatch(path)
        or name.parent.is_dir()
    )


def arrow_columns(dataset, path: str):
    """`uuid`, `rel_uri` and `template` of every row as an Arrow table (no Python objects), once no
    `uuid` or `rel_uri` is null."""
    import pyarrow.compute as pc

    table = dataset.select_columns(list(_ARROW_STRINGS)).with_format("arrow")[:]
    for name in ("uuid", "rel_uri"):
        if table[name].null_count:
            row = pc.indices_nonzero(pc.is_null(table[name]))[0].as_py()
            raise DataError(f"MyriadLAMA data {path}: row {row}: field {name!r} is null")
    return table


def read_rows(dataset, indices: list[int], path: str) -> list[dict]:
    """The rows at `indices`, decoded by `datasets` (the only rows that become Python objects) and
    checked: `obj_aliases` as a list (a lone string is tolerated)."""
    rows = dataset.select_columns(list(FIELDS)).select(indices).to_list()
    return [_checked_row(row, f"{path}: row {index}") for index, row in zip(indices, rows)]


def _read_local(local: Path, split: str):
    """A data file, a folder of them (`datasets` names the splits by file name), or a save_to_disk folder."""
    import datasets
    from datasets.data_files import EmptyDatasetError
    from datasets.exceptions import DatasetGenerationError

    if local.is_file() and local.suffix not in _BUILDERS:
        raise DataError(
            f"MyriadLAMA file {local}: unsupported type {local.suffix!r} (use parquet or jsonl, a folder of "
            f"them, or a folder written by save_to_disk)"
        )
    if local.is_file() and not local.stat().st_size:
        raise DataError(f"MyriadLAMA file {local} is empty")
    try:
        if local.is_file():
            loaded = datasets.load_dataset(_BUILDERS[local.suffix], data_files=str(local), split="train")
        elif not any((local / name).exists() for name in _SAVED):
            loaded = datasets.load_dataset(str(local), split=split)
        else:
            loaded = datasets.load_from_disk(str(local))
    except DatasetGenerationError as error:
        raise DataError(
            f"MyriadLAMA data {local}: cannot be read: {_json_fault(local) or error.__cause__ or error}"
        ) from None
    except EmptyDatasetError:
        raise DataError(
            f"MyriadLAMA folder {local} has no parquet or jsonl files (nor is it a folder written by save_to_disk)"
        ) from None
    except ValueError as error:  # e.g. an unknown split
        raise DataError(f"MyriadLAMA data {local}: {error}") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(f"MyriadLAMA folder {local} has no split {split!r} (splits: {', '.join(loaded)})")
        loaded = loaded[split]
    return _utf8_checked(loaded, local)


def _utf8_checked(dataset, local: Path):
    """`dataset`, once its text is UTF-8: Arrow's JSON reader lets other bytes through, and they would
    fail only when a row becomes Python objects."""
    import pyarrow as pa

    try:
        dataset.data.table.validate(full=True)
    except pa.ArrowInvalid as error:
        fault = _json_fault(local) or f"{error}; data files must be UTF-8 text"
        raise DataError(f"MyriadLAMA data {local}: cannot be read: {fault}") from None
    return dataset


def _json_fault(local: Path) -> Optional[str]:
    """The first fault (not UTF-8, malformed JSON) in the JSON files at `local` (a file, or those in a
    folder), as selfens' own readers name it: file, line and column (Arrow's names a row of a block).
    None if they find none."""
    try:
        for path in [local] if local.is_file() else sorted(local.rglob("*")):
            if path.suffix not in (".json", ".jsonl"):
                continue
            with path.open("rb") as f:
                array = f.read(64).removeprefix(BOM).lstrip().startswith(b"[")
            if array:
                read_json(path)
            else:
                deque(read_jsonl(path), maxlen=0)
    except DataError as error:
        return str(error)
    return None


def _checked_schema(dataset, path: str):
    import pyarrow as pa

    missing = [name for name in FIELDS if name not in dataset.column_names]
    if missing:
        raise DataError(
            f"MyriadLAMA data {path}: missing field(s) {', '.join(map(repr, missing))} "
            f"(fields present: {sorted(dataset.column_names)}; needed: {', '.join(FIELDS)})"
        )
    if not dataset.num_rows:
        raise DataError(f"MyriadLAMA data {path} has no rows")
    schema = dataset.data.schema
    for name in _ARROW_STRINGS:
        kind = schema.field(name).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise DataError(f"MyriadLAMA data {path}: field {name!r} should be str, got {kind}")
    return dataset


def _checked_row(item: dict, where: str) -> dict:
    for name, kind in (("uuid", str), ("rel_uri", str), ("sub_ent", str), ("template", str), ("is_manual", bool)):
        require(item, name, kind, where)
    aliases = item["obj_aliases"]
    if isinstance(aliases, str):
        aliases = [aliases]
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise DataError(f"{where}: field 'obj_aliases' should be a list of str (or a str), got {aliases!r}")
    return {**item, "obj_aliases": aliases}
