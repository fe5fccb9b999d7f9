"""Hostile or corrupt run folders: the readers refuse symlinks, FIFOs, oversized or deeply nested files and YAML
aliases, and replace control characters; `compare` shows `unreadable: FILE: why`, `report` fails in one line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from conftest import composed, progprune  # noqa: E402
from run_fixture import make_run  # noqa: E402

from progprune_cli import reading  # noqa: E402
from progprune_cli.errors import UserError  # noqa: E402
from progprune_cli.export.run import RunFolder  # noqa: E402
from progprune_cli.report.runs import check_status, process_gone, read_run  # noqa: E402

TIMEOUT = 60  # a reader that blocks on a FIFO or expands a YAML bomb fails the test instead of hanging it
ESCAPES = "\x1b[2J\x1b]0;pwned\x07"
SHOWN = "\ufffd[2J\ufffd]0;pwned\ufffd"  # what a reader makes of ESCAPES
# The "billion laughs": 9 levels of 9 aliases each, 9**9 strings once expanded.
BOMB = "a: &a [" + ",".join(['"lol"'] * 9) + "]\n" + "".join(
    f"{b}: &{b} [" + ",".join([f"*{a}"] * 9) + "]\n" for a, b in zip("abcdefgh", "bcdefghi"))


def pid_overflow(run: Path, outside: Path) -> None:
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps(status | {"pid": 2**70, "host": socket.gethostname()}))


def deep_results(run: Path, outside: Path) -> None:
    (run / "results.json").write_text("[" * 200_000 + "]" * 200_000)


def results_to_dev_zero(run: Path, outside: Path) -> None:
    (run / "results.json").unlink()
    (run / "results.json").symlink_to("/dev/zero")


def status_to_outside(run: Path, outside: Path) -> None:
    outside.write_text(json.dumps({"status": "failed", "stage": "train", "error": "SECRET from outside"}))
    (run / "status.json").unlink()
    (run / "status.json").symlink_to(outside)


def results_fifo(run: Path, outside: Path) -> None:
    (run / "results.json").unlink()
    os.mkfifo(run / "results.json")


def billion_laughs(run: Path, outside: Path) -> None:
    (run / ".hydra" / "config.yaml").write_text(BOMB)


def hydra_to_outside(run: Path, outside: Path) -> None:
    outside.mkdir()
    (run / ".hydra").rename(outside / ".hydra")
    (run / ".hydra").symlink_to(outside / ".hydra")


def escapes(run: Path, outside: Path) -> None:
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps(status | {"error": f"boom {ESCAPES} done\nsecond line"}))
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed=1{ESCAPES}"]))


PID = "status.json: pid 1180591620717411303424 is not a process id (1 to 2147483647)"
SYMLINK = "a symbolic link (never followed)"
# name: (status the run says, damage, compare's status and error cells, report's exit code and its one line).
CASES: dict[str, tuple[str, Callable[[Path, Path], None], str, str, int, str]] = {
    "pid_2_70": ("running", pid_overflow, "unknown", f"unreadable: {PID}", 2, "error: {run}/" + PID),
    "deep_json": ("complete", deep_results, "corrupt", "unreadable: results.json: nested deeper than 64 levels",
                  2, "error: {run}/results.json: nested deeper than 64 levels"),
    "dev_zero": ("complete", results_to_dev_zero, "corrupt", f"unreadable: results.json: {SYMLINK}",
                 2, f"error: {{run}}/results.json: {SYMLINK}"),
    "status_symlink": ("running", status_to_outside, "unknown", f"unreadable: status.json: {SYMLINK}",
                       2, f"error: {{run}}/status.json: {SYMLINK}"),
    "fifo": ("complete", results_fifo, "corrupt", "unreadable: results.json: not a regular file (a FIFO)",
             2, "error: {run}/results.json: not a regular file (a FIFO)"),
    # report of a run without results reads status.json only, so it shows the status line (exit 1).
    "billion_laughs": ("running", billion_laughs, "running", "unreadable: .hydra/config.yaml: YAML anchor &a at "
                       "line 1: anchors and aliases are refused", 1, ""),
    "hydra_symlink": ("running", hydra_to_outside, "running", f"unreadable: .hydra: {SYMLINK}", 1, ""),
    "escapes": ("failed", escapes, "failed", f"boom {SHOWN} done", 1,
                f"{{run}}: failed in stage prune: boom {SHOWN} done\nsecond line (updated 2026-11-29T20:01:00)"),
}


def assert_clean(done: subprocess.CompletedProcess) -> None:
    """No raw escape sequence or bell reaches the terminal, and no traceback."""
    for stream in (done.stdout, done.stderr):
        assert "\x1b" not in stream and "\x07" not in stream
    assert "Traceback" not in done.stderr


@pytest.fixture(params=list(CASES))
def hostile(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    status, damage, *_ = CASES[request.param]
    run = make_run(tmp_path / "run", status=status)
    damage(run, tmp_path / "outside")
    return run, request.param


def test_compare_shows_a_hostile_folder_as_unreadable(hostile: tuple[Path, str]) -> None:
    run, case = hostile
    _, _, status, error, _, _ = CASES[case]
    done = progprune("compare", str(run), "--json", cwd=run.parent, timeout=TIMEOUT)
    assert_clean(done)
    assert (done.returncode, done.stderr) == (0, "")
    rows = json.loads(done.stdout)
    assert [(row["status"], row["error"]) for row in rows] == [(status, error)]
    for fmt in ([], ["--md"]):  # rich (piped: never folded) and markdown show the same cells
        done = progprune("compare", str(run), *fmt, cwd=run.parent, timeout=TIMEOUT)
        assert_clean(done)
        assert (done.returncode, done.stderr) == (0, "")
        assert error in done.stdout and status in done.stdout
    assert "SECRET" not in done.stdout  # status_symlink: the file outside is never read


def test_report_on_a_hostile_folder_is_one_line(hostile: tuple[Path, str]) -> None:
    run, case = hostile
    *_, code, line = CASES[case]
    done = progprune("report", str(run), cwd=run.parent, timeout=TIMEOUT)
    assert_clean(done)
    assert done.returncode == code
    if code == 2:
        assert (done.stdout, done.stderr) == ("", f"progprune report: {line.format(run=run)}\n")
    elif line:
        assert (done.stdout, done.stderr) == (f"{line.format(run=run)}\n", "")
    else:
        assert done.stdout.startswith(f"{run}: running in stage prune") and done.stderr == ""


def test_escapes_in_an_override_never_reach_the_sweep_summary(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    escapes(make_run(sweep / "0", status="failed"), tmp_path / "outside")
    make_run(sweep / "1", overrides=["seed=2"])
    assert read_run(sweep / "0").overrides == [f"seed=1{SHOWN}"]
    done = progprune("compare", "--summary", str(sweep), cwd=tmp_path, timeout=TIMEOUT)
    assert_clean(done)
    assert done.returncode == 0
    assert f"1{SHOWN}" in done.stdout
    for name in ("summary.md", "summary.csv"):
        assert "\x1b" not in (sweep / name).read_text()


def test_export_refuses_a_hostile_config_in_one_line(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    billion_laughs(run, tmp_path)
    with pytest.raises(UserError) as caught:
        RunFolder.open(run)
    assert str(caught.value) == (f"{run}/.hydra/config.yaml: YAML anchor &a at line 1: anchors and aliases are "
                                 "refused")
    run = make_run(tmp_path / "run2")
    hydra_to_outside(run, tmp_path / "outside")
    with pytest.raises(UserError) as caught:
        RunFolder.open(run)
    assert str(caught.value) == f"{run}/.hydra: {SYMLINK}"
    run = make_run(tmp_path / "run3")
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(composed("dataset=synthetic", "+strategy=weight")))
    status_to_outside(run, tmp_path / "outside.json")
    folder = RunFolder.open(run)
    with pytest.raises(UserError) as caught:
        folder.require_complete()
    assert str(caught.value) == f"{run}/status.json: {SYMLINK}"


def test_a_pid_that_is_no_process_id_is_never_signalled() -> None:
    host = socket.gethostname()
    for pid in (2**70, -1, 0, True, "1", 2**31):
        assert process_gone({"pid": pid, "host": host}) is False
        assert check_status({"pid": pid}) == f"pid {pid!r} is not a process id (1 to 2147483647)"
    assert check_status({"pid": os.getpid(), "host": host, "error": "x"}) is None
    assert check_status({"stage": ["prune"]}) == "stage ['prune'] is not text"


# --- progprune_cli.reading ------------------------------------------------------------------------------------


def test_size_limit_is_checked_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    path.write_text("[1, 2]  ")
    assert reading.read_json(path, limit=8) == [1, 2]
    with pytest.raises(reading.Unreadable) as caught:
        reading.read_json(path, limit=7)
    assert str(caught.value) == f"{path}: 8 bytes, over the limit of 7 bytes"
    with pytest.raises(reading.Unreadable, match=r"over the limit of 64 MiB"):
        os.truncate(path, reading.JSON_LIMIT + 1)  # sparse: nothing of it is read
        reading.read_json(path)


def test_symlinks_and_special_files_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "target.json"
    target.write_text("{}")
    (tmp_path / "link.json").symlink_to(target)
    (tmp_path / "sub").mkdir()
    (tmp_path / "dirlink").symlink_to(tmp_path / "sub")
    (tmp_path / "sub" / "f.json").write_text("{}")
    os.mkfifo(tmp_path / "fifo")
    expected = {tmp_path / "link.json": f"{tmp_path}/link.json: {SYMLINK}",
                tmp_path / "dirlink" / "f.json": f"{tmp_path}/dirlink: {SYMLINK}",
                tmp_path / "fifo": f"{tmp_path}/fifo: not a regular file (a FIFO)",
                tmp_path / "sub": f"{tmp_path}/sub: not a regular file (a folder)"}
    for path, message in expected.items():
        with pytest.raises(reading.Unreadable) as caught:
            reading.read_bytes(path, 100, within=tmp_path)
        assert str(caught.value) == message
    assert reading.read_json(tmp_path / "sub" / "f.json", within=tmp_path) == {}
    with pytest.raises(FileNotFoundError):
        reading.read_json(tmp_path / "missing.json")
    assert [reading.is_file(tmp_path / n) for n in ("target.json", "link.json", "fifo", "sub")] == [
        True, False, False, False]


def nested(levels: int, open_: str = "[", close: str = "]") -> str:
    return open_ * levels + close * levels


@pytest.mark.parametrize("levels, ok", [(64, True), (65, False), (200_000, False)])
def test_nesting_deeper_than_64_is_refused(tmp_path: Path, levels: int, ok: bool) -> None:
    for name, text in (("f.json", nested(levels)), ("f.yaml", nested(levels))):
        path = tmp_path / name
        path.write_text(text)
        read = reading.read_json if name.endswith("json") else reading.read_yaml
        if ok:
            assert read(path) is not None
            continue
        with pytest.raises(reading.Unreadable) as caught:
            read(path)
        assert str(caught.value) in (f"{path}: nested deeper than 64 levels",
                                     # libyaml's own limit (1000) comes first on a very deep flow sequence
                                     f"{path}: not valid YAML (exceeded maximum nesting depth at line 1)")


@pytest.mark.parametrize("text, why", [
    (BOMB, "YAML anchor &a at line 1: anchors and aliases are refused"),
    ("a: 1\nb: *x\n", "YAML alias *x at line 2: anchors and aliases are refused"),
    ("base: &b {x: 1}\nother:\n  <<: *b\n", "YAML anchor &b at line 1: anchors and aliases are refused"),
    ("!!python/object/apply:os.system ['true']\n",
     "not valid YAML (could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system' "
     "at line 1)"),
    ("a: [1\n", "not valid YAML (did not find expected ',' or ']' at line 2)"),
])
def test_yaml_refuses_anchors_aliases_and_unsafe_tags(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(reading.Unreadable) as caught:
        reading.read_yaml(path)
    assert str(caught.value) == f"{path}: {why}"


def test_yaml_reads_what_progprune_writes(tmp_path: Path) -> None:
    config = yaml.safe_load((make_run(tmp_path / "run") / ".hydra" / "config.yaml").read_text())
    assert reading.read_yaml(tmp_path / "run" / ".hydra" / "config.yaml") == config


def test_json_errors_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    for text, why, line in (('{"a": 1,\n', "not valid JSON (Expecting property name enclosed in double quotes at "
                                           "line 2 column 1)", 2),
                            (b"\xff{}", "not UTF-8 text (byte 0xff at offset 0)", None)):
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        with pytest.raises(reading.Unreadable) as caught:
            reading.read_json(path)
        assert (str(caught.value), caught.value.line) == (f"{path}: {why}", line)
    path.write_text("1" * 5000)  # more digits than int() converts
    with pytest.raises(reading.Unreadable, match=r"not valid JSON \(Exceeds the limit"):
        reading.read_json(path)


def test_clean_replaces_control_characters_in_keys_and_values() -> None:
    value = {"k\x1b": ["a\x07b", {"c\td": "e\r\nf"}], "error": "line 1\r\nline\t2\x9b3\u202e", "n": 1.5}
    assert reading.clean(value, lines=("error",)) == {
        "k\ufffd": ["a\ufffdb", {"c d": "e f"}], "error": "line 1\nline\t2\ufffd3\ufffd", "n": 1.5}
    assert reading.clean_text("ok ünïcode ✓") == "ok ünïcode ✓"
    assert reading.clean_text("a\u2028b\rc", lines=True) == "a\nb\nc"


def test_read_json_and_read_yaml_return_clean_strings(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(json.dumps({"error": f"x{ESCAPES}\ny", "stage": "a\nb"}))
    assert reading.read_json(tmp_path / "s.json", lines=("error",)) == {"error": f"x{SHOWN}\ny", "stage": "a b"}
    (tmp_path / "o.yaml").write_text(yaml.safe_dump([f"seed={ESCAPES}"]))
    assert reading.read_yaml(tmp_path / "o.yaml") == [f"seed={SHOWN}"]
    (tmp_path / "t.txt").write_bytes(b"# a\x1b[1m\r\n# b\tc\n")
    assert reading.read_text(tmp_path / "t.txt", 100) == "# a\ufffd[1m\n# b\tc\n"


def test_fast_paths_read_what_the_checked_paths_read(tmp_path: Path) -> None:
    """'&' or '*' in a YAML text sends it through the composer that refuses anchors (values are still read); JSON
    that is not plain ASCII without escapes is cleaned."""
    values = {"overrides": ["data=*.png", "note=a & b"], "layers": {"conv1": 0.5}}
    (tmp_path / "o.yaml").write_text(yaml.safe_dump(values))
    assert reading.read_yaml(tmp_path / "o.yaml") == values
    for ensure_ascii in (True, False):
        (tmp_path / "r.json").write_text(json.dumps({"ü\u202e": "x\x7f\u2066y"}, ensure_ascii=ensure_ascii))
        assert reading.read_json(tmp_path / "r.json") == {"ü\ufffd": "x\ufffd\ufffdy"}


def test_metrics_csv_that_is_hostile_or_corrupt_gives_no_plot(tmp_path: Path) -> None:
    from progprune_cli.report.plots import draw_plots, read_metrics

    run = make_run(tmp_path / "run")
    good = read_metrics(run / "metrics.csv")
    assert len(good) == 5
    damages = {"fifo": lambda p: (p.unlink(), os.mkfifo(p)),
               "symlink": lambda p: (p.unlink(), p.symlink_to("/dev/zero")),
               "other header": lambda p: p.write_text("a,b\n1,2\n"),
               "a field over csv's limit": lambda p: p.write_text(p.read_text() + '"' + "x" * 200_000 + '"\n'),
               "not a number": lambda p: p.write_text(p.read_text().replace("0.85", "high"))}
    for why, damage in damages.items():
        path = make_run(tmp_path / why) / "metrics.csv"
        damage(path)
        assert read_metrics(path) == [], why
    assert draw_plots(tmp_path / "fifo") == ["plots/layer_sparsity.png"]  # results.json still draws its plot


def test_sensitivity_files_are_read_safely(tmp_path: Path) -> None:
    from progprune_cli.sensitivity.show import print_sensitivity
    from progprune_cli.sensitivity.table import write_table

    run = tmp_path / "sens"
    run.mkdir()
    row = {"unit": "conv1\x1b[2J", "level": 0.5, "val_accuracy": 0.9, "val_loss": 0.3, "params_removed": 10,
           "macs_removed": 100}
    write_table(run / "sensitivity.csv", [row])
    (run / "layers.yaml").write_text(BOMB)
    with pytest.raises(UserError) as caught:
        print_sensitivity(run)
    assert str(caught.value) == f"{run}/layers.yaml: YAML anchor &a at line 1: anchors and aliases are refused"
    (run / "layers.yaml").write_text("# derived\x1b[31m\nconv1: 0.5\n")  # YAML itself allows no raw control
    with pytest.raises(UserError) as caught:
        print_sensitivity(run)
    assert str(caught.value) == (f"{run}/layers.yaml: not valid YAML (unacceptable character #x001b: control "
                                 "characters are not allowed)")
    (run / "layers.yaml").write_text("# derived from sens\nconv1: 0.5\n")
    done = progprune("report", str(run), cwd=tmp_path, timeout=TIMEOUT)
    assert_clean(done)
    assert done.returncode == 0 and "conv1\ufffd[2J" in done.stdout and "derived from sens" in done.stdout
    (run / "sensitivity.csv").rename(tmp_path / "outside.csv")
    (run / "sensitivity.csv").symlink_to(tmp_path / "outside.csv")
    done = progprune("report", str(run), cwd=tmp_path, timeout=TIMEOUT)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"progprune report: error: {run}/sensitivity.csv: {SYMLINK}\n"
