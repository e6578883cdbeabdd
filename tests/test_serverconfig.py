"""Tests for common.serverconfig: the server's TOML configuration (the role of aspera.conf)."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import pytest

from common.filters import FilterRule
from common.paths import PathError
from common.serverconfig import (
    ConfigError,
    ServerConfig,
    UserPolicy,
    check_password,
    hash_password,
    load_config,
)
from common.transport.ciphers import ServerCipherPolicy

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBm9wtY0mXkQ0nJcD8W0rQ0T1p7n0kE7h0Zz5m8qZ5cA a@x"
KEY_B = ("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEm= b@y")
URLSAFE = base64.urlsafe_b64encode(bytes(range(236, 256))).decode().rstrip("=")
SECRET_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

FULL = f"""
[server]
listen = "127.0.0.1"
ssh_port = 2222
udp_ports = "40000-40099"
host_key = "keys/host_ed25519"
authorized_keys = "/etc/surge/authorized_keys"
token_secret = "{SECRET_HEX}"
max_sessions = 7

[defaults]
docroot = "/srv/surge/"
directions = ["push", "pull"]
cipher = "aes128"
target_rate_cap = "1g"
target_rate_default = "10m"
min_rate_cap = 500
min_rate_default = "0"
policies = ["fixed", "high", "fair", "low"]
default_policy = "fair"
filters = ["- *.tmp", "+ keep/"]
partial_file_suffix = ".partial"
resume_suffix = ".aspx"
datagram_size = 0

[users.alice]
password = "PASSWORD"
authorized_keys = "alice.keys"
authorized_keys_data = "{KEY_B}"
docroot = "/srv/surge/alice"
directions = ["upload"]
datagram_size = 1400
target_rate_cap = "100m"

[users.bob]
restrictions = ["/data", "/archive/in"]
policies = ["fair", "low"]
default_policy = "low"
cipher = "aes256gcm"
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def conf(tmp_path: Path, text: str) -> ServerConfig:
    return load_config(write(tmp_path / "surge.toml", text))


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        conf(tmp_path, text)
    return str(info.value)


@pytest.fixture(scope="module")
def alice_hash() -> str:
    return hash_password("correct horse")


# ------------------------------------------------------------------------------------ parsing


def test_full_example_file(tmp_path: Path, alice_hash: str) -> None:
    write(tmp_path / "alice.keys", f"# alice's keys\n\n{KEY_A}\n")
    config = conf(tmp_path, FULL.replace("PASSWORD", alice_hash))
    assert (config.listen, config.ssh_port, config.udp_ports) == ("127.0.0.1", 2222, (40000, 40099))
    assert config.host_key == str(tmp_path / "keys" / "host_ed25519")  # from the file's folder
    assert config.authorized_keys == "/etc/surge/authorized_keys"
    assert config.token_secret == bytes.fromhex(SECRET_HEX)
    assert config.max_sessions == 7

    d = config.defaults
    assert d.name == "*" and d.docroot == "/srv/surge" and d.restrictions == ()
    assert d.directions == {"push", "pull"} and d.cipher == ServerCipherPolicy("aes128")
    assert (d.target_rate_cap_bps, d.target_rate_default_bps) == (1_000_000_000, 10_000_000)
    assert (d.min_rate_cap_bps, d.min_rate_default_bps) == (500_000, 0)  # an integer is Kbps
    assert d.policies == {"fixed", "high", "fair", "low"} and d.default_policy == "fair"
    assert d.filters == (FilterRule("exclude", "*.tmp", "rule 1"),
                         FilterRule("include", "keep/", "rule 2"))
    assert (d.partial_file_suffix, d.resume_suffix, d.datagram_size) == (".partial", ".aspx", None)
    assert d.password_hash is None and d.authorized_keys == ()

    alice = config.user("alice")
    assert alice.name == "alice" and alice.docroot == "/srv/surge/alice"
    assert alice.directions == {"push"} and alice.datagram_size == 1400
    assert alice.target_rate_cap_bps == 100_000_000
    assert alice.target_rate_default_bps == 10_000_000  # inherited
    assert alice.filters == d.filters and alice.cipher == d.cipher
    assert alice.password_hash == alice_hash
    assert alice.authorized_keys == (KEY_A, KEY_B)  # the file's keys, then the data's

    bob = config.user("bob")
    assert bob.docroot is None and bob.restrictions == ("/data", "/archive/in")
    assert bob.policies == {"fair", "low"} and bob.default_policy == "low"


