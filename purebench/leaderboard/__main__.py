"""``python -m purebench.leaderboard results_dir=DIR``: print and write ``DIR/leaderboard.md``.

The Markdown holds the per-threat-model tables and the pivot of each defense across threat models.
"""

from __future__ import annotations

import sys
from pathlib import Path

from purebench.eval.results import atomic_write_text, read_rows
from purebench.eval.threats import LADDER
from purebench.leaderboard.table import grouped_markdown, threat_pivot


def main(argv: list[str]) -> int:
    options = dict(arg.split("=", 1) for arg in argv if "=" in arg)
    unknown = [a for a in argv if "=" not in a or a.split("=", 1)[0] != "results_dir"]
    if unknown:
        print(f"purebench.leaderboard: unknown argument(s) {unknown}; usage: results_dir=DIR", file=sys.stderr)
        return 2
    results_dir = Path(options.get("results_dir", "results"))
    rows = read_rows(results_dir / "leaderboard.csv")
    if not rows:
        print(
            f"purebench.leaderboard: no rows in {results_dir / 'leaderboard.csv'}; run `python -m purebench` first.",
            file=sys.stderr,
        )
        return 2
    text = grouped_markdown(rows) + "\n" + threat_pivot(rows, list(LADDER))
    atomic_write_text(results_dir / "leaderboard.md", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
