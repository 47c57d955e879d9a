"""Every rule id of the rule book has at least one test named after it."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RULE_BOOK = ROOT.parent / "shared" / "spec" / "billing-rules.md"
# The ids as the rule book defines them ("- **H1** ..."), kept here too so that the check
# still runs where shared/ is not beside the checkout.
KNOWN_IDS = (
    [f"H{n}" for n in range(1, 12)]
    + [f"V{n}" for n in range(1, 6)]
    + ["S1", "S2", "M1"]
    + [f"A{n}" for n in range(1, 6)]
    + ["C1", "C2"]
    + [f"Z{n}" for n in range(1, 10)]
    + [f"P{n}" for n in range(1, 10)]
    + [f"F{n}" for n in range(1, 7)]
)


# Rule ids whose behaviour is not built yet would be listed here, so that a gap is visible;
# the test fails once one of them gets its test, so that the list can only shrink.
NOT_BUILT_YET: set[str] = set()


def rule_ids() -> list[str]:
    if RULE_BOOK.exists():
        found = re.findall(r"^- \*\*([A-Z]\d+)\*\*", RULE_BOOK.read_text(), flags=re.M)
        found += re.findall(r"\*\*(S2)\*\*", RULE_BOOK.read_text())  # S2 shares S1's line
        return sorted(set(found))
    return sorted(KNOWN_IDS)


def test_the_rule_book_ids_are_the_ones_we_know():
    assert set(rule_ids()) == set(KNOWN_IDS)


def test_every_rule_id_has_a_test_named_after_it():
    names = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        names.update(re.findall(r"^\s*def (test_\w+)", path.read_text(), flags=re.M))
    missing = {rule for rule in rule_ids() if not any(f"_{rule}_" in f"_{n}_" for n in names)}
    assert missing == NOT_BUILT_YET, f"rule ids without a test named after them: {missing}"