def test_secrets_stay_out_of_repr(tmp_path: Path, alice_hash: str) -> None:
    write(tmp_path / "alice.keys", KEY_A)
    config = conf(tmp_path, FULL.replace("PASSWORD", alice_hash))
    assert config.token_secret is not None and SECRET_HEX not in repr(config)
    assert repr(bytes.fromhex(SECRET_HEX)) not in repr(config)
    assert alice_hash not in repr(config) and alice_hash not in repr(config.user("alice"))


def test_no_file_gives_every_default() -> None:
    config = load_config(None)
    assert config == ServerConfig()
    assert (config.listen, config.ssh_port, config.udp_ports) == ("0.0.0.0", 33001, (33001, 33100))
    assert config.token_secret is None and config.max_sessions == 100
    assert config.defaults == UserPolicy() and config.defaults.docroot is None
    assert config.defaults.directions == {"push", "pull"}


def test_empty_file_gives_every_default(tmp_path: Path) -> None:
    assert conf(tmp_path, "") == ServerConfig()


def test_unknown_user_gets_the_defaults_with_its_name(tmp_path: Path) -> None:
    config = conf(tmp_path, '[defaults]\ndocroot = "/srv"\n[users.a]\ndirections = []\n')
    carol = config.user("carol")
    assert carol.name == "carol" and carol.docroot == "/srv"
    assert carol == UserPolicy(name="carol", docroot="/srv")
    assert config.user("a").directions == frozenset()


def test_restrictions_replace_an_inherited_docroot_and_back(tmp_path: Path) -> None:
    config = conf(tmp_path, """
        [defaults]
        restrictions = ["/data"]
        [users.a]
        docroot = "/home/a"
        [users.b]
        restrictions = []
        [users.c]
        restrictions = ["/x/../y/"]
    """)
    assert config.defaults.docroot is None and config.defaults.restrictions == ("/data",)
    assert (config.user("a").docroot, config.user("a").restrictions) == ("/home/a", ())
    assert config.user("b").restrictions == ()  # an empty list clears them
    assert config.user("c").restrictions == ("/y",)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ('"' + "ab" * 16 + '"', bytes([0xAB]) * 16),
        ('"' + "AB" * 16 + '"', bytes([0xAB]) * 16),
        ('"MDEyMzQ1Njc4OWFiY2RlZg=="', b"0123456789abcdef"),
        ('"MDEyMzQ1Njc4OWFiY2RlZg"', b"0123456789abcdef"),
        ('"' + URLSAFE + '"', bytes(range(236, 256))),  # base64url, unpadded
    ],
)
def test_token_secret_hex_or_base64(tmp_path: Path, text: str, secret: bytes) -> None:
    assert conf(tmp_path, f"[server]\ntoken_secret = {text}\n").token_secret == secret


def test_token_secret_file_relative_to_the_config(tmp_path: Path) -> None:
    write(tmp_path / "secret", SECRET_HEX + "\n")
    config = conf(tmp_path, '[server]\ntoken_secret_file = "secret"\n')
    assert config.token_secret == bytes.fromhex(SECRET_HEX)


# ------------------------------------------------------------------------------------- errors

