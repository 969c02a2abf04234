"""Reading MyriadLAMA: a data file, a folder of them, a `save_to_disk` folder, or the hub, as a
`datasets.Dataset` with every field and the expected types; and rows of it as checked Python dicts."""

from __future__ import annotations

import re
from pathlib import Path

from selfens.data.hub import load_hub_dataset
from selfens.data.records import DataError, require

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
    elif path.startswith((".", "/", "~")) or local.suffix in _BUILDERS or not _HUB_LIKE.fullmatch(path):
        raise DataError(
            f"MyriadLAMA data not found: {path} (expected a parquet or jsonl file, a folder of them, a "
            f"folder written by save_to_disk, or the hub id {HUB_ID})"
        )
    else:
        dataset = load_hub_dataset(
            path,
            split,
            f"where there is a network, run `hf download {path} --repo-type dataset --local-dir DIR` and pass path: DIR",
        )
    return _checked_schema(dataset, path)


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
            return datasets.load_dataset(_BUILDERS[local.suffix], data_files=str(local), split="train")
        if not any((local / name).exists() for name in _SAVED):
            return datasets.load_dataset(str(local), split=split)
        loaded = datasets.load_from_disk(str(local))
    except DatasetGenerationError as error:
        raise DataError(f"MyriadLAMA data {local}: cannot be read: {error.__cause__ or error}") from None
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
    return loaded


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
