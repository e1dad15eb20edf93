"""The Kubernetes adapter fails only with `KubeError`, so the run loop (through `AsyncKube`)
and the leader election (on its own thread) catch one type: a call that got no answer is
status 0 and retryable, its cause chained, and its message names the kind of failure, never
the URL (which may carry credentials). The calls go through the real `Kube` methods and the
real generated client, over an `ApiClient` whose transport fails as the test says.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
from collections.abc import Callable
from typing import Any, cast

import pytest
import urllib3.exceptions
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from conveyor.kube import AsyncKube, Kube, KubeError

SECRET_URL = "https://admin:s3cret-token@10.0.0.1:6443/apis/conveyor.dev/v1alpha1/x"


class FailingApiClient(client.ApiClient):  # type: ignore[misc]
    """The generated client's one way out to the network, failing with `error`."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(client.Configuration(host="https://127.0.0.1:1"))
        self.error = error
        self.calls: list[tuple[str, str]] = []

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((method, url))
        raise self.error


def kube(error: BaseException) -> Kube:
    return Kube(FailingApiClient(error))


NO_ANSWER: dict[str, Callable[[], BaseException]] = {
    "refused-max-retries": lambda: urllib3.exceptions.MaxRetryError(
        None, SECRET_URL,  # type: ignore[arg-type]
        reason=urllib3.exceptions.NewConnectionError(
            None, f"Failed to establish a new connection to {SECRET_URL}")),  # type: ignore[arg-type]
    "max-retries-bare": lambda: urllib3.exceptions.MaxRetryError(None, "/x"),  # type: ignore[arg-type]
    "protocol-reset": lambda: urllib3.exceptions.ProtocolError(
        "Connection aborted.", ConnectionResetError(104, "Connection reset by peer")),
    "read-timeout": lambda: urllib3.exceptions.ReadTimeoutError(
        None, SECRET_URL, "Read timed out. (read timeout=5)"),  # type: ignore[arg-type]
    "connection-refused": lambda: ConnectionRefusedError(111, "Connection refused"),
    "timeout": lambda: TimeoutError("timed out"),  # socket.timeout is this one
    "dns": lambda: socket.gaierror(-2, "Name or service not known"),
    "ssl": lambda: ssl.SSLError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] for {SECRET_URL}"),
    "ssl-cert": lambda: ssl.SSLCertVerificationError(1, "certificate verify failed"),
}

CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("replace_status", ("workflowruns", "ns", "r1", {"phase": "Running"})),
    ("patch_status", ("workflows", "ns", "wf", {"activeRuns": 1})),
    ("post_event", ({"kind": "WorkflowRun", "name": "r1", "namespace": "ns"}, "Normal",
                    "RunRunning", "run running")),
    ("apply_config_map", ({"metadata": {"name": "cm", "namespace": "ns"}},)),
    ("get_config_map_data", ("ns", "cm")),
    ("get_secret_data", ("ops", "workers-s3")),
    ("list_deployments", ("ns", {"a": "b"})),
    ("delete_run", ("ns", "r1", "uid-r1")),
    ("list_custom", ("workflowruns", None, None)),
]


@pytest.mark.parametrize("make", NO_ANSWER.values(), ids=NO_ANSWER.keys())
def test_a_call_that_got_no_answer_leaves_as_a_retryable_kube_error(
        make: Callable[[], BaseException]) -> None:
    cause = make()
    with pytest.raises(KubeError) as caught:
        asyncio.run(AsyncKube(kube(cause)).replace_status("workflowruns", "ns", "r1",
                                                          {"phase": "Running"}))
    error = caught.value
    assert error.status == 0 and error.retryable and not error.not_found
    # Chained; asyncio re-creates a TimeoutError crossing from the thread (same type, args).
    assert type(error.__cause__) is type(cause) and error.__cause__.args == cause.args
    if not isinstance(cause, TimeoutError):
        assert error.__cause__ is cause
    message = str(error)
    assert message.startswith("replace status: cannot reach the API server")
    assert type(cause).__name__ in message
    assert "s3cret" not in message and "10.0.0.1" not in message and "/x" not in message


@pytest.mark.parametrize(("method", "args"), CALLS, ids=[c[0] for c in CALLS])
def test_every_call_maps_transport_errors(method: str, args: tuple[Any, ...]) -> None:
    adapter = kube(ConnectionRefusedError(111, "Connection refused"))
    with pytest.raises(KubeError) as caught:
        asyncio.run(getattr(AsyncKube(adapter), method)(*args))
    assert caught.value.status == 0
    assert str(caught.value).startswith(method.replace("_", " ") + ":")
    assert len(cast(FailingApiClient, adapter.api).calls) == 1, "called once"


