"""A folder that runs cannot be written to is refused in one line before anything loads (it was a
PermissionError traceback from the logger, after the model and data had loaded)."""

from __future__ import annotations

import errno
import shutil
import subprocess
import tempfile

import pytest

from tests.helpers import ORIGIN, selfens_fails


def refused(capsys, tiny_model_path, save_dir) -> str:
    return selfens_fails(
        capsys, "test", "--config", ORIGIN, "--model.init_args.model", tiny_model_path,
        "--trainer.logger.init_args.save_dir", save_dir,
    )  # fmt: skip


def test_a_save_dir_under_a_file(tiny_model_path, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    message = refused(capsys, tiny_model_path, tmp_path / "file" / "logs")
    assert message == (
        f"selfens: error: cannot write runs to {tmp_path / 'file' / 'logs' / 'pararel_origin'}: Not a directory "
        f"({tmp_path / 'file'}); set trainer.logger.init_args.save_dir to a folder you can write to"
    )


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC, errno.EACCES], ids=["read-only", "full", "no access"])
def test_a_save_dir_that_refuses_writes(code, tiny_model_path, tmp_path, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(code, f"error {code}")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    message = refused(capsys, tiny_model_path, tmp_path / "logs")
    assert message.startswith(
        f"selfens: error: cannot write runs to {tmp_path / 'logs' / 'pararel_origin'}: error {code}"
    )
    assert not (tmp_path / "logs").exists()


@pytest.mark.skipif(shutil.which("chattr") is None, reason="needs chattr (e2fsprogs)")
def test_an_immutable_save_dir(tiny_model_path, tmp_path, capsys):
    folder = tmp_path / "locked"
    folder.mkdir()
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not allowed here (needs root on a file system with attributes)")
    try:
        message = refused(capsys, tiny_model_path, folder)
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    assert message.startswith(
        f"selfens: error: cannot write runs to {folder / 'pararel_origin'}: Operation not permitted"
    )
