"""The partition proxy with real erl clusters (OTP 25 and 28) and pynode nodes: a 5-node
cluster split 2/3 and healed (with prevent_overlapping_partitions off and on), one-way cuts,
latency, a peer killed, and `pynode proxy status` on a live cluster."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from pynode.testing import Cluster, wait_for

from .otp import Otp, otp25, otp28

#: erl notices a silent peer between 3/4 and 5/4 of net_ticktime (net_kernel ticks every
#: ticktime/4 and gives up after 4 silent ticks); plus this much for a loaded machine.
SLACK = 3.0
TICKTIME = 4


def release(name: str) -> Otp:
    return otp25() if name == "otp25" else otp28()


def open_links_across(c: Cluster, a: list, b: list) -> list[dict]:
    an, bn = {str(n.name) for n in a}, {str(n.name) for n in b}
    return [
        link
        for link in c.status()["links"]
        if link["state"] == "open"
        and (
            (link["dialer"] in an and link["acceptor"] in bn)
            or (link["dialer"] in bn and link["acceptor"] in an)
        )
    ]


@pytest.mark.parametrize(
    "otp_name,pop",
    [("otp25", False), ("otp25", True), ("otp25", None), ("otp28", None)],
    ids=["otp25-pop-off", "otp25-pop-on", "otp25-default", "otp28-default"],
)
def test_five_nodes_split_two_three_and_heal(erl_cluster, otp_name: str, pop: bool | None) -> None:
    otp = release(otp_name)
    c: Cluster = erl_cluster(
        erl=3, py=2, otp=otp, net_ticktime=TICKTIME, prevent_overlapping_partitions=pop
    )
    # global's own view of the setting ({conf, ConnectAll, PreventOverlappingPartitions});
    # the default is true on OTP 25 already (and on 28)
    for e in c.erl_nodes:
        assert e.run("element(3, element(2, global:info())).") is (True if pop is None else pop)
    e1, e2, e3 = c.erl_nodes
    p1, p2 = c.py_nodes
    c.wait_full_mesh(timeout=60)
    links = c.status()["links"]
    pairs = {frozenset((link["dialer"], link["acceptor"])) for link in links}
    assert len(pairs) == 10  # every pair of the 5 has its link, known by both names

    a, b = [e1, p1], [e2, e3, p2]
    t0 = c.partition(a, b)
    took = c.wait_split(a, b, timeout=TICKTIME * 1.25 + 20)
    assert took <= TICKTIME * 1.25 + SLACK, f"split seen after {took:.1f} s"
    # each side saw the other side go down, within net_ticktime (+ erl's 1/4 and slack)
    slowest = 0.0
    for side, other in ((a, b), (b, a)):
        for n in side:
            downs = [(node, t) for kind, node, t in n.events() if kind == "nodedown" and t >= t0]
            seen = {node for node, _ in downs}
            assert seen >= {str(o.name) for o in other}, (n, seen)
            late = [(node, t - t0) for node, t in downs if t - t0 > TICKTIME * 1.25 + SLACK]
            assert not late, (n, late)
            slowest = max([slowest] + [t - t0 for node, t in downs])
    print(f"\n{otp_name} pop={pop}: split seen by all after {took:.2f} s, "
          f"slowest nodedown {slowest:.2f} s (net_ticktime {TICKTIME})")
    # each island is still whole, and nothing flows across
    for side in (a, b):
        names = {str(n.name) for n in side}
        for n in side:
            wait_for(lambda n=n, names=names: n.nodes() >= names - {str(n.name)}, 20,
                     f"{n} to see its own island")
    assert open_links_across(c, a, b) == []

    c.heal()
    c.wait_full_mesh(timeout=60)
    assert all(link["state"] == "open" for link in c.status()["links"])
    assert c.full_mesh()
    st = c.status()
    assert st["cuts"] == []


@pytest.mark.parametrize("otp_name", ["otp25", "otp28"])
def test_one_way_cut_both_sides_see_nodedown(erl_cluster, otp_name: str) -> None:
    c: Cluster = erl_cluster(erl=2, otp=release(otp_name), net_ticktime=TICKTIME)
    e1, e2 = c.erl_nodes
    c.wait_full_mesh(timeout=30)
    t0 = c.partition([e1], [e2], one_way=True)
    took = c.wait_split([e1], [e2], timeout=30)
    assert took <= TICKTIME * 1.25 + SLACK
    assert str(e2.name) in e1.downs(t0) and str(e1.name) in e2.downs(t0)
    c.heal()
    c.wait_full_mesh(timeout=30)


def test_latency_shapes_real_traffic(erl_cluster) -> None:
    c: Cluster = erl_cluster(erl=1, py=1, otp=otp25(), net_ticktime=TICKTIME)
    (e,), (p,) = c.erl_nodes, c.py_nodes
    c.wait_full_mesh(timeout=30)

    def rtt() -> float:
        t = time.monotonic()
        assert p.node.rpc(str(e.name), "erlang", "node", [], timeout=10) == e.name
        return time.monotonic() - t

    plain = min(rtt() for _ in range(3))
    c.shape([p], [e], latency=0.25)
    shaped = min(rtt() for _ in range(3))
    assert shaped >= 0.5 > plain
    (link,) = c.status()["links"]
    assert link["shape_to_acceptor"]["latency"] == 0.25


def test_a_killed_node_leaves_the_proxy_serving(erl_cluster) -> None:
    c: Cluster = erl_cluster(erl=3, otp=otp25(), net_ticktime=TICKTIME)
    e1, e2, e3 = c.erl_nodes
    c.wait_full_mesh(timeout=30)
    e3.erl.kill()
    c.nodes.remove(e3)
    wait_for(lambda: all(str(e3.name) not in n.nodes() for n in (e1, e2)), 20, "e3 to vanish")
    wait_for(
        lambda: all(str(e3.name) not in (lk["dialer"], lk["acceptor"]) for lk in c.status()["links"]),
        20,
        "e3's links to close",
    )
    assert str(e3.name).split("@")[0] not in [n for n, _ in c.epmd.names()]
    e3.erl.close()
    c.add_erl()
    c.wait_full_mesh(timeout=30)


def test_cli_status_of_a_live_cluster(erl_cluster) -> None:
    c: Cluster = erl_cluster(erl=2, py=1, otp=otp25(), net_ticktime=TICKTIME)
    c.wait_full_mesh(timeout=30)
    port = c.epmd.control_port
    run = [sys.executable, "-m", "pynode", "proxy"]
    out = subprocess.run(
        [*run, "status", "--json", "--control-port", str(port)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    st = json.loads(out.stdout)
    assert {frozenset((lk["dialer"], lk["acceptor"])) for lk in st["links"]} == {
        frozenset((str(x.name), str(y.name)))
        for i, x in enumerate(c.nodes)
        for y in c.nodes[i + 1 :]
    }
    e1, e2 = c.erl_nodes
    subprocess.run(
        [*run, "cut", str(e1.name), str(e2.name), "--control-port", str(port)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    c.wait_split([e1], [e2], timeout=30)
    text = subprocess.run(
        [*run, "status", "--control-port", str(port)], capture_output=True, text=True,
        timeout=60, check=True,
    ).stdout
    assert f"cut {e1.name} -> {e2.name}" in text
    subprocess.run([*run, "heal", "--control-port", str(port)], check=True, timeout=60,
                   capture_output=True)
    c.wait_full_mesh(timeout=30)
    # OTP's own epmd tool asks the proxy for its names
    names = subprocess.run(
        [c.otp.tool("epmd"), "-port", str(c.epmd.port), "-names"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    for n in c.nodes:
        assert f"name {str(n.name).split('@')[0]} at port" in names


@pytest.mark.parametrize("otp_name", ["otp25", "otp28"])
def test_an_unfollowed_lookup_leaves_no_listener(erl_cluster, otp_name: str) -> None:
    c: Cluster = erl_cluster(erl=2, otp=release(otp_name), proxy_options={"pending_timeout": 1.0})
    e1, e2 = c.erl_nodes
    alive = str(e2.name).split("@")[0]
    reply = e1.run("erl_epmd:port_please(Name, {127,0,0,1}).", Name=list(alive.encode()))
    assert reply[0] == "port"
    port = reply[1]
    assert port != dict(c.epmd.names())[alive]  # a proxy listener, not e2's own port
    assert port in [p["port"] for p in c.status()["pending"]]
    wait_for(lambda: port not in [p["port"] for p in c.status()["pending"]], 20, "expiry")
    assert c.status()["expired_lookups"] >= 1
    assert e1.run("gen_tcp:connect({127,0,0,1}, P, []).", P=port) == ("error", "econnrefused")
