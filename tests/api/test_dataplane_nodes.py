"""``GET /api/v1/platform/data-plane/nodes``, the metrics and the console's data-plane
page: each node's sequence, lag, digest and last contact, for platform administrators."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest

from certward.services.dataplane_feed import DataPlaneFeed
from certward.services.dataplane_follower import StateFollower
from tests.api.conftest import API, Api, bearer
from tests.web.conftest import ConsoleClient, console

__all__ = ["console"]

NODES = f"{API}/platform/data-plane/nodes"


def test_nodes_report_their_sequence_and_lag_to_platform_admins(api: Api) -> None:
    api.create_app_and_environment("shop", "prod")
    feed = DataPlaneFeed(api.context)
    gateway = StateFollower(feed, kind="gateway", node="edge-1/gateway/10", report_seconds=0)
    nginx = StateFollower(feed, kind="nginx", node="edge-2/nginx/20", report_seconds=0)
    state = gateway.load()
    nginx.load()
    body = api.client.get(NODES, headers=api.admin_headers).json()
    assert body["sequence"] == state.sequence > 0
    by_id = {node["id"]: node for node in body["nodes"]}
    assert set(by_id) == {"edge-1/gateway/10", "edge-2/nginx/20"}
    listed = by_id["edge-1/gateway/10"]
    assert (listed["kind"], listed["sequence"], listed["lag"]) == ("gateway", state.sequence, 0)
    assert listed["version"] == state.version
    assert listed["hostnames"] == 1
    assert listed["last_contact"]

    api.create_environment("shop", "staging")  # the nginx agent does not poll again
    api.clock.advance(timedelta(seconds=30))
    gateway.load()
    body = api.client.get(NODES, headers=api.admin_headers).json()
    by_id = {node["id"]: node for node in body["nodes"]}
    assert by_id["edge-1/gateway/10"]["lag"] == 0
    assert by_id["edge-1/gateway/10"]["hostnames"] == 2
    assert by_id["edge-2/nginx/20"]["lag"] == body["sequence"] - state.sequence > 0
    assert by_id["edge-2/nginx/20"]["seconds_since_contact"] == 30

    metrics = api.client.get("/metrics", headers=api.admin_headers).text
    assert f"certward_dataplane_sequence {float(body['sequence'])}" in metrics
    lag = by_id["edge-2/nginx/20"]["lag"]
    assert (
        f'certward_dataplane_node_lag{{kind="nginx",node="edge-2/nginx/20"}} {lag:.1f}' in metrics
    )

    member = api.create_token("member", app="shop")
    refused = api.client.get(NODES, headers=bearer(member.value))
    assert refused.status_code == 403
    assert refused.json()["code"]


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_a_node_reports_at_most_every_few_seconds(api: Api) -> None:
    api.create_app_and_environment("shop", "prod")
    follower = StateFollower(
        DataPlaneFeed(api.context), kind="gateway", node="n", report_seconds=60
    )
    first = follower.load()
    api.create_environment("shop", "staging")
    follower.load()
    (listed,) = api.client.get(NODES, headers=api.admin_headers).json()["nodes"]
    assert listed["sequence"] == first.sequence  # the second poll was not written


def test_the_console_shows_the_nodes(console: ConsoleClient) -> None:
    console.create_app("shop")
    console.create_environment("shop", "prod")
    console.sign_in()
    assert "No data-plane node has reported yet" in console.get("/platform/data-plane").text
    feed = DataPlaneFeed(console.platform.context)
    state = StateFollower(feed, kind="nginx", node="edge-9/nginx/<b>", report_seconds=0).load()
    page = console.get("/platform/data-plane")
    assert page.status_code == 200
    text = html.unescape(re.sub(r"<[^>]+>", " ", page.text))
    assert "edge-9/nginx/<b>" in text  # shown, escaped
    assert "<b>" not in page.text.split("Nodes", 1)[1].split("Sites left out", 1)[0]
    assert state.version[:12] in text
    assert str(state.sequence) in text
