"""CURVE encryption with client authentication (ZAP).

Key layout written by ``generate_keys(DIR)`` (``streammat keys generate DIR``)::

    DIR/server.key, DIR/server.key_secret        the publisher's key pair
    DIR/client.key, DIR/client.key_secret        a subscriber's key pair
    DIR/authorized_clients/client.key            public keys the publisher accepts

The server (publisher, binds) needs ``server.key_secret`` and ``authorized_clients/``;
a client (subscriber or ZmqSource, connects) needs ``client.key_secret`` and
``server.key``. Copy only those files to each machine. More clients: generate a key pair
with ``zmq.auth.create_certificates`` and drop its public ``.key`` file into
``authorized_clients/``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from ..errors import TransportError

__all__ = [
    "ServerSecurity",
    "ClientSecurity",
    "generate_keys",
    "has_keys",
    "require_curve",
    "start_authenticator",
    "apply_server",
    "apply_client",
]

log = logging.getLogger(__name__)


def require_curve() -> None:
    if not zmq.has("curve"):
        raise TransportError("secure mode needs CURVE, but this libzmq was built without it")


def _load(path: Path, *, secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, secret_key = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise TransportError(f"cannot load CURVE key {path}: {exc}") from exc
    if secret and secret_key is None:
        raise TransportError(f"{path} holds no secret key (expected a .key_secret file)")
    return public, secret_key


@dataclass(frozen=True)
class ServerSecurity:
    """Publisher side: its secret key and the directory of accepted client public keys."""

    secret_key_file: Path
    authorized_clients: Path

    @classmethod
    def from_dir(cls, keys_dir: str | Path) -> ServerSecurity:
        d = Path(keys_dir)
        return cls(d / "server.key_secret", d / "authorized_clients")


@dataclass(frozen=True)
class ClientSecurity:
    """Subscriber side: its secret key and the server's public key."""

    secret_key_file: Path
    server_public_file: Path

    @classmethod
    def from_dir(cls, keys_dir: str | Path) -> ClientSecurity:
        d = Path(keys_dir)
        return cls(d / "client.key_secret", d / "server.key")


#: file modes set explicitly, whatever the umask: whoever can write ``authorized_clients/``
#: can authorize themselves, and whoever can read a secret key can impersonate its owner
DIR_MODE, SECRET_MODE, PUBLIC_MODE = 0o700, 0o600, 0o644
KEY_FILES = ("server.key", "server.key_secret", "client.key", "client.key_secret")


def has_keys(directory: str | Path) -> bool:
    """Whether ``directory`` already holds any of the key files ``generate_keys`` writes."""
    return any((Path(directory) / n).exists() for n in KEY_FILES)


def generate_keys(directory: str | Path, *, overwrite: bool = False) -> dict[str, Path]:
    """Write a server and a client key pair (see the module docstring for the layout).

    Folders get mode 0700, secret keys 0600 and public keys 0644, whatever the umask."""
    d = Path(directory)
    if not overwrite and has_keys(d):
        raise TransportError(f"{d} already holds keys; pass overwrite=True to replace them")
    clients = d / "authorized_clients"
    try:
        clients.mkdir(parents=True, exist_ok=True)
        for folder in (d, clients):
            folder.chmod(DIR_MODE)
        with tempfile.TemporaryDirectory(dir=d) as tmp:
            for who in ("server", "client"):
                zmq.auth.create_certificates(tmp, who)
                for ext in (".key", ".key_secret"):
                    shutil.move(str(Path(tmp) / f"{who}{ext}"), d / f"{who}{ext}")
        shutil.copyfile(d / "client.key", clients / "client.key")
        for name in KEY_FILES:
            (d / name).chmod(SECRET_MODE if name.endswith("_secret") else PUBLIC_MODE)
        (clients / "client.key").chmod(PUBLIC_MODE)
    except OSError as exc:
        raise TransportError(f"cannot write keys to {d}: {exc}") from exc
    return {
        "server_public": d / "server.key",
        "server_secret": d / "server.key_secret",
        "client_public": d / "client.key",
        "client_secret": d / "client.key_secret",
        "authorized_clients": clients,
    }


def start_authenticator(ctx: zmq.Context, sec: ServerSecurity) -> ThreadAuthenticator:
    """Start the ZAP handler for ``ctx`` (must run before the server socket binds)."""
    require_curve()
    if not sec.authorized_clients.is_dir():
        raise TransportError(f"authorized clients directory {sec.authorized_clients} does not exist")
    if not any(sec.authorized_clients.glob("*.key")):
        raise TransportError(f"no client public keys (*.key) in {sec.authorized_clients}")
    auth = ThreadAuthenticator(ctx, log=logging.getLogger(f"{__name__}.zap"))
    try:
        auth.start()
        auth.configure_curve(domain="*", location=str(sec.authorized_clients))
    except zmq.ZMQError as exc:
        auth.stop()
        raise TransportError(f"cannot start the ZAP authenticator: {exc}") from exc
    if not auth.is_alive():
        auth.stop()
        raise TransportError("the ZAP authenticator is not running; refusing to start in secure mode")
    return auth


def apply_server(sock: zmq.Socket, sec: ServerSecurity, auth: ThreadAuthenticator | None) -> None:
    """Make ``sock`` a CURVE server (before bind). Refuses without a running authenticator."""
    require_curve()
    if auth is None or not auth.is_alive():
        raise TransportError("the ZAP authenticator is not running; refusing to start in secure mode")
    public, secret = _load(sec.secret_key_file, secret=True)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True
    sock.zap_domain = b"*"


def apply_client(sock: zmq.Socket, sec: ClientSecurity) -> None:
    """Make ``sock`` a CURVE client (before connect)."""
    require_curve()
    public, secret = _load(sec.secret_key_file, secret=True)
    server_public, _ = _load(sec.server_public_file, secret=False)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = server_public
