"""The live listeners' TLS configuration: no protocol below TLS 1.2, no TLS 1.2 cipher without
ECDHE and AEAD, client certificates required on MQTT.

sslyze is not installed in this environment, so the check is the PKI's own prober
(``probe_tls_endpoint``: real handshakes with TLS 1.0, 1.1, weak TLS 1.2 ciphers and no client
certificate) plus ``tls_configuration_problems`` on the contexts the listeners use.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.server.runtime.support import provision, run, running_stack

from pumpguard.pki import ProbeCheck, ProbeOutcome, probe_tls_endpoint, tls_configuration_problems


def test_mqtt_and_https_listeners_meet_the_tls_policy(tmp_path: Path) -> None:
    async def scenario() -> tuple[dict[ProbeCheck, ProbeOutcome], dict[ProbeCheck, ProbeOutcome]]:
        async with running_stack(tmp_path / "data", None) as stack:
            for name, ctx in stack.tls_contexts.items():
                assert tls_configuration_problems(ctx) == [], name
            creds = await provision(stack, "PUMP-0001")
            mqtt = await asyncio.to_thread(
                probe_tls_endpoint, stack.local_address, stack.mqtt_port, creds
            )
            https = await asyncio.to_thread(
                probe_tls_endpoint,
                stack.local_address,
                stack.http_port,
                creds,
                expect_client_cert=False,
            )
            return (
                {r.check: r.outcome for r in mqtt},
                {r.check: r.outcome for r in https},
            )

    mqtt, https = run(scenario())
    for results in (mqtt, https):
        assert results[ProbeCheck.BASELINE] is ProbeOutcome.PASSED
        assert results[ProbeCheck.WEAK_TLS12_CIPHERS] is ProbeOutcome.PASSED
        for legacy in (ProbeCheck.TLS10, ProbeCheck.TLS11):
            assert results[legacy] is not ProbeOutcome.FAILED  # skipped when OpenSSL lacks it
    assert mqtt[ProbeCheck.NO_CLIENT_CERT] is ProbeOutcome.PASSED
    assert ProbeCheck.NO_CLIENT_CERT not in https
