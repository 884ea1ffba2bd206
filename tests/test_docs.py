"""README and the code say the same thing: the skip reasons, and every committed fuzz corpus belongs
to a fuzz target that exists (a corpus left behind when a package moves silently stops running)."""

from __future__ import annotations

import re
from pathlib import Path

from support.process import ROOT

README = (ROOT / "README.md").read_text()


def _go_reasons() -> set[str]:
    text = (ROOT / "go/internal/source/reasons.go").read_text()
    return set(re.findall(r'^\s*Reason\w+\s*=\s*"([a-z_]+)"', text, flags=re.M))


def _readme_reasons() -> set[str]:
    section = README.split("## Skip reasons", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.M))


def test_readme_lists_exactly_the_skip_reasons_of_the_code() -> None:
    go, readme = _go_reasons(), _readme_reasons()
    assert len(go) >= 10, go
    assert readme == go, f"only in README: {readme - go}; only in Go: {go - readme}"


def test_no_other_go_file_defines_a_skip_reason() -> None:
    offenders = []
    for path in (ROOT / "go").rglob("*.go"):
        if path.name.endswith("_test.go") or path.name == "reasons.go":
            continue
        for value in re.findall(r'\bReason\w*\s*=\s*"([a-z_]+)"', path.read_text()):
            offenders.append(f"{path.relative_to(ROOT)}: {value}")
    assert not offenders, f"skip reasons defined outside go/internal/source/reasons.go: {offenders}"


def test_every_fuzz_corpus_has_its_target() -> None:
    corpora = sorted((ROOT / "go").rglob("testdata/fuzz/*"))
    assert corpora, "no fuzz corpus found"
    for corpus in corpora:
        package = corpus.parent.parent.parent
        sources = "".join(p.read_text() for p in package.glob("*_test.go"))
        assert re.search(rf"^func {corpus.name}\(f \*testing\.F\)", sources, flags=re.M), (
            f"{corpus.relative_to(ROOT)} has no target func {corpus.name} in {package.relative_to(ROOT)}"
        )


def test_every_fuzz_target_of_make_test_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = re.search(r"^FUZZ_TARGETS\s*:=\s*((?:.*\\\n)*.*)$", makefile, flags=re.M)
    assert targets
    for entry in targets.group(1).replace("\\\n", " ").split():
        package, name = entry.split(":")
        sources = "".join(p.read_text() for p in (ROOT / "go" / package).glob("*_test.go"))
        assert f"func {name}(f *testing.F)" in sources, entry
        assert Path(ROOT / "go" / package).is_dir()
