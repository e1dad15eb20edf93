"""`AsyncKube`: every failure of a blocking `Kube` call leaves as a `KubeError`, so the run loop
catches one type; a call that got no answer is status 0 and retryable, its cause chained, and
its message names the kind of failure, never the URL (which may carry credentials)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Any, cast

import pytest
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from conveyor.kube import AsyncKube, Kube, KubeError
from conveyor.kube.errors import api_error

SECRET_URL = "https://admin:s3cret-token@10.0.0.1:6443/apis/conveyor.dev/v1alpha1/x"


class StubKube:
    """Stands in for `Kube`: every call raises what the test says, or answers `result`."""

    def __init__(self, error: BaseException | None = None, result: Any = None) -> None:
        self.error = error
        self.result = result
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)

        def call(*args: Any) -> Any:
            self.calls.append((name, args))
            if self.error is not None:
                raise self.error
            return self.result

        call.__name__ = name
        return call


def facade(stub: StubKube) -> AsyncKube:
    return AsyncKube(cast(Kube, stub))


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
    ("list_deployments", ("ns", {"a": "b"})),
    ("delete_run", ("ns", "r1", "uid-r1")),
    ("list_custom", ("workflowruns", None, None)),
]


@pytest.mark.parametrize("make", NO_ANSWER.values(), ids=NO_ANSWER.keys())
def test_a_call_that_got_no_answer_leaves_as_a_retryable_kube_error(
        make: Callable[[], BaseException]) -> None:
    cause = make()
    kube = facade(StubKube(cause))
    with pytest.raises(KubeError) as caught:
        asyncio.run(kube.replace_status("workflowruns", "ns", "r1", {"phase": "Running"}))
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
    stub = StubKube(ConnectionRefusedError(111, "Connection refused"))
    with pytest.raises(KubeError) as caught:
        asyncio.run(getattr(facade(stub), method)(*args))
    assert caught.value.status == 0
    assert str(caught.value).startswith(method.replace("_", " ") + ":")
    assert stub.calls == [(method, args)], "called once, with the arguments given"


@pytest.mark.parametrize("status", [404, 409, 422, 500])
def test_a_kube_error_from_the_client_passes_through_unchanged(status: int) -> None:
    raised = api_error("replace status of workflowruns/r1 in ns",
                       ApiException(status=status, reason="Reason"))
    with pytest.raises(KubeError) as caught:
        asyncio.run(facade(StubKube(raised)).replace_status("workflowruns", "ns", "r1", {}))
    assert caught.value is raised
    assert caught.value.status == status
    assert caught.value.not_found == (status == 404)


def test_an_api_exception_that_slipped_through_is_mapped_with_its_status() -> None:
    raised = ApiException(status=503, reason="Service Unavailable")
    raised.body = '{"message": "etcdserver: leader changed"}'
    with pytest.raises(KubeError) as caught:
        asyncio.run(facade(StubKube(raised)).delete_run("ns", "r1", "uid-r1"))
    assert caught.value.status == 503 and caught.value.retryable
    assert str(caught.value) == "delete run: etcdserver: leader changed"
    assert caught.value.__cause__ is raised


def test_other_errors_are_not_disguised() -> None:
    """A bug (not a transport failure) is not turned into a retryable KubeError."""
    with pytest.raises(ValueError, match="bug"):
        asyncio.run(facade(StubKube(ValueError("bug"))).list_pods("ns", {}))


def test_answers_come_back_and_calls_run_off_the_loop() -> None:
    stub = StubKube(result={"spec.json": "{}"})
    seen: list[bool] = []

    def probe(*_: Any) -> dict[str, str]:
        try:
            asyncio.get_running_loop()
            seen.append(True)
        except RuntimeError:
            seen.append(False)
        return {"spec.json": "{}"}

    kube = facade(stub)
    assert asyncio.run(kube.get_config_map_data("ns", "cm")) == {"spec.json": "{}"}
    kube.sync = cast(Kube, type("Probe", (), {"get_config_map_data": staticmethod(probe)})())
    assert asyncio.run(kube.get_config_map_data("ns", "cm")) == {"spec.json": "{}"}
    assert seen == [False], "the blocking call ran in a worker thread, not on the loop"
