"""Bad input gets a message naming the file and what to do, never a traceback."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepinterest.cli import app
from deepinterest.data.readers import read_p5, read_recbole_items

runner = CliRunner()


def _fails_cleanly(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output


def _p5(folder: Path, items: str, sequences: str = "u1 A B C\nu2 B C\n") -> Path:
    folder.mkdir()
    (folder / "user_sequence.txt").write_text(sequences, encoding="utf-8")
    (folder / "x.item").write_text(items, encoding="utf-8")
    return folder


def test_an_item_field_longer_than_the_csv_default_cap_is_read(tmp_path):
    long = "word " * 40_000  # 200,000 characters, past csv's 131,072
    path = tmp_path / "x.item"
    path.write_text(f"item_id:token\tdescription:token_seq\nA\t{long}\nB\tshort\n")
    items = read_recbole_items(path)
    assert [it.id for it in items] == ["A", "B"]
    assert items[0].fields["description"] == long.strip()


def test_an_unterminated_quote_is_blamed_on_the_item_file(tmp_path):
    folder = _p5(tmp_path / "d", 'item_id:token\ttitle:token\nA\ta\nB\t"b\nC\tc\n')
    result = runner.invoke(app, ["data", "prepare", str(folder), "--out", str(tmp_path / "o")])
    _fails_cleanly(result, "x.item:3", "never closed")
    assert "user_sequence" not in result.output


def test_a_quoted_field_may_still_span_lines(tmp_path):
    path = tmp_path / "x.item"
    path.write_text('item_id:token\ttitle:token\nA\t"two\nlines"\nB\tb\n')
    assert [it.fields["title"] for it in read_recbole_items(path)] == ["two\nlines", "b"]


def test_a_byte_order_mark_is_not_part_of_the_first_id(tmp_path):
    folder = _p5(tmp_path / "d", "\ufeffitem_id:token\ttitle:token\nA\ta\nB\tb\nC\tc\n",
                 sequences="\ufeffu1 A B C\nu2 B C\n")
    dataset = read_p5(folder / "user_sequence.txt", folder / "x.item")
    assert [u.id for u in dataset.users] == ["u1", "u2"]
    assert dataset.items[0].id == "A"


def test_negative_k_and_kcore_are_refused_without_a_traceback(tmp_path):
    _fails_cleanly(runner.invoke(app, ["recommend", "--user", "u1", "-k", "-1"]), "-k")
    _fails_cleanly(runner.invoke(app, ["data", "prepare", "default", "--kcore", "-1",
                                       "--out", str(tmp_path / "o")]), "--kcore")
    _fails_cleanly(runner.invoke(app, ["data", "stats", "default", "--kcore", "-1"]), "--kcore")
    assert not (tmp_path / "o").exists()


def test_an_unknown_kernel_setting_is_a_message(tmp_path, monkeypatch):
    folder = _p5(tmp_path / "d", "item_id:token\ttitle:token\nA\ta\nB\tb\nC\tc\n")
    out = tmp_path / "data"
    assert runner.invoke(app, ["data", "prepare", str(folder), "--out", str(out)]).exit_code == 0
    monkeypatch.setenv("DEEPINTEREST_KERNEL", "cuda-fast")
    result = runner.invoke(app, ["tokenize", str(out), "--out", str(tmp_path / "sids"),
                                 "--codebook-size", "2", "--levels", "1"])
    _fails_cleanly(result, "DEEPINTEREST_KERNEL", "cuda-fast", "torch")
    assert not (tmp_path / "sids").exists()


def test_a_kcore_that_removes_every_user_fails_at_prepare(tmp_path):
    inter = tmp_path / "d.inter"
    inter.write_text("user_id:token\titem_id:token\ttimestamp:float\n"
                     "u1\tA\t1\nu1\tB\t2\nu2\tA\t3\n")
    out = tmp_path / "o"
    result = runner.invoke(app, ["data", "prepare", str(inter), "--kcore", "5", "--out", str(out)])
    _fails_cleanly(result, "5-core", "every user", "--kcore")
    assert not out.exists()


def test_items_without_any_text_are_refused_unless_id_only_sids_are_asked_for(tmp_path):
    (tmp_path / "d").mkdir()
    seqs = "".join(f"u{u} {' '.join(f'i{(u + t) % 12}' for t in range(4))}\n" for u in range(12))
    (tmp_path / "d" / "user_sequence.txt").write_text(seqs)
    data = tmp_path / "data"
    assert runner.invoke(app, ["data", "prepare", str(tmp_path / "d"), "--out",
                               str(data)]).exit_code == 0
    refused = runner.invoke(app, ["tokenize", str(data), "--out", str(tmp_path / "sids"),
                                  "--codebook-size", "2", "--levels", "2"])
    _fails_cleanly(refused, "no item has any text", "--allow-id-only")
    assert not (tmp_path / "sids").exists()
    with pytest.warns(UserWarning, match="no item has any of the text fields"):
        result = runner.invoke(app, ["tokenize", str(data), "--out", str(tmp_path / "sids"),
                                     "--codebook-size", "2", "--levels", "2", "--allow-id-only"])
    assert result.exit_code == 0, result.output
    stats = json.loads((tmp_path / "sids" / "stats.json").read_text())
    assert len(stats["warnings"]) == 1 and "carry no meaning" in stats["warnings"][0]


def test_tokenize_help_shows_the_table_name():
    result = runner.invoke(app, ["tokenize", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert re.search(r"run config whose\s+\[tokenize\]\s+table is used", result.output)


# ---------------------------------------------------------------- run folders, caches, k


@pytest.mark.parametrize("workdir", [".", "..", "runs/.."])
def test_a_workdir_that_is_no_run_folder_of_its_own_is_refused(workdir, tmp_path, monkeypatch):
    from deepinterest.config import RunConfig

    monkeypatch.chdir(tmp_path)
    _fails_cleanly(runner.invoke(app, ["run", "--workdir", workdir]),
                   "is not a run folder of its own")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="not a run folder of its own"):
        RunConfig(workdir=workdir)


def test_a_cache_variable_naming_a_file_is_a_message(tmp_path, monkeypatch):
    from deepinterest.errors import DeepInterestError
    from deepinterest.paths import answer_cache, embedding_cache

    target = tmp_path / "cache.sqlite"
    target.write_text("")
    monkeypatch.setenv("DEEPINTEREST_CACHE", str(target))
    for where in (answer_cache, embedding_cache):
        with pytest.raises(DeepInterestError, match="must name a folder"):
            where()
    monkeypatch.setenv("DEEPINTEREST_CACHE", str(tmp_path / "new"))
    assert answer_cache() == tmp_path / "new" / "mining.sqlite"


def test_a_beam_below_the_largest_k_is_refused(tmp_path):
    from deepinterest.config import EvalConfig

    with pytest.raises(ValueError, match=r"HR@10 would be capped at HR@5"):
        EvalConfig(ks=[5, 10], beam=5)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[eval]\nks = [5, 10]\nbeam = 5\n")
    _fails_cleanly(runner.invoke(app, ["run", "--config", str(cfg)]), "key 'eval'", "beam")


@pytest.mark.parametrize("weight", ["nan", "inf", "0", "-1"])
def test_reward_weights_that_are_not_finite_and_positive_are_refused_at_load(weight, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[train.rl]\nrewards = [{{ name = "exact", weight = {weight} }}]\n')
    _fails_cleanly(runner.invoke(app, ["run", "--config", str(cfg)]), "weight")


def test_a_plugin_that_fails_to_import_is_named_with_its_package(monkeypatch):
    from importlib.metadata import EntryPoint

    from deepinterest import registry
    from deepinterest.errors import DeepInterestError

    broken = EntryPoint("broken", "no_such_module_xyz:Thing", "deepinterest.quantizers")
    monkeypatch.setattr(registry, "available", lambda kind: {"broken": broken})
    with pytest.raises(DeepInterestError, match=r"'no_such_module_xyz:Thing'.*failed to import"):
        registry.get("quantizers", "broken")


def test_a_catalogue_smaller_than_the_largest_k_fails_before_training(tmp_path):
    src = _p5(tmp_path / "src", "item_id:token\ttitle:token\n" +
              "".join(f"{i}\tthing {i}\n" for i in "ABCDEF"),
              "u1 A B C D E\nu2 B C D E F\nu3 F E D C B\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'workdir = "{tmp_path / "work"}"\n[data]\nsource = "{src}"\n')
    _fails_cleanly(runner.invoke(app, ["run", "--config", str(cfg)]),
                   "the catalogue has 6 items, fewer than the largest K in eval.ks (10)")
    assert not (tmp_path / "work" / "sft").exists()


def test_a_text_column_of_another_name_reaches_the_sids_and_the_miners(tmp_path):
    from deepinterest.data.model import load_dataset
    from deepinterest.miners.base import item_evidence

    src = _p5(tmp_path / "src", "item_id:token\ttext:token_seq\nA\tred lipstick\n"
              "B\tblue eyeliner\nC\tgreen nail polish\n")
    data = tmp_path / "data"
    assert runner.invoke(app, ["data", "prepare", str(src), "--out", str(data)]).exit_code == 0
    with pytest.warns(UserWarning, match=r"embedding the item table's fields \['text'\]"):
        result = runner.invoke(app, ["tokenize", str(data), "--out", str(tmp_path / "sids"),
                                     "--codebook-size", "2", "--levels", "1"])
    assert result.exit_code == 0, result.output
    spec = json.loads((tmp_path / "sids" / "tokenizer.json").read_text())
    assert spec["text_fields"] == ["text"]
    item = load_dataset(data).items[0]
    assert item_evidence(item.fields) == {"text": "red lipstick"}


def test_di_mine_never_rewrites_a_runs_dataset_from_another_source(tmp_path):
    work = tmp_path / "run"
    src = _p5(tmp_path / "src", "item_id:token\ttitle:token\nA\tsoap\nB\tcomb\nC\tbrush\n")
    assert runner.invoke(app, ["data", "prepare", str(src), "--out",
                               str(work / "dataset")]).exit_code == 0
    before = (work / "dataset" / "items.jsonl").read_text()
    other = _p5(tmp_path / "other", "item_id:token\ttitle:token\nX\tlamp\nY\tsock\nZ\ttea\n",
                "u1 X Y Z\nu2 Y Z\n")
    result = runner.invoke(app, ["mine", str(other), "--out", str(work / "interests"),
                                 "--backend", "embedding"])
    _fails_cleanly(result, "holds a dataset prepared from other data")
    assert (work / "dataset" / "items.jsonl").read_text() == before
