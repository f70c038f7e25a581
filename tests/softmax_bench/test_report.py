"""softmax_bench.report: cells, tables, the Markdown file, the README block."""
import pytest

from softmax_bench import audit, report


def rec(**kw):
    base = dict(implementation="softmax/shifted/float32", dtype="float32", family="normal1", n=10, rows=4,
                status="ok", reason=None, max_ulp=1.0, nan_rows=0, inf_rows=0, all_zero_rows=0,
                missed_nan_rows=0, nan_output_rows=0)
    base.update(kw)
    return base


def test_cell_shows_the_worst_outcome():
    assert report.cell([rec(max_ulp=0.0)]) == "0"
    assert report.cell([rec(max_ulp=1.5), rec(max_ulp=3.25)]) == "3.25"
    assert report.cell([rec(nan_rows=2), rec(inf_rows=1)]) == "**NaN 2/8**, else 1"  # the other rows' error
    assert report.cell([rec(all_zero_rows=4)]) == "**zero-row 4/4**"
    assert report.cell([rec(nan_output_rows=4)]) == "1 (NaN=ref)"
    assert report.cell([rec(max_ulp=2048.0)]) == "2e+03"
    assert report.cell([rec(max_ulp=0.0, missed_nan_rows=2)]) == "**missed NaN 2/4**, else 0"
    timeout = {k: v for k, v in rec(status="timeout", reason="slow").items() if k != "max_ulp"}
    assert report.cell([rec(), timeout, timeout]) == "**timeout 2/3 cases**"
    assert report.cell([rec(status="modified_input")]) == "1 **modified input**"
    assert report.cell([rec(status="wrong_dtype", returned_dtype="float64")]) == "1 **returned float64**"


def test_failure_table_names_status_and_reason():
    assert "Every implementation ran" in report.failure_table([rec()])
    text = report.failure_table([rec(), rec(implementation="m:f", status="crashed", reason="killed by SIGSEGV")])
    assert "| `m:f (float32)` | crashed | 1 | killed by SIGSEGV |" in text


def test_headline_table_layout():
    text = report.headline_tables([rec(), rec(family="masked", max_ulp=2.0), rec(implementation="numpy")])
    lines = text.splitlines()
    assert lines[0].startswith("**float32**")
    assert lines[1] == "" and lines[2] == "| implementation | normal1 | masked |"
    assert "| `softmax/shifted/float32` | 1 | 2 |" in lines and "| `numpy` | 1 |  |" in lines


def test_write_report_and_readme(tmp_path):
    path = tmp_path / "a.json"
    run = {"date": "d", "git_commit": None, "machine": {"processor": "p", "cpus": 2, "python": "3"},
           "versions": {"numpy": "n", "numba": "b", "mpmath": "m", "mpmath_backend": "gmpy"}}
    audit.write_json_atomic(path, {"meta": {"tool": "softmax-bench audit", "config": {}, "runs": [run]},
                                   "records": [rec(), rec(dtype="float16", implementation="softmax/naive/float16@float16", inf_rows=1)]})
    md = report.write_report([path], tmp_path)
    text = md.read_text()
    assert "**inf 1/4**" in text and "report_max_ulp.png" in text
    assert (tmp_path / "report_max_ulp.png").stat().st_size > 1000
    assert (tmp_path / "report_row_classes.png").exists()
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.README_START}\nold\n{report.README_END}\noutro\n")
    report.update_readme(readme, [path])
    new = readme.read_text()
    assert "old" not in new and "**inf 1/4**" in new and new.startswith("intro") and new.endswith("outro\n")
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="audit-table"):
        report.update_readme(readme, [path])


