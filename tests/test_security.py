"""CURVE for real deployments: keys, an encrypted and authenticated session, and clients the
server must not let in (real ZeroMQ sockets on loopback, the tiny models)."""

from __future__ import annotations

import stat

import pytest
from cli import run_command

from runtime.draft import EdgeClient, EdgeSettings, ServerError
from runtime.policies import Fixed
from runtime.security import ClientSecurity, SecurityError, ServerSecurity, generate_keys


@pytest.fixture
def keys(tmp_path):
    """A server key pair, an allowed edge and an edge whose key the server never saw."""
    generate_keys(tmp_path / "server", "server")
    generate_keys(tmp_path / "allowed", "edge1")
    generate_keys(tmp_path / "stranger", "edge2")
    return tmp_path


def test_keygen_writes_a_pair_with_a_private_secret_and_never_overwrites(tmp_path) -> None:
    run = run_command(f"-m runtime.security keygen {tmp_path} cloud")
    assert run.returncode == 0, run.stderr
    secret = tmp_path / "cloud.key_secret"
    assert (tmp_path / "cloud.key").is_file() and secret.is_file()
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    again = run_command(f"-m runtime.security keygen {tmp_path} cloud")
    assert again.returncode == 2 and "not overwriting" in again.stderr
    bad = run_command(f"-m runtime.security keygen {tmp_path} ../x")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_an_allowed_edge_is_served_and_others_are_not(
    keys, tiny_target, tiny_draft, start_server
) -> None:
    security = ServerSecurity(keys / "server" / "server.key_secret", keys / "allowed")
    server = start_server(tiny_target, security=security)
    server_key = keys / "server" / "server.key"
    security = ClientSecurity(keys / "allowed" / "edge1.key_secret", server_key)
    allowed = EdgeClient(
        server.endpoint,
        tiny_draft,
        EdgeSettings("edge1", Fixed(3), timeout_s=30, security=security),
    )
    result = allowed.request(tiny_target.encode_prompt("hello"), 12)
    assert len(result.output_ids) == 12
    allowed.close()
    strangers = [
        ClientSecurity(keys / "stranger" / "edge2.key_secret", server_key),  # not allowed
        None,  # no CURVE at all
    ]
    for security_of_client in strangers:
        settings = EdgeSettings("x", Fixed(3), timeout_s=2, security=security_of_client)
        client = EdgeClient(server.endpoint, tiny_draft, settings)
        with pytest.raises(ServerError, match="no reply"):
            client.request(tiny_target.encode_prompt("hello"), 4)
        client.close()
    assert server.counters["opened"] == 1


def test_missing_or_wrong_key_files_are_said_plainly(keys, tmp_path) -> None:
    with pytest.raises(SecurityError, match="no such key file"):
        ClientSecurity(tmp_path / "none.key_secret", keys / "server" / "server.key").apply(None)
    with pytest.raises(SecurityError, match="no secret key"):
        ClientSecurity(keys / "server" / "server.key", keys / "server" / "server.key").apply(None)
    (tmp_path / "empty").mkdir()
    security = ServerSecurity(keys / "server" / "server.key_secret", tmp_path / "empty")
    with pytest.raises(SecurityError, match="no allowed client keys"):
        security.apply(None, None)
