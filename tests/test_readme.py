"""The README is the front door: its Quickstart is what CI runs, and its worked example runs."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_quickstart_has_exactly_two_commands_and_ci_runs_the_second():
    section = README.split("## Quickstart", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    commands = [line for line in block.strip().splitlines() if line.strip()]
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == commands[1]
    assert "pytest" in commands[1] and "repmatch" in commands[0]


def test_worked_example_runs():
    code = _blocks("python")[0]
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    m = namespace["m"]
    assert m.similarity == 40 / 240
    assert namespace["eps"] == 0.0


def test_alignment_example_runs_and_its_numbers_are_true():
    code = [b for b in _blocks("python") if "bipartite_match(X, Y)" in b][0]
    ns = {}
    exec(compile(code, "README.md", "exec"), ns)
    m = ns["m"]
    assert round(m.semi.mean, 3) == 0.725 and round(m.mean, 3) == 0.671
    assert round(ns["repmatch"].linear_cka(ns["X"], ns["Y"]).value, 4) == 0.9695
    assert ns["p"].p_value == 0.01
    assert round(ns["s"].distance, 3) == 0.821 and round(ns["s"].mean_correlation, 3) == 0.639
    assert round(ns["rb"].excess_bipartite, 3) == 0.037 and ns["rb"].p_bipartite == 1 / 21
    assert round(ns["h"].bipartite, 3) == 0.666 and round(ns["h"].bipartite_in_sample, 3) == 0.674