def test_verdict_first_where_within_beyond_fails_and_a_reproducer():
    records = [
        rec(family="normal1", max_ulp=1.0, worst_row=3, worst_element=5),
        rec(family="wide", max_ulp=40.0, worst_row=1, worst_element=0, seed=7),
        rec(family="posinf", missed_nan_rows=2),
        {k: v for k, v in rec(family="masked", status="timeout").items() if k != "max_ulp"},
        rec(implementation="numpy", family="normal1", max_ulp=0.0),
    ]
    text = report.verdict_table(records)
    (row,) = [line for line in text.splitlines() if line.startswith("| `softmax/shifted/float32`")]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[2] == "normal1" and cells[3] == "wide (40)"
    assert "posinf: missed NaN 2/4 rows" in cells[4] and "masked: timeout 1/1 cases" in cells[4]
    assert "`softmax_bench.inputs.make('wide', 'float32', rows=4, n=10, seed=7)[1]`, element 0" in cells[5]
    numpy_row = [line for line in text.splitlines() if line.startswith("| `numpy`")][0]
    assert "**every family** (1)" in numpy_row and "every finite output correctly rounded" in numpy_row


def test_warnings_for_incomplete_and_mixed_audits(tmp_path):
    from softmax_bench import audit as audit_mod

    config = audit_mod.AuditConfig(families=["normal1"], dtypes=["float32"], sizes=[2, 3], kernels=[])
    run = {"git_commit": "a", "versions": {"numpy": "1"}}
    data = {"meta": {"config": config.result_settings(), "runs": [run, {**run, "git_commit": "b"}]},
            "records": [rec(implementation="numpy", n=2)]}
    (warning, mixed) = report.completeness_warnings([data], [tmp_path / "a.json"])
    assert "`a.json` is incomplete**: 1 of 2 cases" in warning
    assert "2 runs in 1 file(s) with different commits" in mixed


def test_rounding_table_says_correctly_rounded_faithful_or_neither():
    records = [
        rec(implementation="a", max_ulp_exact=0.49, family="normal1"),
        rec(implementation="a", max_ulp_exact=0.3, family="wide"),
        rec(implementation="b", max_ulp_exact=0.5003, family="ties", n=2),
        rec(implementation="c", max_ulp_exact=float("inf"), family="posinf"),
        rec(implementation="d", max_ulp_exact=0.5, correct_rows=4),  # a tie, rounded to even
        rec(implementation="e", max_ulp_exact=0.5, correct_rows=3),  # a tie, rounded to odd
    ]
    rows = {line.split("|")[1].strip(): line for line in report.rounding_table(records).splitlines()
            if line.startswith("| `")}
    assert "**correctly rounded**" in rows["`a`"] and "0.49 " in rows["`a`"]
    assert "faithful" in rows["`b`"] and "0.5003" in rows["`b`"] and "ties n=2" in rows["`b`"]
    assert "neither" in rows["`c`"]
    assert "**correctly rounded**" in rows["`d`"] and "faithful" in rows["`e`"]
    assert "written before" in report.rounding_table([rec()])


def test_exhaustive_sweeps_get_a_section_pairs_first(tmp_path):
    from softmax_bench import exhaustive

    (tmp_path / "exhaustive").mkdir()
    pairs = exhaustive.Sweep("float8_e5m2", "softmax", implementations=("softmax/online/float8_e5m2@float32",))
    exhaustive.run(pairs, tmp_path / "exhaustive" / "z-pairs.json", workers=1, progress=False)
    triples = exhaustive.Sweep("float8_e5m2", "softmax", "triples", (0x30, 8), ("numpy",))
    exhaustive.run(triples, tmp_path / "exhaustive" / "a-triples.json", workers=1, progress=False)
    (tmp_path / "exhaustive" / "notes.json").write_text('{"not": "a sweep"}')
    text = report._exhaustive_section(tmp_path)
    assert text[0] == "## Exhaustive sweeps (softmax-bench exhaustive)"
    body = "\n".join(text)
    assert body.index("every pair of float8_e5m2") < body.index("every row of three float8_e5m2")
    assert "- correctly rounded on every row: `softmax/online/float8_e5m2@float32`" in body
    assert report._exhaustive_section(tmp_path / "nowhere") == []
