"""CURVE encryption and authentication for deployments across real networks.

Off by default (loopback and Mininet need none); on when the target is given its secret key
and a folder of allowed client keys, and each edge its own key pair and the server's public
key. ZeroMQ then encrypts every message, and the target's ZAP handler lets in only clients
whose public key is in the folder: an unknown or plaintext client never reaches the loop.

    python -m runtime.security keygen KEYS_DIR NAME   # NAME.key (public), NAME.key_secret

Key files are ZeroMQ's certificate text format (no code is run to load them).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator


class SecurityError(ValueError):
    """A key file or folder is missing or not what it must be; the message says which."""


def generate_keys(folder: Path, name: str) -> tuple[Path, Path]:
    """A new key pair in ``folder``: ``NAME.key`` (public, to hand out) and
    ``NAME.key_secret`` (readable by its owner only)."""
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise SecurityError(f"key name {name!r}: use letters, digits, '-' and '_'")
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / f"{name}.key_secret").exists():
        raise SecurityError(f"{folder / name}.key_secret exists: not overwriting a key")
    public, secret = zmq.auth.create_certificates(str(folder), name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)


def _load(path: Path, need_secret: bool) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise SecurityError(f"{path}: no such key file")
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError, KeyError) as exc:
        raise SecurityError(f"{path}: not a CURVE key file ({exc})") from exc
    if need_secret and secret is None:
        raise SecurityError(f"{path}: holds no secret key (give NAME.key_secret)")
    return public, secret


@dataclass(frozen=True)
class ServerSecurity:
    """The target's side: its key pair and the folder of client public keys it allows."""

    secret_file: Path
    allowed_keys: Path

    def apply(self, socket: zmq.Socket, context: zmq.Context) -> ThreadAuthenticator:
        """Make ``socket`` (before it binds) a CURVE server that authenticates clients;
        returns the running authenticator, to be stopped with the socket."""
        public, secret = _load(self.secret_file, need_secret=True)
        if not self.allowed_keys.is_dir() or not any(self.allowed_keys.glob("*.key")):
            raise SecurityError(f"{self.allowed_keys}: no allowed client keys (*.key) there")
        authenticator = ThreadAuthenticator(context)
        authenticator.start()
        authenticator.configure_curve(domain="*", location=str(self.allowed_keys))
        socket.curve_publickey = public
        socket.curve_secretkey = secret
        socket.curve_server = True
        return authenticator


@dataclass(frozen=True)
class ClientSecurity:
    """An edge's side: its key pair and the server's public key."""

    secret_file: Path
    server_key: Path

    def apply(self, socket: zmq.Socket) -> None:
        """Make ``socket`` (before it connects) a CURVE client of that server."""
        public, secret = _load(self.secret_file, need_secret=True)
        server, _ = _load(self.server_key, need_secret=False)
        socket.curve_publickey = public
        socket.curve_secretkey = secret
        socket.curve_serverkey = server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="CURVE keys for the target and the edges")
    commands = parser.add_subparsers(dest="command", required=True)
    keygen = commands.add_parser("keygen", help="write NAME.key and NAME.key_secret")
    keygen.add_argument("folder", type=Path)
    keygen.add_argument("name")
    args = parser.parse_args(argv)
    try:
        public, secret = generate_keys(args.folder, args.name)
    except (SecurityError, OSError) as exc:
        print(f"security: error: {exc}", file=sys.stderr)
        return 2
    print(f"public key {public} (hand it out), secret key {secret} (keep it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
