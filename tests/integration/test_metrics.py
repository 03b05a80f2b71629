"""A security server's metrics, scraped over HTTP as Prometheus does."""

from __future__ import annotations

import asyncio
import math

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.testbed import TwoGateways, metadata, probe

pytestmark = pytest.mark.integration


async def scrape(testbed: TwoGateways) -> dict[str, float]:
    port = testbed.consumer.metrics_port
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def test_certificate_and_staple_metrics_are_exposed(make_testbed) -> None:
    testbed = await make_testbed(metrics=True)
    await probe(testbed.agency_channel(), "Echo")(b"x", metadata=metadata(), timeout=10)
    samples = await scrape(testbed)
    assert 0 < samples["pintu_certificate_expiry_seconds"] <= 86_400
    assert samples["pintu_certificate_renewals_total"] == 0
    assert 0 <= samples["pintu_ocsp_staple_age_seconds"] < 60
    assert samples["pintu_ocsp_staple_max_age_seconds"] == 600
    assert samples["pintu_crl_revoked_certificates"] == 0


async def test_the_staple_age_grows_while_the_responder_is_away(make_testbed) -> None:
    testbed = await make_testbed(metrics=True)
    before = (await scrape(testbed))["pintu_ocsp_staple_age_seconds"]
    await testbed.pki.stop()
    await asyncio.sleep(2.2)
    after = (await scrape(testbed))["pintu_ocsp_staple_age_seconds"]
    assert after >= before + 2
    assert not math.isinf(after)


async def test_without_a_metrics_address_there_is_no_endpoint(testbed: TwoGateways) -> None:
    assert testbed.consumer.metrics_port == 0
