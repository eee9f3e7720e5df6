import json

from deepinterest.results import load_records, render_page, write_record


def test_record_round_trip_and_page(tmp_path):
    path = write_record(name="beauty-pop", dataset="amazon-beauty", method="most popular",
                        figures={"hr@10": 0.01234, "items": 12101}, seconds=1.23456,
                        command="di run", directory=tmp_path)
    data = json.loads(path.read_text())
    assert data["seconds"] == 1.235 and data["machine"] and data["version"]
    records = load_records(tmp_path)
    assert [r.name for r in records] == ["beauty-pop"]
    page = render_page(records)
    assert "## amazon-beauty" in page
    assert "| hr@10 | 0.0123 |" in page and "| items | 12101 |" in page
    assert "`di run`" in page and "benchmarks/results/beauty-pop.json" in page