BAD = [
    ('[sever]\nlisten = "x"', "[sever]: unknown table"),
    ('[server]\nlisten = ""', "[server] listen: expected a non-empty string"),
    ('[server]\nlisten_address = "x"', "[server] listen_address: unknown key"),
    ("[server]\nssh_port = 0", "[server] ssh_port: expected an integer from 1 to 65535"),
    ('[server]\nssh_port = "22"', "[server] ssh_port: expected an integer"),
    ("[server]\nssh_port = true", "[server] ssh_port: expected an integer"),
    ('[server]\nudp_ports = "33100-33001"', "[server] udp_ports: expected a port or a range"),
    ('[server]\nudp_ports = "0"', "[server] udp_ports: expected a port or a range"),
    ('[server]\nudp_ports = "1-70000"', "[server] udp_ports: expected a port or a range"),
    ('[server]\nudp_ports = "a-b"', "[server] udp_ports: expected a port or a range"),
    ("[server]\nudp_ports = [1, 2]", "[server] udp_ports: expected a port or a range"),
    ('[server]\ntoken_secret = "abcd"', "[server] token_secret: the secret is 2 bytes"),
    ('[server]\ntoken_secret = "not base64!"', "[server] token_secret: expected a hex or base64"),
    ('[server]\ntoken_secret = "' + "ab" * 16 + '"\ntoken_secret_file = "s"',
     "[server] token_secret: give token_secret or token_secret_file, not both"),
    ('[server]\ntoken_secret_file = "missing"', "[server] token_secret_file: cannot read"),
    ("[server]\nmax_sessions = 0", "[server] max_sessions: expected an integer from 1"),
    ('[defaults]\ndocroots = "/x"', "[defaults] docroots: unknown key"),
    ('[defaults]\npassword = "x"', "[defaults] password: unknown key"),
    ('[defaults]\ndocroot = "srv"', "[defaults] docroot: expected an absolute path"),
    ('[defaults]\ndocroot = "/a"\nrestrictions = ["/b"]', "[defaults] docroot: give docroot or "
     "restrictions, not both"),
    ('[defaults]\nrestrictions = ["data"]', "[defaults] restrictions: expected an absolute path"),
    ('[defaults]\nrestrictions = "/data"', "[defaults] restrictions: expected a list"),
    ('[defaults]\ndirections = ["sideways"]', "[defaults] directions: unknown direction "
     "'sideways'"),
    ('[defaults]\ndirections = ["bidi"]', "[defaults] directions: unknown direction 'bidi'"),
    ('[defaults]\ncipher = "rot13"', "[defaults] cipher: server cipher setting 'rot13'"),
    ('[defaults]\ntarget_rate_cap = "10x"', "[defaults] target_rate_cap: invalid rate '10x'"),
    ('[defaults]\ntarget_rate_cap = "50%"', "[defaults] target_rate_cap: expected an absolute "
     "rate"),
    ("[defaults]\ntarget_rate_cap = 0", "[defaults] target_rate_cap: invalid rate '0': must be "
     "greater than zero"),
    ("[defaults]\ntarget_rate_default = 1.5", "[defaults] target_rate_default: expected a rate"),
    ('[defaults]\nmin_rate_cap = "-1"', "[defaults] min_rate_cap: invalid rate '-1'"),
    ('[defaults]\npolicies = ["turbo"]', "[defaults] policies: expected some of fixed, high"),
    ("[defaults]\npolicies = []", "[defaults] policies: expected some of"),
    ('[defaults]\npolicies = ["fair"]\ndefault_policy = "fixed"',
     "[defaults] default_policy: 'fixed' is not among the allowed policies (fair)"),
    ('[defaults]\nfilters = ["*.tmp"]', "[defaults] filters: rule 1: a filter must be "
     "'+ PATTERN' or '- PATTERN'"),
    ('[defaults]\nfilters = ["- ok", "- bad["]', "[defaults] filters: rule 2: unterminated"),
    ('[defaults]\npartial_file_suffix = "a/b"', "[defaults] partial_file_suffix: expected a "
     "file name suffix"),
    ('[defaults]\nresume_suffix = ""', "[defaults] resume_suffix: expected a file name suffix"),
    ("[defaults]\ndatagram_size = 100", "[defaults] datagram_size: expected an integer from 296"),
    ("[defaults]\ndatagram_size = 70000", "[defaults] datagram_size: expected an integer"),
    ('[defaults]\ndatagram_size = "1500"', "[defaults] datagram_size: expected an integer"),
    ("[defaults]\ndatagram_size = false", "[defaults] datagram_size: expected an integer"),
    ('[users.alice]\npassword = "hunter2"', "[users.alice] password: not a hash made by "
     "hash_password"),
    ('[users.alice]\npasword = "x"', "[users.alice] pasword: unknown key"),
    ('[users.alice]\nauthorized_keys_data = "not a key"', "[users.alice] authorized_keys_data: "
     "line 1 is not an SSH public key"),
    ('[users.alice]\nauthorized_keys = "missing.keys"', "[users.alice] authorized_keys: cannot "
     "read"),
    ('[users.alice]\ndirections = ["pull", 3]', "[users.alice] directions: expected a list of "
     "non-empty strings"),
    ('[users."a b"]\ndocroot = "/x"', "[users] 'a b': a user name may not"),
    ("[users]\nalice = 5", "[users.alice]: must be a table"),
    ("users = 5", "[users]: must be a table"),
    ("server = 5", "[server]: must be a table"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m.split(":")[0] + str(i)
                                                         for i, (_, m) in enumerate(BAD)])
