"""The callback_url allow-list: syntax, listed hosts, and the addresses a name resolves to."""

from __future__ import annotations

import pytest

from service.webhooks.policy import CallbackPolicy, CallbackRefused

PUBLIC = "93.184.216.34"
ANSWERS = {
    "hooks.example.com": [PUBLIC],
    "ci.example.com": [PUBLIC, "2606:2800:220:1:248:1893:25c8:1946"],
    "rebind.example.com": ["169.254.169.254"],  # an allowed name that points at the metadata service
    "mixed.example.com": [PUBLIC, "10.0.0.7"],
    "mapped.example.com": ["::ffff:127.0.0.1"],
    "lan.corp": ["10.1.2.3"],
    "localhost": ["127.0.0.1", "::1"],
}


def resolver(host: str, port: int) -> list[str]:
    if host not in ANSWERS:
        raise OSError(f"[Errno -2] Name or service not known: {host}")
    return ANSWERS[host]


def policy(allowed: str) -> CallbackPolicy:
    return CallbackPolicy(allowed, resolver)


@pytest.mark.parametrize(
    ("allowed", "url", "address", "port"),
    [
        ("hooks.example.com", "https://hooks.example.com/smartcash?x=1", PUBLIC, 443),
        ("*.example.com", "http://ci.example.com:8080/h", PUBLIC, 8080),
        ("HOOKS.example.com.", "https://Hooks.Example.COM./p", PUBLIC, 443),
        ("127.0.0.1", "http://127.0.0.1:9999/hook", "127.0.0.1", 9999),
        ("127.0.0.0/8", "http://127.0.0.5/", "127.0.0.5", 80),
        ("lan.corp, 10.0.0.0/8", "http://lan.corp/x", "10.1.2.3", 80),  # internal only when listed too
        ("::1", "http://[::1]:81/x", "::1", 81),
    ],
)
def test_allowed_targets_pass_with_the_address_to_connect_to(
    allowed: str, url: str, address: str, port: int
) -> None:
    target = policy(allowed).check(url)
    assert str(target.address) == address and target.port == port
    assert target.pinned_url().startswith(f"{target.scheme}://")
    assert address in target.pinned_url() and target.path.startswith("/")


@pytest.mark.parametrize(
    ("allowed", "url", "why"),
    [
        ("", "https://hooks.example.com/x", "not allowed"),  # the default: nothing
        ("hooks.example.com", "https://evil.example.net/x", "not allowed"),
        ("*.example.com", "https://example.com/x", "not allowed"),  # the suffix, not the bare domain
        ("hooks.example.com", "https://hooks.example.com.evil.net/x", "not allowed"),
        ("*.example.com", "https://rebind.example.com/x", "169.254.169.254"),
        ("*.example.com", "https://mixed.example.com/x", "10.0.0.7"),  # every answer must pass
        ("*.example.com", "https://mapped.example.com/x", "127.0.0.1"),
        ("localhost, 127.0.0.1", "http://localhost/x", "::1"),
        ("*.example.com", "https://missing.example.com/x", "does not resolve"),
        ("hooks.example.com", "http://127.0.0.1/x", "not allowed"),  # an address needs its own entry
        ("10.0.0.0/8", "http://[::ffff:10.0.0.1]/x", None),  # mapped IPv4 judged as IPv4: allowed
        ("hooks.example.com", "ftp://hooks.example.com/x", "http"),
        ("hooks.example.com", "https://user:pw@hooks.example.com/x", "credentials"),
        ("hooks.example.com", "https://hooks.example.com:99999/x", "port"),
        ("hooks.example.com", "https://hooks.example.com/a b", "whitespace"),
        ("hooks.example.com", "https:///nohost", "host"),
        ("hooks.example.com", "https://hooks.example.com/" + "a" * 3000, "2048"),
        ("hooks.example.com", "", "2048"),
    ],
)
def test_refused_targets_say_why(allowed: str, url: str, why: str | None) -> None:
    if why is None:
        assert str(policy(allowed).check(url).address) == "10.0.0.1"
        return
    with pytest.raises(CallbackRefused) as refused:
        policy(allowed).check(url)
    assert why in refused.value.message and refused.value.status_code == 400
    assert refused.value.code == "callback_refused" and refused.value.fix


def test_the_host_travels_as_host_header_and_sni() -> None:
    https = policy("hooks.example.com").check("https://hooks.example.com/x")
    assert https.host_header() == "hooks.example.com" and https.pinned_url() == f"https://{PUBLIC}:443/x"
    http = policy("*.example.com").check("http://ci.example.com:8080/h?q=1")
    assert http.host_header() == "ci.example.com:8080" and http.path == "/h?q=1"
    v6 = policy("::1").check("http://[::1]:81/x")
    assert v6.pinned_url() == "http://[::1]:81/x" and v6.host_header() == "[::1]:81"
    assert not CallbackPolicy("", resolver).enabled and CallbackPolicy(" , ", resolver).enabled is False
