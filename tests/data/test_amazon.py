"""The raw Amazon readers on small fixtures written in the real formats."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from deepinterest.data.amazon import (
    default_name,
    read_amazon2014,
    read_amazon2018,
    read_amazon2023,
)
from deepinterest.errors import DataError


def write(path: Path, lines: list[str | bytes]) -> Path:
    data = b"".join((x if isinstance(x, bytes) else x.encode("utf-8")) + b"\n" for x in lines)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def review14(user: str, asin: str, t: int) -> str:
    return json.dumps({"reviewerID": user, "asin": asin, "reviewerName": "N", "helpful": [0, 0],
                       "reviewText": "ok", "overall": 5.0, "summary": "s",
                       "unixReviewTime": t, "reviewTime": "01 1, 2014"})


def sequences(ds) -> dict[str, list[str]]:
    return {u.id: [ds.items[i].id for i in u.items] for u in ds.users}


# ------------------------------------------------------------------ 2014 and the k-core

# kcore=2, worked by hand (line numbers in brackets):
#   dedupe: [8] replaces [7] (earlier time), [10] duplicates [9] -> 2 removed, 8 left
#   round 1: U1 (1 item) and U5 (1 distinct item) go, and with U5 item W (1 user)
#   round 2: X has only U2 left -> goes
#   round 3: U2 has only Y left -> goes; Y keeps U3, U4: stable
#   left: U3 [Y, Z] (tie at 300 broken by file order), U4 [Z, Y] (Z at 350 < Y at 400)
REVIEWS_2014 = [
    review14("U1", "X", 100),   # 1
    review14("U2", "X", 200),   # 2
    review14("U3", "Y", 300),   # 3
    review14("U2", "Y", 150),   # 4
    review14("U4", "Y", 400),   # 5
    review14("U3", "Z", 300),   # 6
    review14("U4", "Z", 500),   # 7
    review14("U4", "Z", 350),   # 8
    review14("U5", "W", 10),    # 9
    review14("U5", "W", 20),    # 10
]

META_2014 = [
    "{'asin': 'X', 'title': 'Not in the core'}",
    "{'asin': 'W', 'title': broken literal of an item outside the core",
    "{'asin': 'Y', 'title': 'Rose Lip Balm', 'price': 12.5, "
    "'imUrl': 'http://ecx.images-amazon.com/images/I/y.jpg', "
    "'related': {'also_bought': ['Z', 'X'], 'bought_together': ['Z']}, "
    "'salesRank': {'Beauty': 123}, "
    "'categories': [['Beauty', 'Makeup', 'Lips'], ['Beauty', 'Skin Care', 'Lips']], "
    "'brand': \"L'Or\u00e9al\", 'description': 'Keeps lips soft \\'all day\\'.'}",
    "{'asin': 'Y', 'title': 'A duplicate row: the first one wins'}",
]


@pytest.fixture
def beauty14(tmp_path: Path) -> tuple[Path, Path]:
    return (write(tmp_path / "reviews_Beauty_5.json.gz", REVIEWS_2014),
            write(tmp_path / "meta_Beauty.json.gz", META_2014))


def test_2014_kcore_by_hand(beauty14):
    ds = read_amazon2014(*beauty14, kcore=2)
    assert ds.name == "amazon2014-Beauty"
    assert [u.id for u in ds.users] == ["U3", "U4"]
    assert [it.id for it in ds.items] == ["Y", "Z"]
    assert ds.num_interactions == 4
    assert sequences(ds) == {"U3": ["Y", "Z"], "U4": ["Z", "Y"]}
    assert ds.attributes == {
        "source": "amazon2014", "kcore": 2, "items_without_meta": 1, "duplicates_removed": 2,
        "kcore_report": {"k": 2, "rounds": 3, "users_before": 5, "items_before": 4,
                         "interactions_before": 8, "users_after": 2, "items_after": 2,
                         "interactions_after": 4},
    }


def test_2014_meta_fields(beauty14):
    y, z = read_amazon2014(*beauty14, kcore=2).items
    assert y.fields == {
        "title": "Rose Lip Balm",
        "description": "Keeps lips soft 'all day'.",
        "brand": "L'Or\u00e9al",
        "categories": "Beauty, Makeup, Lips, Skin Care",
        "price": "12.5",
    }
    assert y.images == ("http://ecx.images-amazon.com/images/I/y.jpg",)
    assert (z.fields, z.images) == ({}, ())


def test_2014_without_meta_and_without_kcore(beauty14):
    ds = read_amazon2014(beauty14[0], kcore=1, name="mine")
    assert ds.name == "mine"
    assert [u.id for u in ds.users] == ["U1", "U2", "U3", "U4", "U5"]
    assert [it.id for it in ds.items] == ["X", "Y", "Z", "W"]
    assert sequences(ds)["U2"] == ["Y", "X"]
    assert ds.attributes["items_without_meta"] == 4
    assert ds.attributes["kcore_report"]["rounds"] == 0


def test_default_5_core_on_a_small_file_says_what_to_do(beauty14):
    with pytest.raises(DataError, match=r"reviews_Beauty_5\.json\.gz.*5-core.*lower kcore"):
        read_amazon2014(*beauty14)


def test_default_names():
    assert default_name("amazon2014", "d/reviews_Beauty_5.json.gz") == "amazon2014-Beauty"
    assert default_name("amazon2014", "reviews_Sports_and_Outdoors.json.gz") == \
        "amazon2014-Sports_and_Outdoors"
    assert default_name("amazon2018", "Beauty_5.json.gz") == "amazon2018-Beauty"
    assert default_name("amazon2023", "All_Beauty.jsonl") == "amazon2023-All_Beauty"


# ------------------------------------------------------------------ 2018


def review18(user: str, asin: str, t: int) -> str:
    return json.dumps({"overall": 5.0, "verified": True, "reviewTime": "09 1, 2016",
                       "reviewerID": user, "asin": asin, "style": {"Size:": " 1 oz"},
                       "reviewerName": "N", "reviewText": "ok", "summary": "s",
                       "unixReviewTime": t, "vote": "2", "image": ["http://x/r.jpg"]})


def test_2018_fields_and_images(tmp_path):
    reviews = write(tmp_path / "Beauty_5.json.gz", [review18(u, a, t) for u, a, t in [
        ("A", "P", 1), ("A", "Q", 2), ("B", "Q", 3), ("B", "P", 3)]])
    meta = write(tmp_path / "meta_Beauty.json.gz", [json.dumps(r) for r in [
        {"category": ["Beauty", "Hair Care", "Shampoos"], "description": ["Gentle.", "", "Daily."],
         "title": "Mint Shampoo", "brand": "Acme", "feature": ["Sulfate free", "300 ml"],
         "main_cat": "All Beauty", "price": "$12.99", "asin": "P", "also_buy": ["Q"],
         "rank": "1,234 in Beauty", "image": ["http://x/p-small.jpg"],
         "imageURLHighRes": ["http://x/p1.jpg", "http://x/p2.jpg"]},
        {"title": "Comb", "price": "", "description": [], "asin": "Q",
         "image": ["http://x/q.jpg"], "imageURLHighRes": []},
    ]])
    ds = read_amazon2018(reviews, meta, kcore=2)
    assert ds.name == "amazon2018-Beauty"
    assert sequences(ds) == {"A": ["P", "Q"], "B": ["Q", "P"]}
    p, q = ds.items
    assert p.fields == {"title": "Mint Shampoo", "description": "Gentle. Daily.", "brand": "Acme",
                        "categories": "Beauty, Hair Care, Shampoos", "price": "$12.99",
                        "features": "Sulfate free; 300 ml", "main_category": "All Beauty"}
    assert p.images == ("http://x/p1.jpg", "http://x/p2.jpg")
    assert (q.fields, q.images) == ({"title": "Comb"}, ("http://x/q.jpg",))
    assert ds.attributes["source"] == "amazon2018"


# ------------------------------------------------------------------ 2023

MS = 1_600_000_000_000


def review23(user: str, asin: str, parent: str, t: int) -> str:
    return json.dumps({"rating": 5.0, "title": "t", "text": "x", "images": [], "asin": asin,
                       "parent_asin": parent, "user_id": user, "timestamp": t,
                       "helpful_vote": 0, "verified_purchase": True})


REVIEWS_2023 = [
    review23("U1", "P1a", "P1", MS),           # 1
    review23("U2", "P1b", "P1", MS + 500),     # 2
    review23("U1", "P2a", "P2", MS + 1000),    # 3
    review23("U2", "P2a", "P2", MS - 1000),    # 4
    review23("U1", "P1b", "P1", MS + 2000),    # 5: same product as line 1
]
META_2023 = [
    {"main_category": "All Beauty", "title": "Hydrating Face Cream", "average_rating": 4.5,
     "rating_number": 10, "features": ["Fragrance free", "50 ml"],
     "description": ["Rich cream.", "For dry skin."], "price": 24.5,
     "images": [{"thumb": "t1", "large": "l1", "variant": "MAIN", "hi_res": "h1"},
                {"thumb": "t2", "large": "l2", "variant": "PT01", "hi_res": None}],
     "videos": [], "store": "Acme", "categories": ["Beauty & Personal Care", "Skin Care"],
     "details": {"Brand": "Acme", "Item Form": "Cream", "Empty": ""},
     "parent_asin": "P1", "bought_together": None},
    {"title": "Nail File", "price": None, "description": [], "images": [], "store": None,
     "categories": [], "details": {}, "parent_asin": "P2"},
]


@pytest.fixture
def beauty23(tmp_path: Path) -> tuple[Path, Path]:
    return (write(tmp_path / "All_Beauty.jsonl", REVIEWS_2023),
            write(tmp_path / "meta_All_Beauty.jsonl.gz", [json.dumps(r) for r in META_2023]))


def test_2023_parent_asin_items(beauty23):
    ds = read_amazon2023(*beauty23, kcore=2)
    assert ds.name == "amazon2023-All_Beauty"
    assert sequences(ds) == {"U1": ["P1", "P2"], "U2": ["P2", "P1"]}
    assert ds.attributes["duplicates_removed"] == 1
    assert ds.attributes["item_key"] == "parent_asin"
    p1, p2 = ds.items
    assert p1.fields == {
        "title": "Hydrating Face Cream", "description": "Rich cream. For dry skin.",
        "brand": "Acme", "categories": "Beauty & Personal Care, Skin Care", "price": "24.5",
        "features": "Fragrance free; 50 ml", "main_category": "All Beauty",
        "details": "Brand: Acme; Item Form: Cream"}
    assert p1.images == ("h1", "l2")
    assert (p2.fields, p2.images) == ({"title": "Nail File"}, ())


def test_2023_asin_items_take_the_parent_meta(beauty23):
    # Variants are distinct items: P1a has one review and leaves the 2-core.
    ds = read_amazon2023(*beauty23, kcore=2, item_key="asin")
    assert [it.id for it in ds.items] == ["P1b", "P2a"]
    assert sequences(ds) == {"U2": ["P2a", "P1b"], "U1": ["P2a", "P1b"]}
    assert ds.items[0].fields["title"] == "Hydrating Face Cream"
    assert ds.items[1].fields == {"title": "Nail File"}
    assert ds.attributes["duplicates_removed"] == 0


# ------------------------------------------------------------------ bad input

GOOD = review14("U1", "X", 1)
BAD_CASES = {
    "malformed": ([GOOD, GOOD, '{"reviewerID": "U2", "asin": '], 3, "malformed"),
    "missing asin": ([GOOD, json.dumps({"reviewerID": "U", "unixReviewTime": 1})], 2,
                     "missing key 'asin'"),
    "bad time": ([json.dumps({"reviewerID": "U", "asin": "X", "unixReviewTime": 1.5})], 1,
                 "integer timestamp"),
    "not utf-8": ([GOOD, b'{"reviewerID": "\xff\xfe", "asin": "X", "unixReviewTime": 1}'], 2,
                  "not UTF-8"),
}


def files_in(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


@pytest.mark.parametrize("suffix", [".json.gz", ".json"])
@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_reviews_name_file_and_line(tmp_path, case, suffix):
    lines, line, text = BAD_CASES[case]
    path = write(tmp_path / f"reviews_Bad{suffix}", lines)
    before = files_in(tmp_path)
    with pytest.raises(DataError) as info:
        read_amazon2014(path, kcore=1)
    assert info.value.line == line
    assert f"reviews_Bad{suffix}:{line}:" in str(info.value)
    assert text in str(info.value)
    assert files_in(tmp_path) == before


def test_empty_file(tmp_path):
    path = write(tmp_path / "reviews_Empty.json.gz", [""])
    with pytest.raises(DataError, match=r"reviews_Empty\.json\.gz.*empty"):
        read_amazon2014(path)
    assert files_in(tmp_path) == {path}


def truncated(tmp_path: Path) -> Path:
    data = gzip.compress(b"".join(review14(f"U{i}", "X", i).encode() + b"\n"
                                  for i in range(300)))
    path = tmp_path / "reviews_Cut.json.gz"
    path.write_bytes(data[:-40])
    return path


def test_truncated_gzip(tmp_path):
    path = truncated(tmp_path)
    with pytest.raises(DataError, match=r"reviews_Cut\.json\.gz.*download complete"):
        read_amazon2014(path, kcore=1)
    assert files_in(tmp_path) == {path}


def test_truncated_gzip_names_the_line(tmp_path):
    with pytest.raises(DataError) as info:
        read_amazon2014(truncated(tmp_path), kcore=1)
    assert info.value.line is not None and f":{info.value.line}:" in str(info.value)


def test_bad_meta_line_of_a_needed_item(beauty14, tmp_path):
    meta = write(tmp_path / "meta_Bad.json.gz", ["{'asin': 'X'}", "{'asin': 'Y', 'title': 'a"])
    with pytest.raises(DataError) as info:
        read_amazon2014(beauty14[0], meta, kcore=2)
    assert info.value.line == 2 and "meta_Bad.json.gz:2:" in str(info.value)


def test_wrong_release_gets_a_hint(beauty23, tmp_path):
    with pytest.raises(DataError, match=r"All_Beauty\.jsonl:1: missing key 'reviewerID'.*"
                                        r"read_amazon2023"):
        read_amazon2014(beauty23[0])
    with pytest.raises(DataError, match=r":1: missing key 'user_id'.*read_amazon2014"):
        read_amazon2023(write(tmp_path / "x.jsonl", [GOOD]))
