"""Output folders: nothing the user made is lost, and no two writers share a folder."""

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepinterest.artifacts import claim_output, stage_lock, sweep_stale
from deepinterest.cli import app
from deepinterest.errors import DeepInterestError

runner = CliRunner()


def _p5(folder: Path) -> Path:
    folder.mkdir()
    (folder / "user_sequence.txt").write_text("u1 A B C D\nu2 B C D\nu3 A C\n")
    (folder / "x.item").write_text("item_id:token\ttitle:token\nA\ta\nB\tb\nC\tc\nD\td\n")
    return folder


def _user_folder(path: Path) -> Path:
    (path / "sub").mkdir(parents=True)
    (path / "notes.txt").write_text("my notes")
    (path / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return path


def _tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): p.read_text() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture()
def dataset(tmp_path) -> Path:
    out = tmp_path / "dataset"
    result = runner.invoke(app, ["data", "prepare", str(_p5(tmp_path / "src")), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_prepare_refuses_a_folder_of_user_files_and_keeps_them(tmp_path):
    out = _user_folder(tmp_path / "mine")
    before = _tree(out)
    result = runner.invoke(app, ["data", "prepare", str(_p5(tmp_path / "src")), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "files that no `di` stage wrote" in result.output and "--force" in result.output
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "src"]  # no temp, no lock


def test_prepare_force_replaces_and_a_rerun_reuses_its_own_artifact(tmp_path):
    out = _user_folder(tmp_path / "mine")
    src = str(_p5(tmp_path / "src"))
    result = runner.invoke(app, ["data", "prepare", src, "--out", str(out), "--force"])
    assert result.exit_code == 0, result.output
    assert not (out / "notes.txt").exists() and (out / "manifest.json").is_file()
    again = runner.invoke(app, ["data", "prepare", src, "--out", str(out)])
    assert again.exit_code == 0 and "up to date" in again.output


def test_tokenize_refuses_a_folder_of_user_files_and_another_stage(tmp_path, dataset):
    out = _user_folder(tmp_path / "sids")
    before = _tree(out)
    result = runner.invoke(app, ["tokenize", str(dataset), "--out", str(out)])
    assert result.exit_code == 2 and _tree(out) == before, result.output
    # A dataset artifact is not a sids artifact: tokenizing into it would destroy it.
    result = runner.invoke(app, ["tokenize", str(dataset), "--out", str(dataset)])
    assert result.exit_code == 2 and "'data' artifact" in result.output
    assert (dataset / "manifest.json").is_file()


@pytest.mark.parametrize("command", ["prepare", "tokenize"])
def test_out_naming_the_current_folder_or_a_file_is_a_clear_error(tmp_path, dataset, command,
                                                                  monkeypatch):
    work = _user_folder(tmp_path / "cwd")
    monkeypatch.chdir(work)
    (work / "file.txt").write_text("keep me")
    args = (["data", "prepare", str(tmp_path / "src")] if command == "prepare"
            else ["tokenize", str(dataset)])
    for out, message in ((".", "current folder"), ("..", "current folder"),
                         ("file.txt", "is a file")):
        result = runner.invoke(app, [*args, "--out", out, "--force"])
        assert result.exit_code == 2 and message in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
    assert sorted(p.name for p in work.iterdir()) == ["file.txt", "notes.txt", "sub"]
    assert (work / "file.txt").read_text() == "keep me"


def test_a_second_writer_fails_naming_the_holder(tmp_path):
    out = tmp_path / "sft"
    with stage_lock(out):
        with pytest.raises(DeepInterestError, match=rf"process {os.getpid()}"):
            with claim_output(out, "train-sft"):
                pass
    with claim_output(out, "train-sft"):  # released: free again
        pass
    assert not (tmp_path / ".sft.lock").exists()


def test_a_run_on_a_locked_workdir_fails_at_once(tmp_path):
    work = tmp_path / "w"
    with stage_lock(work):
        result = runner.invoke(app, ["run", "--workdir", str(work)])
    assert result.exit_code == 2 and "is being written by process" in result.output
    assert not work.exists()


def test_a_killed_holder_releases_its_lock(tmp_path):
    out = tmp_path / "art"
    code = textwrap.dedent(f"""
        import time
        from deepinterest.artifacts import stage_lock
        with stage_lock({str(out)!r}):
            print("locked", flush=True)
            time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(DeepInterestError, match=f"process {child.pid}"):
            with stage_lock(out):
                pass
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
    with stage_lock(out):  # the OS dropped the dead holder's lock
        pass


def test_temp_folders_of_dead_processes_are_swept(tmp_path):
    src = str(_p5(tmp_path / "src"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".dataset.tmp-{dead}-abc"
    stale.mkdir()
    (stale / "half.jsonl").write_text("{")
    old = tmp_path / f".dataset.old-{dead}"
    old.mkdir()
    alive = tmp_path / f".dataset.tmp-{os.getpid()}-xyz"  # ours: not stale
    alive.mkdir()
    result = runner.invoke(app, ["data", "prepare", src, "--out", str(tmp_path / "dataset")])
    assert result.exit_code == 0, result.output
    assert not stale.exists() and not old.exists() and alive.exists()
    assert sweep_stale(tmp_path / "dataset") == []


def test_artifact_files_and_folders_get_the_usual_modes(tmp_path, dataset):
    mask = os.umask(0o022)
    try:
        out = tmp_path / "again"
        result = runner.invoke(app, ["data", "prepare", str(tmp_path / "src"), "--out", str(out)])
        assert result.exit_code == 0, result.output
    finally:
        os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes and set(modes.values()) == {0o644}, modes


def test_an_empty_workdir_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "c.toml"
    cfg.write_text('workdir = ""\n')
    result = runner.invoke(app, ["run", "--config", str(cfg)])
    assert result.exit_code == 2 and "workdir" in result.output, result.output
    result = runner.invoke(app, ["run", "--workdir", ""])
    assert result.exit_code == 2 and "workdir is empty" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


def test_run_never_overwrites_a_config_it_did_not_write(tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    (work / "config.yaml").write_text("mine: true\n")
    result = runner.invoke(app, ["run", "--workdir", str(work)])
    assert result.exit_code == 2 and "was not written by `di run`" in result.output
    assert (work / "config.yaml").read_text() == "mine: true\n"
    assert sorted(p.name for p in work.iterdir()) == ["config.yaml"]


def test_lock_file_names_the_holder_while_held(tmp_path):
    out = tmp_path / "art"
    with stage_lock(out):
        text = (tmp_path / ".art.lock").read_text()
        assert text.startswith(f"process {os.getpid()} (") and time.strftime("%Y-") in text
    assert json.dumps(sorted(p.name for p in tmp_path.iterdir())) == "[]"


def test_files_beside_the_written_folders_survive(tmp_path):
    """Stages write their own folder (and a short-lived lock beside it) and nothing else."""
    parent = _user_folder(tmp_path / "runs")
    (parent / ".dataset.tmp-notes").write_text("not ours: no pid")  # looks like a temp name
    before = _tree(parent)
    src = str(_p5(tmp_path / "src"))
    for args in (["data", "prepare", src, "--out", str(parent / "dataset")],
                 ["tokenize", str(parent / "dataset"), "--out", str(parent / "sids")],
                 ["mine", str(parent / "dataset"), "--out", str(parent / "interests")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    assert {k: (parent / k).read_text() for k in before} == before
    assert {p.name for p in parent.iterdir()} == {
        "notes.txt", "sub", ".dataset.tmp-notes", "dataset", "sids", "interests"}


def test_di_mine_never_prepares_over_a_users_dataset_folder(tmp_path):
    user = _user_folder(tmp_path / "dataset")  # beside --out, where di mine would prepare
    before = _tree(user)
    result = runner.invoke(app, ["mine", str(_p5(tmp_path / "src")),
                                 "--out", str(tmp_path / "interests")])
    assert result.exit_code == 2 and "files that no `di` stage wrote" in result.output
    assert _tree(user) == before and not (tmp_path / "interests").exists()