def test_every_bad_value_names_the_file_table_and_key(tmp_path: Path, text: str,
                                                      message: str) -> None:
    assert error(tmp_path, text).startswith(f"{tmp_path / 'surge.toml'}: {message}")


def test_scrypt_parameters_are_bounded(tmp_path: Path, alice_hash: str) -> None:
    huge = re.sub(r"^scrypt\$\d+\$", "scrypt$1048576$", alice_hash)
    message = error(tmp_path, f'[users.alice]\npassword = "{huge}"')
    assert "[users.alice] password: scrypt parameters N=1048576 r=8 p=1 out of range" in message


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    assert "not valid TOML" in error(tmp_path, "[server\n")
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read"):
        load_config(tmp_path / "nope.toml")


def test_oversized_authorized_keys_file(tmp_path: Path) -> None:
    write(tmp_path / "big.keys", (KEY_A + "\n") * ((1 << 20) // len(KEY_A) + 2))
    message = error(tmp_path, '[users.a]\nauthorized_keys = "big.keys"')
    assert "[users.a] authorized_keys:" in message and "larger than 1048576 bytes" in message


# ------------------------------------------------------------------------------------ resolve


@pytest.fixture
def docroot(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "in" / "sub").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "out_link").symlink_to(tmp_path / "outside")
    (root / "file_out").symlink_to(tmp_path / "outside" / "secret")
    (root / "in_link").symlink_to(root / "in")
    return root


@pytest.mark.parametrize(
    ("remote", "local"),
    [
        ("a.txt", "a.txt"),
        ("in/sub/x", "in/sub/x"),
        ("/in/sub/x", "in/sub/x"),  # absolute remote paths are relative to the docroot
        ("//in///x/", "in/x"),
        (".", ""),
        ("/", ""),
        ("in/../b", "b"),
        ("in/./sub/../x", "in/x"),
        ("in_link/x", "in_link/x"),  # a link that stays inside is fine
        ("C:\\x", "C:\\x"),  # with a docroot, just a strange file name
    ],
)
def test_resolve_inside_docroot(docroot: Path, remote: str, local: str) -> None:
    policy = UserPolicy(name="alice", docroot=str(docroot))
    expected = str(docroot / local) if local else str(docroot)
    assert policy.resolve(remote) == expected


@pytest.mark.parametrize(
    ("remote", "problem"),
    [
        ("..", "escapes its root with '..'"),
        ("../root2/x", "escapes its root"),
        ("/../x", "escapes its root"),
        ("in/../../x", "escapes its root"),
        ("out_link", "leaves the docroot through a symbolic link"),
        ("out_link/new_file", "leaves the docroot through a symbolic link"),
        ("file_out", "leaves the docroot through a symbolic link"),
        ("in_link/../out_link/x", "leaves the docroot"),
        ("", "invalid remote path"),
        ("a\0b", "invalid remote path"),
    ],
)
def test_resolve_refuses_escapes(docroot: Path, remote: str, problem: str) -> None:
    with pytest.raises(PathError, match=re.escape(problem)):
        UserPolicy(name="alice", docroot=str(docroot)).resolve(remote)


def test_resolve_with_restrictions(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "other").mkdir()
    (data / "link").symlink_to(tmp_path / "other")
    (data / "ok_link").symlink_to(tmp_path / "archive")
    policy = UserPolicy(name="bob", restrictions=(str(data), str(tmp_path / "archive")))
    assert policy.resolve(f"{data}/x/y") == f"{data}/x/y"
    assert policy.resolve(f"{data}") == f"{data}"
    assert policy.resolve(f"{tmp_path}/archive/z") == f"{tmp_path}/archive/z"
    assert policy.resolve(f"{data}/ok_link/z") == f"{data}/ok_link/z"  # into another restriction
    with pytest.raises(PathError, match="outside the restrictions of user bob"):
        policy.resolve(f"{tmp_path}/database")  # "/data" must not allow "/database"
    with pytest.raises(PathError, match="outside the restrictions"):
        policy.resolve(f"{data}/../other/x")
    with pytest.raises(PathError, match="Remote directory is not absolute"):
        policy.resolve("data/x")
    with pytest.raises(PathError, match="leaves the restrictions through a symbolic link"):
        policy.resolve(f"{data}/link/x")


@pytest.mark.parametrize("remote", ["C:\\Users\\me", "C:/Users/me", "c:file", "dir\\file"])
def test_resolve_windows_path_without_docroot(remote: str) -> None:
    with pytest.raises(PathError, match=r"^Remote directory is not absolute"):
        UserPolicy(name="alice").resolve(remote)


def test_resolve_without_docroot_or_restrictions(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    policy = UserPolicy(name="alice")
    assert policy.resolve("/etc/x/../y") == "/etc/y"
    assert policy.resolve("rel/f") == os.path.join(os.getcwd(), "rel", "f")


# ------------------------------------------------------------------------ direction and rates


def test_check_direction() -> None:
    policy = UserPolicy(name="alice", directions=frozenset({"push"}))
    policy.check_direction("push")
    policy.check_direction("upload")
    with pytest.raises(PermissionError, match=r"^user alice may not download \(pull\)$"):
        policy.check_direction("pull")
    with pytest.raises(PermissionError, match=r"^user alice may not download \(pull\)$"):
        policy.check_direction("download")
    with pytest.raises(ValueError, match="unknown direction"):
        policy.check_direction("sideways")
    with pytest.raises(PermissionError, match=r"may not upload \(push\)"):
        UserPolicy(name="x", directions=frozenset()).check_direction("push")


CAPPED = UserPolicy(name="alice", target_rate_cap_bps=100_000_000,
                    target_rate_default_bps=20_000_000, min_rate_cap_bps=5_000_000,
                    min_rate_default_bps=1_000_000, policies=frozenset({"fair", "low"}),
                    default_policy="low")


@pytest.mark.parametrize(
    ("policy", "request_", "result"),
    [
        (UserPolicy(), (None, None, None), (10_000_000, 0, "fair")),  # ascp's defaults
        (UserPolicy(), (300_000_000, 2_000_000, "fixed"), (300_000_000, 2_000_000, "fixed")),
        (CAPPED, (None, None, None), (20_000_000, 1_000_000, "low")),
        (CAPPED, (500_000_000, None, "fair"), (100_000_000, 1_000_000, "fair")),  # capped
        (CAPPED, (50_000_000, 9_000_000, None), (50_000_000, 5_000_000, "low")),
        (CAPPED, (2_000_000, 4_000_000, None), (2_000_000, 2_000_000, "low")),  # min <= target
        (CAPPED, (0, 0, None), (0, 0, "low")),
        (UserPolicy(target_rate_cap_bps=1_000_000), (None, None, None), (1_000_000, 0, "fair")),
    ],
)
def test_clamp_rates(policy: UserPolicy, request_: tuple[int | None, int | None, str | None],
                     result: tuple[int, int, str]) -> None:
    assert policy.clamp_rates(*request_) == result


def test_clamp_rates_refuses_a_disallowed_policy() -> None:
    with pytest.raises(PermissionError, match=r"policy 'fixed' is not allowed for user alice "
                                              r"\(allowed: fair, low\)"):
        CAPPED.clamp_rates(None, None, "fixed")
    with pytest.raises(PermissionError, match="'turbo'"):
        UserPolicy().clamp_rates(None, None, "turbo")


# ---------------------------------------------------------------------------------- passwords


def test_password_hash_and_check(alice_hash: str) -> None:
    assert alice_hash.startswith("scrypt$16384$8$1$") and "correct horse" not in alice_hash
    assert check_password(alice_hash, "correct horse")
    assert not check_password(alice_hash, "correct horsE")
    assert not check_password(alice_hash, "")


def test_password_hashes_are_salted() -> None:
    first, second = hash_password("pw"), hash_password("pw")
    assert first != second
    assert check_password(first, "pw") and check_password(second, "pw")


@pytest.mark.parametrize("stored", ["pw", "", "scrypt$16384$8$1$abc$def",
                                    "scrypt$3$8$1$" + "A" * 22 + "==$" + "A" * 43 + "="])
def test_check_password_refuses_malformed_hashes(stored: str) -> None:
    with pytest.raises(ValueError):
        check_password(stored, "pw")
