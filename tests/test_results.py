import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from records import (  # noqa: E402 - the benchmarks' module, not an installed one
    load_records,
    record_and_print,
    relative_command,
    render_page,
    repository_root,
    write_record,
)


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
    assert "| method | HR@5 | NDCG@5 | HR@10 | NDCG@10 | wall time | record |" in page
    assert "| m1 | 0.1000 | 0.0500 | 0.2000 | 0.0800 | 3 s | a |" in page
    assert "| speed |" not in page


def test_ablation_rows_get_their_own_table_in_row_order(tmp_path):
    figures = {"valid ndcg@10": 0.3, "test hr@5": 0.1, "test ndcg@5": 0.05, "test hr@10": 0.2,
               "test ndcg@10": 0.08}
    for name, extra in (("d-ablation-3-rl", {"zero-variance groups": 0.25,
                                             "training minutes": 12.5}),
                        ("d-ablation-1-plain", {}), ("d-ablation-1-plain-seed1", {})):
        write_record(name=name, dataset="d", method="m", figures={**figures, **extra},
                     seconds=5, command="c", directory=tmp_path)
    page = render_page(load_records(tmp_path))
    table = [line for line in page.splitlines() if line.startswith("| 1 |")
             or line.startswith("| 3 |")]
    assert table == [
        "| 1 | d-ablation-1-plain | 0.3000 | 0.1000 | 0.0500 | 0.2000 | 0.0800 |  |  | 5 s |",
        "| 1 | d-ablation-1-plain-seed1 | 0.3000 | 0.1000 | 0.0500 | 0.2000 | 0.0800 |  |  | 5 s |",
        "| 3 | d-ablation-3-rl | 0.3000 | 0.1000 | 0.0500 | 0.2000 | 0.0800 | 0.2500 | 12.5 | "
        "5 s |"]
    assert "Test metrics at a glance" not in page  # ablation rows only: no second table


def test_record_commands_name_paths_relative_to_the_repository(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    (root / "benchmarks" / "results").mkdir(parents=True)
    command = (f"python {root}/benchmarks/bench.py --out {root}/runs/a "
               f"--data={tmp_path}/shared/d --method 'T5, a/b' --threads 1")
    path = write_record(name="r", dataset="d", method="m", figures={}, seconds=1,
                        command=command, directory=tmp_path, root=root)
    assert json.loads(path.read_text())["command"] == (
        "python benchmarks/bench.py --out runs/a --data=../shared/d --method 'T5, a/b' --threads 1")
    # Run from a subfolder: a word that names an existing path from there is one too.
    (root / "benchmarks" / "bench.py").touch()
    monkeypatch.chdir(root / "benchmarks")
    assert relative_command("python bench.py --to results --x 1", root) == (
        "python benchmarks/bench.py --to benchmarks/results --x 1")


def test_default_root_is_this_checkout_and_command_defaults_to_argv(tmp_path, monkeypatch):
    repo = Path(__file__).resolve().parents[1]
    assert repository_root() == repo
    monkeypatch.setattr(sys, "argv", [str(repo / "benchmarks" / "x.py"), "--out", "/srv/o"])
    path = write_record(name="r", dataset="d", method="m", figures={}, seconds=1,
                        directory=tmp_path)
    rel = os.path.relpath("/srv/o", repo)
    assert json.loads(path.read_text())["command"] == f"python benchmarks/x.py --out {rel}"


def test_record_and_print_prints_every_figure(tmp_path, capsys):
    record_and_print(name="p", dataset="d", method="m", seconds=1, command="c",
                     figures={"test hr@10": 0.12345, "items": 7}, directory=tmp_path)
    out = capsys.readouterr().out.splitlines()
    assert out == [str(tmp_path / "p.json"), "test hr@10  0.1235", "     items  7"]


def test_micro_benchmark_json_becomes_one_record_per_group(tmp_path):
    import json
    import runpy
    from pathlib import Path

    build = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" /
                               "build_results.py"))
    stats = lambda median: {"median": median, "min": median * 0.9, "total": median * 3,  # noqa: E731
                            "rounds": 3}
    data = {"version": "5", "benchmarks": [
        {"group": "g one", "name": "test_ours", "stats": stats(0.004)},
        {"group": "g one", "name": "test_theirs", "stats": stats(0.002)},
        {"group": None, "name": "test_alone", "stats": stats(0.1)}]}
    path = tmp_path / "micro.json"
    path.write_text(json.dumps(data))
    written = build["micro_records"](path, tmp_path / "records")
    records = {p.stem: json.loads(p.read_text()) for p in written}
    assert set(records) == {"micro-g-one", "micro-test-alone"}
    one = records["micro-g-one"]["figures"]
    assert one["ours x fastest"] == 2.0 and one["theirs x fastest"] == 1.0
    assert one["ours median ms"] == 4.0 and one["theirs min ms"] == 1.8


def test_learning_curve_accumulates_training_minutes_and_skips_unvalidated_epochs():
    from records import learning_curve

    history = [{"train_seconds": 60, "valid": {"ndcg@10": 0.01}},
               {"train_seconds": 90, "valid": None},
               {"train_seconds": 30, "valid": {"ndcg@10": 0.02, "hr@10": 0.04}}]
    assert learning_curve(history) == [(1.0, 0.01), (3.0, 0.02)]
    assert learning_curve(history, "hr@10") == [(3.0, 0.04)]


def test_curves_are_plotted_from_records_and_shown_on_the_page(tmp_path):
    import runpy

    build = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" /
                               "build_results.py"))
    write_record(name="run", dataset="d", method="m", figures={}, seconds=1, command="c",
                 directory=tmp_path, curve=[(1.0, 0.01), (2.0, 0.02)])
    write_record(name="speed", dataset="e", method="s", figures={}, seconds=1, command="c",
                 directory=tmp_path)
    records = load_records(tmp_path)
    assert records[0].curve == [(1.0, 0.01), (2.0, 0.02)] and records[1].curve == []
    image = build["plot_curves"](records, "d", tmp_path / "img" / "d.png")
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert build["plot_curves"](records, "e", tmp_path / "img" / "e.png") is None
    page = render_page(records, plots={"d": "img/d.png"})
    assert "](img/d.png)" in page.split("## e")[0] and page.count("](img/") == 1


def test_ablation_records_over_seeds_get_mean_spread_and_range(tmp_path):
    for name, value in (("d-ablation-2-x-oracle", 0.10), ("d-ablation-2-x-seed1-oracle", 0.14),
                        ("d-ablation-2-x-seed2-oracle", 0.12), ("d-ablation-3-rl", 0.5)):
        figures = {"valid ndcg@10": value, "test hr@10": value, "test ndcg@10": value}
        write_record(name=name, dataset="d", method="m", figures=figures, seconds=1,
                     command="c", directory=tmp_path)
    page = render_page(load_records(tmp_path))
    cell = "0.1200 ± 0.0200 (0.1000-0.1400)"
    assert f"| d-ablation-2-x-oracle | 3 | {cell} | {cell} | {cell} |" in page
    assert "| d-ablation-3-rl | 1 |" not in page  # one seed: nothing to spread