@pytest.mark.parametrize("method", ["get_lease", "create_lease", "replace_lease"])
def test_the_leader_elections_blocking_calls_map_transport_errors_too(method: str) -> None:
    """The election renews from a thread of its own: an unmapped error there would end the
    renewals silently while the replica keeps acting."""
    args = {"get_lease": ("ns", "lease"), "create_lease": ("ns", "lease", {}),
            "replace_lease": ("ns", "lease", "7", {})}[method]
    with pytest.raises(KubeError) as caught:
        getattr(kube(urllib3.exceptions.MaxRetryError(None, "/x")), method)(*args)  # type: ignore[arg-type]
    assert caught.value.status == 0 and caught.value.retryable


def test_a_refused_connection_on_loopback_is_a_kube_error() -> None:
    """No stub: a real connection attempt to a closed loopback port, no retries."""
    configuration = client.Configuration(host="https://127.0.0.1:1")
    configuration.retries = 0
    with pytest.raises(KubeError) as caught:
        Kube(client.ApiClient(configuration)).list_pods("ns", {})
    assert caught.value.status == 0 and caught.value.retryable
    assert "cannot reach the API server" in str(caught.value)


@pytest.mark.parametrize("status", [404, 409, 422, 500, 503])
def test_an_error_answer_keeps_its_status(status: int) -> None:
    raised = ApiException(status=status, reason="Reason")
    raised.body = '{"message": "etcdserver: leader changed"}'
    with pytest.raises(KubeError) as caught:
        asyncio.run(AsyncKube(kube(raised)).replace_status("workflowruns", "ns", "r1", {}))
    assert caught.value.status == status
    assert caught.value.not_found == (status == 404)
    assert caught.value.retryable == (status in (500, 503))
    assert str(caught.value) == ("replace status of workflowruns/r1 in ns: "
                                 "etcdserver: leader changed")
    assert caught.value.__cause__ is raised


def test_other_errors_are_not_disguised() -> None:
    """A bug (not a transport failure) is not turned into a retryable KubeError."""
    with pytest.raises(ValueError, match="bug"):
        asyncio.run(AsyncKube(kube(ValueError("bug"))).list_pods("ns", {}))


def test_answers_come_back_and_calls_run_off_the_loop() -> None:
    seen: list[bool] = []

    def probe(*_: Any) -> dict[str, str]:
        try:
            asyncio.get_running_loop()
            seen.append(True)
        except RuntimeError:
            seen.append(False)
        return {"spec.json": "{}"}

    stub = type("Probe", (), {"get_config_map_data": staticmethod(probe)})()
    facade = AsyncKube(cast(Kube, stub))
    assert asyncio.run(facade.get_config_map_data("ns", "cm")) == {"spec.json": "{}"}
    assert seen == [False], "the blocking call ran in a worker thread, not on the loop"


@pytest.mark.parametrize(("header", "expected"), [("3", 3.0), ("0.5", 0.5), (None, None),
                                                  ("Wed, 21 Oct 2026 07:28:00 GMT", None),
                                                  ("-4", None)])
def test_a_429_carries_the_servers_retry_after(header: str | None,
                                               expected: float | None) -> None:
    raised = ApiException(status=429, reason="Too Many Requests")
    raised.headers = {} if header is None else {"Retry-After": header}
    with pytest.raises(KubeError) as caught:
        asyncio.run(AsyncKube(kube(raised)).replace_status("workflowruns", "ns", "r1", {}))
    error = caught.value
    assert error.retryable and error.retry_after == expected
    assert error.delay(1.0) == max(1.0, expected or 0.0)


def test_a_wild_retry_after_is_bounded() -> None:
    assert KubeError("x", 429, retry_after=86400).delay(2.0) == 60.0


class SecretApiClient(client.ApiClient):  # type: ignore[misc]
    """Answers every call with one Secret (or raises `error`), as the generated method hands
    its answer back: from `call_api` in older clients, from `_call_with_legacy_options`
    in the pydantic-based ones."""

    def __init__(self, data: dict[str, str] | None, error: BaseException | None = None) -> None:
        super().__init__(client.Configuration(host="https://127.0.0.1:1"))
        self.data, self.error = data, error

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        if self.error is not None:
            raise self.error
        return client.V1Secret(data=self.data)

    _call_with_legacy_options = call_api


def test_a_secrets_data_comes_back_decoded_and_a_missing_one_is_none() -> None:
    encoded = {"accessKey": base64.b64encode(b"workers").decode(),
               "secretKey": base64.b64encode(b"s3cret").decode()}
    found = asyncio.run(AsyncKube(Kube(SecretApiClient(encoded))).get_secret_data("ops", "w"))
    assert found == {"accessKey": "workers", "secretKey": "s3cret"}
    missing = ApiException(status=404, reason="Not Found")
    assert Kube(SecretApiClient(None, missing)).get_secret_data("ops", "w") is None


def test_a_secret_value_that_is_no_text_is_named_by_its_key_not_shown() -> None:
    encoded = {"secretKey": base64.b64encode(b"\xffs3cret").decode()}
    with pytest.raises(KubeError) as caught:
        Kube(SecretApiClient(encoded)).get_secret_data("ops", "w")
    assert str(caught.value) == "get Secret ops/w: key secretKey is not UTF-8 text"
