import json

import pytest

from deepinterest.artifacts import (
    atomic_dir,
    atomic_write_text,
    fingerprint_paths,
    is_up_to_date,
    read_manifest,
    write_manifest,
)


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "art"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("two")
            raise RuntimeError("stage failed")
    assert (target / "a.txt").read_text() == "one"  # previous artifact intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # no temp left behind


def test_atomic_write_text_leaves_no_temp_on_error(tmp_path):
    atomic_write_text(tmp_path / "f.json", "ok")
    with pytest.raises(TypeError):
        atomic_write_text(tmp_path / "f.json", None)  # type: ignore[arg-type]
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]
    assert (tmp_path / "f.json").read_text() == "ok"


def test_manifest_and_up_to_date(tmp_path):
    with atomic_dir(tmp_path / "s") as tmp:
        (tmp / "out.txt").write_text("x")
        write_manifest(tmp, stage="s", config={"a": 1}, inputs={"in": "f1"}, counts={"n": 1},
                       seconds=0.5)
    manifest = read_manifest(tmp_path / "s")
    assert manifest["stage"] == "s" and manifest["counts"] == {"n": 1}
    assert manifest["fingerprint"] == fingerprint_paths([tmp_path / "s" / "out.txt"])
    assert is_up_to_date(tmp_path / "s", config={"a": 1}, inputs={"in": "f1"})
    assert not is_up_to_date(tmp_path / "s", config={"a": 2}, inputs={"in": "f1"})
    assert not is_up_to_date(tmp_path / "s", config={"a": 1}, inputs={"in": "f2"})
    assert not is_up_to_date(tmp_path / "missing", config={"a": 1}, inputs={"in": "f1"})


def test_fingerprint_changes_with_content(tmp_path):
    f = tmp_path / "f"
    f.write_text("a")
    first = fingerprint_paths([f])
    f.write_text("b")
    assert fingerprint_paths([f]) != first
    assert json.dumps(first)  # plain string
