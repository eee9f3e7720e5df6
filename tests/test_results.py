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


def test_summary_table_lists_test_metrics(tmp_path):
    figures = {"test hr@5": 0.1, "test ndcg@5": 0.05, "test hr@10": 0.2, "test ndcg@10": 0.08}
    write_record(name="a", dataset="d", method="m1", figures=figures, seconds=3, command="c",
                 directory=tmp_path)
    write_record(name="b", dataset="d", method="speed", figures={"ratio": 2.0}, seconds=1,
                 command="c", directory=tmp_path)
    page = render_page(load_records(tmp_path))
    assert "| method | HR@5 | NDCG@5 | HR@10 | NDCG@10 | wall time |" in page
    assert "| m1 | 0.1000 | 0.0500 | 0.2000 | 0.0800 | 3 s |" in page
    assert "| speed |" not in page
