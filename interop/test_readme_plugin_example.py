"""The pytest plugin example of README.md ('pytest plugin'), run as it is written there.

test_readme_example_is_this_file checks that the README still shows this test."""

from __future__ import annotations

import re
from pathlib import Path


# --- README example begins ---
def test_split_and_heal(erl_cluster):
    # 3 real erl nodes and 2 pynode nodes, private names and cookie, behind their own proxy
    cluster = erl_cluster(erl=3, py=2, net_ticktime=4)
    cluster.wait_full_mesh(timeout=60)

    a, b = cluster.nodes[:2], cluster.nodes[2:]
    cut_at = cluster.partition(a, b)  # traffic between the islands stops
    cluster.wait_split(a, b, timeout=30)  # ticks time out: both sides see nodedown
    for node in a:
        assert {str(n.name) for n in b} <= node.downs(since=cut_at)
    for node in b:
        assert {str(n.name) for n in a} <= node.downs(since=cut_at)

    cluster.heal()
    cluster.wait_full_mesh(timeout=60)  # reconnects every pair, bounded in time
    assert all(link["state"] == "open" for link in cluster.status()["links"])
# --- README example ends ---


def test_readme_example_is_this_file() -> None:
    here = Path(__file__).read_text()
    example = re.search(r"# --- README example begins ---\n(.*?)# --- README example ends ---", here, re.S)
    assert example is not None
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert example.group(1).strip() in readme


def test_the_plugin_comes_from_the_entry_point(request) -> None:
    """Any project gets the fixtures: pytest loaded them through the pytest11 entry point."""
    plugin = request.config.pluginmanager.get_plugin("pynode")
    assert plugin is not None and plugin.__name__ == "pynode.testing.pytest_plugin"
