"""The manifests users copy (examples/ and the README's) pass the API server's schema and CEL rules."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def readme_manifests() -> list[str]:
    text = (REPO / "README.md").read_text()
    return [block for block in re.findall(r"```yaml\n(.*?)```", text, re.S) if "apiVersion: certmint.io" in block]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_accepted_by_the_api_server(kubectl, path):
    # A server-side dry run: the schema and CEL rules judge it, and nothing is stored.
    kubectl("apply", "--dry-run=server", "-f", str(path))


def test_readme_manifests_are_accepted_by_the_api_server(kubectl):
    blocks = readme_manifests()
    assert blocks, "the README shows at least one certmint manifest"
    for block in blocks:
        kubectl("apply", "--dry-run=server", "-f", "-", input=block)
