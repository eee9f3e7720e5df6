import gzip
from pathlib import Path

import pytest

from deepinterest import registry
from deepinterest.config import DataConfig
from deepinterest.data.prepare import DEFAULT_KCORE, Source, read_source, resolve_source
from deepinterest.data.readers import read_p5, read_recbole, read_recbole_items
from deepinterest.errors import DataError

ITEM_HEADER = "item_id:token\ttitle:token\tcategories:token_seq\tprice:float\tbrand:token\n"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _items(tmp_path: Path) -> Path:
    return _write(tmp_path / "x.item", ITEM_HEADER
                  + "A\tRed \"Lip\" Gloss\t'Beauty', 'Makeup'\t5.0\tAcme\n"
                  + 'B\t"Two\nline title"\t\'Beauty\'\t\t\n'
                  + "C\tComb\t'Beauty', 'Hair Care', 'Tools & Accessories'\t2.5\tZed\n")


def test_recbole_items_quoted_newline_and_token_seq(tmp_path):
    items = read_recbole_items(_items(tmp_path))
    assert [it.id for it in items] == ["A", "B", "C"]
    assert items[1].fields == {"title": "Two\nline title", "categories": "Beauty"}
    assert items[0].fields["categories"] == "Beauty, Makeup"
    assert items[2].fields == {"title": "Comb", "categories": "Beauty, Hair Care, Tools & "
                               "Accessories", "price": "2.5", "brand": "Zed"}


def test_p5_with_items(tmp_path):
    seq = _write(tmp_path / "user_sequence.txt", "u1 A B C\nu2 C A\n\nu3 B\n")
    ds = read_p5(seq, _items(tmp_path))
    assert [u.id for u in ds.users] == ["u1", "u2", "u3"]
    assert [[ds.items[i].id for i in u.items] for u in ds.users] == [["A", "B", "C"], ["C", "A"],
                                                                    ["B"]]
    assert ds.stats().interactions == 6 and ds.items[0].text(["title", "brand"]) == \
        'Red "Lip" Gloss; Acme'


def test_p5_drops_items_no_user_touched(tmp_path):
    seq = _write(tmp_path / "user_sequence.txt", "u1 A C\n")
    assert [it.id for it in read_p5(seq, _items(tmp_path)).items] == ["A", "C"]


def test_p5_unknown_item_names_file_and_line(tmp_path):
    seq = _write(tmp_path / "user_sequence.txt", "u1 A B\nu2 A ZZZ\n")
    with pytest.raises(DataError) as err:
        read_p5(seq, _items(tmp_path))
    assert "user_sequence.txt:2" in str(err.value) and "ZZZ" in str(err.value)


def test_recbole_inter_time_order_ties_stable_and_kcore(tmp_path):
    inter = _write(tmp_path / "d.inter", "user_id:token\titem_id:token\ttimestamp:float\n"
                   "u1\tB\t20\nu1\tA\t10\nu1\tC\t20\nu2\tA\t5\nu2\tB\t6\nu3\tC\t1\n")
    ds = read_recbole(inter)
    seqs = {u.id: [ds.items[i].id for i in u.items] for u in ds.users}
    assert seqs == {"u1": ["A", "B", "C"], "u2": ["A", "B"], "u3": ["C"]}
    core = read_recbole(inter, kcore=2)  # u3 goes, then C has one user left, then u1 keeps A, B
    assert {u.id: [core.items[i].id for i in u.items] for u in core.users} == {
        "u1": ["A", "B"], "u2": ["A", "B"]}


def test_recbole_missing_column(tmp_path):
    inter = _write(tmp_path / "d.inter", "user_id:token\ttimestamp:float\nu1\t3\n")
    with pytest.raises(DataError, match=r"d.inter:1: no item_id column"):
        read_recbole(inter)


@pytest.mark.parametrize("content, needle", [
    (b"", "empty"),
    (b"u1 A\nu2 \xff\xfe B\n", "user_sequence.txt:2: not UTF-8"),
    (b"u1 A\nu2\n", "user_sequence.txt:2: a line needs a user id"),
    (b"u1 A\nu1 B\n", "user_sequence.txt:2: user 'u1' appears twice"),
])
def test_p5_bad_input(tmp_path, content, needle):
    path = tmp_path / "user_sequence.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=needle):
        read_p5(path)


def test_wrong_field_count_names_line(tmp_path):
    path = _write(tmp_path / "x.item", ITEM_HEADER + "A\tt\t'B'\t1\tb\nB\tonly two\n")
    with pytest.raises(DataError, match=r"x.item:3: expected 5 tab-separated fields, found 2"):
        read_recbole_items(path)


def test_truncated_gzip(tmp_path):
    path = tmp_path / "user_sequence.txt.gz"
    blob = gzip.compress(b"u1 A B\n" * 1000)
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="cannot read the file"):
        read_p5(path)


# ------------------------------------------------------------------ dispatch through the registry


def test_p5_refuses_a_kcore(tmp_path):
    seq = _write(tmp_path / "user_sequence.txt", "u1 A B\n")
    assert read_p5(seq, kcore=0).stats().interactions == 2
    with pytest.raises(DataError, match="user_sequence.txt: k-core filtering needs timestamps"):
        read_p5(seq, kcore=2)


def test_read_source_finds_the_reader_in_the_registry(tmp_path):
    _write(tmp_path / "user_sequence.txt", "u1 A B C\nu2 C A\n")
    _items(tmp_path)
    src = resolve_source(str(tmp_path))
    assert src.format == "p5" and src.side == tmp_path / "x.item"
    assert read_source(src).stats().interactions == 5
    with pytest.raises(DataError, match="drop --kcore"):
        read_source(src, kcore=5)


def test_a_plugin_reader_gets_the_shared_call_shape_and_its_default_kcore(tmp_path, monkeypatch):
    calls = []

    def plugin(main, side, *, kcore=7):
        calls.append((main, side, kcore))
        return "dataset"

    real_get = registry.get
    monkeypatch.setattr(registry, "get", lambda kind, name: plugin if name == "mine" else
                        real_get(kind, name))
    src = Source("mine", tmp_path / "a", None)
    assert read_source(src) == "dataset" and read_source(src, kcore=0) == "dataset"
    assert calls == [(tmp_path / "a", None, 7), (tmp_path / "a", None, 0)]


def test_default_kcore_comes_from_each_readers_signature():
    built_in = {"amazon2014": 5, "amazon2018": 5, "amazon2023": 5, "p5": 0, "recbole": 0}
    assert {name: DEFAULT_KCORE[name] for name in built_in} == built_in
    assert set(built_in) <= set(DEFAULT_KCORE)
    assert DEFAULT_KCORE.get("default", 0) == 0


def test_unknown_format_lists_the_registered_readers():
    assert DataConfig(format="recbole").format == "recbole"
    with pytest.raises(ValueError, match="unknown data format 'p6'; use one of: auto, default, "
                       "amazon2014, .*p5, recbole"):
        DataConfig(format="p6")
